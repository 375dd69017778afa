import { MemwalError } from './errors.js'
import { limits } from './limits.js'

/**
 * Expiry as a caller gives it on put (and on a batch's put): a time to live
 * from now, or an absolute instant. Resolved once, at put, by the engine's
 * injected clock, into the absolute `expiresAt` (ms since the epoch) that the
 * record carries; replay, every sink and every reader then judge it by that
 * number alone.
 *
 * What is refused, with INVALID_OPTIONS naming the field (details.field), so
 * that nothing is written:
 * - `ttlMs` and `expiresAt` together (which one was meant would be a guess);
 * - either one not a safe integer (a fraction, NaN, Infinity, a string);
 * - `ttlMs` below 1: an entry no reader could ever see;
 * - `expiresAt` at or before the engine's clock: the same (a past instant is
 *   a caller's mistake, such as seconds given for milliseconds or a stale
 *   time; to remove an entry, delete it);
 * - either one further than `limits.expiryHorizonMsMax` (100 years) past the
 *   engine's clock, or past `limits.expiresAtMax` (the largest Date).
 */
export interface ExpiryOptions {
  /** Time to live, ms from the engine's clock at put. */
  readonly ttlMs?: number
  /** Absolute expiry, ms since the epoch. */
  readonly expiresAt?: number
}

/**
 * The absolute expiry of a put, or undefined when it has none. `prefix`
 * places the field in a batch (`ops[3].`).
 */
export function resolveExpiry(o: ExpiryOptions, nowMs: number, prefix = ''): number | undefined {
  const { ttlMs, expiresAt } = o
  if (ttlMs !== undefined && expiresAt !== undefined) {
    throw refused(`${prefix}ttlMs`, `${prefix}ttlMs and ${prefix}expiresAt cannot be given together: give one`)
  }
  const horizon = Math.min(limits.expiresAtMax, nowMs + limits.expiryHorizonMsMax)
  if (ttlMs !== undefined) {
    const field = `${prefix}ttlMs`
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 1 || ttlMs > limits.expiryHorizonMsMax) {
      throw refused(field, `${field} must be an integer in [1, ${limits.expiryHorizonMsMax}] ms, not ${describe(ttlMs)}`)
    }
    if (nowMs + ttlMs > limits.expiresAtMax) throw refused(field, `${field} ${ttlMs} ends past the largest expiresAt ${limits.expiresAtMax}`)
    return nowMs + ttlMs
  }
  if (expiresAt !== undefined) {
    const field = `${prefix}expiresAt`
    if (!Number.isSafeInteger(expiresAt) || expiresAt <= nowMs || expiresAt > horizon) {
      throw refused(field, `${field} must be an integer in [${nowMs + 1}, ${horizon}] ms since the epoch (after the engine's clock, at most ${limits.expiryHorizonMsMax} ms past it), not ${describe(expiresAt)}`)
    }
    return expiresAt
  }
  return undefined
}

export interface SweepOptions {
  /** How often the expiry sweep runs, ms on the engine's clock. */
  readonly sweepIntervalMs?: number
  /** Expired entries one round removes at most. */
  readonly sweepEntriesPerRound?: number
  /** Deletes in one logged batch record of the sweep. */
  readonly sweepBatchOps?: number
}

export interface ResolvedSweep {
  readonly intervalMs: number
  readonly entriesPerRound: number
  readonly batchOps: number
}

/** The sweep's options with their defaults; `batchOpsMax` is the engine's batch limit, which a sweep batch must respect. */
export function resolveSweep(o: SweepOptions, batchOpsMax: number): ResolvedSweep {
  const intervalMs = ranged('sweepIntervalMs', o.sweepIntervalMs ?? limits.sweepIntervalMsDefault, limits.sweepIntervalMsMin, limits.sweepIntervalMsMax)
  const entriesPerRound = ranged('sweepEntriesPerRound', o.sweepEntriesPerRound ?? limits.sweepEntriesPerRoundDefault, 1, limits.sweepEntriesPerRoundMax)
  const batchMax = Math.min(limits.sweepBatchOpsMax, batchOpsMax)
  const batchOps = ranged('sweepBatchOps', o.sweepBatchOps ?? Math.min(limits.sweepBatchOpsDefault, batchMax), 1, batchMax)
  return Object.freeze({ intervalMs, entriesPerRound, batchOps })
}

function ranged(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw refused(field, `${field} must be an integer in [${min}, ${max}], not ${describe(v)}`)
  return v
}

function refused(field: string, message: string): MemwalError {
  return new MemwalError('INVALID_OPTIONS', message, { details: { field } })
}

function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : String(v)
}
