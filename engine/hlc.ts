import type { Clock } from './io/clock.js'

import { HLC_PER_MS as PER_MS } from './format/record-codec.js'

/**
 * A hybrid logical clock: timestamps `ms * 1000 + counter` that never go
 * backwards for this writer, even if the wall clock does, and stay close to
 * it. Stamped into every record, so that a backend shared by several writers
 * can order versions (last writer wins, writer id breaking ties) the same way
 * whatever the order of replay. Fits a double exactly until the year 2255.
 */
export class HybridClock {
  private last = 0

  constructor(private readonly clock: Clock) {}

  /** Never issues a timestamp at or below `hlc` (one read back from the log at open). */
  observe(hlc: number): void {
    if (hlc > this.last) this.last = hlc
  }

  next(): number {
    const wall = this.clock.nowMs() * PER_MS
    this.last = wall > this.last ? wall : this.last + 1
    return this.last
  }
}
