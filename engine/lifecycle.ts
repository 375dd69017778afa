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

/** Told of each transition that callers see as a `state` event (to `failed` and to `closed`). */
export type LifecycleListener = (change: { readonly from: 'open' | 'failed'; readonly to: 'failed' | 'closed' }) => void

/** The engine's lifecycle: every transition goes through `fail`, `beginClose` or `endClose`, and nowhere else. */
export class Lifecycle {
  private current: LifecycleState = { kind: 'open' }

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

  /**
   * open -> failed, then `effects` (which see the engine failed), then the
   * `state` event. Nothing from any other state: a closing engine does not
   * fail, a failed one keeps its first cause.
   */
  fail(failure: WalFailedError, effects: () => void): void {
    if (this.current.kind !== 'open') return
    this.current = { kind: 'failed', failure }
    effects()
    this.onChange({ from: 'open', to: 'failed' })
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
    this.onChange({ from: c.from, to: 'closed' })
  }

  /** Reads are served while open or failed (the log and the sinks still answer). */
  assertReadable(): void {
    if (this.isClosed) throw new MemwalError('ENGINE_CLOSED', 'the engine is closed')
  }

  assertWritable(): void {
    this.assertReadable()
    const c = this.current
    if (c.kind === 'failed') throw new MemwalError('ENGINE_FAILED', `the engine failed and accepts no writes: ${c.failure.message}`, { cause: c.failure })
  }
}
