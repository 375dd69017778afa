import { MemwalError } from './errors.js'
import { holdProcess } from './io/clock.js'
import type { PendingLog } from './apply/pending-log.js'
import type { ResolvedOptions } from './options.js'

/** Backlog share above which `backlog-high` fires. */
const BACKLOG_HIGH_RATIO = 0.8

type Config = Pick<ResolvedOptions, 'maxBacklogBytes' | 'backlogPolicy' | 'backlogWaitMsMax' | 'clock'>

/**
 * Backpressure (G6): the backlog (acknowledged, not yet applied everywhere)
 * stays under maxBacklogBytes. A write that does not fit is refused, or waits
 * for room up to backlogWaitMsMax; `released` is called as sinks catch up.
 */
export class Backpressure {
  private waiters: (() => void)[] = []
  private high = false
  /** Size of the last record the backlog had no room for: health stays read-only while such a record still would not fit. */
  private refusedBytes = 0
  private wasReadOnly = false

  constructor(
    private readonly c: Config,
    private readonly pending: PendingLog,
    /** Checked after each wait: a write must not go on once the engine closed or failed. */
    private readonly assertWritable: () => void,
    /** `backlog-high`, each time the backlog crosses the high ratio upwards. */
    private readonly onHigh: (e: { bytes: number; maxBytes: number }) => void,
    /** `readOnly` flipped: the engine's state may have changed. */
    private readonly onReadOnly: () => void = () => undefined,
  ) {}

  /** Resolves once a record of `bytes` fits the backlog; rejects ENGINE_BACKLOG_FULL otherwise. */
  async admit(bytes: number): Promise<void> {
    const max = this.c.maxBacklogBytes
    if (bytes > max) throw new MemwalError('ENGINE_BACKLOG_FULL', `a record of ${bytes} bytes can never fit maxBacklogBytes ${max}`)
    if (this.pending.bytes + bytes <= max) return
    this.refusedBytes = bytes
    this.noteReadOnly()
    if (this.c.backlogPolicy === 'reject') throw this.full()
    const deadline = this.c.clock.nowMs() + this.c.backlogWaitMsMax
    const release = holdProcess() // the caller awaits this write: its wait must not rest on unref'd timers alone
    try {
      while (this.pending.bytes + bytes > max) {
        const left = deadline - this.c.clock.nowMs()
        if (left <= 0) throw this.full()
        await new Promise<void>((resolve) => {
          const cancel = this.c.clock.setTimer(left, resolve)
          this.waiters.push(() => {
            cancel()
            resolve()
          })
        })
        this.assertWritable()
      }
    } finally {
      release()
    }
  }

  /** The backlog shrank: waiting writes look again. */
  released(): void {
    if (this.waiters.length > 0 && this.pending.bytes < this.c.maxBacklogBytes) this.wakeAll()
    this.checkHigh()
  }

  /** Wakes every waiting write (the engine closed or failed: each then sees why). */
  wakeAll(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  /** Fires `backlog-high` when the backlog crosses the high ratio upwards. */
  checkHigh(): void {
    const high = this.pending.bytes >= this.c.maxBacklogBytes * BACKLOG_HIGH_RATIO
    if (high && !this.high) this.onHigh({ bytes: this.pending.bytes, maxBytes: this.c.maxBacklogBytes })
    this.high = high
    this.noteReadOnly()
  }

  /** Why writes are refused or wait, while they are. */
  get readOnlyReason(): string | undefined {
    return this.readOnly ? `backlog ${this.pending.bytes} bytes at maxBacklogBytes ${this.c.maxBacklogBytes}` : undefined
  }

  private noteReadOnly(): void {
    const r = this.readOnly
    if (r === this.wasReadOnly) return
    this.wasReadOnly = r
    this.onReadOnly()
  }

  /** Writes are refused (or wait): the backlog is full, or the last refused record still would not fit. */
  get readOnly(): boolean {
    const { bytes } = this.pending
    return bytes >= this.c.maxBacklogBytes || bytes + this.refusedBytes > this.c.maxBacklogBytes
  }

  private full(): MemwalError {
    const { bytes } = this.pending
    return new MemwalError('ENGINE_BACKLOG_FULL', `backlog of ${bytes} bytes is at maxBacklogBytes ${this.c.maxBacklogBytes}: a sink is behind`, {
      transient: true,
      details: { backlogBytes: bytes, maxBacklogBytes: this.c.maxBacklogBytes },
    })
  }
}
