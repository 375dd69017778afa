import { assert, assertNever } from './assert.js'
import { MemwalError, type WalFailedError } from './errors.js'

/**
 * Where the engine is in its life. `failed` carries why, so a failure can
 * never be read without its cause (G2: after the log failed, nothing more is
 * acknowledged; reopening is the way out).
 */
export type LifecycleState =
  | { readonly kind: 'open' }
  | { readonly kind: 'failed'; readonly failure: WalFailedError }
  | { readonly kind: 'closing'; readonly from: 'open' | 'failed' }
  | { readonly kind: 'closed' }

/**
 * Why writes are refused while the engine stays open: an operator asked
 * (`setReadOnly`), the disk is nearly full, or a sink halted (it can take
 * nothing more from this process: records acknowledged now would never
 * apply; lifted only by reopening). The backlog limit is
 * backpressure's own (it refuses with ENGINE_BACKLOG_FULL or waits).
 */
export type ReadOnlyCause = 'forced' | 'disk' | 'halted'

/** Told after each transition (and each read-only change): the engine works out the `state` event from there. */
export type LifecycleListener = (cause: string) => void

/** The engine's lifecycle: every transition goes through `fail`, `beginClose`, `endClose` or `setReadOnly`, and nowhere else. */
export class Lifecycle {
  private current: LifecycleState = { kind: 'open' }
  private readonly readOnlyHolds = new Map<ReadOnlyCause, string>()

  constructor(private readonly onChange: LifecycleListener) {}

  get state(): LifecycleState {
    return this.current
  }

  get isOpen(): boolean {
    return this.current.kind === 'open'
  }

  /** Closing or closed: nothing more is served. */
  get isClosed(): boolean {
    return this.current.kind === 'closing' || this.current.kind === 'closed'
  }

  /** Why writes are refused although the engine is open (a halted sink first: no operator can lift it; then the operator's reason), or undefined. */
  get readOnlyReason(): string | undefined {
    const halted = this.readOnlyHolds.get('halted')
    if (halted !== undefined) return halted
    const forced = this.readOnlyHolds.get('forced')
    if (forced !== undefined) return `read-only by request: ${forced}`
    return this.readOnlyHolds.get('disk')
  }

  /**
   * Sets or lifts one cause of read-only (`reason` undefined lifts it).
   * Reads go on; writes are refused with ENGINE_READ_ONLY while any cause holds.
   */
  setReadOnly(cause: ReadOnlyCause, reason: string | undefined): void {
    const before = this.readOnlyHolds.get(cause)
    if (reason === undefined) this.readOnlyHolds.delete(cause)
    else this.readOnlyHolds.set(cause, reason)
    if (before !== reason) this.onChange(reason === undefined ? `${cause} read-only lifted` : `${cause} read-only: ${reason}`)
  }

  /**
   * open -> failed, then `effects` (which see the engine failed), then the
   * listener. Nothing from any other state: a closing engine does not fail, a
   * failed one keeps its first cause.
   */
  fail(failure: WalFailedError, effects: () => void): void {
    if (this.current.kind !== 'open') return
    this.current = { kind: 'failed', failure }
    effects()
    this.onChange(`the log failed: ${failure.message}`)
  }

  /** open or failed -> closing. False if a close already began. */
  beginClose(): boolean {
    const c = this.current
    switch (c.kind) {
      case 'open':
      case 'failed':
        this.current = { kind: 'closing', from: c.kind }
        return true
      case 'closing':
      case 'closed':
        return false
      default:
        return assertNever(c, 'lifecycle state')
    }
  }

  /** closing -> closed. */
  endClose(): void {
    const c = this.current
    assert(c.kind === 'closing', 'a close ends only after it began')
    this.current = { kind: 'closed' }
    this.onChange('closed')
  }

  /** Reads are served while open or failed (the log and the sinks still answer). */
  assertReadable(): void {
    if (this.isClosed) throw new MemwalError('ENGINE_CLOSED', 'the engine is closed')
  }

  assertWritable(): void {
    this.assertReadable()
    const c = this.current
    if (c.kind === 'failed') throw new MemwalError('ENGINE_FAILED', `the engine failed and accepts no writes: ${c.failure.message}`, { cause: c.failure })
    const reason = this.readOnlyReason
    if (reason !== undefined) {
      throw new MemwalError('ENGINE_READ_ONLY', `the engine is read-only and accepts no writes (reads are served): ${reason}`, {
        transient: true,
        details: { reason, causes: [...this.readOnlyHolds.keys()] },
      })
    }
  }
}
