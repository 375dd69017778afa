import { assertNever } from '../assert.js'
import { BreakerOpenError } from '../errors.js'
import type { Clock } from '../io/clock.js'

export type BreakerState = 'closed' | 'open' | 'half-open'

type Inner =
  | { readonly kind: 'closed'; readonly failures: number }
  /** Until `retryAtMs` every call is refused; the first call after it is the one half-open probe. */
  | { readonly kind: 'open'; readonly retryAtMs: number }
  | { readonly kind: 'half-open'; readonly probe: Promise<unknown> }
  /** Held open from outside (an abandoned call still runs) until every hold is released. */
  | { readonly kind: 'isolated'; holds: number }

/**
 * A consecutive-failures circuit breaker on the injected clock (so a seeded
 * simulation replays exactly; cockatiel's reads Date.now). After `threshold`
 * failures in a row it opens; after `halfOpenMs` one probe call is let
 * through: success closes it, failure opens it again. Calls made while the
 * probe runs wait for it, then go by the state it left.
 */
export class CircuitBreaker {
  private inner: Inner = { kind: 'closed', failures: 0 }

  constructor(
    private readonly clock: Clock,
    private readonly threshold: number,
    private readonly halfOpenMs: number,
    /** Told of each change of the state callers see (closed, open, half-open). */
    private readonly onTransition: (to: BreakerState) => void = () => undefined,
  ) {}

  /** What callers see; an open breaker whose delay has passed still reads open until the probe starts. */
  get state(): BreakerState {
    return this.inner.kind === 'isolated' ? 'open' : this.inner.kind
  }

  async execute<T>(fn: () => Promise<T>): Promise<T> {
    const s = this.inner
    switch (s.kind) {
      case 'closed':
        try {
          const result = await fn()
          if (this.inner.kind === 'closed') this.inner = { kind: 'closed', failures: 0 }
          return result
        } catch (err) {
          if (this.inner.kind === 'closed') {
            const failures = this.inner.failures + 1
            this.set(failures >= this.threshold ? this.opened() : { kind: 'closed', failures })
          }
          throw err
        }
      case 'half-open':
        await s.probe.catch(() => undefined)
        return this.execute(fn)
      case 'open': {
        if (this.clock.nowMs() < s.retryAtMs) throw new BreakerOpenError(`retry after ${s.retryAtMs - this.clock.nowMs()} ms`)
        const probe = this.probe(fn)
        this.set({ kind: 'half-open', probe })
        return probe
      }
      case 'isolated':
        throw new BreakerOpenError('a call that timed out is still running')
      default:
        return assertNever(s, 'breaker state')
    }
  }

  /** Holds the breaker open until the returned release is called (every hold released closes it). */
  isolate(): { dispose(): void } {
    if (this.inner.kind !== 'isolated') this.set({ kind: 'isolated', holds: 0 })
    const inner = this.inner as Extract<Inner, { kind: 'isolated' }>
    inner.holds++
    let disposed = false
    return {
      dispose: () => {
        if (disposed) return
        disposed = true
        if (this.inner.kind === 'isolated' && --this.inner.holds === 0) this.set({ kind: 'closed', failures: 0 })
      },
    }
  }

  private async probe<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const result = await fn()
      if (this.inner.kind === 'half-open') this.set({ kind: 'closed', failures: 0 })
      return result
    } catch (err) {
      if (this.inner.kind === 'half-open') this.set(this.opened())
      throw err
    }
  }

  /** Every change of state goes through here, so that a transition callers see is told once. */
  private set(next: Inner): void {
    const before = this.state
    this.inner = next
    const after = this.state
    if (after !== before) this.onTransition(after)
  }

  private opened(): Inner {
    return { kind: 'open', retryAtMs: this.clock.nowMs() + this.halfOpenMs }
  }
}
