import type { Clock } from './io/clock.js'
import type { Wal } from './log/wal.js'
import type { Logger } from './io/logger.js'

/** Retention looks for segments to delete at most this often. */
const PURGE_INTERVAL_MS = 1000

/**
 * WAL retention: segments every durable sink has durably applied are deleted
 * (through the lowest durableCheckpoint: LevelDB's applies count once a store
 * sync covered them, sinks/store-sync.ts). At most one purge runs at a time, none
 * while a reader of the whole log (verify) holds it off, none after close began.
 */
export class Retention {
  /** Next LSN a durable checkpoint must reach before a purge can free anything. */
  private purgeAt = 0
  private purgeNextMs = 0
  private purging = false
  private inFlight: Promise<unknown> = Promise.resolve()
  private holds = 0

  constructor(
    private readonly wal: Wal,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Called as a durable sink's checkpoint moves: purges through the lowest durable checkpoint when it may. */
  maybePurge(durableMin: number): void {
    const now = this.clock.nowMs()
    if (this.purging || this.holds > 0 || durableMin < this.purgeAt || now < this.purgeNextMs) return
    this.purging = true
    this.purgeNextMs = now + PURGE_INTERVAL_MS
    this.inFlight = this.wal
      .purgeThrough(durableMin)
      .then((next) => (this.purgeAt = next))
      .catch((err: unknown) => this.logger.warn({ err }, 'segment purge failed; will retry'))
      .finally(() => (this.purging = false))
  }

  /** Runs `fn` with no purge starting meanwhile, after the one in progress (if any) ended: no segment vanishes under a scan. */
  async holding<T>(fn: () => Promise<T>): Promise<T> {
    this.holds++
    try {
      await this.inFlight
      return await fn()
    } finally {
      this.holds--
    }
  }

  /** Resolves when the purge in progress (if any) ended: the lock must not be released while it deletes segments. */
  settled(): Promise<unknown> {
    return this.inFlight
  }
}
