import { assert } from '../assert.js'

/**
 * How large the next segment is (issue 15 item 7). A store that holds a few
 * records should take a few MiB, not a 64 MiB segment and a 64 MiB spare;
 * a store under sustained writes should still get large preallocated
 * segments. So segments start at `initialBytes` and their size follows the
 * write rate: when a segment filled within `growWithinMs`, the next spare is
 * twice the newest segment's size (up to `maxBytes`, the `segmentBytes`
 * option); when it took more than `SLOW_FACTOR` times that, half (down to
 * `initialBytes`); otherwise the same. A spare is prepared one segment ahead,
 * so the size follows the rate one rotation late.
 */
export interface SegmentSizing {
  readonly initialBytes: number
  readonly maxBytes: number
  readonly growWithinMs: number
}

/** A segment that took this many times `growWithinMs` to fill halves the next size. */
export const SLOW_FACTOR = 8

export function checkSizing(s: SegmentSizing): void {
  assert(s.initialBytes > 0 && s.initialBytes <= s.maxBytes, 'the first segment size is within the maximum')
  assert(s.growWithinMs > 0, 'the growth window is positive')
}

/** The size of the spare to prepare now: `newestBytes` is the segment just installed, `filledInMs` how long the one before it took to fill. */
export function nextSegmentBytes(s: SegmentSizing, newestBytes: number, filledInMs: number): number {
  const next = filledInMs <= s.growWithinMs ? newestBytes * 2 : filledInMs > s.growWithinMs * SLOW_FACTOR ? Math.floor(newestBytes / 2) : newestBytes
  return Math.min(s.maxBytes, Math.max(s.initialBytes, next))
}

/** The smallest size, doubling from `bytes`, that holds `needBytes` (a record larger than the planned segment); at most `maxBytes`. */
export function segmentBytesFor(s: SegmentSizing, bytes: number, needBytes: number): number {
  let size = Math.max(bytes, s.initialBytes)
  while (size < needBytes && size < s.maxBytes) size *= 2
  return Math.min(size, s.maxBytes)
}
