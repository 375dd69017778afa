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
  /** xxh64 of `bytes` with seed 0, as an unsigned 64-bit bigint. */
  h64(bytes: Uint8Array): bigint
}

export async function createChecksums(): Promise<Checksums> {
  const api = await xxhash()
  return {
    h32: (bytes, seed) => api.h32Raw(bytes, seed) >>> 0,
    h64: (bytes) => api.h64Raw(bytes, 0n),
  }
}
