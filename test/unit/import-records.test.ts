/**
 * Import's records, at their limits and however the source is cut:
 * - PutRecordSizer gives exactly the bytes RecordCodec.encode makes of a put
 *   record and of a batch record (what put checks against recordBytesMax),
 *   across msgpack's header sizes;
 * - export -> import is a round trip for an entry at put's maximum size
 *   (a string, and an array of undefined, whose JSON form is the longest per
 *   byte), in both formats: alone in its record, between small entries
 *   batched as usual; a store whose recordBytesMax is one byte less refuses
 *   it, IMPORT_INVALID naming it (the limit is put's, exactly);
 * - a stream fed 1 byte at a time, or by a source that hands one buffer again
 *   with the next bytes (a read loop into a scratch buffer), imports every
 *   entry equal (the reader copies what outlives a chunk).
 * How long a large record takes cut into small chunks (linear now) is measured
 * in the commit that made it so, not asserted here.
 */
import t, { type Test } from 'tap'
import { MemWAL, type MemwalOptions } from '../../engine/index.js'
import { RecordType } from '../../engine/format/format.js'
import { HLC_SIZING, PutRecordSizer, RecordCodec, type PutOp } from '../../engine/format/record-codec.js'
import { createPackr, packValue } from '../../engine/format/value-codec.js'
import { all, collect, sameEntries } from '../support/export-entries.js'
import { tmpDir } from '../support/tmp-dir.js'

const FORMATS = ['ndjson', 'msgpack'] as const

t.test('PutRecordSizer: the bytes encode makes of a put record and of batch records, exactly', async (t) => {
  const codec = new RecordCodec()
  const packr = createPackr()
  const sizer = new PutRecordSizer(packr)
  // Lengths on both sides of msgpack's header sizes (fixstr 31, str8 255, str16 65535; bin8 255, bin16 65535).
  const values = [0, 1, 28, 29, 250, 253, 254, 65530, 65533, 65534, 70_000].map((n) => 'v'.repeat(n))
  const keys = ['k', 'x'.repeat(31), 'x'.repeat(32), 'é'.repeat(128), 'y'.repeat(300)]
  for (const value of [...values, { a: [1, 2n, new Date(0)] }, new Uint8Array(300)]) {
    for (const key of keys) {
      for (const labels of [{}, { tags: ['a', 't'.repeat(40)] }, { expiresAt: 1_700_000_000_000 }, { tags: [], expiresAt: 5 }]) {
        const op: PutOp = { type: 'put', key, value, namespace: 'n/s', ...labels }
        const opBytes = sizer.opBytes(op, packValue(packr, value).length)
        const put = codec.encode({ type: RecordType.PUT, op, hlc: HLC_SIZING }).length
        if (sizer.putBytes(opBytes) !== put) t.fail(`put record of ${JSON.stringify(key).slice(0, 20)}: sized ${sizer.putBytes(opBytes)}, encoded ${put}`)
        for (const n of [1, 13, 14, 20]) {
          const batch = codec.encode({ type: RecordType.BATCH, ops: Array<PutOp>(n).fill(op), hlc: HLC_SIZING }).length
          if (sizer.batchBytes(n, n * opBytes) !== batch) t.fail(`batch of ${n}: sized ${sizer.batchBytes(n, n * opBytes)}, encoded ${batch}`)
        }
      }
    }
  }
  t.pass('every size as encoded')
})

/** A record larger than recordBytesMax: WAL_RECORD_TOO_LARGE with its bytes in details. */
async function tooLarge(db: MemWAL, key: string, value: unknown): Promise<number | undefined> {
  try {
    await db.put(key, value, { tags: ['big'] })
    return undefined
  } catch (err) {
    const e = err as { code?: string; details?: { bytes?: number } }
    if (e.code !== 'WAL_RECORD_TOO_LARGE') throw err
    return e.details?.bytes
  }
}

/**
 * The largest `make(n)` put takes in `db`: from the bytes of a refused one
 * (a record grows by `perUnit` bytes per unit here, away from any header
 * size), checked both ways: n is taken, n + 1 refused.
 */
async function putMaximum(t: Test, db: MemWAL, key: string, make: (n: number) => unknown, perUnit: number, recordBytesMax: number): Promise<number> {
  const tryN = Math.floor(recordBytesMax / perUnit)
  const over = await tooLarge(db, key, make(tryN))
  t.ok(over !== undefined && over > recordBytesMax, `${key}: ${tryN} units are too large (${over} bytes)`)
  const n = tryN - Math.ceil(((over as number) - recordBytesMax) / perUnit)
  t.not(await tooLarge(db, key, make(n + 1)), undefined, `${key}: ${n + 1} units refused by put`)
  t.equal(await tooLarge(db, key, make(n)), undefined, `${key}: ${n} units taken by put: its maximum`)
  return n
}

t.test('export -> import at put\'s maximum size, both formats: every entry equal; one byte less of recordBytesMax refuses it, naming it', async (t) => {
  const recordBytesMax = 256 * 1024
  const options: Omit<MemwalOptions, 'dir'> = { recordBytesMax }
  const src = await MemWAL.open({ dir: tmpDir(t), ...options })
  t.teardown(() => src.close())
  await src.put('a', 'small', { tags: ['s'] })
  const chars = await putMaximum(t, src, 'big', (n) => 'x'.repeat(n), 1, recordBytesMax)
  // An array of undefined: `{"$undefined":true},` per 3 bytes, the JSON form's longest per byte.
  const undefs = await putMaximum(t, src, 'undefs', (n) => new Array<undefined>(n).fill(undefined), 3, recordBytesMax)
  for (let i = 0; i < 20; i++) await src.put(`z${String(i).padStart(2, '0')}`, { i })
  const want = await all(src)
  t.equal(want.length, 23)
  t.equal((want.find((e) => e.key === 'big')?.value as string).length, chars)
  t.equal((want.find((e) => e.key === 'undefs')?.value as unknown[]).length, undefs)
  for (const format of FORMATS) {
    const file = await collect(src.export({ format }))
    const dst = await MemWAL.open({ dir: tmpDir(t), ...options })
    try {
      const r = await dst.import([file])
      t.equal(r.entries, want.length, `${format}: every entry imported`)
      // `a` alone (the big entry after it does not fit beside it), each maximal one alone, the 20 small ones together.
      t.equal(r.batches, 4, `${format}: records written`)
      sameEntries(t, await all(dst), want, `${format}: imported`)
    } finally {
      await dst.close()
    }
    const smaller = await MemWAL.open({ dir: tmpDir(t), recordBytesMax: recordBytesMax - 1 })
    try {
      await t.rejects(smaller.import([file]), { code: 'IMPORT_INVALID', message: new RegExp(`more than recordBytesMax ${recordBytesMax - 1} \\(put refuses it too\\)`), details: { entriesWritten: 0 } }, `${format}: one byte less: refused`)
    } finally {
      await smaller.close()
    }
  }
})

t.test('a stream cut into 1-byte chunks, or read into one reused buffer: every entry equal, both formats', async (t) => {
  const src = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => src.close())
  // Values that msgpack gives back as views of the bytes they came in (Buffer, Uint8Array), and strings.
  for (let i = 0; i < 50; i++) await src.put(`k${String(i).padStart(3, '0')}`, { b: Buffer.alloc(100, i), u: new Uint8Array(50).fill(i), s: 'x'.repeat(i * 40) }, { tags: [`t${i % 3}`] })
  const want = await all(src)
  for (const format of FORMATS) {
    const file = await collect(src.export({ format }))
    const sources: [string, () => Iterable<Uint8Array> | AsyncIterable<Uint8Array>][] = [
      ['1-byte chunks', function* () {
        for (let at = 0; at < file.length; at++) yield file.subarray(at, at + 1)
      }],
      ['one 512-byte buffer read into again', async function* () {
        const scratch = Buffer.alloc(512)
        for (let at = 0; at < file.length; at += scratch.length) {
          const n = file.copy(scratch, 0, at, at + scratch.length)
          yield scratch.subarray(0, n)
          scratch.fill(0xee) // what a reader does with it next: the bytes handed over change
        }
      }],
    ]
    for (const [what, source] of sources) {
      const dst = await MemWAL.open({ dir: tmpDir(t) })
      try {
        const r = await dst.import(source(), { batchOps: 1000 })
        t.equal(r.entries, want.length, `${format}, ${what}: every entry`)
        sameEntries(t, await all(dst), want, `${format}, ${what}`)
      } finally {
        await dst.close()
      }
    }
  }
})
