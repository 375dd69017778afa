/**
 * A small TCP proxy on 127.0.0.1: put it between memwal and PostgreSQL and
 * make the network slow (the benchmark's replication workloads) or fail (the
 * outage tests), without touching the server. It lives in bench/ because
 * bench/ may not import test code, while the tests may import it from here.
 *
 *   const proxy = await TcpProxy.start({ host: '127.0.0.1', port: 5432 })
 *   ... connect to 127.0.0.1:proxy.port ...
 *   proxy.cut()        every connection reset, new ones refused (reset at once)
 *   proxy.blackhole()  connections stay open, every byte either way is dropped,
 *                      new connections are accepted and then hear nothing; a
 *                      side that closes is not told to the other (as when the
 *                      network drops packets)
 *   proxy.slow(ms)     each chunk is delivered `ms` later, in each direction
 *                      (so a round trip takes at least 2 * ms longer)
 *   proxy.heal()       back to normal; connections that were blackholed are
 *                      reset (their byte streams have holes), others go on
 *   await proxy.close()
 *
 * Order is kept in `slow` mode: timers of equal delay fire in the order set.
 */
import net from 'node:net'

export type ProxyMode = { readonly kind: 'up' } | { readonly kind: 'cut' } | { readonly kind: 'blackhole' } | { readonly kind: 'slow'; readonly ms: number }

interface Pair {
  readonly client: net.Socket
  upstream: net.Socket | undefined
  /** Set once the pair lived through a blackhole: its streams lost bytes. */
  holed: boolean
}

export class TcpProxy {
  private mode: ProxyMode = { kind: 'up' }
  private readonly pairs = new Set<Pair>()
  private accepted = 0

  private constructor(
    private readonly server: net.Server,
    private readonly target: { readonly host: string; readonly port: number },
  ) {}

  static async start(target: { readonly host: string; readonly port: number }): Promise<TcpProxy> {
    const server = net.createServer({ pauseOnConnect: false })
    const proxy = new TcpProxy(server, target)
    server.on('connection', (s) => proxy.accept(s))
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

  /** Connections open now. */
  get connections(): number {
    return this.pairs.size
  }

  /** Connections accepted since start. */
  get connectionsAccepted(): number {
    return this.accepted
  }

  get state(): ProxyMode {
    return this.mode
  }

  /** Resets every connection and refuses new ones until heal(). */
  cut(): void {
    this.mode = { kind: 'cut' }
    for (const p of [...this.pairs]) this.drop(p)
  }

  /** Drops every byte, in both directions, on every connection, old and new, until heal(). */
  blackhole(): void {
    this.mode = { kind: 'blackhole' }
    for (const p of this.pairs) p.holed = true
  }

  /** Delays every chunk by `ms` in each direction until heal(). */
  slow(ms: number): void {
    if (!(ms >= 0)) throw new RangeError('slow takes a delay in ms')
    this.mode = { kind: 'slow', ms }
  }

  heal(): void {
    this.mode = { kind: 'up' }
    for (const p of [...this.pairs]) if (p.holed) this.drop(p)
  }

  async close(): Promise<void> {
    for (const p of [...this.pairs]) this.drop(p)
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private accept(client: net.Socket): void {
    this.accepted++
    client.on('error', () => undefined)
    if (this.mode.kind === 'cut') {
      client.resetAndDestroy()
      return
    }
    const pair: Pair = { client, upstream: undefined, holed: this.mode.kind === 'blackhole' }
    this.pairs.add(pair)
    client.on('close', () => this.closed(pair, 'client'))
    if (pair.holed) {
      // Nobody answers: the client's bytes go nowhere, and no upstream connection is made.
      client.on('data', () => undefined)
      return
    }
    this.connectUpstream(pair)
  }

  private connectUpstream(pair: Pair): void {
    const up = net.connect({ host: this.target.host, port: this.target.port })
    pair.upstream = up
    up.on('error', () => undefined)
    up.on('close', () => this.closed(pair, 'upstream'))
    this.pipe(pair, pair.client, up)
    this.pipe(pair, up, pair.client)
  }

  private pipe(pair: Pair, from: net.Socket, to: net.Socket): void {
    // One FIFO per direction: a chunk never overtakes one delayed before it, whatever the mode does meanwhile.
    const queue: { chunk: Buffer; dueAt: number }[] = []
    let timer: NodeJS.Timeout | undefined
    const drain = (): void => {
      timer = undefined
      const now = Date.now()
      while (queue.length > 0 && (queue[0] as { dueAt: number }).dueAt <= now) {
        const { chunk } = queue.shift() as { chunk: Buffer }
        if (!to.destroyed && !pair.holed) to.write(chunk)
      }
      const head = queue[0]
      if (head) timer = setTimeout(drain, Math.max(0, head.dueAt - now))
    }
    from.on('data', (chunk: Buffer) => {
      if (pair.holed || this.mode.kind === 'blackhole' || this.mode.kind === 'cut') {
        pair.holed ||= this.mode.kind === 'blackhole'
        return
      }
      const delay = this.mode.kind === 'slow' ? this.mode.ms : 0
      if (delay === 0 && queue.length === 0) {
        if (!to.destroyed) to.write(chunk)
        return
      }
      queue.push({ chunk, dueAt: Date.now() + delay })
      if (timer === undefined) timer = setTimeout(drain, delay)
    })
  }

  /** One side closed: the other side is closed too, unless the pair is blackholed (the news is lost). */
  private closed(pair: Pair, side: 'client' | 'upstream'): void {
    if (pair.holed && this.pairs.has(pair)) {
      if (side === 'client' && pair.upstream === undefined) this.pairs.delete(pair)
      return
    }
    const delay = this.mode.kind === 'slow' ? this.mode.ms : 0
    const other = side === 'client' ? pair.upstream : pair.client
    // After the bytes still in flight in slow mode.
    setTimeout(() => {
      other?.destroy()
      if (pair.client.destroyed && (pair.upstream === undefined || pair.upstream.destroyed)) this.pairs.delete(pair)
    }, delay)
  }

  private drop(pair: Pair): void {
    this.pairs.delete(pair)
    if (!pair.client.destroyed) pair.client.resetAndDestroy()
    if (pair.upstream && !pair.upstream.destroyed) pair.upstream.resetAndDestroy()
  }
}
