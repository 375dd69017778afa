import { u16, u32 } from './msgpack-scan.js'

/**
 * A stored value's JSON text written straight from its msgpack bytes, for the
 * ndjson export (export.ts): decoding a row into objects and JSON.stringify
 * of them were half of an export's CPU time.
 *
 * Exact or nothing: `write` writes the bytes of
 * `JSON.stringify(encodeStoredJsonValue(createPackr().decode(bytes)))`
 * (json-values.ts, value-codec.ts), or declines (returns -1, having written
 * nothing the caller keeps) and the caller takes that path. It takes only
 * what is JSON as it is and means the same in both: nil, booleans, integers
 * of up to 32 bits, finite float64 other than -0, strings of well-formed
 * UTF-8, arrays of those, and maps of string keys (each one once) to those.
 * It declines what the decoder or JavaScript would make something else of:
 * bin, ext (memwal's tags, dates, sets, typed arrays, undefined), float32,
 * 64-bit integers (BigInt), NaN, the infinities and -0 (tagged), a key that
 * may be an array index (JavaScript puts those first), `__proto__`
 * (msgpackr renames it), a key twice (the object keeps one), a map whose only
 * key starts with `$` (tagged `$object`), a string starting with a byte
 * order mark (msgpackr's TextDecoder drops it), bytes that are not UTF-8,
 * maps of more than JSON_MAP_KEYS_MAX keys (the duplicate check is pairwise)
 * and nesting deeper than JSON_DEPTH_MAX. test/unit/msgpack-json.test.ts
 * holds it to that over the value contract's arbitraries.
 */

/** Output bytes per input byte, at most (a control character: 1 byte -> `\u00XX`, and its `,`): what a caller reserves. */
export const MSGPACK_JSON_EXPANSION = 7
/** Maps with more keys are declined: their keys are checked against each other pairwise. */
export const JSON_MAP_KEYS_MAX = 32
/** Deeper values are declined (the decoder takes them): this walk recurses per level. */
export const JSON_DEPTH_MAX = 64

const HEX = '0123456789abcdef'
const ZERO = 0x30
const QUOTE = 0x22
const BACKSLASH = 0x5c
const DOLLAR = 0x24
/** `__proto__`, which msgpackr decodes as `__proto_` (so that it stays data). */
const PROTO_KEY = Buffer.from('__proto__', 'latin1')

/**
 * One per export stream (it holds a cursor and a scratch for float64s): not
 * shared between streams, no state kept between calls.
 */
export class MsgpackJson {
  private src: Uint8Array = new Uint8Array(0)
  private pos = 0
  private end = 0
  private out: Uint8Array = new Uint8Array(0)
  private o = 0
  private keyStart = 0
  /** The keys (start, length) of the maps the walk is in, JSON_MAP_KEYS_MAX of them a level: checked for one twice. */
  private readonly keyStack = new Int32Array(2 * JSON_MAP_KEYS_MAX * JSON_DEPTH_MAX)
  private readonly scratch = new DataView(new ArrayBuffer(8))

  /**
   * Writes the JSON of the one msgpack element in `src[start, end)` into
   * `out` at `at` (which has room for MSGPACK_JSON_EXPANSION times its bytes);
   * returns the offset after it, or -1 (declined, or not exactly one element).
   */
  write(src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): number {
    this.src = src
    this.pos = start
    this.end = end
    this.out = out
    this.o = at
    const ok = this.value(0) && this.pos === end
    this.src = this.out = EMPTY // holds no caller's buffer past the call
    return ok ? this.o : -1
  }

  private value(depth: number): boolean {
    const t = this.byte(this.pos)
    if (t < 0) return false
    if (t < 0x80) return this.int(1, t)
    if (t >= 0xe0) return this.int(1, t - 0x100)
    if (t < 0x90) return this.map(this.pos + 1, t & 0x0f, depth)
    if (t < 0xa0) return this.array(this.pos + 1, t & 0x0f, depth)
    if (t < 0xc0) return this.str(this.pos + 1, t & 0x1f)
    return this.sized(t, depth)
  }

  private sized(t: number, depth: number): boolean {
    const p = this.pos
    switch (t) {
      case 0xc0:
        return this.ascii(1, 'null')
      case 0xc2:
        return this.ascii(1, 'false')
      case 0xc3:
        return this.ascii(1, 'true')
      case 0xcb:
        return this.float64()
      case 0xcc:
        return this.has(p, 2) && this.int(2, this.src[p + 1] as number)
      case 0xcd:
        return this.has(p, 3) && this.int(3, u16(this.src, p + 1))
      case 0xce:
        return this.has(p, 5) && this.int(5, u32(this.src, p + 1))
      case 0xd0:
        return this.has(p, 2) && this.int(2, ((this.src[p + 1] as number) << 24) >> 24)
      case 0xd1:
        return this.has(p, 3) && this.int(3, (u16(this.src, p + 1) << 16) >> 16)
      case 0xd2:
        return this.has(p, 5) && this.int(5, u32(this.src, p + 1) | 0)
      case 0xd9:
        return this.has(p, 2) && this.str(p + 2, this.src[p + 1] as number)
      case 0xda:
        return this.has(p, 3) && this.str(p + 3, u16(this.src, p + 1))
      case 0xdb:
        return this.has(p, 5) && this.str(p + 5, u32(this.src, p + 1))
      case 0xdc:
        return this.has(p, 3) && this.array(p + 3, u16(this.src, p + 1), depth)
      case 0xdd:
        return this.has(p, 5) && this.array(p + 5, u32(this.src, p + 1), depth)
      case 0xde:
        return this.has(p, 3) && this.map(p + 3, u16(this.src, p + 1), depth)
      case 0xdf:
        return this.has(p, 5) && this.map(p + 5, u32(this.src, p + 1), depth)
      default:
        return false // bin, ext, float 32, 64-bit integers, 0xc1
    }
  }

  private array(at: number, count: number, depth: number): boolean {
    if (depth >= JSON_DEPTH_MAX) return false
    this.pos = at
    this.out[this.o++] = 0x5b // [
    for (let i = 0; i < count; i++) {
      if (i > 0) this.out[this.o++] = 0x2c // ,
      if (!this.value(depth + 1)) return false
    }
    this.out[this.o++] = 0x5d // ]
    return true
  }

  private map(at: number, count: number, depth: number): boolean {
    if (depth >= JSON_DEPTH_MAX || count > JSON_MAP_KEYS_MAX) return false
    this.pos = at
    this.out[this.o++] = 0x7b // {
    const keys = 2 * JSON_MAP_KEYS_MAX * depth // this map's place in keyStack
    for (let i = 0; i < count; i++) {
      if (i > 0) this.out[this.o++] = 0x2c // ,
      const length = this.key()
      if (length < 0) return false
      const start = this.keyStart
      if (count === 1 && length > 0 && this.src[start] === DOLLAR) return false
      if (!this.newKey(keys, i, start, length)) return false
      this.keyStack[keys + 2 * i] = start
      this.keyStack[keys + 2 * i + 1] = length
      if (!this.str(start, length)) return false
      this.out[this.o++] = 0x3a // :
      if (!this.value(depth + 1)) return false
    }
    this.out[this.o++] = 0x7d // }
    return true
  }

  /**
   * The key at pos: its length, its bytes' start in keyStart; -1 when it is
   * not a str, or may be an array index (starts with a digit), or is `__proto__`.
   */
  private key(): number {
    const p = this.pos
    const t = this.byte(p)
    let length: number
    if (t >= 0xa0 && t < 0xc0) {
      this.keyStart = p + 1
      length = t & 0x1f
    } else if (t === 0xd9 && this.has(p, 2)) {
      this.keyStart = p + 2
      length = this.src[p + 1] as number
    } else if (t === 0xda && this.has(p, 3)) {
      this.keyStart = p + 3
      length = u16(this.src, p + 1)
    } else if (t === 0xdb && this.has(p, 5)) {
      this.keyStart = p + 5
      length = u32(this.src, p + 1)
    } else {
      return -1
    }
    const start = this.keyStart
    if (start + length > this.end) return -1
    const first = this.src[start] as number
    if (length > 0 && first >= ZERO && first <= ZERO + 9) return -1
    if (length === PROTO_KEY.length && this.same(start, PROTO_KEY, 0, length)) return -1
    return length
  }

  /** True when none of the `count` keys before in the map at `keys` (keyStack) has these bytes. */
  private newKey(keys: number, count: number, start: number, length: number): boolean {
    for (let k = keys; k < keys + 2 * count; k += 2) {
      if (this.keyStack[k + 1] === length && this.same(this.keyStack[k] as number, this.src, start, length)) return false
    }
    return true
  }

  private same(at: number, other: Uint8Array, from: number, length: number): boolean {
    for (let i = 0; i < length; i++) if (this.src[at + i] !== other[from + i]) return false
    return true
  }

  /** A string of `length` bytes at `at`: quoted and escaped as JSON.stringify does; declined when not well-formed UTF-8. */
  private str(at: number, length: number): boolean {
    const stop = at + length
    if (stop > this.end) return false
    const { src, out } = this
    if (length >= 3 && src[at] === 0xef && src[at + 1] === 0xbb && src[at + 2] === 0xbf) return false
    let o = this.o
    out[o++] = QUOTE
    for (let i = at; i < stop; ) {
      const b = src[i] as number
      if (b >= 0x20 && b < 0x80 && b !== QUOTE && b !== BACKSLASH) {
        out[o++] = b
        i++
      } else if (b < 0x80) {
        o = escape(out, o, b)
        i++
      } else {
        const n = utf8Sequence(src, i, stop)
        if (n === 0) return false
        for (const e = i + n; i < e; ) out[o++] = src[i++] as number
      }
    }
    out[o++] = QUOTE
    this.o = o
    this.pos = stop
    return true
  }

  /** A safe integer as JSON.stringify writes it (its digits), for the element of `size` bytes at pos. */
  private int(size: number, v: number): boolean {
    if (v < 0) this.out[this.o++] = 0x2d // -
    this.o = putDecimal(this.out, this.o, Math.abs(v))
    this.pos += size
    return true
  }

  private float64(): boolean {
    const p = this.pos
    if (!this.has(p, 9)) return false
    this.scratch.setUint32(0, u32(this.src, p + 1))
    this.scratch.setUint32(4, u32(this.src, p + 5))
    const v = this.scratch.getFloat64(0)
    if (!Number.isFinite(v) || Object.is(v, -0)) return false // tagged $number
    // A safe integer is its digits (as JSON.stringify writes it), without making a string; else V8's shortest form.
    return Number.isSafeInteger(v) ? this.int(9, v) : this.ascii(9, String(v))
  }

  /** Writes `text` (ASCII) for the element of `size` bytes at pos. */
  private ascii(size: number, text: string): boolean {
    for (let i = 0; i < text.length; i++) this.out[this.o++] = text.charCodeAt(i)
    this.pos += size
    return true
  }

  private has(p: number, n: number): boolean {
    return p + n <= this.end
  }

  private byte(p: number): number {
    return p < this.end ? (this.src[p] as number) : -1
  }
}

const EMPTY = new Uint8Array(0)

/**
 * The decimal digits of `v`, a safe integer at least 0, into `out` at `o`
 * (what String(v) is); returns the offset after them. Eight digits at a time
 * in 32-bit arithmetic: no string made (3 to 6 times faster than String(v)
 * and a copy, measured on createdAt-sized and small integers).
 */
export function putDecimal(out: Uint8Array, o: number, v: number): number {
  if (v < 1e8) return putDigits(out, o, v, digitsOf(v))
  const high = Math.floor(v / 1e8) // below 2^53 / 1e8 < 2^27
  o = high < 1e8 ? putDigits(out, o, high, digitsOf(high)) : putDecimal(out, o, high)
  return putDigits(out, o, v - high * 1e8, 8)
}

/** How many digits `v` (below 1e8) has. */
function digitsOf(v: number): number {
  if (v >= 10000) return v >= 1000000 ? (v >= 10000000 ? 8 : 7) : v >= 100000 ? 6 : 5
  return v >= 100 ? (v >= 1000 ? 4 : 3) : v >= 10 ? 2 : 1
}

/** `v` (below 1e8) in exactly `digits` digits, zeros first. */
function putDigits(out: Uint8Array, o: number, v: number, digits: number): number {
  const end = o + digits
  for (let p = end, x = v; p > o; ) {
    const q = (x / 10) | 0
    out[--p] = ZERO + x - q * 10
    x = q
  }
  return end
}

/** A quote, backslash or control character as JSON.stringify escapes it; returns the offset after it. */
function escape(out: Uint8Array, o: number, b: number): number {
  out[o++] = BACKSLASH
  if (b === QUOTE || b === BACKSLASH) {
    out[o++] = b
    return o
  }
  const short = b === 0x08 ? 0x62 : b === 0x09 ? 0x74 : b === 0x0a ? 0x6e : b === 0x0c ? 0x66 : b === 0x0d ? 0x72 : 0
  if (short !== 0) {
    out[o++] = short
    return o
  }
  out[o++] = 0x75 // u
  out[o++] = ZERO
  out[o++] = ZERO
  out[o++] = HEX.charCodeAt(b >> 4)
  out[o++] = HEX.charCodeAt(b & 0xf)
  return o
}

/**
 * The length of the well-formed UTF-8 sequence of 2 to 4 bytes at `i`
 * (before `stop`), or 0: a lone continuation byte, an overlong form, a
 * surrogate (ED A0..BF), beyond U+10FFFF, or cut short (Unicode, table 3-7).
 */
function utf8Sequence(src: Uint8Array, i: number, stop: number): number {
  const b = src[i] as number
  if (b >= 0xc2 && b <= 0xdf) return tail(src, i + 1, stop, 0x80, 0xbf, 0) ? 2 : 0
  if (b >= 0xe0 && b <= 0xef) {
    const lo = b === 0xe0 ? 0xa0 : 0x80
    const hi = b === 0xed ? 0x9f : 0xbf
    return tail(src, i + 1, stop, lo, hi, 1) ? 3 : 0
  }
  if (b >= 0xf0 && b <= 0xf4) {
    const lo = b === 0xf0 ? 0x90 : 0x80
    const hi = b === 0xf4 ? 0x8f : 0xbf
    return tail(src, i + 1, stop, lo, hi, 2) ? 4 : 0
  }
  return 0
}

/** A continuation byte in [lo, hi] at `j`, then `more` in [0x80, 0xbf], all before `stop`. */
function tail(src: Uint8Array, j: number, stop: number, lo: number, hi: number, more: number): boolean {
  if (j + more >= stop) return false
  const first = src[j] as number
  if (first < lo || first > hi) return false
  for (let k = 1; k <= more; k++) {
    const x = src[j + k] as number
    if (x < 0x80 || x > 0xbf) return false
  }
  return true
}
