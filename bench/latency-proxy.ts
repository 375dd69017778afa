/**
 * A TCP proxy on 127.0.0.1 that delivers every chunk `delayMs` late, in each
 * direction (a round trip takes at least 2 * delayMs longer): PostgreSQL as
 * if it were across a network, for the replication workloads. Order is kept:
 * one FIFO per direction, and a chunk never overtakes one queued before it.
 * (The tests' outage proxy, which also cuts and blackholes, lives with the
 * tests; bench/ uses only the public API and what it owns.)
 */
import net from 'node:net'

export class LatencyProxy {
  private readonly sockets = new Set<net.Socket>()

  private constructor(private readonly server: net.Server) {}

  static async start(target: { readonly host: string; readonly port: number }, delayMs: number): Promise<LatencyProxy> {
    if (!(delayMs >= 0)) throw new RangeError('delayMs must be >= 0')
    const server = net.createServer()
    const proxy = new LatencyProxy(server)
    server.on('connection', (client) => proxy.accept(client, target, delayMs))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    return proxy
  }

  get port(): number {
    const a = this.server.address()
    if (a === null || typeof a === 'string') throw new Error('proxy is not listening')
    return a.port
  }

  private accept(client: net.Socket, target: { readonly host: string; readonly port: number }, delayMs: number): void {
    const upstream = net.connect(target.port, target.host)
    for (const s of [client, upstream]) {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
      s.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    delayed(client, upstream, delayMs)
    delayed(upstream, client, delayMs)
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

/** Pipes `from` into `to`, each chunk `delayMs` after it arrived, in order; an end follows the last chunk. */
function delayed(from: net.Socket, to: net.Socket, delayMs: number): void {
  const queue: { chunk: Buffer; dueAt: number }[] = []
  let timer: NodeJS.Timeout | undefined
  let ended = false
  const drain = (): void => {
    timer = undefined
    const now = Date.now()
    while (queue.length > 0 && (queue[0]?.dueAt ?? 0) <= now) to.write(queue.shift()?.chunk ?? Buffer.alloc(0))
    const head = queue[0]
    if (head) timer = setTimeout(drain, Math.max(0, head.dueAt - now))
    else if (ended) to.end()
  }
  from.on('data', (chunk: Buffer) => {
    queue.push({ chunk, dueAt: Date.now() + delayMs })
    timer ??= setTimeout(drain, delayMs)
  })
  from.on('end', () => {
    ended = true
    timer ??= setTimeout(drain, 0)
  })
}
