import { MemwalError } from './errors.js'
import { holdProcess, type Clock } from './io/clock.js'

interface Waiter {
  readonly lsn: number
  readonly resolve: () => void
  readonly fail: (err: Error) => void
}

/** flush() callers, each waiting for every sink to reach an LSN. */
export class FlushWaiters {
  private waiters: Waiter[] = []

  constructor(private readonly clock: Clock) {}

  /** Resolves once `reached` is told an LSN at or past `lsn`; rejects ENGINE_FLUSH_TIMEOUT after `timeoutMs` (with `details()`). */
  wait(lsn: number, timeoutMs: number | undefined, details: () => Record<string, unknown>): Promise<void> {
    // The caller awaits this: hold the process until it settles (the appliers' timers are unref'd).
    const release = holdProcess()
    return new Promise<void>((resolve, reject) => {
      const cancel = timeoutMs === undefined ? undefined : this.clock.setTimer(timeoutMs, () => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done)
        fail(new MemwalError('ENGINE_FLUSH_TIMEOUT', `flush did not complete in ${timeoutMs} ms`, { transient: true, details: details() }))
      })
      const done = (): void => {
        cancel?.()
        release()
        resolve()
      }
      const fail = (err: Error): void => {
        cancel?.()
        release()
        reject(err)
      }
      this.waiters.push({ lsn, resolve: done, fail })
    })
  }

  /** Every sink reached `lsn`: the flushes waiting for it or less resolve. */
  reached(lsn: number): void {
    if (this.waiters.length === 0) return
    const ready = this.waiters.filter((w) => w.lsn <= lsn)
    this.waiters = this.waiters.filter((w) => w.lsn > lsn)
    for (const w of ready) w.resolve()
  }

  /** Rejects every waiting flush with `err`. */
  failAll(err: Error): void {
    for (const w of this.waiters.splice(0)) w.fail(err)
  }
}
