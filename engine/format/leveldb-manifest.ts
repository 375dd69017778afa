/**
 * The tables a LevelDB MANIFEST names (pure bytes, no I/O): what the private
 * copy of a store (sinks/store-view.ts) may link. A MANIFEST is a LevelDB
 * log (blocks of 32 KiB; each record a 7-byte header, checksum 4, length 2,
 * type 1: full, first, middle, last) of VersionEdits, each a series of
 * (varint tag, fields): 1 comparator (a length-prefixed string), 2 log
 * number, 3 next file number, 4 last sequence, 9 previous log number (each a
 * varint), 5 compact pointer (varint level, length-prefixed key), 6 deleted
 * file (varint level, varint number), 7 new file (varint level, varint
 * number, varint size, two length-prefixed keys). A record cut short at the
 * end (a MANIFEST copied while LevelDB appends) is left out, as LevelDB's
 * reader leaves it; checksums are not checked (LevelDB checks them when it
 * opens the copy). Undefined when the bytes are not such a log.
 */
export function manifestTables(bytes: Uint8Array): Set<number> | undefined {
  const live = new Set<number>()
  let pending: number[] = []
  for (let block = 0; block < bytes.length; block += BLOCK_SIZE) {
    const end = Math.min(block + BLOCK_SIZE, bytes.length)
    for (let at = block; at + HEADER_SIZE <= end; ) {
      const length = (bytes[at + 4] as number) | ((bytes[at + 5] as number) << 8)
      const type = bytes[at + 6] as number
      if (type === 0 && length === 0) break // the block's zero padding
      const from = at + HEADER_SIZE
      if (from + length > end) return live // cut short: the end of what was copied
      if (type === FULL || type === FIRST) pending = []
      for (let i = from; i < from + length; i++) pending.push(bytes[i] as number)
      if (type === FULL || type === LAST) {
        if (!applyEdit(Uint8Array.from(pending), live)) return undefined
        pending = []
      } else if (type !== FIRST && type !== MIDDLE) return undefined
      at = from + length
    }
  }
  return live
}

const BLOCK_SIZE = 32 * 1024
const HEADER_SIZE = 7
const FULL = 1
const FIRST = 2
const MIDDLE = 3
const LAST = 4

/** One VersionEdit into `live`; false when it does not parse. */
function applyEdit(edit: Uint8Array, live: Set<number>): boolean {
  const r = { at: 0 }
  const varint = (): number => {
    let n = 0
    for (let shift = 0; r.at < edit.length && shift < 64; shift += 7) {
      const b = edit[r.at++] as number
      n += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return n
    }
    throw new RangeError('varint cut short')
  }
  const skipBytes = (): void => {
    const n = varint()
    if (r.at + n > edit.length) throw new RangeError('field cut short')
    r.at += n
  }
  try {
    while (r.at < edit.length) {
      const tag = varint()
      if (tag === 1) skipBytes()
      else if (tag === 2 || tag === 3 || tag === 4 || tag === 9) varint()
      else if (tag === 5) {
        varint()
        skipBytes()
      } else if (tag === 6) {
        varint()
        live.delete(varint())
      } else if (tag === 7) {
        varint()
        live.add(varint())
        varint()
        skipBytes()
        skipBytes()
      } else return false
    }
    return true
  } catch {
    return false
  }
}
