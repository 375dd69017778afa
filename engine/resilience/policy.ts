import { ExponentialBackoff, type GeneratorFn, type IBackoff } from 'cockatiel'
import type { Clock } from '../io/clock.js'
import type { Random } from '../io/random.js'
import { CircuitBreaker, type BreakerState } from './breaker.js'
import { withTimeout } from './timeout.js'

export type { BreakerState } from './breaker.js'

/**
 * Retry delays, circuit breaker and timeout for one sink, all on the injected
 * clock and random source (a seeded simulation replays exactly). The backoff
 * sequence is cockatiel's; no cockatiel type leaves this folder. It knows
 * nothing of the WAL or of sinks.
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

export interface SinkPolicy {
  /** Runs `fn` through the breaker and the timeout (SinkTimeoutError, BreakerOpenError). */
  execute<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T>
  /** Runs `fn` with the timeout only: a read, which the breaker (guarding applies) neither gates nor counts. */
  timed<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T>
  breakerState(): BreakerState
  /** Holds the breaker open until released: an abandoned call still runs. */
  holdOpen(): { dispose(): void }
  /** A fresh backoff sequence: `next()` on each further failure. */
  backoff(): Backoff
}

/** Retry delays, one failure at a time. */
export interface Backoff {
  readonly durationMs: number
  next(): Backoff
}

export function createSinkPolicy(c: ResilienceConfig, random: Random, clock: Clock, onBreaker?: (to: BreakerState) => void): SinkPolicy {
  const breaker = new CircuitBreaker(clock, c.breakerThreshold, c.breakerHalfOpenMs, onBreaker)
  // cockatiel's exponential backoff, with memwal's jitter from the injected random source; its type stays in here.
  const exponential = new ExponentialBackoff({ generator: fullJitter(random), initialDelay: c.retryDelayMsMin, maxDelay: c.retryDelayMsMax })
  const backoff = (b: IBackoff<unknown>): Backoff => ({ durationMs: b.duration, next: () => backoff(b.next(undefined)) })
  return {
    execute: (fn) => breaker.execute(() => withTimeout(clock, c.applyTimeoutMs, fn)),
    timed: (fn) => withTimeout(clock, c.applyTimeoutMs, fn),
    breakerState: () => breaker.state,
    holdOpen: () => breaker.isolate(),
    backoff: () => backoff(exponential.next()),
  }
}

/** Full jitter (a uniform delay in [0, min(cap, base * 2^n))) with the injected random source, not Math.random. */
function fullJitter(random: Random): GeneratorFn<number> {
  return (attempt = 0, options) => {
    const ceiling = Math.min(options.maxDelay, options.initialDelay * options.exponent ** attempt)
    return [Math.floor((random.nextU32() / 2 ** 32) * ceiling), attempt + 1]
  }
}
