/**
 * db.export and db.import (issue 12 item 2), in both encodings:
 * - every value of the contract reads back exactly through the JSON form
 *   (encodeJsonValue / decodeJsonValue), including objects that look like
 *   tags and undefined inside containers;
 * - export -> import into an empty store gives every entry, equal with its
 *   type, namespace, tags and expiresAt, and nothing else; importing twice
 *   leaves the same store;
 * - the export is the store at one version: pending writes (puts over applied
 *   rows, deletes of applied rows) are in it, writes after the call are not;
 * - a truncated or damaged stream is IMPORT_INVALID naming the line (ndjson)
 *   or the byte offset (msgpack), and the store holds exactly the batches
 *   before the one the damage falls in; in ndjson a flipped digit or letter
 *   is found by the line's checksum (format 2), a line dropped, repeated or
 *   moved by the records' places (format 3), and format-1 (no checksums)
 *   and format-2 files (no places; order checked) still import;
 * - options not understood are refused; a backend of one's own without
 *   exportSnapshot is EXPORT_UNSUPPORTED (PostgreSQL: export-pg.test.ts).
 */
import fc from 'fast-check'
import t, { type Test } from 'tap'
import xxhash from 'xxhash-wasm'
import { decodeJsonValue, encodeJsonValue, MemWAL, PgBackend } from '../../engine/index.js'
import { EmptyBackend } from '../support/empty-backend.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { dropSchema, PG_URL, requirePg, testSchemaName } from '../support/pg.js'
import { all, collect, sameEntries } from '../support/export-entries.js'
import { tmpDir } from '../support/tmp-dir.js'
import { contractValueArb, valueDifference } from '../support/values.js'
import { encodeStoredJsonValue } from '../../engine/format/json-values.js'
import { createPackr, packValue } from '../../engine/format/value-codec.js'

type Format = 'ndjson' | 'msgpack'
/** The seed of an export line's xxh32 (README, "Export and import"). */
const EXPORT_SEED = 0x6d776578

t.test('the JSON form: every contract value reads back exactly, through JSON text', async (t) => {
  const look = { $date: 'not a date' }
  const named: unknown[] = [
    look, { $undefined: true }, { $object: { a: 1 } }, { $x: 1, y: 2 }, { a: undefined, b: [undefined, , 3] },
    Object.assign(Object.create(null) as object, { a: 1 }), JSON.parse('{"__proto__": {"admin": true}}'),
    Buffer.from('buf'), new Uint8Array([1, 2]), new Float64Array([-0, NaN]), new DataView(new ArrayBuffer(3)),
    Object.assign(new TypeError('bad', { cause: 1 }), { code: 'E' }), /a+/gy, -0, NaN, 2n ** 90n, new Date(NaN),
    new Map<unknown, unknown>([[{ $date: 1 }, new Set([undefined])]]),
  ]
  for (const v of named) {
    const back = decodeJsonValue(JSON.parse(JSON.stringify(encodeJsonValue(v))))
    t.equal(valueDifference(v, back), undefined, `${JSON.stringify(encodeJsonValue(v)).slice(0, 80)}`)
  }
  t.strictSame(encodeJsonValue(look), { $object: { $date: 'not a date' } }, 'an object that looks like a tag is escaped')
  fc.assert(fc.property(contractValueArb, (v) => valueDifference(v, decodeJsonValue(JSON.parse(JSON.stringify(encodeJsonValue(v))))) === undefined), { numRuns: 500 })
  t.throws(() => decodeJsonValue({ $nope: 1 }), /unknown tag/, 'an unknown tag is refused, not guessed at')
})

t.test('a value read back from the store is written as encodeJsonValue writes it, as it is when it is JSON (export: no copy)', async (t) => {
  const packr = createPackr()
  const stored = (v: unknown): unknown => packr.unpack(packValue(packr, v))
  const same = (v: unknown): boolean => JSON.stringify(encodeStoredJsonValue(v)) === JSON.stringify(encodeJsonValue(v))
  const named: unknown[] = [
    { a: 1, b: [1, 'x', null, true, { c: 2.5 }] }, { $x: 1 }, { $x: 1, y: 2 }, { a: undefined }, [undefined], [1, , 3], { a: -0 }, [NaN], { d: new Date(3) },
    JSON.parse('{"__proto__": 1}'), Object.assign(Object.create(null) as object, { a: 1 }), { m: new Map([[1, 2]]) }, 2n, 'text', 7,
  ]
  for (const v of named) t.ok(same(stored(v)), JSON.stringify(encodeJsonValue(v)).slice(0, 80))
  const plain = stored({ a: [1, { b: 'c' }] })
  t.equal(encodeStoredJsonValue(plain), plain, 'JSON as it is: the value itself, not a copy')
  fc.assert(fc.property(contractValueArb, (v) => same(stored(v))), { numRuns: 500 })
})

const entryArb = fc.record({
  namespace: fc.constantFrom('default', 'a', 'a/b', 'é'),
  key: fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k.isWellFormed()),
  value: contractValueArb,
  tags: fc.uniqueArray(fc.constantFrom('x', 'y', 'z'), { maxLength: 2 }),
  // put takes an expiresAt after the clock and at most 100 years past it.
  expiresAt: fc.option(fc.integer({ min: Date.now() + 86_400_000, max: Date.now() + 50 * 365 * 86_400_000 }), { nil: undefined }),
})

for (const format of ['ndjson', 'msgpack'] as const) {
  t.test(`${format}: export -> import into an empty store: every entry equal, with its type, tags and expiresAt; twice: the same store`, async (t) => {
    await fc.assert(
      fc.asyncProperty(fc.array(entryArb, { minLength: 1, maxLength: 12 }), fc.nat(12), async (entries, applied) => {
        const faults = new SinkFaults({ targets: ['backend'] })
        const src = await MemWAL.open({ dir: tmpDir(t), resilience: fastResilience, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s) })
        const dst = await MemWAL.open({ dir: tmpDir(t) })
        try {
          // The first `applied` in the backend, the rest pending (the backend down): the export merges both.
          for (const [i, e] of entries.entries()) {
            if (i === applied) {
              await src.flush({ timeoutMs: 10_000 })
              faults.down()
            }
            await src.put(e.key, e.value, { namespace: e.namespace, tags: e.tags, ...(e.expiresAt !== undefined ? { expiresAt: e.expiresAt } : {}) })
          }
          const want = await all(src)
          const file = await collect(src.export({ format }))
          const r = await dst.import([file], { batchOps: 5 })
          t.equal(r.entries, want.length)
          sameEntries(t, await all(dst), want, 'imported')
          await dst.import([file.subarray(0, 7), file.subarray(7)], { batchOps: 3 })
          sameEntries(t, await all(dst), want, 'imported twice (chunks split anywhere)')
        } finally {
          faults.up()
          await src.close()
          await dst.close()
        }
      }),
      { numRuns: 12 },
    )
  })
}

/** A stream without its header record (the first line, or the first frame): what is left is the entries and the end. */
function afterHeader(file: Buffer, format: Format): Buffer {
  return file.subarray(format === 'ndjson' ? file.indexOf(0x0a) + 1 : 8 + file.readUInt32BE(0))
}

/** Entries whose labels and values need escaping, or are none of JSON's (tagged, or written decoded). */
const rowEntryArb = fc.record({
  namespace: fc.constantFrom('default', 'a/b', 'é', 'q"\\\t', '😀', 'n'.repeat(40)),
  key: fc.oneof(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 6 }), fc.constantFrom('k"1', 'back\\slash', '\u0001\n', 'k'.repeat(220), 'k'.repeat(300))).filter((k) => k.isWellFormed()),
  value: fc.oneof(contractValueArb, fc.jsonValue()),
  tags: fc.uniqueArray(fc.constantFrom('x', 'y"', 'é', '\u0007'), { maxLength: 3 }),
  expiresAt: fc.option(fc.integer({ min: Date.now() + 86_400_000, max: Date.now() + 50 * 365 * 86_400_000 }), { nil: undefined }),
})

for (const format of ['ndjson', 'msgpack'] as const) {
  t.test(`${format}: an entry written from its row's bytes is the entry written decoded, byte for byte (a store applied against the same store pending)`, async (t) => {
    const packr = createPackr()
    await fc.assert(
      fc.asyncProperty(fc.array(rowEntryArb, { minLength: 1, maxLength: 10 }), async (entries) => {
        const files: Buffer[] = []
        for (const pending of [false, true]) {
          const faults = new SinkFaults({ targets: ['backend'] })
          const db = await MemWAL.open({ dir: tmpDir(t), resilience: fastResilience, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s) })
          try {
            if (pending) faults.down() // every entry pending: written from its values (decoded), none from a row
            for (const e of entries) await db.put(e.key, e.value, { namespace: e.namespace, tags: e.tags, ...(e.expiresAt !== undefined ? { expiresAt: e.expiresAt } : {}) })
            if (!pending) await db.flush({ timeoutMs: 10_000 }) // every entry a row
            files.push(afterHeader(await collect(db.export({ format })), format))
          } finally {
            faults.up()
            await db.close()
          }
        }
        const [rows, decoded] = files as [Buffer, Buffer]
        if (!rows.equals(decoded)) throw new Error(`from rows:\n${rows.toString(format === 'ndjson' ? 'utf8' : 'hex')}\ndecoded:\n${decoded.toString(format === 'ndjson' ? 'utf8' : 'hex')}`)
        if (format === 'msgpack') checkFramesArePackedMaps(rows, packr)
      }),
      { numRuns: 15 },
    )
    t.pass('the same bytes')
  })
}

/**
 * msgpack: each entry frame's payload is the map msgpackr packs of
 * `{ namespace, key, tags, expiresAt?, n, value }` (README: the value
 * last), the value's bytes being the value codec's.
 */
function checkFramesArePackedMaps(frames: Buffer, packr: ReturnType<typeof createPackr>): void {
  for (let at = 0; at < frames.length; ) {
    const payload = frames.subarray(at + 8, at + 8 + frames.readUInt32BE(at))
    at += 8 + payload.length
    const r = packr.unpack(payload) as Record<string, unknown>
    if (r['memwal'] === 'end') continue
    const { namespace, key, tags, expiresAt, n, value } = r
    const map = Buffer.from(packr.pack(expiresAt === undefined ? { namespace, key, tags, n, value: null } : { namespace, key, tags, expiresAt, n, value: null }))
    const want = Buffer.concat([map.subarray(0, -1), packValue(packr, value)])
    if (!payload.equals(want)) throw new Error(`frame ${String(n)}: ${payload.toString('hex')} against ${want.toString('hex')}`)
  }
}

t.test('the export is one version: pending puts and deletes over applied rows are in it; writes after the call are not', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const db = await MemWAL.open({ dir: tmpDir(t), resilience: fastResilience, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s) })
  t.teardown(() => db.close())
  for (let i = 0; i < 6; i++) await db.put(`k${i}`, `applied ${i}`, { namespace: 'n' })
  await db.flush({ timeoutMs: 10_000 })
  faults.down()
  await db.put('k1', 'pending over applied', { namespace: 'n' })
  await db.delete('k2', { namespace: 'n' })
  const { lsn } = await db.put('k9', 'pending new', { namespace: 'n' })
  await db.put('other', 1, { namespace: 'm' })
  const stream = db.export({ namespace: 'n' })
  // After the call, before the first read: none of these is in the export.
  await db.put('k0', 'after', { namespace: 'n' })
  await db.delete('k3', { namespace: 'n' })
  await db.put('k5b', 'after', { namespace: 'n' })
  faults.up()
  await db.flush({ timeoutMs: 10_000 })
  const lines = (await collect(stream)).toString('utf8').trimEnd().split('\n').map((l) => JSON.parse(unsealed(l)) as Record<string, unknown>)
  t.strictSame(lines[0], { memwal: 'export', format: 3, encoding: 'ndjson', version: lsn + 1, namespace: 'n', n: 0 }, 'the header: the version it is of, in its place')
  t.strictSame(lines.slice(1, -1).map((l) => [l['key'], l['value']]), [
    ['k0', 'applied 0'], ['k1', 'pending over applied'], ['k3', 'applied 3'], ['k4', 'applied 4'], ['k5', 'applied 5'], ['k9', 'pending new'],
  ])
  t.strictSame(lines.slice(1, -1).map((l) => l['n']), [1, 2, 3, 4, 5, 6], 'each entry in its place')
  t.strictSame(lines.at(-1), { memwal: 'end', entries: 6, n: 7 })
})

/** An ndjson line without its checksum field (as format 1 wrote it); fails the test's parse if it had none. */
function unsealed(line: string): string {
  const m = /^(.*),"xxh32":"[0-9a-f]{8}"\}$/.exec(line)
  if (m === null) throw new Error(`no checksum at the end of ${line.slice(0, 80)}`)
  return `${m[1] as string}}`
}

/** A line without its place in the stream (`,"n":I` before the checksum, or last), as formats 1 and 2 wrote it. */
function unplaced(line: string): string {
  const m = /^(.*),"n":\d+\}$/.exec(line)
  if (m === null) throw new Error(`no place at the end of ${line.slice(0, 80)}`)
  return `${m[1] as string}}`
}

/** An ndjson export as format 1 wrote it: the header's format 1, no places, no checksums. */
function formatOne(lines: readonly string[]): string[] {
  return lines.map((l, i) => (l === '' ? l : i === 0 ? unplaced(unsealed(l)).replace('"format":3', '"format":1') : unplaced(unsealed(l))))
}

/** An ndjson export as format 2 wrote it: the header's format 2, no places, each line's checksum over what is left. */
function formatTwo(lines: readonly string[], h32: (b: Uint8Array, seed: number) => number): string[] {
  const seal = (open: string): string => `${open},"xxh32":"${h32(Buffer.from(open), EXPORT_SEED).toString(16).padStart(8, '0')}"}`
  return formatOne(lines).map((l, i) => (l === '' ? l : seal((i === 0 ? l.replace('"format":1', '"format":2') : l).slice(0, -1))))
}

/** A store of `n` entries k00..k(n-1) in namespace `s`, and its export. */
async function exported(t: Test, n: number, format: Format): Promise<Buffer> {
  const db = await MemWAL.open({ dir: tmpDir(t) })
  try {
    for (let i = 0; i < n; i++) await db.put(`k${String(i).padStart(2, '0')}`, { i, when: new Date(i) }, { namespace: 's', tags: ['t'] })
    return await collect(db.export({ format }))
  } finally {
    await db.close()
  }
}

/** Imports `file` into a fresh store with batches of 10; the error and the keys the store holds after. */
async function importBroken(t: Test, file: Buffer): Promise<{ err: { code?: string; message?: string; details?: Record<string, unknown> }; keys: string[] }> {
  const db = await MemWAL.open({ dir: tmpDir(t) })
  try {
    const err = await db.import([file], { batchOps: 10 }).then(
      () => ({}),
      (e: unknown) => e as { code?: string },
    )
    return { err, keys: (await all(db)).map((e) => e.key) }
  } finally {
    await db.close()
  }
}

const keysUpTo = (n: number): string[] => Array.from({ length: n }, (_, i) => `k${String(i).padStart(2, '0')}`)

t.test('ndjson: truncated or damaged -> IMPORT_INVALID naming the line; the store holds exactly the batches before it', async (t) => {
  const file = await exported(t, 25, 'ndjson')
  const lines = file.toString('utf8').split('\n') // line 1 the header, line i+2 entry i, line 27 the end, then ''
  t.equal(lines.length, 28)
  const cut = Buffer.from(lines.slice(0, 17).join('\n') + '\n' + (lines[17] as string).slice(0, 10))
  let r = await importBroken(t, cut)
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 18, entriesWritten: 10 } }, 'cut inside line 18 (entry 16, batch 2)')
  t.match(r.err.message, /line 18: not JSON.*10 entries of the 1 batches before it are written/)
  t.strictSame(r.keys, keysUpTo(10), 'batch 1 written, nothing of batch 2')

  r = await importBroken(t, Buffer.from(lines.slice(0, 24).join('\n') + '\n'))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 25, entriesWritten: 20 } }, 'cut at a line end: no end record')
  t.match(r.err.message, /truncated/)
  t.strictSame(r.keys, keysUpTo(20), 'two whole batches; entries 21-23 (the third batch, incomplete) are not written')

  // The field checks, on the unchecked format-1 form (in format 2 the checksum finds these first).
  const old = formatOne(lines)
  const damaged = [...old]
  damaged[13] = (damaged[13] as string).replace('"key"', '"kee"')
  r = await importBroken(t, Buffer.from(damaged.join('\n')))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 14, entriesWritten: 10 } }, 'an unknown field')
  damaged[13] = old[13] as string
  damaged[5] = (damaged[5] as string).replace('"$date"', '"$dote"')
  r = await importBroken(t, Buffer.from(damaged.join('\n')))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 6, entriesWritten: 0 } }, 'an unknown tag in a value')
  t.strictSame(r.keys, [], 'nothing of the first batch')
  damaged[5] = old[5] as string
  damaged[20] = (damaged[20] as string).replace('"namespace":"s"', '"namespace":"s//x"')
  r = await importBroken(t, Buffer.from(damaged.join('\n')))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 21, entriesWritten: 10 } }, 'a namespace put refuses')
  t.match(r.err.message, /ENGINE_INVALID_VALUE/)
  damaged[20] = old[20] as string
  damaged[26] = '{"memwal":"end","entries":24}'
  r = await importBroken(t, Buffer.from(damaged.join('\n')))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 27 } }, 'an end record that miscounts')
  t.strictSame(r.keys, keysUpTo(20))
  r = await importBroken(t, Buffer.from('{"hello":1}\n'))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 1 } }, 'not an export')
})

t.test('ndjson format 2: a changed digit or letter in a value is refused by the line\'s checksum, naming its line; a removed line by the count; format 1 still imports', async (t) => {
  const file = await exported(t, 25, 'ndjson')
  const lines = file.toString('utf8').split('\n') // line 1 the header, line i+2 entry i, line 27 the end, then ''
  t.match(lines[0], /^\{"memwal":"export","format":3,.*,"n":0,"xxh32":"[0-9a-f]{8}"\}$/, 'format 3: the header carries its place and its checksum')
  const edit = (i: number, from: string, to: string): Buffer => {
    const d = [...lines]
    t.ok((d[i] as string).includes(from), `line ${i + 1} holds ${from}`)
    d[i] = (d[i] as string).replace(from, to)
    return Buffer.from(d.join('\n'))
  }
  // Entry 13 (line 15, in the second batch of 10): {"i":13,...}; a digit changed, still valid JSON and a valid value.
  let r = await importBroken(t, edit(14, '"i":13', '"i":14'))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 15, entriesWritten: 10 } }, 'a flipped digit in a value')
  t.match(r.err.message, /line 15: a line whose checksum does not match/)
  t.strictSame(r.keys, keysUpTo(10), 'the batch before it written, nothing of its batch')
  r = await importBroken(t, edit(14, '"when"', '"whan"'))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 15, entriesWritten: 10 } }, 'a flipped letter in a value')
  t.strictSame(r.keys, keysUpTo(10))
  // Entry 3 (line 5, first batch): a letter in its key, in its tag.
  r = await importBroken(t, edit(4, '"k03"', '"k0e"'))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 5, entriesWritten: 0 } }, 'a flipped letter in a key')
  t.strictSame(r.keys, [], 'nothing of the first batch')
  r = await importBroken(t, edit(4, '"tags":["t"]', '"tags":["u"]'))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 5 } }, 'a flipped letter in a tag')
  r = await importBroken(t, edit(0, '"version":', '"version":1'))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 1 } }, 'a changed header')
  r = await importBroken(t, edit(14, /,"xxh32":"[0-9a-f]{8}"\}$/.exec(lines[14] as string)?.[0] as string, '}'))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 15 } }, 'a line whose checksum was taken off')
  t.match(r.err.message, /without its checksum/)

  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => db.close())
  const old = formatOne(lines)
  t.match(old[0], /"format":1/)
  t.notMatch(old[1], /xxh32/)
  const ok = await db.import([old.join('\n')], { batchOps: 10 })
  t.match(ok, { entries: 25, batches: 3 }, 'a format-1 file (no checksums) imports, unchecked')
  t.strictSame((await all(db)).map((e) => e.key), keysUpTo(25))
  t.strictSame(await db.get('k13', { namespace: 's' }), { i: 13, when: new Date(13) })
})

t.test('format 3: a line dropped, repeated or moved is IMPORT_INVALID naming the line where it shows; the batches before it are written', async (t) => {
  const file = await exported(t, 25, 'ndjson')
  const lines = file.toString('utf8').split('\n') // line 1 the header, line i+2 entry i (its place i+1), line 27 the end, then ''
  const moved = (f: (d: string[]) => void): Buffer => {
    const d = [...lines]
    f(d)
    return Buffer.from(d.join('\n'))
  }
  // Entry 13 (line 15) dropped: line 15 then holds entry 14, record 15 where 14 was due.
  let r = await importBroken(t, moved((d) => d.splice(14, 1)))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 15, entriesWritten: 10 } }, 'a dropped line, named where the gap is')
  t.match(r.err.message, /line 15: record 15 of the export where record 14 was due: the record before it missing \(a line dropped/)
  t.strictSame(r.keys, keysUpTo(10), 'the batch before it written, nothing of its batch')
  r = await importBroken(t, moved((d) => d.splice(14, 3)))
  t.match(r.err.message, /line 15: record 17 of the export where record 14 was due: 3 records before it missing/, 'three dropped lines')
  // Entry 13 repeated right after itself: line 16 is record 14 again.
  r = await importBroken(t, moved((d) => d.splice(15, 0, d[14] as string)))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 16, entriesWritten: 10 } }, 'a repeated line')
  t.match(r.err.message, /line 16: record 14 of the export again where record 15 was due \(a line repeated/)
  t.strictSame(r.keys, keysUpTo(10))
  // Entries 3 and 6 swapped (lines 5 and 8): found at line 5, in the first batch.
  r = await importBroken(t, moved((d) => ([d[4], d[7]] = [d[7] as string, d[4] as string])))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 5, entriesWritten: 0 } }, 'two lines swapped')
  t.strictSame(r.keys, [], 'nothing of the first batch')
  // The header moved below the first entry; the end moved before the last entry.
  r = await importBroken(t, moved((d) => ([d[0], d[1]] = [d[1] as string, d[0] as string])))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 1 } }, 'the header not first')
  r = await importBroken(t, moved((d) => ([d[25], d[26]] = [d[26] as string, d[25] as string])))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 26, entriesWritten: 20 } }, 'the end record before the last entry')
  t.match(r.err.message, /record 26 of the export where record 25 was due/)
})

t.test('format 2 (no places) still imports; a line repeated or moved is refused by the identity order, a dropped one by the count', async (t) => {
  const file = await exported(t, 25, 'ndjson')
  const { h32Raw } = await xxhash()
  const lines = formatTwo(file.toString('utf8').split('\n'), h32Raw)
  t.match(lines[0], /^\{"memwal":"export","format":2,.*"version":\d+,"xxh32":"[0-9a-f]{8}"\}$/)
  t.notMatch(lines[1], /"n":/)
  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => db.close())
  t.match(await db.import([lines.join('\n')], { batchOps: 10 }), { entries: 25, batches: 3 }, 'a format-2 file imports')
  t.strictSame((await all(db)).map((e) => e.key), keysUpTo(25))
  const moved = (f: (d: string[]) => void): Buffer => {
    const d = [...lines]
    f(d)
    return Buffer.from(d.join('\n'))
  }
  let r = await importBroken(t, moved((d) => ([d[4], d[7]] = [d[7] as string, d[4] as string])))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 6, entriesWritten: 0 } }, 'two lines swapped (k03 and k06): found where the order breaks (k04 after k06)')
  t.match(r.err.message, /line 6: the entry "k04" in namespace "s" after "k06" in "s"/)
  r = await importBroken(t, moved((d) => d.splice(15, 0, d[14] as string)))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 16, entriesWritten: 10 } }, 'a repeated line')
  t.match(r.err.message, /line 16: the entry "k13" in namespace "s" again/)
  r = await importBroken(t, moved((d) => d.splice(9, 1)))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { line: 26 } }, 'a dropped line: the end record miscounts')
  t.match(r.err.message, /counts 25 entries, the stream holds 24/)
  t.strictSame(r.keys, keysUpTo(20).filter((k) => k !== 'k08').concat('k20'), 'the whole batches before the end')
})

t.test('msgpack: truncated or damaged -> IMPORT_INVALID naming the byte offset; the store holds exactly the batches before it', async (t) => {
  const file = await exported(t, 25, 'msgpack')
  // The frames' offsets: [u32 length][u32 checksum][payload].
  const offsets: number[] = []
  for (let at = 0; at < file.length; at += 8 + file.readUInt32BE(at)) offsets.push(at)
  t.equal(offsets.length, 27, 'header, 25 entries, end')
  const entryAt = (i: number): number => offsets[i + 1] as number
  let r = await importBroken(t, file.subarray(0, entryAt(15) + 12))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { offset: entryAt(15), entriesWritten: 10 } }, 'cut inside entry 15')
  t.match(r.err.message, new RegExp(`byte offset ${entryAt(15)}: .*truncated`))
  t.strictSame(r.keys, keysUpTo(10))
  r = await importBroken(t, file.subarray(0, entryAt(23)))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { offset: entryAt(23), entriesWritten: 20 } }, 'cut at a frame end: no end record')
  t.strictSame(r.keys, keysUpTo(20))
  const flipped = Buffer.from(file)
  const at = entryAt(12) + 8 + 5
  flipped[at] = (flipped[at] as number) ^ 0x01
  r = await importBroken(t, flipped)
  t.match(r.err, { code: 'IMPORT_INVALID', details: { offset: entryAt(12), entriesWritten: 10 } }, 'a flipped bit: the checksum')
  t.match(r.err.message, /checksum/)
  t.strictSame(r.keys, keysUpTo(10))
  const frames = offsets.map((o, i) => file.subarray(o, offsets[i + 1] ?? file.length))
  const swapped = [...frames]
  ;[swapped[13], swapped[14]] = [swapped[14] as Buffer, swapped[13] as Buffer]
  r = await importBroken(t, Buffer.concat(swapped))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { offset: entryAt(12), entriesWritten: 10 } }, 'two frames swapped: found at the first, by its place')
  t.match(r.err.message, /record 14 of the export where record 13 was due/)
  r = await importBroken(t, Buffer.concat([...frames.slice(0, 14), ...frames.slice(15)]))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { offset: entryAt(13), entriesWritten: 10 } }, 'a frame dropped')
  r = await importBroken(t, Buffer.concat([...frames.slice(0, 14), frames[13] as Buffer, ...frames.slice(14)]))
  t.match(r.err, { code: 'IMPORT_INVALID', details: { offset: entryAt(13), entriesWritten: 10 } }, 'a frame repeated')
  t.match(r.err.message, /record 13 of the export again/)
})

t.test('refusals: options not understood, a closed engine', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.throws(() => db.export({ format: 'csv' as never }), { code: 'INVALID_OPTIONS', details: { field: 'format' } })
  t.throws(() => db.export({ nope: 1 } as never), { code: 'INVALID_OPTIONS', details: { field: 'nope' } })
  t.throws(() => db.export({ namespace: '' }), { code: 'ENGINE_INVALID_VALUE' })
  await t.rejects(db.import([], { batchOps: 0 }), { code: 'INVALID_OPTIONS', details: { field: 'batchOps' } })
  await t.rejects(db.import([], { onProgress: 1 } as never), { code: 'INVALID_OPTIONS', details: { field: 'onProgress' } })
  await t.rejects(db.import([]), { code: 'IMPORT_INVALID' }, 'an empty source has no header')
  await db.close()
  t.throws(() => db.export(), { code: 'ENGINE_CLOSED' })
})

t.test('close() ends an export in progress: its next read is ENGINE_CLOSED', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t) })
  for (let b = 0; b < 3; b++) await db.batch(Array.from({ length: 1000 }, (_, i) => ({ type: 'put' as const, key: `k${b}-${i}`, value: i })))
  await db.flush({ timeoutMs: 10_000 })
  let read = 0
  // Closed once the header and the first chunk of entries (a step of 1,000 rows, level-snapshot.ts) are out, of 3,000.
  const err = await (async () => {
    for await (const _ of db.export()) if (++read === 2) await db.close()
  })().then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'ENGINE_CLOSED' }, `rejected after ${read} chunks`)
})

t.test('an entry whose expiresAt has passed when it is imported is not written (counted as expired); an expiresAt put refuses is IMPORT_INVALID', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => db.close())
  const later = Date.now() + 3_600_000
  const lines = [
    { memwal: 'export', format: 1, encoding: 'ndjson', version: 3 },
    { namespace: 'n', key: 'gone', value: 1, tags: [], expiresAt: 1000 },
    { namespace: 'n', key: 'kept', value: 2, tags: [], expiresAt: later },
    { namespace: 'n', key: 'plain', value: 3, tags: [] },
    { memwal: 'end', entries: 3 },
  ]
  const r = await db.import([lines.map((l) => JSON.stringify(l)).join('\n') + '\n'])
  t.match(r, { entries: 2, expired: 1, batches: 1, exportVersion: 3 })
  t.strictSame((await all(db)).map((e) => [e.key, e.expiresAt]), [['kept', later], ['plain', undefined]])
  lines[1] = { namespace: 'n', key: 'far', value: 1, tags: [], expiresAt: Date.now() + 200 * 365 * 86_400_000 }
  await t.rejects(db.import([lines.map((l) => JSON.stringify(l)).join('\n')]), { code: 'IMPORT_INVALID', details: { line: 2 }, message: /INVALID_OPTIONS/ })
})

t.test('progress: after each batch, with the entries and bytes so far', async (t) => {
  const file = await exported(t, 25, 'ndjson')
  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => db.close())
  const seen: [number, number][] = []
  const r = await db.import([file], { batchOps: 10, onProgress: (p) => seen.push([p.entries, p.batches]) })
  t.strictSame(seen, [[10, 1], [20, 2], [25, 3]])
  t.match(r, { entries: 25, batches: 3 })
})

t.test('a backend of one\'s own without exportSnapshot: export is refused (EXPORT_UNSUPPORTED)', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t), backend: new EmptyBackend() })
  t.teardown(() => db.close())
  t.throws(() => db.export(), { code: 'EXPORT_UNSUPPORTED' })
})

t.test('PostgreSQL backend: import works (export: export-pg.test.ts)', async (t) => {
  if (!(await requirePg(t))) return
  const schema = testSchemaName('export')
  t.teardown(() => dropSchema(schema))
  const db = await MemWAL.open({ dir: tmpDir(t), backend: new PgBackend({ connectionString: PG_URL, writerId: 'export', schema }) })
  t.teardown(() => db.close())
  const r = await db.import([await exported(t, 3, 'msgpack')])
  t.match(r, { entries: 3 })
  await db.flush({ timeoutMs: 10_000 })
  t.strictSame((await all(db)).map((e) => e.key), keysUpTo(3))
})
