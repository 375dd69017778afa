import { createPackr, toWireValue } from './value-codec.js'

/**
 * Values in JSON: the one encoding of what JSON has no form for, used by the
 * CLI to print values (`jsonTag`, in a JSON.stringify replacer) and by
 * `db.export` in ndjson, where it is exact and reversible for every type of
 * the value contract (`encodeJsonValue` / `decodeJsonValue`).
 *
 * A value JSON cannot say becomes an object with exactly one key, starting
 * with `$`:
 *   {"$number": "NaN" | "Infinity" | "-Infinity" | "-0"}
 *   {"$bigint": "12"}                   decimal
 *   {"$date": "<ISO>"}                  {"$date": null} for an invalid Date
 *   {"$bytes": "<base64>"}              a Uint8Array
 *   {"$buffer": "<base64>"}             a Buffer (kept apart from Uint8Array)
 *   {"$regexp": [source, flags]}        [source, flags, lastIndex] when lastIndex is not 0
 *   {"$map": [[k, v], ...]}             in insertion order, keys and values encoded
 *   {"$set": [v, ...]}                  in order, encoded
 *   {"$undefined": true}                undefined inside an object or array (export only:
 *                                       the CLI's documents leave an undefined field out)
 *   {"$object": {...}}                  a plain object whose only key starts with `$`, so
 *                                       that it is never read as a tag (export only)
 *   {"$msgpack": "<base64>"}            the fallback: the value codec's bytes, for the types
 *                                       with no JSON form above (other typed arrays,
 *                                       ArrayBuffer, DataView; in export also Errors,
 *                                       null-prototype objects, objects with an own
 *                                       `__proto__` key, arrays with holes)
 * Everything else is JSON as it is. An object with one `$` key that is none
 * of these is refused by the decoder (a newer writer's tag is not guessed at).
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }

/** Prototypes that go as the codec's bytes (`$msgpack`): JSON has no form for them. */
const MSGPACK_PROTOTYPES = new Set<object>(
  [ArrayBuffer, DataView, Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array].map(
    (c) => c.prototype as object,
  ),
)

/**
 * The tag of a value that is not JSON as it is, with its parts (a Map's
 * entries, a Set's elements) left as they are for the caller to encode; or
 * undefined when `v` is JSON (or a container JSON walks: plain objects,
 * arrays, undefined). Errors are not handled here (see encodeJsonValue).
 */
export function jsonTag(v: unknown): { readonly [tag: string]: unknown } | undefined {
  switch (typeof v) {
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0) ? undefined : { $number: Object.is(v, -0) ? '-0' : String(v) }
    case 'bigint':
      return { $bigint: v.toString() }
    case 'object': {
      if (v === null) return undefined
      const proto: unknown = Object.getPrototypeOf(v)
      if (proto === Date.prototype) {
        const t = (v as Date).getTime()
        return { $date: Number.isNaN(t) ? null : (v as Date).toISOString() }
      }
      if (proto === Uint8Array.prototype) return { $bytes: Buffer.from(v as Uint8Array).toString('base64') }
      if (proto === Buffer.prototype) return { $buffer: (v as Buffer).toString('base64') }
      if (proto === RegExp.prototype) {
        const r = v as RegExp
        return { $regexp: r.lastIndex === 0 ? [r.source, r.flags] : [r.source, r.flags, r.lastIndex] }
      }
      if (proto === Map.prototype) return { $map: [...(v as Map<unknown, unknown>).entries()] }
      if (proto === Set.prototype) return { $set: [...(v as Set<unknown>).values()] }
      if (MSGPACK_PROTOTYPES.has(proto as object)) return msgpackTag(v)
      return undefined
    }
    default:
      return undefined
  }
}

/**
 * A value of the contract as JSON, exactly: decodeJsonValue gives back an
 * equal value (type, prototype, order, holes). The value is checked against
 * the contract first (ENGINE_INVALID_VALUE naming the place, as put does).
 */
export function encodeJsonValue(value: unknown): Json {
  toWireValue(value)
  return encode(value)
}

/**
 * encodeJsonValue of a value read back from the store, which met the
 * contract when it was put (so it is not checked again), and without a copy
 * when it is JSON as it is (an agent's record, the common case): one walk
 * that allocates nothing, where encode copies every object and array.
 * `db.export` calls it for every entry.
 */
export function encodeStoredJsonValue(value: unknown): Json {
  return isJsonAsIs(value) ? (value as Json) : encode(value)
}

/**
 * True when JSON.stringify writes `v` as it writes encode(v): nothing in it
 * takes a tag (jsonTag), `$undefined` or `$object`, or the `$msgpack`
 * fallback (holes, own `__proto__` keys, other prototypes). Decoded from the
 * store, an array has no properties but its elements.
 */
function isJsonAsIs(v: unknown): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0)
    case 'object': {
      if (v === null) return true
      const proto: unknown = Object.getPrototypeOf(v)
      if (proto === Array.prototype) {
        const a = v as unknown[]
        for (let i = 0; i < a.length; i++) if (!(i in a) || !isJsonAsIs(a[i])) return false
        return true
      }
      if (proto !== Object.prototype || Object.hasOwn(v, '__proto__')) return false
      let keys = 0
      let dollar = false
      for (const k in v) {
        if (!isJsonAsIs((v as Record<string, unknown>)[k])) return false
        if (keys++ === 0) dollar = k.startsWith('$')
      }
      return !(keys === 1 && dollar)
    }
    default:
      return false // undefined, bigint (and what the contract has not: functions, symbols)
  }
}

function encode(v: unknown): Json {
  if (v === undefined) return { $undefined: true }
  const tag = jsonTag(v)
  if (tag !== undefined) {
    const [name, inner] = Object.entries(tag)[0] as [string, unknown]
    if (name === '$map') return { $map: (inner as [unknown, unknown][]).map(([k, x]) => [encode(k), encode(x)]) }
    if (name === '$set') return { $set: (inner as unknown[]).map(encode) }
    return tag as Json
  }
  if (typeof v !== 'object' || v === null) return v as Json
  const proto: unknown = Object.getPrototypeOf(v)
  if (proto === Array.prototype) {
    const a = v as unknown[]
    if (Object.keys(a).length !== a.length) return msgpackTag(a)
    return a.map(encode)
  }
  if (proto === Object.prototype && !Object.hasOwn(v, '__proto__')) {
    const keys = Object.keys(v)
    const o: { [k: string]: Json } = {}
    for (const k of keys) o[k] = encode((v as Record<string, unknown>)[k])
    return keys.length === 1 && (keys[0] as string).startsWith('$') ? { $object: o } : o
  }
  // Errors, null-prototype objects, objects with an own __proto__ key: the codec keeps them exactly.
  return msgpackTag(v)
}

/** The inverse of encodeJsonValue. Throws an Error naming what is wrong (the caller says where). */
export function decodeJsonValue(j: unknown): unknown {
  if (j === null || typeof j === 'boolean' || typeof j === 'string') return j
  if (typeof j === 'number') return j
  if (Array.isArray(j)) return j.map(decodeJsonValue)
  if (typeof j !== 'object') throw new Error(`a ${typeof j} is not JSON`)
  const keys = Object.keys(j)
  if (keys.length === 1 && (keys[0] as string).startsWith('$')) return decodeTag(keys[0] as string, (j as Record<string, unknown>)[keys[0] as string])
  return plain(j as Record<string, unknown>)
}

function plain(j: Record<string, unknown>): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  // defineProperty: a key such as __proto__ stays a plain key, never the prototype.
  for (const k of Object.keys(j)) Object.defineProperty(o, k, { value: decodeJsonValue(j[k]), writable: true, enumerable: true, configurable: true })
  return o
}

function decodeTag(name: string, inner: unknown): unknown {
  const str = (what: string): string => {
    if (typeof inner !== 'string') throw new Error(`${name} holds ${what}, not a ${typeof inner}`)
    return inner
  }
  switch (name) {
    case '$number': {
      const s = str('a string')
      if (s === '-0') return -0
      if (s === 'NaN' || s === 'Infinity' || s === '-Infinity') return Number(s)
      throw new Error(`$number holds NaN, Infinity, -Infinity or -0, not ${JSON.stringify(s)}`)
    }
    case '$bigint': {
      const s = str('a decimal string')
      if (!/^-?\d+$/.test(s)) throw new Error(`$bigint holds a decimal integer, not ${JSON.stringify(s)}`)
      return BigInt(s)
    }
    case '$date': {
      if (inner === null) return new Date(NaN)
      const d = new Date(str('an ISO date or null'))
      if (Number.isNaN(d.getTime())) throw new Error(`$date holds an ISO date, not ${JSON.stringify(inner)}`)
      return d
    }
    case '$bytes':
      return new Uint8Array(base64(str('base64'), name))
    case '$buffer':
      return base64(str('base64'), name)
    case '$regexp': {
      if (!Array.isArray(inner) || (inner.length !== 2 && inner.length !== 3)) throw new Error('$regexp holds [source, flags] or [source, flags, lastIndex]')
      const [source, flags, lastIndex = 0] = inner as unknown[]
      if (typeof source !== 'string' || typeof flags !== 'string' || !Number.isSafeInteger(lastIndex)) throw new Error('$regexp holds [source, flags, lastIndex?] of string, string, integer')
      const r = new RegExp(source, flags)
      r.lastIndex = lastIndex as number
      return r
    }
    case '$map': {
      if (!Array.isArray(inner) || !inner.every((e) => Array.isArray(e) && e.length === 2)) throw new Error('$map holds an array of [key, value] pairs')
      return new Map((inner as [unknown, unknown][]).map(([k, v]) => [decodeJsonValue(k), decodeJsonValue(v)]))
    }
    case '$set':
      if (!Array.isArray(inner)) throw new Error('$set holds an array')
      return new Set(inner.map(decodeJsonValue))
    case '$undefined':
      if (inner !== true) throw new Error('$undefined holds true')
      return undefined
    case '$object':
      if (typeof inner !== 'object' || inner === null || Array.isArray(inner)) throw new Error('$object holds an object')
      return plain(inner as Record<string, unknown>)
    case '$msgpack':
      return createPackr().unpack(base64(str('base64'), name))
    default:
      throw new Error(`unknown tag ${JSON.stringify(name)}`)
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

function base64(s: string, name: string): Buffer {
  if (s.length % 4 !== 0 || !BASE64.test(s)) throw new Error(`${name} holds base64, not ${JSON.stringify(s.slice(0, 40))}`)
  return Buffer.from(s, 'base64')
}

function msgpackTag(v: unknown): { $msgpack: string } {
  return { $msgpack: Buffer.from(createPackr().pack(toWireValue(v))).toString('base64') }
}
