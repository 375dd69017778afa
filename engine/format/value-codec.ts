import { addExtension, Packr } from 'msgpackr'
import { MemwalError } from '../errors.js'

/**
 * Values: what `put` stores is what `get` returns, after a reopen, a replay
 * and from every sink, or `put` refuses it with ENGINE_INVALID_VALUE naming
 * the place inside the value (`$.a[3].b`). The contract is JavaScript's
 * structured-clone types, with these decisions:
 *
 *   kept exactly                       how it is written (msgpack)
 *   null, true, false, strings         as themselves; a string must be well-formed
 *                                      UTF-16 (a lone surrogate would read back as U+FFFD)
 *   numbers: NaN, +-Infinity           float64 or int; -0 is a memwal tag (msgpack has no -0)
 *   BigInt of any size                 int64/uint64, beyond that msgpackr's bigint extension (0x42)
 *   undefined inside objects/arrays    msgpackr's undefined extension (0); a top-level
 *                                      undefined is refused by put (use delete)
 *   plain objects                      a msgpack map; key order is JavaScript's own (integer
 *                                      keys first); null-prototype objects, objects with an
 *                                      own `__proto__` key and objects of 65,536+ keys go as a tag
 *   arrays, sparse arrays              a msgpack array; an array with holes goes as a tag that
 *                                      keeps its length and the holes
 *   Date, including an invalid Date    msgpack timestamp extension (-1)
 *   RegExp (source, flags, lastIndex)  tag
 *   Map (keys of any type, order)      tag
 *   Set (order)                        msgpackr's set extension (0x73)
 *   Error, EvalError, RangeError,      tag: the type, then every own property with its
 *   ReferenceError, SyntaxError,       enumerability: message, stack, cause, AggregateError's
 *   TypeError, URIError, AggregateError  errors, and any a caller added (`code`)
 *   ArrayBuffer, DataView, Int8..BigUint64Array, Uint8ClampedArray, Float32/64Array
 *                                      msgpackr's typed-array extension (0x74); each reads
 *                                      back with its own buffer holding exactly its bytes
 *   Buffer (kept apart from Uint8Array) tag
 *
 *   refused: functions, symbols, class instances (any prototype other than the
 *   above: WeakMap, WeakSet, Promise, boxed primitives, subclasses of the
 *   built-ins, objects from another realm), SharedArrayBuffer and resizable
 *   ArrayBuffers, symbol-keyed properties, own enumerable properties added to
 *   a Map, Set, Date or RegExp, named properties on an array with holes, a
 *   value nested deeper than VALUE_DEPTH_MAX, and cycles.
 *
 *   not part of a value, as with structuredClone: non-enumerable properties of
 *   objects and arrays (except an Error's), named properties on arrays without
 *   holes, properties added to typed arrays and buffers. A getter is read as
 *   the value it returns. An object reached twice (not a cycle) reads back as
 *   two equal copies.
 *
 * The memwal tag is one msgpack extension type, VALUE_TAG_EXT (0x6d, "m"),
 * written by msgpackr as `d4 6d 00` followed by one msgpack array whose first
 * element says what it holds:
 *   [0]                                -0
 *   [1, k0, v0, k1, v1, ...]           Map, in insertion order
 *   [2, bytes]                         Buffer (bytes as msgpack bin)
 *   [3, source, flags, lastIndex]      RegExp
 *   [4, type, name0, value0, enumerable0, ...]  Error of `type` (a name in ERROR_TYPES)
 *   [5, nullPrototype, k0, v0, ...]    object written key by key (see above)
 *   [6, length, i0, v0, i1, v1, ...]   array with holes: the indices present
 * Records written before this codec never hold the tag (msgpackr never wrote
 * it), so they decode exactly as they always did: a Map written then reads
 * back as a plain object, a Set or RegExp or Error as an array, a typed array
 * as a Buffer. A reader older than this codec refuses a record holding a tag
 * (WAL_INVALID_RECORD): downgrading is not supported once such values exist.
 *
 * msgpackr's extensions are registered process-wide (its only way): this
 * module registers the one tag above, for a class private to it, so no other
 * user of msgpackr encodes differently; a decoder of another msgpackr user
 * meeting 0x6d would decode it as memwal does.
 */

/** The msgpack extension type of memwal's value tags. */
export const VALUE_TAG_EXT = 0x6d

/**
 * The extension types msgpackr writes as an ext header whose data is a
 * filler and then one msgpack element, its contents (`d4 73 00` and the
 * array of a Set's items): memwal's tag, and msgpackr's own Set (0x73),
 * Error (0x65) and RegExp (0x78), which its decoder reads the same way
 * (this codec writes Errors and RegExps as tags; records before it may hold
 * msgpackr's). A reader that skips a value by its headers
 * (format/msgpack-scan.ts) passes that element too.
 */
export const EXT_TYPES_WITH_ELEMENT: ReadonlySet<number> = new Set([VALUE_TAG_EXT, 0x73, 0x65, 0x78])

/** How deep a value may nest (objects, arrays, Maps, Sets, Error causes): msgpackr and this walk recurse per level. */
export const VALUE_DEPTH_MAX = 512

/** An object of this many keys or more is written as a tag: msgpackr's map header is 16 bits. */
const MAP_KEYS_MAX = 0x10000

const Kind = { NEG_ZERO: 0, MAP: 1, BUFFER: 2, REGEXP: 3, ERROR: 4, OBJECT: 5, SPARSE_ARRAY: 6 } as const

const ERROR_TYPES: Readonly<Record<string, ErrorConstructor | AggregateErrorConstructor>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, ErrorConstructor>, {
    Error,
    EvalError,
    RangeError,
    ReferenceError,
    SyntaxError,
    TypeError,
    URIError,
    AggregateError,
  }),
)
const ERROR_PROTOTYPES = new Map<object, string>(Object.entries(ERROR_TYPES).map(([name, ctor]) => [ctor.prototype as object, name]))

/** Prototypes msgpackr's moreTypes extensions carry exactly, with no own contents to walk. */
const OPAQUE_PROTOTYPES = new Set<object>(
  [Date, ArrayBuffer, DataView, Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array].map(
    (c) => c.prototype as object,
  ),
)

/** What msgpackr writes for a memwal tag: its fields, as one array. */
class ValueTag {
  constructor(readonly fields: unknown[]) {}
}

addExtension({
  Class: ValueTag,
  type: VALUE_TAG_EXT,
  write: (tag: ValueTag) => tag.fields,
  read: (fields: unknown) => fromTag(fields),
})

/**
 * A Packr for anything that holds values. Records extension off (a fresh
 * process must decode what an earlier one wrote); moreTypes on, for Set,
 * typed arrays, ArrayBuffer, DataView and BigInt beyond 64 bits. Values must
 * go through `toWireValue` first. `pack()` returns a view into a buffer
 * msgpackr reuses: copy it before the next call.
 */
export function createPackr(): Packr {
  return new Packr({ useRecords: false, useToJSON: false, mapsAsObjects: true, moreTypes: true })
}

/**
 * Checks `value` against the contract and returns what to hand msgpackr: the
 * value itself when it needs no tag anywhere (the common case costs one walk
 * and no copy), else a copy along the paths to the tags.
 */
export function toWireValue(value: unknown): unknown {
  return new Walk().wire(value, 0)
}

/** A value's msgpack bytes: a view into `packr`'s reused buffer. */
export function packValue(packr: Packr, value: unknown): Uint8Array {
  return packr.pack(toWireValue(value))
}

/** Where a walk is inside the value, kept as a stack so that the path is only formatted for an error. */
class Walk {
  private readonly trail: (string | number | PathStep)[] = []
  /** The objects the walk is inside, outermost first: searched for a cycle only when the depth limit is hit. */
  private readonly ancestors: object[] = []

  wire(v: unknown, depth: number): unknown {
    switch (typeof v) {
      case 'string':
        if (!v.isWellFormed()) throw this.refuse('a string is not well-formed UTF-16 (lone surrogate)')
        return v
      case 'number':
        return v === 0 && 1 / v < 0 ? new ValueTag([Kind.NEG_ZERO]) : v
      case 'boolean':
      case 'bigint':
      case 'undefined':
        return v
      case 'function':
      case 'symbol':
        throw this.refuse(`a ${typeof v} cannot be stored`)
      case 'object':
        if (v === null) return v
        if (depth >= VALUE_DEPTH_MAX) throw this.tooDeep()
        // No try/finally: a refusal abandons the whole walk, so the stacks need no unwinding.
        this.ancestors.push(v)
        const x = this.wireObject(v, depth + 1)
        this.ancestors.pop()
        return x
      default:
        throw this.refuse(`a ${typeof v} cannot be stored`)
    }
  }

  /** A cycle looks like a value too deep: tell them apart, and name where the cycle comes back. */
  private tooDeep(): MemwalError {
    const seen = new Set<object>()
    for (let i = 0; i < this.ancestors.length; i++) {
      const o = this.ancestors[i] as object
      if (seen.has(o)) {
        this.trail.length = i
        return this.refuse('the value is circular (it contains itself here)')
      }
      seen.add(o)
    }
    return this.refuse(`the value nests deeper than ${VALUE_DEPTH_MAX} levels`)
  }

  private wireObject(v: object, depth: number): unknown {
    const proto: unknown = Object.getPrototypeOf(v)
    if (proto === Object.prototype) return this.plainObject(v as Record<string, unknown>, depth, false)
    if (proto === Array.prototype) return this.array(v as unknown[], depth)
    if (OPAQUE_PROTOTYPES.has(proto as object)) return this.opaque(v)
    if (proto === Map.prototype) return this.map(v as Map<unknown, unknown>, depth)
    if (proto === Set.prototype) return this.set(v as Set<unknown>, depth)
    if (proto === Buffer.prototype) return new ValueTag([Kind.BUFFER, v])
    if (proto === RegExp.prototype) {
      const r = v as RegExp
      this.noOwnProperties(v, 'RegExp')
      return new ValueTag([Kind.REGEXP, r.source, r.flags, r.lastIndex])
    }
    if (proto === null) return this.plainObject(v as Record<string, unknown>, depth, true)
    const errorType = ERROR_PROTOTYPES.get(proto as object)
    if (errorType !== undefined) return this.error(v as Error, errorType, depth)
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name
    throw this.refuse(`${typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'an object with a class prototype'} cannot be stored (class instances are not values)`)
  }

  private plainObject(o: Record<string, unknown>, depth: number, nullPrototype: boolean): unknown {
    if (Object.getOwnPropertySymbols(o).length > 0) throw this.refuse('an object has symbol-keyed properties')
    const keys = Object.keys(o)
    let copy: Record<string, unknown> | undefined
    let tagged = nullPrototype || keys.length >= MAP_KEYS_MAX
    for (let i = 0; i < keys.length && !tagged; i++) {
      const k = keys[i] as string
      if (k === '__proto__') tagged = true
      else {
        const x = this.child(k, o[k], depth)
        if (x !== o[k] && copy === undefined) copy = copyKeys(o, keys, i)
        if (copy !== undefined) copy[k] = x
      }
    }
    if (!tagged) return copy ?? o
    const fields: unknown[] = [Kind.OBJECT, nullPrototype]
    for (const k of keys) fields.push(k, this.child(k, o[k], depth))
    return new ValueTag(fields)
  }

  private array(a: unknown[], depth: number): unknown {
    let copy: unknown[] | undefined
    for (let i = 0; i < a.length; i++) {
      const v = a[i]
      if (v === undefined && !(i in a)) return this.sparseArray(a, depth)
      const x = this.child(i, v, depth)
      if (x !== v && copy === undefined) copy = a.slice(0, i)
      if (copy !== undefined) copy.push(x)
    }
    return copy ?? a
  }

  /** Walks only the indices present: `new Array(1e9)` costs what it holds. */
  private sparseArray(a: unknown[], depth: number): ValueTag {
    const fields: unknown[] = [Kind.SPARSE_ARRAY, a.length]
    for (const k of Object.keys(a)) {
      const i = Number(k)
      if (!Number.isInteger(i) || String(i) !== k) throw this.refuse(`an array with holes has a named property ${JSON.stringify(k)}`)
      fields.push(i, this.child(i, a[i], depth))
    }
    return new ValueTag(fields)
  }

  private map(m: Map<unknown, unknown>, depth: number): ValueTag {
    this.noOwnProperties(m, 'Map')
    const fields: unknown[] = [Kind.MAP]
    let i = 0
    for (const [k, v] of m) {
      fields.push(this.child(new PathStep('.keys', i), k, depth), this.child(new PathStep('.get', k, i), v, depth))
      i++
    }
    return new ValueTag(fields)
  }

  private set(s: Set<unknown>, depth: number): unknown {
    this.noOwnProperties(s, 'Set')
    let copy: unknown[] | undefined
    let i = 0
    for (const v of s) {
      const x = this.child(new PathStep('.values', i), v, depth)
      if (x !== v && copy === undefined) copy = [...s].slice(0, i)
      if (copy !== undefined) copy.push(x)
      i++
    }
    // A Set of wire values: msgpackr's set extension writes its elements in order.
    return copy === undefined ? s : new Set(copy)
  }

  private error(e: Error, type: string, depth: number): ValueTag {
    if (Object.getOwnPropertySymbols(e).length > 0) throw this.refuse('an Error has symbol-keyed properties')
    const fields: unknown[] = [Kind.ERROR, type]
    for (const name of Object.getOwnPropertyNames(e)) {
      const d = Object.getOwnPropertyDescriptor(e, name) as PropertyDescriptor
      const value = 'value' in d ? d.value : (d.get?.call(e) as unknown)
      fields.push(name, this.child(name, value, depth), d.enumerable === true)
    }
    return new ValueTag(fields)
  }

  private opaque(v: object): object {
    if (v instanceof ArrayBuffer && (v as { resizable?: boolean }).resizable === true) throw this.refuse('a resizable ArrayBuffer cannot be stored (it would read back fixed)')
    if (v instanceof Date) this.noOwnProperties(v, 'Date')
    return v
  }

  private noOwnProperties(v: object, what: string): void {
    const keys = Object.keys(v)
    if (keys.length > 0) throw this.refuse(`a ${what} has own properties (${keys.slice(0, 3).join(', ')}) that would not be stored`)
  }

  private child(step: string | number | PathStep, v: unknown, depth: number): unknown {
    this.trail.push(step)
    if (typeof step === 'string' && !step.isWellFormed()) throw this.refuse('a property name is not well-formed UTF-16 (lone surrogate)')
    const x = this.wire(v, depth)
    this.trail.pop()
    return x
  }

  private refuse(what: string): MemwalError {
    const path = formatPath(this.trail)
    return new MemwalError('ENGINE_INVALID_VALUE', `value at ${path}: ${what}`, { details: { path } })
  }
}

/** A step into a Map or Set, named for the error path: `.keys[0]`, `.get("a")`, `.values[2]`. */
class PathStep {
  constructor(
    readonly kind: '.keys' | '.get' | '.values',
    readonly at: unknown,
    readonly index = 0,
  ) {}

  toString(): string {
    if (this.kind !== '.get') return `${this.kind}[${String(this.at)}]`
    const k = this.at
    return typeof k === 'string' || typeof k === 'number' ? `.get(${JSON.stringify(k)})` : `.get(<key ${this.index}>)`
  }
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/u
/** Paths deeper than this show their first and last steps only. */
const PATH_STEPS_SHOWN = 24

function formatPath(trail: readonly (string | number | PathStep)[]): string {
  const step = (s: string | number | PathStep): string =>
    typeof s === 'number' ? `[${s}]` : typeof s === 'string' ? (IDENTIFIER.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`) : s.toString()
  if (trail.length <= PATH_STEPS_SHOWN) return `$${trail.map(step).join('')}`
  const half = PATH_STEPS_SHOWN / 2
  return `$${trail.slice(0, half).map(step).join('')}...(${trail.length - PATH_STEPS_SHOWN} more)...${trail.slice(-half).map(step).join('')}`
}

function copyKeys(o: Record<string, unknown>, keys: readonly string[], upTo: number): Record<string, unknown> {
  const copy: Record<string, unknown> = {}
  for (let i = 0; i < upTo; i++) copy[keys[i] as string] = o[keys[i] as string]
  return copy
}

/** Rebuilds a tagged value. Fields come from a checksummed payload, but are checked: a malformed tag is an error, never a guess. */
function fromTag(fields: unknown): unknown {
  if (!Array.isArray(fields)) throw new Error('memwal value tag is not an array')
  switch (fields[0]) {
    case Kind.NEG_ZERO:
      return -0
    case Kind.MAP: {
      const m = new Map<unknown, unknown>()
      pairs(fields, 1, (k, v) => m.set(k, v))
      return m
    }
    case Kind.BUFFER: {
      const b: unknown = fields[1]
      if (!(b instanceof Uint8Array)) throw new Error('memwal Buffer tag holds no bytes')
      return Buffer.from(b) // a copy: the decoded bytes may be a view into the payload
    }
    case Kind.REGEXP: {
      const [, source, flags, lastIndex] = fields as unknown[]
      if (typeof source !== 'string' || typeof flags !== 'string' || typeof lastIndex !== 'number') throw new Error('memwal RegExp tag is malformed')
      const r = new RegExp(source, flags)
      r.lastIndex = lastIndex
      return r
    }
    case Kind.ERROR:
      return errorFrom(fields)
    case Kind.OBJECT: {
      const o: Record<string, unknown> = fields[1] === true ? (Object.create(null) as Record<string, unknown>) : {}
      pairs(fields, 2, (k, v) => {
        if (typeof k !== 'string') throw new Error('memwal object tag has a key that is not a string')
        Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true })
      })
      return o
    }
    case Kind.SPARSE_ARRAY: {
      const length: unknown = fields[1]
      if (typeof length !== 'number' || !Number.isInteger(length) || length < 0 || length > 2 ** 32 - 1) throw new Error('memwal sparse array tag has a bad length')
      const a: unknown[] = new Array<unknown>(length)
      pairs(fields, 2, (i, v) => {
        if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= length) throw new Error('memwal sparse array tag has a bad index')
        a[i] = v
      })
      return a
    }
    default:
      throw new Error(`memwal value tag of unknown kind ${String(fields[0])}`)
  }
}

function pairs(fields: readonly unknown[], from: number, each: (k: unknown, v: unknown) => void): void {
  if ((fields.length - from) % 2 !== 0) throw new Error('memwal value tag has an odd number of fields')
  for (let i = from; i < fields.length; i += 2) each(fields[i], fields[i + 1])
}

function errorFrom(fields: readonly unknown[]): Error {
  const type = fields[1]
  const ctor = typeof type === 'string' ? ERROR_TYPES[type] : undefined
  if (ctor === undefined) throw new Error(`memwal Error tag of unknown type ${String(type)}`)
  if ((fields.length - 2) % 3 !== 0) throw new Error('memwal Error tag is malformed')
  // Constructed, not Object.create'd: a real Error (util.types.isNativeError), whose own properties are then exactly the stored ones.
  const e = ctor === AggregateError ? new AggregateError([]) : new (ctor as ErrorConstructor)()
  for (const name of Object.getOwnPropertyNames(e)) delete (e as unknown as Record<string, unknown>)[name]
  for (let i = 2; i < fields.length; i += 3) {
    const name = fields[i]
    if (typeof name !== 'string') throw new Error('memwal Error tag has a property name that is not a string')
    Object.defineProperty(e, name, { value: fields[i + 1], writable: true, enumerable: fields[i + 2] === true, configurable: true })
  }
  return e
}
