/**
 * Where a msgpack element ends, found from its headers alone: nothing is
 * decoded, no string or object made. An export (export.ts) cuts a stored row
 * into its fields this way and writes the fields' bytes as they are.
 *
 * msgpack (https://github.com/msgpack/msgpack/blob/master/spec.md) says every
 * element's size in its first bytes: a scalar's by its type byte, a str, bin
 * or ext by a length after it, an array or map by a count of elements that
 * follow it (a map's twice its count). So the end of one element is found by
 * a count of elements still to pass, without recursion. One departure, the
 * value codec's (value-codec.ts): an ext of a type in EXT_TYPES_WITH_ELEMENT
 * is followed by one more element, its contents, as msgpackr writes and
 * reads them.
 */
import { EXT_TYPES_WITH_ELEMENT } from './value-codec.js'

/** The offset just after the msgpack element at `bytes[at]`; -1 when the bytes end inside it, or hold the never-used type 0xc1. */
export function msgpackEnd(bytes: Uint8Array, at: number): number {
  const end = bytes.length
  let pos = at
  let todo = 1 // elements still to pass
  while (todo > 0) {
    if (pos >= end) return -1
    todo--
    const t = bytes[pos] as number
    if (t < 0x80 || t >= 0xe0) {
      pos += 1 // positive or negative fixint
    } else if (t < 0x90) {
      todo += 2 * (t & 0x0f) // fixmap
      pos += 1
    } else if (t < 0xa0) {
      todo += t & 0x0f // fixarray
      pos += 1
    } else if (t < 0xc0) {
      pos += 1 + (t & 0x1f) // fixstr
    } else {
      const step = sizedStep(bytes, pos, t)
      if (step < 0) return -1
      pos += step
      todo += containerCount(bytes, pos - step, t)
    }
  }
  return pos > end ? -1 : pos
}

/** Bytes of the element (of type 0xc0..0xdf at `pos`) up to its elements, if it has any; -1 when unknown or cut short. */
function sizedStep(bytes: Uint8Array, pos: number, t: number): number {
  switch (t) {
    case 0xc0: // nil
    case 0xc2: // false
    case 0xc3: // true
      return 1
    case 0xc4: // bin 8
    case 0xd9: // str 8
      return pos + 2 <= bytes.length ? 2 + (bytes[pos + 1] as number) : -1
    case 0xc5: // bin 16
    case 0xda: // str 16
      return pos + 3 <= bytes.length ? 3 + u16(bytes, pos + 1) : -1
    case 0xc6: // bin 32
    case 0xdb: // str 32
      return pos + 5 <= bytes.length ? 5 + u32(bytes, pos + 1) : -1
    case 0xc7: // ext 8: length, type, data
      return pos + 2 <= bytes.length ? 3 + (bytes[pos + 1] as number) : -1
    case 0xc8: // ext 16
      return pos + 3 <= bytes.length ? 4 + u16(bytes, pos + 1) : -1
    case 0xc9: // ext 32
      return pos + 5 <= bytes.length ? 6 + u32(bytes, pos + 1) : -1
    case 0xcc: // uint 8
    case 0xd0: // int 8
      return 2
    case 0xcd: // uint 16
    case 0xd1: // int 16
      return 3
    case 0xca: // float 32
    case 0xce: // uint 32
    case 0xd2: // int 32
      return 5
    case 0xcb: // float 64
    case 0xcf: // uint 64
    case 0xd3: // int 64
      return 9
    case 0xd4: // fixext 1, 2, 4, 8, 16: type, data
      return 3
    case 0xd5:
      return 4
    case 0xd6:
      return 6
    case 0xd7:
      return 10
    case 0xd8:
      return 18
    case 0xdc: // array 16
    case 0xde: // map 16
      return pos + 3 <= bytes.length ? 3 : -1
    case 0xdd: // array 32
    case 0xdf: // map 32
      return pos + 5 <= bytes.length ? 5 : -1
    default:
      return -1 // 0xc1: never used
  }
}

/** Elements that follow the header of type `t` at `pos`: an array's or map's, an ext's of EXT_TYPES_WITH_ELEMENT (1); else 0. */
function containerCount(bytes: Uint8Array, pos: number, t: number): number {
  switch (t) {
    case 0xc7:
      return extElements(bytes[pos + 2])
    case 0xc8:
      return extElements(bytes[pos + 3])
    case 0xc9:
      return extElements(bytes[pos + 5])
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
      return extElements(bytes[pos + 1])
    case 0xdc:
      return u16(bytes, pos + 1)
    case 0xdd:
      return u32(bytes, pos + 1)
    case 0xde:
      return 2 * u16(bytes, pos + 1)
    case 0xdf:
      return 2 * u32(bytes, pos + 1)
    default:
      return 0
  }
}

function extElements(type: number | undefined): number {
  return type !== undefined && EXT_TYPES_WITH_ELEMENT.has(type) ? 1 : 0
}

export function u16(bytes: Uint8Array, at: number): number {
  return ((bytes[at] as number) << 8) | (bytes[at + 1] as number)
}

export function u32(bytes: Uint8Array, at: number): number {
  return (((bytes[at] as number) << 24) | ((bytes[at + 1] as number) << 16) | ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number)) >>> 0
}
