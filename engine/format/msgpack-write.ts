/**
 * Strings and positive integers written into a buffer as msgpackr's Packr
 * (value-codec.ts's createPackr) packs them, byte for byte, without a Packr:
 * an export writes an entry's map field by field (export-encoders.ts).
 * test/unit/msgpack-json.test.ts holds them to packr.pack.
 */

/**
 * `s[from, to)` as msgpackr packs it (the shortest str header for its UTF-8
 * bytes), into `buf` at `at` (room: 3 bytes a UTF-16 unit, and 5); returns
 * the offset after it. A short ASCII string (most labels) is copied a
 * character a byte.
 */
export function putMsgpackString(buf: Buffer, at: number, s: string, from: number, to: number): number {
  if (to - from < 0x20) {
    let o = at + 1
    for (let i = from; i < to; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) return putMsgpackUtf8(buf, at, s.slice(from, to))
      buf[o++] = c
    }
    buf[at] = 0xa0 | (to - from)
    return o
  }
  return putMsgpackUtf8(buf, at, s.slice(from, to))
}

function putMsgpackUtf8(buf: Buffer, at: number, s: string): number {
  const length = Buffer.byteLength(s, 'utf8')
  if (length < 0x20) {
    buf[at++] = 0xa0 | length
  } else if (length < 0x100) {
    buf[at++] = 0xd9
    buf[at++] = length
  } else if (length < 0x10000) {
    buf[at++] = 0xda
    at = buf.writeUInt16BE(length, at)
  } else {
    buf[at++] = 0xdb
    at = buf.writeUInt32BE(length, at)
  }
  return at + buf.write(s, at, 'utf8')
}

/** A positive integer as msgpackr packs it (useRecords false: a fixint below 0x80). */
export function putMsgpackUint(buf: Buffer, at: number, v: number): number {
  if (v < 0x80) {
    buf[at++] = v
  } else if (v < 0x100) {
    buf[at++] = 0xcc
    buf[at++] = v
  } else if (v < 0x10000) {
    buf[at++] = 0xcd
    at = buf.writeUInt16BE(v, at)
  } else if (v < 0x100000000) {
    buf[at++] = 0xce
    at = buf.writeUInt32BE(v, at)
  } else {
    buf[at++] = 0xcb
    at = buf.writeDoubleBE(v, at)
  }
  return at
}
