import { CircuitState, ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleAll, timeout, TimeoutStrategy, wrap, type CircuitBreakerPolicy, type GeneratorFn, type IBackoff } from 'cockatiel'
import type { Random } from '../io/random.js'

/**
 * Retry delays, circuit breaker and timeout for one sink, from cockatiel
 * (well tested; zero dependencies). It knows nothing of the WAL or of sinks.
 * The re-delivery loop is the applier's: the WAL is the durable retry queue,
 * and a durable record is never given up on.
 */
export interface ResilienceConfig {
  /** First retry delay and the cap on any delay (full jitter below them). */
  readonly retryDelayMsMin: number
  readonly retryDelayMsMax: number
  /** Consecutive failures that open the breaker. */
  readonly breakerThreshold: number
  /** How long the breaker stays open before one half-open probe. */
  readonly breakerHalfOpenMs: number
  /** A sink call that takes longer fails (and counts against the breaker). */
  readonly applyTimeoutMs: number
}

export const resilienceDefaults: ResilienceConfig = Object.freeze({
  retryDelayMsMin: 50,
  retryDelayMsMax: 30_000,
  breakerThreshold: 5,
  breakerHalfOpenMs: 5_000,
  applyTimeoutMs: 30_000,
})

export type BreakerState = 'closed' | 'open' | 'half-open'

export interface SinkPolicy {
  /** Runs `fn` through the breaker and the timeout. */
  execute<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T>
  readonly breaker: CircuitBreakerPolicy
  breakerState(): BreakerState
  /** A fresh backoff sequence: call `next()` on each failure. */
  backoff(): IBackoff<unknown>
}

export function createSinkPolicy(c: ResilienceConfig, random: Random): SinkPolicy {
  const breaker = circuitBreaker(handleAll, { halfOpenAfter: c.breakerHalfOpenMs, breaker: new ConsecutiveBreaker(c.breakerThreshold) })
  const limit = timeout(c.applyTimeoutMs, TimeoutStrategy.Aggressive).dangerouslyUnref()
  const policy = wrap(breaker, limit)
  const backoff = new ExponentialBackoff({ generator: fullJitter(random), initialDelay: c.retryDelayMsMin, maxDelay: c.retryDelayMsMax })
  return {
    breaker,
    execute: (fn) => policy.execute(({ signal }) => fn(signal)),
    breakerState: () => stateName(breaker.state),
    backoff: () => backoff.next(),
  }
}

/** Full jitter (a uniform delay in [0, min(cap, base * 2^n))) with the injected random source, not Math.random. */
function fullJitter(random: Random): GeneratorFn<number> {
  return (attempt = 0, options) => {
    const ceiling = Math.min(options.maxDelay, options.initialDelay * options.exponent ** attempt)
    return [Math.floor((random.nextU32() / 2 ** 32) * ceiling), attempt + 1]
  }
}

function stateName(s: CircuitState): BreakerState {
  switch (s) {
    case CircuitState.Closed:
      return 'closed'
    case CircuitState.HalfOpen:
      return 'half-open'
    case CircuitState.Open:
    case CircuitState.Isolated:
      return 'open'
  }
}
