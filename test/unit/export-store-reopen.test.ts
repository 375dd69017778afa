/**
 * An export while the store's LevelDB is reopened (level-store.ts reopens it
 * after a failed write): the reopen closes the snapshot iterator the export
 * reads (level-snapshot.ts). An export is the store as of one version,
 * streamed: once it has emitted entries it cannot start again from the top,
 * and a new snapshot would hold writes after its version (and lack entries
 * deleted since), so it cannot resume either. It fails with
 * EXPORT_INTERRUPTED saying so, and what it emitted has no end record, so an
 * import refuses it as truncated. Here a real store's write is made to fail
 * and the reopen it brings is run to its end at one point of the export:
 * - after the header and the first chunk of entries were read (ndjson and
 *   msgpack; the store holds more than the two steps of rows an export may
 *   have read by then: the one out and the one read ahead);
 * - after export() was called, before anything was read (the snapshot is
 *   taken by the call).
 * Without a reopen the same reads give a whole export. The engine goes on
 * after: a new export holds every entry, the one written by the failed
 * write included.
 */
import path from 'node:path'
import t, { type Test } from 'tap'
import { isMemwalError, MemWAL } from '../../engine/index.js'
import { failAndReopen, liveLevelStore } from '../support/store-reopen.js'
import { tmpDir } from '../support/tmp-dir.js'

type Format = 'ndjson' | 'msgpack'
/** Three steps of rows and a half (SNAPSHOT_STEP_ROWS, 1,000, level-snapshot.ts): a reopen after the first finds rows left to read. */
const ENTRIES = 3500
const value = (i: number): { i: number; pad: string } => ({ i, pad: `v${i}-`.repeat(60) })

async function liveStore(t: Test): Promise<MemWAL> {
  const db = await MemWAL.open({ dir: path.join(tmpDir(t), 'data'), segmentBytes: 64 * 1024 })
  t.teardown(() => db.close().catch(() => {}))
  for (let i = 0; i < ENTRIES; i += 100) {
    await db.batch(Array.from({ length: Math.min(100, ENTRIES - i) }, (_, j) => ({ type: 'put' as const, key: `k${String(i + j).padStart(4, '0')}`, value: value(i + j) })))
  }
  await db.flush({ timeoutMs: 20_000 }) // every entry in the store's rows: the export reads them through its snapshot
  return db
}

/** Reads `stream` to its end, calling `during` once `after` chunks were read; what it emitted and how it ended. */
async function read(stream: AsyncIterable<Buffer>, after: number, during: () => Promise<void>): Promise<{ chunks: Buffer[]; error?: unknown }> {
  const chunks: Buffer[] = []
  const it = stream[Symbol.asyncIterator]()
  try {
    for (;;) {
      if (chunks.length === after) await during()
      const r = await it.next()
      if (r.done === true) return { chunks }
      chunks.push(r.value)
    }
  } catch (error) {
    return { chunks, error }
  }
}

/** How many entries an export's chunks write into an empty store (an import refuses a stream that is not whole). */
async function imported(t: Test, chunks: readonly Buffer[]): Promise<number> {
  const target = await MemWAL.open({ dir: tmpDir(t) })
  try {
    return (await target.import(chunks)).entries
  } finally {
    await target.close()
  }
}

for (const format of ['ndjson', 'msgpack'] as const satisfies readonly Format[]) {
  t.test(`${format}: an export without a reopen reads whole (the baseline of the cases below)`, async (t) => {
    const db = await liveStore(t)
    const stream = db.export({ format })
    const { chunks, error } = await read(stream, 2, async () => {})
    t.equal(error, undefined, 'no error')
    t.equal(stream.entries, ENTRIES, 'every entry out')
    t.equal(await imported(t, chunks), ENTRIES, 'it imports whole')
  })

  t.test(`${format}: the store reopened after the export emitted entries: EXPORT_INTERRUPTED, and what it emitted is refused as truncated`, async (t) => {
    const db = await liveStore(t)
    const store = liveLevelStore(db)
    const before = store.reopens
    const stream = db.export({ format })
    // The header and the first step's entries out, then the reopen: the snapshot iterator is closed under the export.
    const { chunks, error } = await read(stream, 2, async () => {
      await failAndReopen(db, 'during', value(-1))
    })
    t.equal(store.reopens, before + 1, 'the store was reopened once, during the export')
    t.ok(isMemwalError(error) && error.code === 'EXPORT_INTERRUPTED', `refused with EXPORT_INTERRUPTED: ${String(error)}`)
    t.match(String(error), /reopened .* during the export/, 'saying the store was reopened during it')
    t.match(String(error), /run it again/, 'and what to do')
    t.match(isMemwalError(error) ? error.details : {}, { version: stream.version, entriesEmitted: stream.entries }, 'details: the version and how many entries were out')
    t.ok(stream.entries > 0 && stream.entries < ENTRIES, `it emitted part of the export (${stream.entries} entries)`)
    // What was emitted has no end record: an import refuses it, writing nothing but the whole batches before its end (written as they filled).
    const target = await MemWAL.open({ dir: tmpDir(t) })
    try {
      const refused = await target.import(chunks, { batchOps: 300 }).then(() => undefined, (e: unknown) => e)
      t.match(refused, { code: 'IMPORT_INVALID', message: /without its end record \(truncated\)/ }, 'an import refuses it as truncated')
      const written = isMemwalError(refused) ? (refused.details as { entriesWritten: number }).entriesWritten : -1
      t.equal(written, Math.floor(stream.entries / 300) * 300, 'having written the full batches of what was emitted')
      t.equal((await target.stats()).entries, written, 'and nothing more')
    } finally {
      await target.close()
    }
    // The engine goes on; a new export is whole, with the entry the failed write brought.
    await db.put('after', 1)
    t.equal(await db.get('after'), 1, 'the engine goes on')
    const again = await read(db.export({ format }), -1, async () => {})
    t.equal(again.error, undefined, 'an export run again reads whole')
    t.equal(await imported(t, again.chunks), ENTRIES + 2, 'with every entry, the ones written during and after the first included')
  })
}

t.test('the store reopened after export() was called, before the first read: EXPORT_INTERRUPTED after the header', async (t) => {
  const db = await liveStore(t)
  const stream = db.export() // the snapshot is taken here
  await failAndReopen(db, 'during', value(-1))
  const { chunks, error } = await read(stream, -1, async () => {})
  t.ok(isMemwalError(error) && error.code === 'EXPORT_INTERRUPTED', `refused with EXPORT_INTERRUPTED: ${String(error)}`)
  t.equal(chunks.length, 1, 'only the header was out')
  t.match(isMemwalError(error) ? error.details : {}, { version: stream.version, entriesEmitted: 0 })
})
