/**
 * RecordCodec (engine/wal/record-codec.ts): what a record's payload holds.
 * A record reads back exactly as written, or is refused when written; a
 * malformed payload is a typed error (WAL_INVALID_RECORD); a hostile payload
 * never pollutes Object.prototype nor yields objects with a changed prototype.
 */
import t from 'tap'
import fc from 'fast-check'
import { isDeepStrictEqual } from 'node:util'
import { Packr } from 'msgpackr'
import { HLC_SIZING, opsOf, packedValueOf, RecordCodec, type Op, type PutOp, type WalRecord } from '../../engine/format/record-codec.js'
import { createPackr, packValue } from '../../engine/format/value-codec.js'
import { RecordType } from '../../engine/format/format.js'
import { MemwalError } from '../../engine/errors.js'

/** FUZZ_SCALE=10 runs ten times as many cases. */
const runs = (n: number): number => Math.max(1, Math.round(n * Number(process.env.FUZZ_SCALE ?? 1)))

/** Encodes any msgpack structure, including maps with keys a JavaScript object literal cannot hold (as a Map). */
const rawPackr = new Packr({ useRecords: false, useToJSON: false, moreTypes: false })
const pack = (v: unknown): Buffer => Buffer.from(rawPackr.encode(v))

function copyEncode(codec: RecordCodec, r: WalRecord): Buffer {
  // encode() returns a view into msgpackr's shared buffer: copy before the next encode.
  return Buffer.from(codec.encode(r))
}

// ---- arbitraries ----

/** Any well-formed string: all of Unicode, astral planes included. */
const textArb = fc.string({ unit: 'binary', maxLength: 24 })
/** Object keys, with the ones that name Object.prototype members (but not __proto__, see its own test). */
const objectKeyArb = fc.oneof(
  { arbitrary: textArb, weight: 4 },
  fc.constantFrom('constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__proto_', '__defineGetter__', 'length', ''),
)
const { value: valueArb } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
    fc.double(),
    textArb,
    fc.array(tie('value'), { maxLength: 6 }),
    fc.dictionary(objectKeyArb, tie('value'), { maxKeys: 6, noNullPrototype: true }),
  ),
}))

const putArb = fc.record(
  { type: fc.constant('put' as const), key: textArb, value: valueArb, namespace: textArb, tags: fc.array(textArb, { maxLength: 5 }) },
  { requiredKeys: ['type', 'key', 'value'], noNullPrototype: true },
)
const delArb = fc.record({ type: fc.constant('del' as const), key: textArb }, { noNullPrototype: true })
/** A hybrid logical clock timestamp (ms * 1000 + counter), or none: records written before it existed have none. */
const hlcArb = fc.option(fc.oneof(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 1_700_000_000_000_000, max: 2_000_000_000_000_000 })), { nil: undefined })
const withHlc = (hlc: number | undefined): { hlc?: number } => (hlc === undefined ? {} : { hlc })
const recordArb: fc.Arbitrary<WalRecord> = fc.oneof(
  fc.tuple(putArb, hlcArb).map(([op, hlc]) => ({ type: RecordType.PUT, op, ...withHlc(hlc) })),
  fc.tuple(delArb, hlcArb).map(([op, hlc]) => ({ type: RecordType.DELETE, op, ...withHlc(hlc) })),
  fc.tuple(fc.array(fc.oneof(putArb, delArb) as fc.Arbitrary<Op>, { maxLength: 20 }), hlcArb).map(([ops, hlc]) => ({ type: RecordType.BATCH, ops, ...withHlc(hlc) })),
)

/**
 * Every value comes back identical, -0 included (value-codec.ts tags it:
 * msgpack has no -0); an operation written without a namespace comes back
 * in `default` (record version 2: every operation names its namespace).
 */
function expected(r: WalRecord): WalRecord {
  const ns = (op: Op): Op => ({ ...op, namespace: op.namespace ?? 'default' })
  return r.type === RecordType.BATCH ? { ...r, ops: r.ops.map(ns) } : ({ ...r, op: ns(r.op) } as WalRecord)
}

// ---- round trips ----

t.test('PUT, DELETE and BATCH records read back exactly as written', async (t) => {
  const codec = new RecordCodec()
  const seen = { 1: 0, 2: 0, 3: 0 }
  fc.assert(
    fc.property(recordArb, (r) => {
      const payload = copyEncode(codec, r)
      const back = codec.decode(r.type, payload)
      seen[r.type]++
      if (!isDeepStrictEqual(back, expected(r))) throw new Error(`read back ${JSON.stringify(back)}`)
      return true
    }),
    { numRuns: runs(1500) },
  )
  t.ok(seen[1] > 0 && seen[2] > 0 && seen[3] > 0, `records of every type: ${JSON.stringify(seen)}`)
})

t.test('a payload decoded by a fresh codec (a new process) reads the same', async (t) => {
  fc.assert(
    fc.property(fc.array(recordArb, { minLength: 1, maxLength: 5 }), (records) => {
      const writer = new RecordCodec()
      const payloads = records.map((r) => copyEncode(writer, r))
      const reader = new RecordCodec()
      return payloads.every((p, i) => isDeepStrictEqual(reader.decode(records[i]!.type, p), expected(records[i]!)))
    }),
    { numRuns: runs(300) },
  )
  t.pass('no state shared between encoder and decoder')
})

t.test('restamp: a payload sized with HLC_SIZING and restamped is byte for byte the record encoded with its stamp, or is refused (encode again)', async (t) => {
  const codec = new RecordCodec()
  let patched = 0
  let refused = 0
  fc.assert(
    fc.property(recordArb, fc.oneof(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 0xffffffff })), (r, hlc) => {
      const sized = copyEncode(codec, { ...r, hlc: HLC_SIZING })
      const stamped = copyEncode(codec, { ...r, hlc })
      if (stamped.length > sized.length) throw new Error(`stamped ${stamped.length} bytes, sized ${sized.length}: the stand-in stamp must bound the payload`)
      if (!codec.restamp(sized, hlc)) {
        refused++
        if (hlc > 0xffffffff) throw new Error(`restamp refused hlc ${hlc}, which a float64 holds`)
        return true
      }
      patched++
      if (!sized.equals(stamped)) throw new Error(`restamped ${sized.toString('hex')} != encoded ${stamped.toString('hex')}`)
      return isDeepStrictEqual(codec.decode(r.type, sized), expected({ ...r, hlc }))
    }),
    { numRuns: runs(1500) },
  )
  t.ok(patched > 0 && refused > 0, `both cases seen: ${patched} restamped in place, ${refused} left to encode again`)
  const batch = { type: RecordType.BATCH, ops: Array.from({ length: 70_000 }, (_, i): Op => ({ type: 'del', key: `k${i}` })) } as const
  const big = copyEncode(codec, { ...batch, hlc: HLC_SIZING })
  t.equal(big[0], 0xdd, 'an array of more than 65535 elements (array 32 header)')
  t.ok(codec.restamp(big, 1_800_000_000_000_123) && big.equals(copyEncode(codec, { ...batch, hlc: 1_800_000_000_000_123 })), 'restamped after an array 32 header')
})

t.test('a value with an own __proto__ key (as JSON.parse makes) reads back exactly, or is refused when written', async (t) => {
  const codec = new RecordCodec()
  const cases: unknown[] = [
    JSON.parse('{"__proto__": {"x": 1}}'),
    JSON.parse('{"__proto__": 1, "__proto_": 2}'), // msgpackr renames the first to the second: one would be lost
    [JSON.parse('{"a": {"__proto__": null}}')],
  ]
  for (const value of cases) {
    const r: WalRecord = { type: RecordType.PUT, op: { type: 'put', key: 'k', value } }
    let payload: Buffer
    try {
      payload = copyEncode(codec, r)
    } catch (err) {
      t.equal((err as MemwalError).code, 'WAL_INVALID_RECORD', 'refused with a typed error')
      continue
    }
    t.same(Object.keys((codec.decode(RecordType.PUT, payload) as { op: { value: object } }).op.value), Object.keys(value as object), 'the same keys come back')
    t.ok(isDeepStrictEqual(codec.decode(RecordType.PUT, payload), expected(r)), `${JSON.stringify(value)} reads back as written`)
  }
})

t.test('a string that is not well-formed UTF-16 (a lone surrogate) reads back exactly, or is refused when written', async (t) => {
  const codec = new RecordCodec()
  const cut = '😀'.slice(0, 1) // a string cut in the middle of a surrogate pair
  const records: WalRecord[] = [
    { type: RecordType.PUT, op: { type: 'put', key: `key${cut}`, value: 1 } },
    { type: RecordType.DELETE, op: { type: 'del', key: `\udc00${cut}` } },
    { type: RecordType.PUT, op: { type: 'put', key: 'k', value: { text: `summary${cut}` } } },
    { type: RecordType.PUT, op: { type: 'put', key: 'k', value: { [`k${cut}`]: 1 } } },
    { type: RecordType.PUT, op: { type: 'put', key: 'k', value: 1, namespace: cut, tags: [cut] } },
    { type: RecordType.BATCH, ops: [{ type: 'put', key: 'ok', value: 1 }, { type: 'del', key: cut }] },
  ]
  for (const r of records) {
    let payload: Buffer
    try {
      payload = copyEncode(codec, r)
    } catch (err) {
      t.ok(refusalCodeFits(err), 'refused with a typed error: WAL_INVALID_RECORD for a label, ENGINE_INVALID_VALUE for a value')
      continue
    }
    t.ok(isDeepStrictEqual(codec.decode(r.type, payload), expected(r)), `${JSON.stringify(r)} reads back as written`)
  }
})

t.test('whatever encode accepts reads back exactly; anything else is refused with WAL_INVALID_RECORD (a label) or ENGINE_INVALID_VALUE (a value)', async (t) => {
  const codec = new RecordCodec()
  const cut = fc.constantFrom('\ud83d', '\udc00', 'a\ud800b')
  const looseText = fc.oneof({ arbitrary: textArb, weight: 6 }, cut)
  const looseKey = fc.oneof({ arbitrary: objectKeyArb, weight: 6 }, fc.constant('__proto__'), cut)
  const { loose } = fc.letrec((tie) => ({
    loose: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constant(null), fc.boolean(), fc.integer(), fc.double(), looseText,
      fc.array(tie('loose'), { maxLength: 5 }),
      fc.dictionary(looseKey, tie('loose'), { maxKeys: 5, noNullPrototype: true }),
    ),
  }))
  const notString = fc.oneof(fc.integer(), fc.constant(null), fc.constant(undefined), fc.array(textArb, { maxLength: 1 }))
  const keyish = fc.oneof({ arbitrary: looseText, weight: 8 }, notString)
  const putish = fc.record({ type: fc.constant('put' as const), key: keyish, value: loose, namespace: fc.oneof({ arbitrary: looseText, weight: 8 }, fc.integer()), tags: fc.oneof({ arbitrary: fc.array(keyish, { maxLength: 3 }), weight: 8 }, looseText) }, { requiredKeys: ['type', 'key', 'value'], noNullPrototype: true })
  const delish = fc.record({ type: fc.constant('del' as const), key: keyish }, { noNullPrototype: true })
  // A timestamp of any kind, as a caller of Wal.appendRecord (no type checks at run time) might pass.
  const hlcish = fc.option(fc.oneof({ arbitrary: fc.nat(), weight: 6 }, fc.double(), fc.constant('123'), fc.constant(null), fc.constant([1])), { nil: undefined })
  const stamp = (hlc: unknown): { hlc?: unknown } => (hlc === undefined ? {} : { hlc })
  const recordish = fc.oneof(
    fc.tuple(putish, hlcish).map(([op, hlc]) => ({ type: RecordType.PUT, op, ...stamp(hlc) })),
    fc.tuple(delish, hlcish).map(([op, hlc]) => ({ type: RecordType.DELETE, op, ...stamp(hlc) })),
    fc.tuple(fc.array(fc.oneof(putish, delish), { maxLength: 6 }), hlcish).map(([ops, hlc]) => ({ type: RecordType.BATCH, ops, ...stamp(hlc) })),
  ) as unknown as fc.Arbitrary<WalRecord>
  const outcomes = { exact: 0, refused: 0 }
  fc.assert(
    fc.property(recordish, (r) => {
      let payload: Buffer
      try {
        payload = copyEncode(codec, r)
      } catch (err) {
        if (!refusalCodeFits(err)) throw new Error(`encode threw ${String(err)}`, { cause: err })
        outcomes.refused++
        return true
      }
      const back = codec.decode(r.type, payload)
      if (!isDeepStrictEqual(back, expected(r))) throw new Error(`accepted, but read back ${JSON.stringify(back)}`)
      outcomes.exact++
      return true
    }),
    { numRuns: runs(3000) },
  )
  t.ok(outcomes.exact > 0 && outcomes.refused > 0, `outcomes ${JSON.stringify(outcomes)}`)
})

t.test('a circular value is refused with ENGINE_INVALID_VALUE naming where it comes back', async (t) => {
  const codec = new RecordCodec()
  const value: Record<string, unknown> = { a: 1 }
  value.self = { again: [value] }
  t.throws(() => codec.encode({ type: RecordType.PUT, op: { type: 'put', key: 'k', value } }), { code: 'ENGINE_INVALID_VALUE', details: { path: '$.self.again[0]' } })
  const shared = { s: 1 }
  const dag = { x: shared, y: [shared, shared] } // shared, not circular: fine
  t.ok(isDeepStrictEqual(codec.decode(RecordType.PUT, copyEncode(codec, { type: RecordType.PUT, op: { type: 'put', key: 'k', value: dag } })), { type: RecordType.PUT, op: { type: 'put', key: 'k', value: dag, namespace: 'default' } }))
})

// ---- malformed payloads ----

function checkDecode(codec: RecordCodec, type: RecordType, payload: Uint8Array): 'record' | 'refused' {
  let r: WalRecord
  try {
    r = codec.decode(type, payload)
  } catch (err) {
    if (err instanceof MemwalError && err.code === 'WAL_INVALID_RECORD') return 'refused'
    throw new Error(`decode threw something other than WAL_INVALID_RECORD: ${String(err)}`, { cause: err })
  }
  // Whatever is accepted has the shape the rest of the engine relies on.
  const ops: readonly Op[] = r.type === RecordType.BATCH ? r.ops : [r.op]
  const ok = r.type === type && Array.isArray(ops) && ops.every((op) =>
    typeof op.key === 'string' && (op.type === 'del' || (op.type === 'put' &&
      (op.namespace === undefined || typeof op.namespace === 'string') &&
      (op.tags === undefined || (Array.isArray(op.tags) && op.tags.every((x: unknown) => typeof x === 'string'))))))
  if (!ok || (type !== RecordType.BATCH && ops[0]?.type !== (type === RecordType.PUT ? 'put' : 'del'))) throw new Error(`accepted a malformed record ${JSON.stringify(r)}`)
  return 'record'
}

const typeArb = fc.constantFrom(RecordType.PUT, RecordType.DELETE, RecordType.BATCH)

t.test('decoding arbitrary bytes gives a well-formed record or WAL_INVALID_RECORD, nothing else', async (t) => {
  const codec = new RecordCodec()
  const outcomes = { record: 0, refused: 0 }
  fc.assert(
    fc.property(typeArb, fc.uint8Array({ maxLength: 200 }), (type, bytes) => {
      outcomes[checkDecode(codec, type, bytes)]++
      return true
    }),
    { numRuns: runs(5000) },
  )
  t.ok(outcomes.refused > 0, `outcomes ${JSON.stringify(outcomes)}`)
})

t.test('decoding msgpack of the wrong shape gives a well-formed record or WAL_INVALID_RECORD', async (t) => {
  const codec = new RecordCodec()
  const anyArb = fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.double(), textArb, fc.uint8Array({ maxLength: 4 }), fc.constant(undefined))
  // Near misses: arrays of the right length with wrong types in any position.
  const nearPut = fc.tuple(fc.oneof(textArb, anyArb), valueArb, fc.oneof(textArb, anyArb), fc.oneof(fc.array(textArb), fc.array(anyArb), anyArb))
  const nearEntry = fc.oneof(fc.tuple(fc.constantFrom(1, 2, 0, 3, '1', null), nearPut).map(([kind, p]) => [kind, ...p]), fc.tuple(fc.constantFrom(1, 2, 7, -1), fc.oneof(textArb, anyArb)), anyArb)
  const shapeArb = fc.oneof(nearPut, fc.array(nearEntry, { maxLength: 5 }), fc.array(anyArb, { maxLength: 5 }), anyArb, valueArb)
  const outcomes = { record: 0, refused: 0 }
  fc.assert(
    fc.property(typeArb, shapeArb, (type, wire) => {
      outcomes[checkDecode(codec, type, pack(wire))]++
      return true
    }),
    { numRuns: runs(3000) },
  )
  t.ok(outcomes.record > 0 && outcomes.refused > 0, `outcomes ${JSON.stringify(outcomes)}`)
})

t.test('each kind of malformed payload is refused with WAL_INVALID_RECORD', async (t) => {
  const codec = new RecordCodec()
  const valid = copyEncode(codec, { type: RecordType.PUT, op: { type: 'put', key: 'k', value: { a: 1 } } })
  const cases: [string, RecordType, Uint8Array][] = [
    ['empty payload', RecordType.PUT, new Uint8Array(0)],
    ['truncated msgpack', RecordType.PUT, valid.subarray(0, valid.length - 1)],
    ['trailing bytes after the record', RecordType.PUT, Buffer.concat([valid, Buffer.from([0xc0])])],
    ['reserved msgpack byte 0xc1', RecordType.PUT, Buffer.from([0xc1])],
    ['not an array', RecordType.PUT, pack({ key: 'k' })],
    ['key not a string', RecordType.PUT, pack([1, 'v', null, null])],
    ['key missing', RecordType.DELETE, pack([])],
    ['namespace not a string', RecordType.PUT, pack(['k', 'v', 5, null])],
    ['tags not strings', RecordType.PUT, pack(['k', 'v', null, ['a', 1]])],
    ['tags not an array', RecordType.PUT, pack(['k', 'v', null, 'a'])],
    ['batch entry not an array', RecordType.BATCH, pack([[1, 'k', 'v', null, null], 'x'])],
    ['batch entry of unknown type', RecordType.BATCH, pack([[9, 'k']])],
    ['batch delete without a key', RecordType.BATCH, pack([[2]])],
    ['an array claiming 2^32-1 elements', RecordType.BATCH, Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x90])],
    ['a string claiming 4 GiB', RecordType.DELETE, Buffer.from([0x91, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x61])],
    ['a map claiming 2^32-1 entries', RecordType.PUT, Buffer.from([0x94, 0xa1, 0x6b, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0])],
    ['nesting 200,000 levels deep', RecordType.PUT, Buffer.alloc(200_000, 0x91)],
    ['a pointer extension with nothing to point at', RecordType.PUT, Buffer.from([0x94, 0xa1, 0x6b, 0xd6, 0x70, 0, 0, 0, 9, 0xc0, 0xc0])],
  ]
  for (const [what, type, payload] of cases) {
    t.throws(() => codec.decode(type, payload), { code: 'WAL_INVALID_RECORD' }, what)
  }
})

// ---- prototype pollution ----

function prototypeSnapshot(): string {
  return [Object.prototype, Array.prototype, Function.prototype, String.prototype]
    .map((p) => Object.getOwnPropertyNames(p).sort().join(',')).join('|')
}

/** Every object in `v` that came from a msgpack map has Object.prototype; arrays have Array.prototype. */
function plainThroughout(v: unknown, seen = new Set<unknown>()): boolean {
  if (typeof v !== 'object' || v === null || seen.has(v)) return true
  seen.add(v)
  if (Array.isArray(v)) return Object.getPrototypeOf(v) === Array.prototype && v.every((x) => plainThroughout(x, seen))
  if (Buffer.isBuffer(v)) return true
  return Object.getPrototypeOf(v) === Object.prototype && Object.values(v).every((x) => plainThroughout(x, seen))
}

const before = prototypeSnapshot()
function notPolluted(): boolean {
  const probe = {} as Record<string, unknown>
  return prototypeSnapshot() === before && probe.polluted === undefined && Object.prototype.constructor === Object &&
    typeof Object.prototype.toString === 'function' && Object.getPrototypeOf(probe) === Object.prototype
}

/** A msgpack map with exactly these keys, in order: a Map encodes keys an object literal cannot hold. */
const map = (entries: [unknown, unknown][]): Map<unknown, unknown> => new Map(entries)
const poison = (): Map<unknown, unknown> => map([['polluted', true], ['toString', 'gotcha']])

t.test('__proto__ and constructor map keys in a payload neither pollute Object.prototype nor change a prototype', async (t) => {
  const codec = new RecordCodec()
  const hostileValues: [string, unknown][] = [
    ['__proto__ key', map([['__proto__', poison()]])],
    ['constructor.prototype keys', map([['constructor', map([['prototype', poison()]])]])],
    ['__proto__ nested in arrays and maps', [1, map([['a', [map([['__proto__', poison()]])]]])]],
    ['__proto__ twice, then __proto_', map([['__proto__', poison()], ['__proto__', 1], ['__proto_', 2]])],
    ['__proto__ holding an array', map([['__proto__', [1, 2]]])],
  ]
  for (const [what, value] of hostileValues) {
    for (const [type, wire] of [
      [RecordType.PUT, ['k', value, null, null]],
      [RecordType.BATCH, [[1, 'k', value, 'ns', ['t']], [2, 'k']]],
    ] as const) {
      const r = codec.decode(type, pack(wire))
      const decoded = r.type === RecordType.PUT ? r.op.value : r.type === RecordType.BATCH && r.ops[0]?.type === 'put' ? r.ops[0].value : undefined
      t.ok(notPolluted(), `${what} (${type}): Object.prototype untouched`)
      t.ok(plainThroughout(decoded), `${what} (${type}): every decoded object keeps its prototype`)
      t.notOk(Object.hasOwn(decoded as object, 'polluted') || (decoded as { polluted?: unknown }).polluted !== undefined, `${what}: the value did not inherit the poison`)
    }
  }
  // The records extension is decoded even with useRecords off: its key names must be as harmless.
  const withRecords = new Packr({ useRecords: true })
  const rec = codec.decode(RecordType.PUT, Buffer.from(withRecords.encode(['k', [JSON.parse('{"__proto__": {"polluted": true}, "a": 1}'), JSON.parse('{"__proto__": {"polluted": true}, "a": 2}')], null, null])))
  t.ok(notPolluted() && plainThroughout(rec.type === RecordType.PUT ? rec.op.value : undefined), 'records extension: no pollution, plain objects')
  // The error extension looks its constructor up by name: names of Object.prototype members must do no harm.
  for (const name of ['__proto__', 'constructor', 'valueOf', 'toString', 'hasOwnProperty', '__defineGetter__', '__defineSetter__', 'polluted']) {
    const payload = Buffer.concat([Buffer.from([0x94, 0xa1, 0x6b, 0xd4, 0x65, 0x00]), pack([name, 'message', poison()]), Buffer.from([0xc0, 0xc0])])
    try {
      codec.decode(RecordType.PUT, payload)
    } catch (err) {
      t.equal((err as MemwalError).code, 'WAL_INVALID_RECORD', `error extension named ${name}: typed refusal`)
    }
    t.ok(notPolluted(), `error extension named ${name}: Object.prototype untouched`)
  }
})

t.test('random payloads full of prototype keys never pollute', async (t) => {
  const codec = new RecordCodec()
  const key = fc.constantFrom('__proto__', 'constructor', 'prototype', 'polluted', 'toString', '__proto_', 'a')
  const { tree } = fc.letrec((tie) => ({
    tree: fc.oneof(
      { depthSize: 'small' },
      fc.constant(true),
      fc.integer(),
      textArb,
      fc.array(tie('tree'), { maxLength: 4 }),
      fc.array(fc.tuple(key, tie('tree')), { maxLength: 4 }).map((entries) => map(entries)),
    ),
  }))
  fc.assert(
    fc.property(typeArb, tree, textArb, (type, value, k) => {
      const wire = type === RecordType.BATCH ? [[1, k, value, null, null]] : [k, value, null, null]
      const outcome = checkDecode(codec, type, pack(wire))
      if (outcome === 'record') {
        const r = codec.decode(type, pack(wire))
        const v = r.type === RecordType.PUT ? r.op.value : r.type === RecordType.BATCH && r.ops[0]?.type === 'put' ? r.ops[0].value : undefined
        if (!plainThroughout(v)) throw new Error('a decoded object has another prototype')
      }
      return notPolluted()
    }),
    { numRuns: runs(2000) },
  )
  t.ok(notPolluted(), 'Object.prototype untouched after every run')
})

/** A refused label (key, namespace, tag, hlc) is WAL_INVALID_RECORD; a refused value is ENGINE_INVALID_VALUE with its path. */
function refusalCodeFits(err: unknown): boolean {
  if (!(err instanceof MemwalError)) return false
  if (err.code === 'ENGINE_INVALID_VALUE') return typeof err.details['path'] === 'string' && err.message.includes(err.details['path'])
  return err.code === 'WAL_INVALID_RECORD' && !err.message.startsWith('value at')
}

// ---- version 3: values as logged ----

t.test('decodeForApply: a put carries its value as the bytes packValue makes of it (a view of the payload), and otherwise reads as decode gives it', async (t) => {
  const codec = new RecordCodec()
  const packr = createPackr()
  let puts = 0
  fc.assert(
    fc.property(recordArb, (r) => {
      const payload = copyEncode(codec, r)
      const applied = codec.decodeForApply(r.type, payload)
      const ops = opsOf(applied)
      for (const [i, op] of ops.entries()) {
        if (op.type !== 'put') continue
        puts++
        const written = opsOf(r)[i] as PutOp
        if (!(op.packed instanceof Uint8Array) || !Buffer.from(op.packed).equals(packValue(packr, written.value))) throw new Error(`packed is not the value's bytes: ${JSON.stringify(op)}`)
        if (op.packed.buffer !== payload.buffer) throw new Error('packed is a copy, not a view of the payload')
        const copy = codec.copyPut(op)
        if ('packed' in copy) throw new Error('a reader\'s copy carries the shared bytes')
        if (!isDeepStrictEqual(copy, opsOf(codec.decode(r.type, payload))[i])) throw new Error('copyPut differs from decode')
      }
      // `packed` aside, the record is the one decode gives.
      const plain = (o: Op): Op => (o.type === 'put' ? (({ packed: _p, ...rest }) => rest)(o) : o)
      const back = applied.type === RecordType.BATCH ? { ...applied, ops: applied.ops.map(plain) } : { ...applied, op: plain(applied.op) }
      if (!isDeepStrictEqual(back, expected(r))) throw new Error(`read back ${JSON.stringify(back)}`)
      return true
    }),
    { numRuns: runs(800) },
  )
  t.ok(puts > 0, `${puts} puts checked`)
})

t.test('records of version 2 (value inline, written before version 3) decode as they were written, with no packed bytes', async (t) => {
  const codec = new RecordCodec()
  const v2put = pack([2, 1_800_000_000_000_000, 'ns', 'k', { a: [1, 'x'] }, ['t'], 42])
  const want = { type: RecordType.PUT, hlc: 1_800_000_000_000_000, op: { type: 'put', namespace: 'ns', key: 'k', value: { a: [1, 'x'] }, tags: ['t'], expiresAt: 42 } }
  t.same(codec.decode(RecordType.PUT, v2put), want)
  const applied = codec.decodeForApply(RecordType.PUT, v2put)
  t.same(applied, want, 'decodeForApply reads version 2 the same')
  t.equal((opsOf(applied)[0] as PutOp).packed, undefined, 'no bytes as logged: a sink packs the value itself (packedValueOf)')
  t.same(Buffer.from(packedValueOf(createPackr(), opsOf(applied)[0] as PutOp)), Buffer.from(packValue(createPackr(), { a: [1, 'x'] })))
  const v2batch = pack([2, null, [1, 'ns', 'a', 'va', null, null], [2, 'ns', 'b']])
  t.same(codec.decode(RecordType.BATCH, v2batch), { type: RecordType.BATCH, ops: [{ type: 'put', namespace: 'ns', key: 'a', value: 'va' }, { type: 'del', namespace: 'ns', key: 'b' }] })
  t.equal(codec.encode({ type: RecordType.PUT, op: { type: 'put', key: 'k', value: 1 } })[1], 3, 'what is written now is version 3')
})

t.test('a version-3 put whose value is not bytes, or bytes that are not msgpack, is WAL_INVALID_RECORD, from decode and from decodeForApply', async (t) => {
  const codec = new RecordCodec()
  const notBytes = pack([3, null, 'ns', 'k', 'inline', null, null])
  const notMsgpack = pack([3, null, 'ns', 'k', Buffer.from([0x01, 0x02]), null, null])
  const truncated = pack([3, null, 'ns', 'k', Buffer.from([0x92, 0x01]), null, null])
  const code = (fn: () => unknown): string | undefined => {
    try {
      fn()
      return undefined
    } catch (err) {
      return (err as MemwalError).code
    }
  }
  t.equal(code(() => codec.decode(RecordType.PUT, notBytes)), 'WAL_INVALID_RECORD', 'value not bytes: decode')
  t.equal(code(() => codec.decodeForApply(RecordType.PUT, notBytes)), 'WAL_INVALID_RECORD', 'value not bytes: decodeForApply')
  const unknownTag = pack([3, null, 'ns', 'k', Buffer.from([0xd4, 0x6d, 0x00, 0x91, 0x09]), null, null])
  for (const [what, payload] of [['trailing bytes', notMsgpack], ['truncated', truncated], ['a memwal tag of no kind', unknownTag]] as const) {
    t.equal(code(() => codec.decode(RecordType.PUT, payload)), 'WAL_INVALID_RECORD', `${what}: decode`)
    t.equal(code(() => codec.decodeForApply(RecordType.PUT, payload)), 'WAL_INVALID_RECORD', `${what}: decodeForApply`)
  }
})
