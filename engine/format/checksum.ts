import xxhash from 'xxhash-wasm'

/**
 * The two checksums of the format, from xxhash-wasm. Created once per open WAL
 * (no module-level instance): `await createChecksums()`.
 *
 * The Raw functions copy their input into WebAssembly memory, which grows to
 * the largest input and never shrinks: record size is capped (limits.ts).
 */
export interface Checksums {
  /** xxh32 of `bytes` with `seed`, as an unsigned 32-bit number. */
  h32(bytes: Uint8Array, seed: number): number
  /**
   * xxh32 of the 24 bytes at `offset` (a frame header's checked part), read
   * through `dv` without copying: the same value as h32 of those bytes.
   */
  h32of24(dv: DataView, offset: number, seed: number): number
  /** xxh64 of `bytes` with seed 0, as an unsigned 64-bit bigint. */
  h64(bytes: Uint8Array): bigint
}

export async function createChecksums(): Promise<Checksums> {
  const api = await xxhash()
  return {
    h32: (bytes, seed) => api.h32Raw(bytes, seed) >>> 0,
    h32of24: xxh32of24,
    h64: (bytes) => api.h64Raw(bytes, 0n),
  }
}

const P1 = 0x9e3779b1
const P2 = 0x85ebca77
const P3 = 0xc2b2ae3d
const P4 = 0x27d4eb2f

/**
 * XXH32 specialised to a 24-byte input, in plain JavaScript: one 16-byte
 * stripe, two 4-byte words, the avalanche. Every frame header is hashed once
 * when written and once when read; calling into WebAssembly (which copies the
 * input into its memory) cost more than the hash itself. Checked against
 * xxhash-wasm in test/unit/format-property.test.ts.
 */
function xxh32of24(dv: DataView, offset: number, seed: number): number {
  let v1 = (seed + P1 + P2) | 0
  let v2 = (seed + P2) | 0
  let v3 = seed | 0
  let v4 = (seed - P1) | 0
  v1 = Math.imul(rotl(v1 + Math.imul(dv.getUint32(offset, true), P2), 13), P1)
  v2 = Math.imul(rotl(v2 + Math.imul(dv.getUint32(offset + 4, true), P2), 13), P1)
  v3 = Math.imul(rotl(v3 + Math.imul(dv.getUint32(offset + 8, true), P2), 13), P1)
  v4 = Math.imul(rotl(v4 + Math.imul(dv.getUint32(offset + 12, true), P2), 13), P1)
  let h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18) + 24) | 0
  h = Math.imul(rotl(h + Math.imul(dv.getUint32(offset + 16, true), P3), 17), P4)
  h = Math.imul(rotl(h + Math.imul(dv.getUint32(offset + 20, true), P3), 17), P4)
  h ^= h >>> 15
  h = Math.imul(h, P2)
  h ^= h >>> 13
  h = Math.imul(h, P3)
  h ^= h >>> 16
  return h >>> 0
}

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r))
}
