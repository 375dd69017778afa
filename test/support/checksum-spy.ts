/**
 * Checksums that watch what they are asked to hash, for the decoder's
 * property and fuzz tests: the largest input per function (what the
 * WebAssembly memory grows to; it never shrinks) and the number of header
 * checks. A header checksum over bytes outside the input throws: the
 * decoder must never ask for one.
 */
import type { Checksums } from '../../engine/format/checksum.js'

/** Bytes a frame header's checksum covers. */
const HEADER_CHECKED_BYTES = 24

export interface ChecksumSpy extends Checksums {
  /** Largest input to h32 or h32of24. */
  maxH32: number
  /** Largest input to h64 (payloads). */
  maxH64: number
  /** Largest input to any of them. */
  readonly maxInput: number
  /** Header checks (h32 and h32of24 calls). */
  h32Calls: number
  /** Calls of any of them. */
  calls: number
}

export function checksumSpy(inner: Checksums): ChecksumSpy {
  const spy: ChecksumSpy = {
    maxH32: 0,
    maxH64: 0,
    get maxInput() {
      return Math.max(spy.maxH32, spy.maxH64)
    },
    h32Calls: 0,
    calls: 0,
    h32(bytes: Uint8Array, seed: number): number {
      spy.calls++
      spy.h32Calls++
      spy.maxH32 = Math.max(spy.maxH32, bytes.length)
      return inner.h32(bytes, seed)
    },
    h64(bytes: Uint8Array): bigint {
      spy.calls++
      spy.maxH64 = Math.max(spy.maxH64, bytes.length)
      return inner.h64(bytes)
    },
    h32of24(dv: DataView, offset: number, seed: number): number {
      spy.calls++
      spy.h32Calls++
      spy.maxH32 = Math.max(spy.maxH32, HEADER_CHECKED_BYTES)
      if (offset < 0 || offset + HEADER_CHECKED_BYTES > dv.byteLength) throw new Error(`header checksum over [${offset}, ${offset + HEADER_CHECKED_BYTES}) outside the input`)
      return inner.h32of24(dv, offset, seed)
    },
  }
  return spy
}
