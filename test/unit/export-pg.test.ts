/**
 * db.export over PgBackend (export.ts, sinks/pg/pg-export.ts), against the
 * real PostgreSQL (skipped as the other PG tests are when it is down):
 * - export -> import into an empty LevelDB store gives every entry, equal
 *   with its type, namespace, tags and expiresAt, in both encodings: rows
 *   applied, pending writes over them, another writer's rows; expired and
 *   deleted entries left out;
 * - an export taken while writes go on (the backend applying meanwhile)
 *   holds exactly the entries of its version: every write at or below it,
 *   none after, whatever the applier did while the snapshot was taken;
 * - PostgreSQL ending the export's connection mid-stream is
 *   EXPORT_INTERRUPTED, the stream without its end record (import refuses
 *   it as truncated); a snapshot whose checkpoint is past the version is
 *   EXPORT_INCONSISTENT; the open exports are bounded (EXPORT_BUSY), and
 *   close() ends one never read.
 */
import fc from 'fast-check'
import t from 'tap'
import { MemWAL, PgBackend } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { PG_URL, schemaWithClient } from '../support/pg.js'
import { all, collect, sameEntries } from '../support/export-entries.js'
import { tmpDir } from '../support/tmp-dir.js'
import { contractValueArb } from '../support/values.js'

const NOW = 1_700_000_000_000

function pgBackend(schema: string, writerId: string, more: { clock?: ManualClock; pageRows?: number } = {}): PgBackend {
  return new PgBackend({ connectionString: PG_URL, writerId, schema, ...more })
}

t.test('PostgreSQL: export -> import into an empty LevelDB store gives every entry equal with types (both encodings)', async (t) => {
  const pgdb = await schemaWithClient(t, 'export_round')
  if (!pgdb) return
  const clock = new ManualClock(NOW)
  // pageRows 7: the rows come in many FETCHes, the pending writes fall between them.
  const db = await MemWAL.open({ dir: tmpDir(t), backend: pgBackend(pgdb.schema, 'a', { clock, pageRows: 7 }), clock, cacheBytes: 1, sweepIntervalMs: 3_600_000 })
  t.teardown(() => db.close())
  const values = fc.sample(contractValueArb, { numRuns: 60, seed: 4242 })
  for (const [i, v] of values.entries()) await db.put(`k${String(i).padStart(2, '0')}`, v, { namespace: i % 3 === 0 ? 'n/x' : 'n', tags: i % 2 === 0 ? ['even', `t${i}`] : [] })
  await db.put('expires-later', new Date(5), { expiresAt: NOW + 60_000 })
  await db.put('expired', 'gone at the call', { ttlMs: 10 })
  await db.put('deleted', 1)
  await db.flush({ timeoutMs: 10_000 })
  await db.delete('deleted')
  await db.put('k01', new Map([[1, 'pending over a row']]), { namespace: 'n', tags: ['p'] })
  await db.put('pending-new', 2n ** 70n, { namespace: 'n' })
  // Another writer on the same tables: its applied rows are in the export.
  const other = await MemWAL.open({ dir: tmpDir(t), backend: pgBackend(pgdb.schema, 'b', { clock }), clock, cacheBytes: 1, sweepIntervalMs: 3_600_000 })
  await other.put('from-b', new Set(['b']), { namespace: 'n', tags: ['b'] })
  await other.flush({ timeoutMs: 10_000 })
  await other.close()
  clock.advance(10)
  const want = await all(db)
  t.ok(want.some((e) => e.key === 'from-b') && !want.some((e) => e.key === 'expired' || e.key === 'deleted'), 'the store as reads see it: the other writer\'s row in, expired and deleted out')
  for (const format of ['ndjson', 'msgpack'] as const) {
    const stream = db.export({ format })
    const file = await collect(stream)
    t.equal(stream.entries, want.length, `${format}: every entry counted`)
    const into = await MemWAL.open({ dir: tmpDir(t), clock })
    const r = await into.import([file])
    t.match(r, { entries: want.length, exportVersion: stream.version })
    sameEntries(t, await all(into), want, format)
    await into.close()
  }
  const ns = await collect(db.export({ namespace: 'n/x' }))
  const into = await MemWAL.open({ dir: tmpDir(t), clock })
  await into.import([ns])
  sameEntries(t, await all(into), want.filter((e) => e.namespace === 'n/x'), 'one namespace')
  await into.close()
})

/** What a write did, once its lsn is known. */
interface Done {
  readonly lsn: number
  readonly key: string
  /** undefined: a delete. */
  readonly value: string | undefined
}

t.test('PostgreSQL: an export taken while writes go on holds exactly the entries of its version', async (t) => {
  const pgdb = await schemaWithClient(t, 'export_race')
  if (!pgdb) return
  const db = await MemWAL.open({ dir: tmpDir(t), backend: pgBackend(pgdb.schema, 'w', { pageRows: 50 }), cacheBytes: 1, sweepIntervalMs: 3_600_000 })
  t.teardown(() => db.close())
  const KEYS = 200
  const done: Done[] = []
  const put = async (key: string, value: string): Promise<void> => {
    done.push({ lsn: (await db.put(key, value)).lsn, key, value })
  }
  for (let i = 0; i < KEYS; i++) await put(`k${i}`, 'start')
  await db.flush({ timeoutMs: 10_000 })
  // Writers that keep the log and the applier busy until told to stop: overwrites and deletes of every key, 32 in flight.
  let stop = false
  const writer = async (w: number): Promise<void> => {
    for (let round = 0; !stop; round++) {
      const key = `k${(round * 37 + w * 11) % KEYS}`
      if (round % 5 === 4) done.push({ lsn: (await db.delete(key)).lsn, key, value: undefined })
      else await put(key, `w${w} r${round}`)
    }
  }
  const writers = Array.from({ length: 32 }, (_, w) => writer(w))
  const exports: { version: number; file: Buffer }[] = []
  for (let i = 0; i < 6; i++) {
    // Let the writers and the applier run between exports.
    await new Promise((r) => setImmediate(r))
    await db.put(`mark${i}`, 'awaited before the call')
    const stream = db.export({ format: i % 2 === 0 ? 'ndjson' : 'msgpack' })
    exports.push({ version: stream.version, file: await collect(stream) })
  }
  stop = true
  await Promise.all(writers)
  t.ok(done.length > 2 * KEYS, `writes went on meanwhile (${done.length})`)
  for (const [i, x] of exports.entries()) {
    // The store at the version: the last write at or below it of each key.
    const at = new Map<string, string | undefined>()
    for (const d of [...done].sort((a, b) => a.lsn - b.lsn)) if (d.lsn <= x.version) at.set(d.key, d.value)
    for (let m = 0; m <= i; m++) at.set(`mark${m}`, 'awaited before the call')
    const want = [...at].filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const into = await MemWAL.open({ dir: tmpDir(t) })
    await into.import([x.file])
    const got = (await all(into)).map((e) => [e.key, e.value])
    await into.close()
    t.strictSame(got, want, `export ${i} (version ${x.version}): exactly the writes at or below its version`)
  }
})

t.test('PostgreSQL: its connection ended mid-export is EXPORT_INTERRUPTED, the stream without its end record (import: truncated)', async (t) => {
  const pgdb = await schemaWithClient(t, 'export_cut')
  if (!pgdb) return
  const db = await MemWAL.open({ dir: tmpDir(t), backend: pgBackend(pgdb.schema, 'export-cut', { pageRows: 10 }), cacheBytes: 1 })
  t.teardown(() => db.close())
  await db.batch(Array.from({ length: 100 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(3, '0')}`, value: i })))
  await db.flush({ timeoutMs: 10_000 })
  const stream = db.export()
  const parts: Buffer[] = []
  let err: { code?: string; transient?: boolean } | undefined
  try {
    for await (const c of stream) {
      parts.push(c)
      if (parts.length === 2) {
        const r = await pgdb.client.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'memwal:export-cut' AND query LIKE 'FETCH % FROM memwal_export'`)
        t.equal(r.rowCount, 1, 'the export\'s connection was ended')
      }
    }
  } catch (e) {
    err = e as { code?: string }
  }
  t.match(err, { code: 'EXPORT_INTERRUPTED', transient: true })
  const file = Buffer.concat(parts)
  t.notMatch(file.toString('utf8'), /"memwal":"end"/, 'no end record')
  const into = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => into.close())
  await t.rejects(into.import([file]), { code: 'IMPORT_INVALID', message: /truncated/ })
  // The engine and the backend go on: a new export is whole.
  t.match((await collect(db.export())).toString('utf8'), /"memwal":"end","entries":100/)
})

t.test('PostgreSQL: a snapshot holding this writer past the version is EXPORT_INCONSISTENT; open exports are bounded; close() ends one never read', async (t) => {
  const pgdb = await schemaWithClient(t, 'export_bounds')
  if (!pgdb) return
  // pageRows 2: an export read twice (its header, its first step) has steps left to read.
  const db = await MemWAL.open({ dir: tmpDir(t), backend: pgBackend(pgdb.schema, 'export-x', { pageRows: 2 }), cacheBytes: 1 })
  await db.batch(Array.from({ length: 10 }, (_, i) => ({ type: 'put' as const, key: `k${i}`, value: i })))
  await db.flush({ timeoutMs: 10_000 })
  // As another process with the same writerId would leave it.
  await pgdb.client.query(`UPDATE "${pgdb.schema}".checkpoints SET lsn = lsn + 100 WHERE writer = 'export-x'`)
  await t.rejects(collect(db.export()), { code: 'EXPORT_INCONSISTENT', details: { checkpoint: 101, version: 1 } })
  await pgdb.client.query(`UPDATE "${pgdb.schema}".checkpoints SET lsn = 1 WHERE writer = 'export-x'`)
  const open = Array.from({ length: 8 }, () => db.export())
  t.throws(() => db.export(), { code: 'EXPORT_BUSY', transient: true })
  await open[0]?.return?.(undefined) // before its first read: its snapshot closes all the same
  open[0] = db.export()
  t.throws(() => db.export(), { code: 'EXPORT_BUSY' }, 'still eight open')
  // Two reads each: the header, then the entries (the snapshot taken, the cursor read).
  for (const s of open) {
    await s.next()
    await s.next()
  }
  const sessions = async (): Promise<number> => {
    const r = await pgdb.client.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'memwal:export-x' AND xact_start IS NOT NULL AND query LIKE 'FETCH % FROM memwal_export'`)
    return Number(r.rows[0]?.n)
  }
  t.equal(await sessions(), 8, 'each open export holds its transaction')
  await db.close()
  // A server process ends a moment after its client has gone: wait for it, a bounded number of looks.
  let left = await sessions()
  for (let look = 0; look < 200 && left > 0; look++) {
    await new Promise((r) => setTimeout(r, 25))
    left = await sessions()
  }
  t.equal(left, 0, 'close() ended every export\'s transaction')
  // A step read ahead before the close may still come; then the stream fails, never ending as if whole.
  await t.rejects(collect(open[1] as AsyncIterable<Buffer>), { code: 'ENGINE_CLOSED' })
})
