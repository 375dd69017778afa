/**
 * The value contract (engine/format/value-codec.ts) for tests: fast-check
 * arbitraries of values inside it and of values it refuses, and an exact
 * comparison (type, prototype, -0, NaN, key and entry order, holes, an
 * Error's own properties and their enumerability, lastIndex) that says where
 * two values first differ. util.isDeepStrictEqual is not enough: it ignores a
 * Map's order and calls two invalid Dates different.
 */
import fc from 'fast-check'

const ERROR_TYPES = [Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError] as const

/** Property names that are hostile to plain objects: they must stay plain data. */
const keyArb = fc.oneof({ arbitrary: fc.string({ maxLength: 6 }), weight: 6 }, fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'length', '0', '1', '10', '-1'))

const stringArb = fc.oneof({ arbitrary: fc.string({ maxLength: 12 }), weight: 4 }, fc.string({ unit: 'grapheme', maxLength: 6 }), fc.constantFrom('', '\u0000', '😀', 'é'))

const numberArb = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(-0, 0, NaN, Infinity, -Infinity, 2 ** 32, 2 ** 53 + 2, -(2 ** 31) - 1, Number.MIN_VALUE, Number.MAX_VALUE))

const bigintArb = fc.oneof(fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }), fc.bigInt({ min: -(2n ** 600n), max: 2n ** 600n }), fc.constantFrom(0n, -1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n, -(2n ** 63n), -(2n ** 63n) - 1n))

const dateArb = fc.oneof(fc.date({ noInvalidDate: true }), fc.constantFrom(new Date(NaN), new Date(0), new Date(-1), new Date(8.64e15), new Date(-8.64e15), new Date(2 ** 32 * 1000 + 1)))

const regexpArb = fc
  .tuple(fc.constantFrom('a+b', '^x$', '', '[\\u{1F600}]', '(?<name>\\d+)', '\\/'), fc.subarray(['d', 'g', 'i', 'm', 's', 'u', 'y']), fc.nat(40))
  .map(([source, flags, lastIndex]) => {
    const r = new RegExp(source, flags.join(''))
    r.lastIndex = lastIndex
    return r
  })

const bytesArb = fc.uint8Array({ maxLength: 24 })
const binaryArb = fc.oneof(
  bytesArb,
  bytesArb.map((b) => Buffer.from(b)),
  bytesArb.map((b) => b.slice().buffer),
  fc.tuple(bytesArb, fc.nat(4)).map(([b, off]) => new DataView(b.slice().buffer, Math.min(off, b.length))),
  fc.int8Array({ maxLength: 8 }), fc.uint8ClampedArray({ maxLength: 8 }), fc.int16Array({ maxLength: 8 }), fc.uint16Array({ maxLength: 8 }),
  fc.int32Array({ maxLength: 8 }), fc.uint32Array({ maxLength: 8 }), fc.float32Array({ maxLength: 8 }), fc.float64Array({ maxLength: 8 }),
  fc.bigInt64Array({ maxLength: 4 }), fc.bigUint64Array({ maxLength: 4 }),
  // A view into a larger buffer: only its own bytes are the value.
  fc.tuple(bytesArb, fc.nat(8)).map(([b, off]) => new Uint8Array(b.slice().buffer, Math.min(off, b.length))),
)

const leafArb = fc.oneof(
  fc.constantFrom(null, true, false, undefined),
  numberArb,
  stringArb,
  bigintArb,
  dateArb,
  regexpArb,
  binaryArb,
)

/** Values inside the contract, nested (objects, null-prototype objects, arrays with holes, Maps, Sets, Errors). */
const tree = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true, maxDepth: 4 },
    leafArb,
    fc.array(tie('value'), { maxLength: 5 }),
    fc.sparseArray(tie('value'), { maxLength: 8, maxNumElements: 3 }),
    fc.dictionary(keyArb, tie('value'), { maxKeys: 5, noNullPrototype: true }),
    fc.dictionary(keyArb, tie('value'), { maxKeys: 3, noNullPrototype: true }).map((o) => Object.assign(Object.create(null) as object, o)),
    fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 4 }).map((entries) => new Map(entries)),
    fc.array(tie('value'), { maxLength: 4 }).map((items) => new Set(items)),
    fc
      .tuple(fc.constantFrom(...ERROR_TYPES), stringArb, fc.option(tie('value'), { nil: undefined }), fc.option(stringArb, { nil: undefined }), fc.boolean())
      .map(([Ctor, message, cause, code, keepStack]) => {
        const e = cause === undefined ? new Ctor(message) : new Ctor(message, { cause })
        if (code !== undefined) Object.assign(e, { code })
        if (!keepStack) delete e.stack
        return e
      }),
    tie('value').map((inner) => new AggregateError([inner], 'many')),
  ),
}))

/** A value `put` takes: anything in the contract but a top-level undefined. */
export const contractValueArb: fc.Arbitrary<unknown> = tree.value.filter((v) => v !== undefined)

/** Where a refused thing sits inside a value: the value, and the path put must name. */
export interface Refused {
  readonly value: unknown
  readonly path: string
  readonly what: string
}

class Point {
  x = 1
}

const refusedLeafArb = fc.constantFrom<[string, () => unknown]>(
  ['a function', () => () => 1],
  ['a symbol', () => Symbol('s')],
  ['a WeakMap', () => new WeakMap()],
  ['a WeakSet', () => new WeakSet()],
  ['a Promise', () => Promise.resolve(1)],
  ['a class instance', () => new Point()],
  ['a boxed number', () => new Number(1)],
  ['a Map subclass', () => new (class Registry extends Map {})()],
  ['a lone surrogate', () => 'ab\ud800'],
  ['a SharedArrayBuffer', () => new SharedArrayBuffer(4)],
  ['a Map with an own property', () => Object.assign(new Map(), { note: 1 })],
)

const identifierArb = fc.constantFrom('a', 'b', 'items', 'x_1', '$y')

/**
 * A refused leaf at the end of a path of plain objects, arrays and Map values
 * (built outward from the leaf), with the path the refusal must name.
 */
export const refusedValueArb: fc.Arbitrary<Refused> = fc
  .tuple(refusedLeafArb, fc.array(fc.oneof(fc.tuple(fc.constant('object' as const), identifierArb), fc.tuple(fc.constant('array' as const), fc.nat(3)), fc.tuple(fc.constant('map' as const), identifierArb)), { maxLength: 5 }), contractValueArb)
  .map(([[what, make], steps, filler]) => {
    let value = make()
    let path = ''
    for (const [kind, at] of steps.reverse()) {
      if (kind === 'object') {
        value = { before: filler, [at]: value }
        path = `.${at}${path}`
      } else if (kind === 'array') {
        const a: unknown[] = Array.from({ length: at }, () => filler)
        a.push(value)
        value = a
        path = `[${at}]${path}`
      } else {
        value = new Map<unknown, unknown>([[0, filler], [at, value]])
        path = `.get(${JSON.stringify(at)})${path}`
      }
    }
    return { value, path: `$${path}`, what }
  })

/** Undefined when `a` and `b` are the same value exactly, else where and how they first differ. */
export function valueDifference(a: unknown, b: unknown, at = '$'): string | undefined {
  if (typeof a !== typeof b) return `${at}: ${typeof a} against ${typeof b}`
  if (typeof a !== 'object' || a === null || b === null) return Object.is(a, b) ? undefined : `${at}: ${String(a)} against ${String(b)}`
  const o = b as object
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(o)) return `${at}: prototypes differ (${protoName(a)} against ${protoName(o)})`
  if (a instanceof Date) return Object.is(a.getTime(), (o as Date).getTime()) ? undefined : `${at}: dates differ`
  if (a instanceof RegExp) {
    const r = o as RegExp
    return a.source === r.source && a.flags === r.flags && a.lastIndex === r.lastIndex ? undefined : `${at}: ${String(a)} (${a.lastIndex}) against ${String(r)} (${r.lastIndex})`
  }
  if (a instanceof ArrayBuffer) return sameBytes(new Uint8Array(a), new Uint8Array(o as ArrayBuffer)) ? undefined : `${at}: ArrayBuffer bytes differ`
  if (ArrayBuffer.isView(a)) {
    const v = o as ArrayBufferView
    return sameBytes(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) ? undefined : `${at}: bytes differ`
  }
  if (a instanceof Map) {
    const x = [...a]
    const y = [...(o as Map<unknown, unknown>)]
    if (x.length !== y.length) return `${at}: Map sizes ${x.length} against ${y.length}`
    for (let i = 0; i < x.length; i++) {
      const d = valueDifference(x[i]?.[0], y[i]?.[0], `${at}.keys[${i}]`) ?? valueDifference(x[i]?.[1], y[i]?.[1], `${at}.values[${i}]`)
      if (d !== undefined) return d
    }
    return undefined
  }
  if (a instanceof Set) return valueDifference([...a], [...(o as Set<unknown>)], `${at}.values`)
  if (a instanceof Error) return ownDifference(a, o, Object.getOwnPropertyNames(a), Object.getOwnPropertyNames(o), at)
  if (Array.isArray(a)) {
    const y = o as unknown[]
    if (a.length !== y.length) return `${at}: lengths ${a.length} against ${y.length}`
  }
  return ownDifference(a, o, Object.keys(a), Object.keys(o), at)
}

function ownDifference(a: object, b: object, ka: readonly string[], kb: readonly string[], at: string): string | undefined {
  if (ka.join('\u0000') !== kb.join('\u0000')) return `${at}: own keys ${JSON.stringify(ka)} against ${JSON.stringify(kb)}`
  for (const k of ka) {
    const da = Object.getOwnPropertyDescriptor(a, k) as PropertyDescriptor
    const db = Object.getOwnPropertyDescriptor(b, k) as PropertyDescriptor
    if (da.enumerable !== db.enumerable) return `${at}.${k}: enumerable ${String(da.enumerable)} against ${String(db.enumerable)}`
    const d = valueDifference(da.value, db.value, `${at}.${k}`)
    if (d !== undefined) return d
  }
  return undefined
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

function protoName(v: object): string {
  const p = Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null
  return p === null ? 'null' : (p.constructor?.name ?? '?')
}
