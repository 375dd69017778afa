import { assert } from '../assert.js'
import { limits } from '../limits.js'

/**
 * The expiry posting an index keeps for every entry that has an expiry:
 *
 *   x NUL <expiresAt> NUL <identity>
 *
 * `expiresAt` (ms since the epoch) is written as 16 decimal digits, zero
 * padded: every expiresAt memwal accepts is an integer in
 * [0, limits.expiresAtMax] (8.64e15, 16 digits), so the keys sort as bytes in
 * time order, and a range scan from the first posting up to "now" reads
 * exactly the entries that have expired, nothing else: a sweep costs what it
 * removes, not the size of the store. NUL cannot occur in the digits, and the
 * identity is the rest of the key, whatever it holds.
 *
 * An entry has expired at `now` when `expiresAt <= now`.
 */
export const EXPIRY_POSTING_PREFIX = 'x\u0000'

/** An expiry posting as the index hands it out: the entry and when it expires. */
export interface ExpiredPosting {
  readonly identity: string
  readonly expiresAt: number
}
const SEP = '\u0000'
const DIGITS = 16

export function expiryPosting(expiresAt: number, identity: string): string {
  return `${EXPIRY_POSTING_PREFIX}${timeKey(expiresAt)}${SEP}${identity}`
}

/** A posting's parts, or undefined when `key` is not a well-formed expiry posting. */
export function parseExpiryPosting(key: string): ExpiredPosting | undefined {
  if (!key.startsWith(EXPIRY_POSTING_PREFIX)) return undefined
  const at = EXPIRY_POSTING_PREFIX.length
  const digits = key.slice(at, at + DIGITS)
  if (!/^[0-9]{16}$/.test(digits) || key[at + DIGITS] !== SEP) return undefined
  return { expiresAt: Number(digits), identity: key.slice(at + DIGITS + 1) }
}

/** The key range holding the postings of every entry expired at `nowMs` (expiresAt <= nowMs), in expiry order. */
export function expiredRange(nowMs: number): { readonly gte: string; readonly lt: string } {
  assert(Number.isSafeInteger(nowMs), `the clock reads a whole number of ms, not ${nowMs}`)
  // One past the last digit: every posting, when the clock is past the largest expiry.
  const lt = nowMs >= limits.expiresAtMax ? `${EXPIRY_POSTING_PREFIX}:` : `${EXPIRY_POSTING_PREFIX}${timeKey(Math.max(0, nowMs + 1))}`
  return { gte: EXPIRY_POSTING_PREFIX, lt }
}

/** Whether an entry expiring at `expiresAt` (none: undefined) has expired at `nowMs`. */
export function isExpired(expiresAt: number | undefined, nowMs: number): boolean {
  return expiresAt !== undefined && expiresAt <= nowMs
}

/**
 * Whether a put keeps the createdAt of the version it overwrites, which
 * expires at `oldExpiresAt`: not when that version had expired by the put's
 * write time `writtenMs` (hlcMs of the put record's stamp). Readers no longer
 * saw it (the sweep had only not deleted it yet), so the put makes a new
 * entry. Judged by the record's stamp, never by the clock when a sink
 * applies it, so that replay, fsck and every sink decide the same from the
 * log alone. Every place that carries createdAt asks this (LevelBackend,
 * CacheSink, PendingLog, the read path, PgBackend's batch versions and,
 * in SQL, pg-schema.ts's upsert, which states the same comparison).
 */
export function keepsCreatedAt(oldExpiresAt: number | undefined, writtenMs: number): boolean {
  return !isExpired(oldExpiresAt, writtenMs)
}

function timeKey(ms: number): string {
  assert(Number.isSafeInteger(ms) && ms >= 0 && ms <= limits.expiresAtMax, `expiresAt ${ms} is outside [0, ${limits.expiresAtMax}]`)
  return String(ms).padStart(DIGITS, '0')
}
