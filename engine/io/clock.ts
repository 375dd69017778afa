import { clearInterval, clearTimeout, setInterval, setTimeout } from './host-timers.js'

/** Time, injected: the real clock in production, a manual one in tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  nowMs(): number
  /** Calls `fn` after `ms`; the returned function cancels it. Timers never keep the process alive. */
  setTimer(ms: number, fn: () => void): () => void
}

export const systemClock: Clock = Object.freeze({
  nowMs: () => Date.now(),
  setTimer(ms: number, fn: () => void): () => void {
    const t = setTimeout(fn, ms)
    t.unref()
    return () => clearTimeout(t)
  },
})

/** A clock that moves only when told to: timers fire inside `advance`. */
export class ManualClock implements Clock {
  private now: number
  private seq = 0
  private readonly timers = new Map<number, { at: number; fn: () => void }>()

  constructor(startMs = 1_700_000_000_000) {
    this.now = startMs
  }

  nowMs(): number {
    return this.now
  }

  setTimer(ms: number, fn: () => void): () => void {
    const id = ++this.seq
    this.timers.set(id, { at: this.now + ms, fn })
    return () => this.timers.delete(id)
  }

  advance(ms: number): void {
    const until = this.now + ms
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined
      for (const entry of this.timers) if (entry[1].at <= until && (!next || entry[1].at < next[1].at)) next = entry
      if (!next) break
      this.timers.delete(next[0])
      this.now = next[1].at
      next[1].fn()
    }
    this.now = until
  }
}

/**
 * Keeps the process alive until the returned function is called: for a
 * caller awaiting the engine (flush, a write waiting for backlog room), whose
 * wait would otherwise rest only on unref'd timers and end the process with
 * the promise unsettled. Background work never holds the process.
 */
export function holdProcess(): () => void {
  const t = setInterval(() => undefined, 2 ** 30)
  return () => clearInterval(t)
}
