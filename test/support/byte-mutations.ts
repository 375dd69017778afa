/**
 * Damage to segment images, for the decoder's property and fuzz tests: bytes
 * from a seed, and the mutations both tests draw (a flipped bit, a range
 * overwritten with zeros or junk, a range copied elsewhere in the image).
 */
import { SeededRandom } from '../../engine/io/random.js'

/** Bytes filled from a seed: fast-check builds a 64 KiB array byte by byte too slowly. */
export function seededBytes(length: number, seed: number): Buffer {
  const r = new SeededRandom(seed)
  const b = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) b[i] = r.nextU32() & 0xff
  return b
}

export type ByteMutation =
  | { readonly kind: 'flip'; readonly at: number; readonly bit: number }
  | { readonly kind: 'overwrite'; readonly at: number; readonly length: number; readonly seed: number; readonly zeros: boolean }
  /** A range copied elsewhere in the image: stale duplicate frames, shifted headers. */
  | { readonly kind: 'splice'; readonly from: number; readonly at: number; readonly length: number }

/**
 * Applies `m` to `bytes` in place; `pos` maps the mutation's drawn numbers
 * to offsets (the test decides which part of the image is in reach). A
 * splice copies from the bytes as they were before it.
 */
export function mutateBytes(bytes: Buffer, m: ByteMutation, pos: (n: number) => number): void {
  switch (m.kind) {
    case 'flip': {
      const at = pos(m.at)
      bytes[at] = (bytes[at] ?? 0) ^ (1 << m.bit)
      return
    }
    case 'overwrite': {
      const at = pos(m.at)
      const len = Math.min(m.length, bytes.length - at)
      bytes.set(m.zeros ? Buffer.alloc(len) : seededBytes(len, m.seed), at)
      return
    }
    case 'splice': {
      const from = pos(m.from)
      const at = pos(m.at)
      Buffer.from(bytes).copy(bytes, at, from, from + Math.min(m.length, bytes.length - from, bytes.length - at))
      return
    }
  }
}
