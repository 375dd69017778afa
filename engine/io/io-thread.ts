import { Worker } from 'node:worker_threads'
import { assert } from '../assert.js'
import { MemwalError } from '../errors.js'

/**
 * A thread of the log's own for its writes and syncs (node-fs.ts gives one
 * to the log's appender handles). Through libuv's thread pool, a group write
 * queues behind LevelDB's reads and batches: the pool has four threads, and
 * the appliers, the sweep and the queries keep them busy. This thread does
 * only the log's I/O, in the order asked, with blocking calls; what it costs
 * the event loop is one message each way.
 *
 * The worker is plain CommonJS given as a string: no file to resolve, the same
 * under the test runner's TypeScript loader and in dist/. A request carries an
 * exact copy of its bytes, transferred (the writer reuses its group buffers).
 * An error comes back as its errno fields and is rebuilt, so the writer sees
 * the `code` (ENOSPC, EIO, ...) that `fs` would have given it.
 *
 * Should the thread end without being stopped (it catches its calls' errors,
 * so only something outside them ends it: out of memory, a termination), the
 * requests waiting for it and every later one are refused with IO_ERROR
 * (details.reason `log-io-thread-ended`): a write that was in flight may have
 * landed in part or not at all, so the log's writer fails closed on it, as on
 * any write error that is not a full disk.
 */
const WORKER_SOURCE = `
const fs = require('node:fs')
const { parentPort } = require('node:worker_threads')
parentPort.on('message', (m) => {
  try {
    if (m.op === 'write') {
      for (let done = 0; done < m.data.byteLength; ) done += fs.writeSync(m.fd, m.data, done, m.data.byteLength - done, m.position + done)
    } else {
      fs.fdatasyncSync(m.fd)
    }
    parentPort.postMessage({ id: m.id })
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: { message: String(err && err.message), code: err && err.code, errno: err && err.errno, syscall: err && err.syscall } })
  }
})
`

type Request = { readonly op: 'write'; readonly fd: number; readonly data: Uint8Array; readonly position: number } | { readonly op: 'datasync'; readonly fd: number }

interface Reply {
  readonly id: number
  readonly error?: { readonly message: string; readonly code?: string; readonly errno?: number; readonly syscall?: string }
}

/** Requests in flight at most: the log's writer waits for each group before the next, so more than a few is a bug. */
const IN_FLIGHT_MAX = 64

export class IoThread {
  private readonly worker: Worker
  private readonly waiting = new Map<number, { readonly resolve: () => void; readonly reject: (err: Error) => void }>()
  private nextId = 1
  private endedBy: MemwalError | undefined

  constructor() {
    // None of the process's flags: they are for its own code (--input-type=module would evaluate this
    // CommonJS source as a module, and the thread would die at once; a loader would only slow its start).
    this.worker = new Worker(WORKER_SOURCE, { eval: true, name: 'memwal-log-io', execArgv: [] })
    this.worker.on('message', (r: Reply) => this.settle(r))
    // An uncaught error ends the thread: 'error', then 'exit' (the first one says why).
    this.worker.on('error', (err) => this.failAll(err))
    this.worker.on('exit', (code) => this.failAll(new Error(`the log's I/O thread exited with code ${code}`)))
    // Idle, it must not keep the process alive (a request in flight refs it). After the listeners:
    // on Node 20 a listener added after unref() refs the worker again for good (nodejs/node#53036).
    this.worker.unref()
  }

  /** Writes all of `data` at `position` of `fd`. */
  write(fd: number, data: Uint8Array, position: number): Promise<void> {
    return this.request({ op: 'write', fd, data, position })
  }

  datasync(fd: number): Promise<void> {
    return this.request({ op: 'datasync', fd })
  }

  /** Why the thread takes no more requests (stopped, or ended by itself), or undefined while it does. */
  get ended(): MemwalError | undefined {
    return this.endedBy
  }

  /** Ends the thread; a request asked afterwards is refused. The caller has waited for its requests. */
  async stop(): Promise<void> {
    if (this.endedBy) return
    assert(this.waiting.size === 0, 'the log\'s I/O thread stops with no request in flight')
    this.endedBy = new MemwalError('IO_ERROR', 'the log\'s I/O thread is stopped', { details: { reason: 'log-io-thread-stopped' } })
    await this.worker.terminate()
  }

  /**
   * For tests only: ends the thread as a crash would (not stopped: what is
   * waiting, and what comes later, is refused as after a real death).
   */
  async terminateForTesting(): Promise<void> {
    await this.worker.terminate()
  }

  private request(m: Request): Promise<void> {
    if (this.endedBy) return Promise.reject(this.endedBy)
    assert(this.waiting.size < IN_FLIGHT_MAX, `at most ${IN_FLIGHT_MAX} requests wait for the log's I/O thread`)
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject })
      if (this.waiting.size === 1) this.worker.ref()
      if (m.op === 'write') {
        // An exact copy, transferred: posting the caller's view would clone the whole buffer under it
        // (a group buffer grows to groupBytesMax and is reused), and the caller reuses it at once.
        const data = new Uint8Array(m.data)
        this.worker.postMessage({ id, ...m, data }, [data.buffer])
      } else {
        this.worker.postMessage({ id, ...m })
      }
    })
  }

  private settle(r: Reply): void {
    const w = this.waiting.get(r.id)
    assert(w !== undefined, `the log's I/O thread answered request ${r.id}, which nobody waits for`)
    this.waiting.delete(r.id)
    if (this.waiting.size === 0) this.worker.unref()
    if (r.error === undefined) return w.resolve()
    w.reject(Object.assign(new Error(r.error.message), { code: r.error.code, errno: r.error.errno, syscall: r.error.syscall }))
  }

  /** The thread died (it should not: its calls catch their errors): every request waiting fails, and later ones too. */
  private failAll(cause: Error): void {
    // After stop() the 'exit' is expected: nothing waits, and the reason stays `stopped`.
    const err = (this.endedBy ??= new MemwalError('IO_ERROR', `the log's I/O thread ended: ${cause.message}`, { cause, details: { reason: 'log-io-thread-ended' } }))
    for (const w of this.waiting.values()) w.reject(err)
    this.waiting.clear()
  }
}
