/**
 * What an export reads of a stored row without decoding it:
 * - msgpackEnd finds where every value of the contract ends, and says -1 for
 *   each of its bytes cut short (rowBounds, backend-row.test.ts, cuts a row
 *   into its fields with it);
 * - MsgpackJson writes a stored value's JSON straight from its bytes, byte
 *   for byte what JSON.stringify(encodeStoredJsonValue(decoded)) writes, or
 *   declines; it declines nothing of plain JSON data (so an export of such
 *   values takes it), within MSGPACK_JSON_EXPANSION times the bytes, and
 *   declines bytes whose decoding would not be that JSON (a key twice,
 *   bytes not UTF-8, a byte order mark msgpackr drops);
 * - putMsgpackString and putMsgpackUint write what packr.pack writes.
 */
import fc from 'fast-check'
import t from 'tap'
import { encodeStoredJsonValue } from '../../engine/format/json-values.js'
import { JSON_DEPTH_MAX, JSON_MAP_KEYS_MAX, MSGPACK_JSON_EXPANSION, MsgpackJson } from '../../engine/format/msgpack-json.js'
import { msgpackEnd } from '../../engine/format/msgpack-scan.js'
import { putMsgpackString, putMsgpackUint } from '../../engine/format/msgpack-write.js'
import { createPackr, packValue } from '../../engine/format/value-codec.js'
import { contractValueArb } from '../support/values.js'

const runs = (n: number): number => Math.max(1, Math.round(n * Number(process.env.FUZZ_SCALE ?? 1)))
const packr = createPackr()
const bytesOf = (v: unknown): Buffer => Buffer.from(packValue(packr, v))

/** The JSON MsgpackJson writes of `bytes` (inside a larger buffer, at an offset), or undefined when it declines. */
function fromBytes(bytes: Uint8Array): string | undefined {
  const src = Buffer.concat([Buffer.from([0xc3, 0xc3]), bytes, Buffer.from([0xc0])]) // not at 0, not alone
  const out = Buffer.alloc(MSGPACK_JSON_EXPANSION * bytes.length + 8, 0xff)
  const end = new MsgpackJson().write(src, 2, 2 + bytes.length, out, 3)
  return end < 0 ? undefined : out.subarray(3, end).toString('utf8')
}

/** A test's name for `v`: its JSON in ASCII (TAP reads some other characters as line ends), cut short. */
const label = (v: unknown): string => JSON.stringify(v).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).slice(0, 60)

/** What an export wrote of the value before (and writes when MsgpackJson declines). */
const decodedJson = (bytes: Uint8Array): string => JSON.stringify(encodeStoredJsonValue(packr.unpack(bytes)))

t.test('msgpackEnd: where each contract value ends, and -1 for every prefix of it', async (t) => {
  fc.assert(
    fc.property(contractValueArb, (v) => {
      const bytes = bytesOf(v)
      const trailed = Buffer.concat([Buffer.from([0x93]), bytes, bytes]) // in an array, then another
      if (msgpackEnd(bytes, 0) !== bytes.length || msgpackEnd(trailed, 1) !== 1 + bytes.length || msgpackEnd(trailed, 0) !== -1) return false
      for (let cut = 0; cut < bytes.length; cut++) if (msgpackEnd(bytes.subarray(0, cut), 0) !== -1) throw new Error(`a prefix of ${cut} bytes of ${bytes.toString('hex')} ends`)
      return true
    }),
    { numRuns: runs(500) },
  )
  t.equal(msgpackEnd(Uint8Array.of(0xc1), 0), -1, 'the never-used type is no element')
  t.equal(msgpackEnd(Uint8Array.of(0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0), 0), -1, 'a map counting more elements than there are bytes')
})

t.test('MsgpackJson writes what JSON.stringify writes of the value decoded, or declines', async (t) => {
  let taken = 0
  fc.assert(
    fc.property(contractValueArb, (v) => {
      const bytes = bytesOf(v)
      const json = fromBytes(bytes)
      if (json === undefined) return true
      taken++
      if (Buffer.byteLength(json) > MSGPACK_JSON_EXPANSION * bytes.length) throw new Error(`${bytes.length} bytes became ${Buffer.byteLength(json)}`)
      if (json !== decodedJson(bytes)) throw new Error(`${bytes.toString('hex')}: ${json} against ${decodedJson(bytes)}`)
      return true
    }),
    { numRuns: runs(2000) },
  )
  t.ok(taken > 0, `some contract values are taken (${taken})`)
  const named: unknown[] = [
    'plain', '', 'quote " backslash \\ slash / del \u007f', '\u2028\u2029 é 😀 \uffff', Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join(''),
    0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, -129, -32769, 2 ** 31, 2 ** 32 - 1, 2 ** 32, -(2 ** 31) - 1, 2 ** 53, 1e21, 1e-7, 0.1, 5e-324, -1.5, Number.MAX_VALUE,
    99_999_999, 1e8, 1e8 + 1, 1e16 + 2, 2 ** 53 - 1, -(2 ** 53 - 1), 1_764_547_200_123, -1_000_000_007,
    { a: 1, b: { c: [true, false, null] }, 'key "quoted"': 'x', 'é': 'ü', $a: 1 }, { '-1': 1, ' 1': 2, a1: 3 }, [[[]]], {}, [],
    { k: 'x'.repeat(40), l: 'y'.repeat(300), m: 'z'.repeat(70_000) }, Object.fromEntries(Array.from({ length: JSON_MAP_KEYS_MAX }, (_, i) => [`k${i}`, i])),
  ]
  for (const v of named) {
    const bytes = bytesOf(v)
    t.equal(fromBytes(bytes), decodedJson(bytes), `${label(v)}: the same, and taken`)
  }
})

t.test('MsgpackJson declines what the decoder would not make that JSON of, and what needs a tag', async (t) => {
  const deep = (n: number): unknown => (n === 0 ? 1 : [deep(n - 1)])
  const declined: [string, unknown][] = [
    ['-0', -0], ['NaN', NaN], ['Infinity', Infinity], ['a BigInt', 2n ** 64n], ['a Date', new Date(0)], ['undefined inside', [undefined]], ['bytes', new Uint8Array(2)],
    ['an object whose only key starts with $', { $date: 1 }], ['a key that may be an index', { b: 1, 1: 2 }], ['__proto__', JSON.parse('{"__proto__": 1}')],
    ['a Map', new Map([[1, 2]])], ['more keys than JSON_MAP_KEYS_MAX', Object.fromEntries(Array.from({ length: JSON_MAP_KEYS_MAX + 1 }, (_, i) => [`k${i}`, i]))],
    ['deeper than JSON_DEPTH_MAX', deep(JSON_DEPTH_MAX + 1)], ['a byte order mark first', '\ufeffx'],
  ]
  for (const [what, v] of declined) {
    const bytes = bytesOf(v)
    t.equal(fromBytes(bytes), undefined, `${what}: declined`)
  }
  const crafted: [string, number[]][] = [
    ['a key twice', [0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02]],
    ['a lone continuation byte', [0xa1, 0x80]], ['an overlong form', [0xa2, 0xc0, 0x80]], ['a surrogate', [0xa3, 0xed, 0xa0, 0x80]],
    ['beyond U+10FFFF', [0xa4, 0xf4, 0x90, 0x80, 0x80]], ['a sequence cut short', [0xa2, 0xe2, 0x82]], ['float 32', [0xca, 0x3f, 0x80, 0, 0]],
    ['uint 64', [0xcf, 0, 0, 0, 0, 0, 0, 0, 1]], ['an element cut short', [0x92, 0x01]], ['two elements', [0x01, 0x02]], ['the never-used type', [0xc1]],
  ]
  for (const [what, bytes] of crafted) t.equal(fromBytes(Uint8Array.from(bytes)), undefined, `${what}: declined`)
})

/** Plain JSON data an export takes from its bytes: every one is (so it is the common path, not a rare one). */
const jsonKeyArb = fc.string({ maxLength: 8 }).filter((k) => !/^[0-9$]/.test(k) && k !== '__proto__')
const jsonStringArb = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 20 })).filter((s) => s.isWellFormed() && !s.startsWith('\ufeff'))
const jsonArb = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 5 },
    fc.constantFrom(null, true, false),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Object.is(d, -0)),
    jsonStringArb,
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(jsonKeyArb, tie('value'), { maxKeys: 6, noNullPrototype: true }),
  ),
}))

t.test('MsgpackJson takes all of plain JSON data: objects (of keys that are no index, nor tag-like alone), arrays, strings, finite numbers', async (t) => {
  fc.assert(
    fc.property(jsonArb.value, (v) => {
      const bytes = bytesOf(v)
      const json = fromBytes(bytes)
      if (json !== decodedJson(bytes)) throw new Error(`${JSON.stringify(v)}: ${String(json)} against ${decodedJson(bytes)}`)
      return true
    }),
    { numRuns: runs(2000) },
  )
  t.pass('every one taken, and the same')
})

t.test('putMsgpackString and putMsgpackUint write what packr.pack writes, at every header size', async (t) => {
  const buf = Buffer.alloc(4 * 70_000 + 16)
  const written = (write: (at: number) => number): Buffer => buf.subarray(3, write(3))
  const strings = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('x'.repeat(31), 'x'.repeat(32), 'é'.repeat(15), 'é'.repeat(16), 'y'.repeat(255), 'y'.repeat(256), 'z'.repeat(65_535), 'z'.repeat(65_536)))
  fc.assert(
    fc.property(strings.filter((s) => s.isWellFormed()), fc.string({ maxLength: 3 }), (s, pad) => {
      const inId = `${pad}${s}${pad}` // a range inside a longer string, as an identity's namespace or key
      const got = written((at) => putMsgpackString(buf, at, inId, pad.length, pad.length + s.length))
      return got.equals(Buffer.from(packr.pack(s)))
    }),
    { numRuns: runs(1000) },
  )
  const uints = fc.oneof(fc.nat(300), fc.integer({ min: 0, max: 2 ** 32 + 5 }), fc.constantFrom(0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER))
  fc.assert(fc.property(uints, (v) => written((at) => putMsgpackUint(buf, at, v)).equals(Buffer.from(packr.pack(v)))), { numRuns: runs(1000) })
  t.pass('the same bytes')
})
