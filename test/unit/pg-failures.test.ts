/**
 * PgBackend's failure paths against the real PostgreSQL (review of
 * 2026-12-02, items 2-6), each in a schema of the test's own:
 *
 * - a record PostgreSQL will never accept (SQLSTATE classes 21, 54) is
 *   dead-lettered, and the records after it apply; limits whose key the
 *   primary-key btree cannot hold are refused at open (the bound is exact);
 * - a key holding NUL is refused at put, delete and batch (nothing logged),
 *   and reading one answers absent without asking PostgreSQL;
 * - a query or count whose key prefix holds NUL answers empty, never fails;
 * - a table dropped is BACKEND_SCHEMA_DAMAGED at open, and names the
 *   failure in health() while open (not SINK_BREAKER_OPEN);
 * - an applyTimeoutMs within the statement timeout (+ 1 s) is refused at open.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { MemWAL, PgBackend, type AppliedRecord, type MemwalOptions } from '../../engine/index.js'
import { RecordType } from '../../engine/testing.js'
import { identityOf } from '../../engine/format/identity.js'
import { PG_KEY_BYTES_MAX } from '../../engine/sinks/pg/pg-backend.js'
import { PG_URL, schemaWithClient } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'
import { waitFor } from '../support/wait-for.js'

const resilience = { retryDelayMsMin: 5, retryDelayMsMax: 100, breakerThreshold: 3, breakerHalfOpenMs: 200, applyTimeoutMs: 2500 }
const backendOptions = { statementTimeoutMs: 800, connectTimeoutMs: 500 } as const

/** `n` ASCII characters that do not compress (PostgreSQL compresses a long index value when it can), without `/`: a namespace's `//` is refused. */
const incompressible = (n: number): string => randomBytes(n).toString('base64url').slice(0, n)

async function refusal(p: Promise<unknown>): Promise<{ code?: string; message?: string; details?: Record<string, unknown> }> {
  try {
    await p
  } catch (err) {
    return err as { code?: string; message?: string; details?: Record<string, unknown> }
  }
  throw new Error('expected a rejection')
}

async function open(t: Parameters<typeof tmpDir>[0] & { teardown(fn: () => unknown): void }, schema: string, writerId: string, o: Partial<MemwalOptions> = {}, dir = tmpDir(t, 'memwal-pgf-')): Promise<MemWAL> {
  const db = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId, schema, ...backendOptions }), resilience, closeGraceMs: 1000, ...o })
  t.teardown(() => db.close())
  return db
}

t.test('limits the primary-key btree cannot hold are refused at open; at the bound, the longest key and namespace apply', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgfkey')
  if (!pgdb) return
  const over = await refusal(MemWAL.open({ dir: tmpDir(t), backend: new PgBackend({ connectionString: PG_URL, writerId: 'w', schema: pgdb.schema, ...backendOptions }), resilience, keyBytesMax: 8000 }))
  t.equal(over.code, 'INVALID_OPTIONS', 'keyBytesMax 8000 with PgBackend')
  t.equal(over.details?.['field'], 'keyBytesMax')
  t.match(over.message, /keyBytesMax 8000 \+ labelBytesMax 256/, 'the message names both limits')
  t.equal((await refusal(MemWAL.open({ dir: tmpDir(t), backend: new PgBackend({ connectionString: PG_URL, writerId: 'w', schema: pgdb.schema, ...backendOptions }), resilience, keyBytesMax: 2_000, labelBytesMax: PG_KEY_BYTES_MAX - 1_999 }))).code, 'INVALID_OPTIONS', 'one byte over, by labelBytesMax')

  // A namespace of 257 bytes takes the most padding (4 + 257 aligned up to 264): the bound is exact there.
  const labelBytesMax = 257
  const keyBytesMax = PG_KEY_BYTES_MAX - labelBytesMax
  const db = await open(t, pgdb.schema, 'w', { keyBytesMax, labelBytesMax })
  const namespace = incompressible(labelBytesMax)
  const key = incompressible(keyBytesMax)
  await db.put(key, 1, { namespace })
  await db.flush({ timeoutMs: 10_000 })
  t.equal(db.health().sinks['backend']?.deadLetters, 0, 'the longest key in the longest namespace applied')
  t.equal((await pgdb.client.query(`SELECT count(*)::int AS n FROM "${pgdb.schema}".entries WHERE key = $1`, [key])).rows[0].n, 1)

  // One byte more does not fit: 54000, permanent.
  const b = new PgBackend({ connectionString: PG_URL, writerId: 'raw', schema: pgdb.schema })
  await b.open()
  t.teardown(() => b.close())
  const longer: AppliedRecord = { lsn: 1, bytes: 64, record: { type: RecordType.PUT, hlc: 1000, op: { type: 'put', key: incompressible(keyBytesMax + 1), value: 1, namespace } } }
  const err = await refusal(b.apply({ records: [longer], upToLsn: 1 }))
  t.equal(err.code, '54000', `a key one byte longer: ${err.message ?? ''}`)
  t.equal(b.classify(err), 'permanent', 'program limit exceeded is permanent')
})

t.test('a record PostgreSQL never accepts (54000, 21000) goes to the dead-letter log and the records after it apply', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgf54')
  if (!pgdb) return
  const db = await open(t, pgdb.schema, 'w')
  // The tables exist once a writer opened: a trigger refuses one key as PostgreSQL refuses a row it cannot index.
  await pgdb.client.query(`CREATE FUNCTION "${pgdb.schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.key = 'too-big' THEN RAISE EXCEPTION 'index row size 3224 exceeds btree version 4 maximum 2704' USING ERRCODE = '54000'; END IF;
      IF NEW.key = 'twice' THEN RAISE EXCEPTION 'more than one row' USING ERRCODE = '21000'; END IF;
      RETURN NEW;
    END $$`)
  await pgdb.client.query(`CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON "${pgdb.schema}".entries FOR EACH ROW EXECUTE FUNCTION "${pgdb.schema}".refuse()`)
  const dead: number[] = []
  db.on('dead-letter', (e: { lsn: number }) => dead.push(e.lsn))
  const bad = await db.put('too-big', 1)
  const worse = await db.put('twice', 2)
  await db.put('after', 3)
  await db.flush({ timeoutMs: 10_000 })
  t.same(dead.sort((a, b) => a - b), [bad.lsn, worse.lsn], 'both dead-lettered, by LSN')
  t.equal(await db.get('after'), 3, 'the record after them applied')
  t.equal(db.health().sinks['backend']?.checkpoint, db.health().wal.lastLsn, 'the checkpoint passed them')
})

t.test('a key holding NUL: refused at put, delete and batch with nothing logged; read as absent without asking PostgreSQL', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgfnul')
  if (!pgdb) return
  const db = await open(t, pgdb.schema, 'w')
  await db.put('a', 1)
  const before = db.health().wal.lastLsn
  t.equal((await refusal(db.put('a\u0000b', 1))).code, 'ENGINE_INVALID_KEY', 'put')
  t.equal((await refusal(db.delete('a\u0000b'))).code, 'ENGINE_INVALID_KEY', 'delete')
  const batch = await refusal(db.batch([{ type: 'put', key: 'ok', value: 1 }, { type: 'put', key: 'x\u0000', value: 2 }]))
  t.equal(batch.code, 'ENGINE_INVALID_KEY', 'batch')
  t.match(batch.message, /ops\[1\]\.key/, 'naming the operation')
  t.equal(db.health().wal.lastLsn, before, 'nothing was logged')
  for (let i = 0; i < 8; i++) t.equal(await db.get('a\u0000b'), undefined, 'a read of such a key answers absent')
  await db.flush()
  t.equal(db.health().sinks['backend']?.deadLetters, 0, 'nothing dead-lettered')
  t.equal(db.health().state, 'open', 'and the engine is not degraded')
  t.equal(db.health().sinks['backend']?.consecutiveFailures, 0)

  const closed = new PgBackend({ connectionString: PG_URL, writerId: 'r', schema: pgdb.schema })
  t.equal(await closed.get(identityOf('default', 'a\u0000b')), undefined, 'PgBackend.get of a NUL key answers without a query (this backend is not even open)')
  const read = new PgBackend({ connectionString: PG_URL, writerId: 'r', schema: pgdb.schema })
  await read.open()
  t.teardown(() => read.close())
  const keys: string[] = []
  for await (const [id] of read.entries({ gte: identityOf('default', 'a\u0000'), lt: identityOf('default', 'a\u0000z') })) keys.push(id)
  t.same(keys, [], 'entries between bounds holding NUL: none (a sorts before a\\0)')
  for await (const [id] of read.entries({ gte: identityOf('default', '\u0000') })) keys.push(id)
  t.same(keys, [identityOf('default', 'a')], 'from default\\0\\0 on: a')
})

t.test('a query or count whose key prefix holds NUL answers empty, and never degrades the engine', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgfprefix')
  if (!pgdb) return
  const db = await open(t, pgdb.schema, 'w')
  await db.put('a', 1, { namespace: 'n', tags: ['x'] })
  await db.flush()
  for (let i = 0; i < 8; i++) {
    const found: unknown[] = []
    for await (const e of db.query({ namespace: 'n', tags: { all: ['x'] }, prefix: 'a\u0000' })) found.push(e)
    t.same(found, [], 'query: nothing')
    t.equal(await db.count({ namespace: 'n', prefix: 'a\u0000' }), 0, 'count: 0')
  }
  t.equal(db.health().state, 'open', 'the engine stays open, not degraded')
  const b = new PgBackend({ connectionString: PG_URL, writerId: 'r', schema: pgdb.schema })
  await b.open()
  t.teardown(() => b.close())
  const rows: unknown[] = []
  for await (const r of b.query({ namespace: 'n', prefix: 'a\u0000' })) rows.push(r)
  t.same(rows, [], 'PgBackend.query: nothing, not a raw PostgreSQL error')
  for await (const r of b.query({ namespace: 'n\u0000', tag: 'x\u0000' })) rows.push(r)
  t.same(rows, [], 'nor with a NUL in the namespace or the tag')
})

t.test('a table dropped: the apply names it in health(), and open refuses the schema as damaged', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgfdrop')
  if (!pgdb) return
  const dir = tmpDir(t, 'memwal-pgf-')
  const db = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId: 'w', schema: pgdb.schema, ...backendOptions }), resilience, closeGraceMs: 1000 })
  await db.put('a', 1)
  await db.flush()
  await pgdb.client.query(`DROP TABLE "${pgdb.schema}".entries`)
  await db.put('b', 2)
  await waitFor(() => db.health().sinks['backend']?.breaker === 'open', 'the breaker opens', 10_000)
  const last = db.health().sinks['backend']?.lastError
  t.equal(last?.code, 'BACKEND_SCHEMA_DAMAGED', 'lastError says the schema is damaged, not only that the breaker is open')
  t.match(last?.message, /42P01/, `with the SQLSTATE: ${last?.message ?? ''}`)
  t.equal(db.health().sinks['backend']?.deadLetters, 0, 'nothing dead-lettered: it applies once the table is back')
  await db.close()

  const err = await refusal(MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId: 'w', schema: pgdb.schema, ...backendOptions }), resilience }))
  t.equal(err.code, 'BACKEND_SCHEMA_DAMAGED', 'reopening is refused although schema_version is current')
  t.same(err.details?.['missing'], ['entries'], 'naming the missing table')
})

t.test('applyTimeoutMs within statementTimeoutMs + 1 s is refused at open', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgftimeout')
  if (!pgdb) return
  const backend = new PgBackend({ connectionString: PG_URL, writerId: 'w', schema: pgdb.schema, statementTimeoutMs: 8000 })
  const err = await refusal(MemWAL.open({ dir: tmpDir(t), backend, resilience: { applyTimeoutMs: 300 } }))
  t.equal(err.code, 'INVALID_OPTIONS')
  t.equal(err.details?.['field'], 'resilience.applyTimeoutMs')
  t.match(err.message, /applyTimeoutMs 300.*statementTimeoutMs 8000/, 'naming both')
  t.equal((await refusal(MemWAL.open({ dir: tmpDir(t), backend, resilience: { applyTimeoutMs: 9000 } }))).code, 'INVALID_OPTIONS', 'equal to it plus 1 s: refused too')
  const db = await MemWAL.open({ dir: tmpDir(t), backend, resilience: { applyTimeoutMs: 9001 } })
  await db.close()
  t.pass('above it: opens')
})

t.test('import of an export holding a key with NUL into a PgBackend store: IMPORT_INVALID naming its line, the batches before it written', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgfimport')
  if (!pgdb) return
  // LevelDB keys may hold NUL: an export from such a store holds one.
  const from = await MemWAL.open({ dir: tmpDir(t, 'memwal-pgf-') })
  for (const k of ['a', 'b', 'c\u0000d', 'e']) await from.put(k, k)
  const chunks: (string | Uint8Array)[] = []
  for await (const c of from.export({ format: 'ndjson' })) chunks.push(c)
  await from.close()
  const db = await open(t, pgdb.schema, 'w')
  const err = await refusal(db.import(chunks, { batchOps: 2 }))
  t.equal(err.code, 'IMPORT_INVALID', `a typed refusal: ${err.message ?? ''}`)
  t.match(err.details, { line: 4, entriesWritten: 2, batchesWritten: 1 }, 'naming the line (the header is line 1), and what was written')
  t.match(err.message, /line 4: .*NUL/, 'the message says why')
  t.equal(await db.get('a'), 'a', 'the batch before it is written')
  t.equal(await db.get('e'), undefined, 'nothing from its batch on')
  await db.flush()
  t.equal(db.health().sinks['backend']?.deadLetters, 0, 'nothing dead-lettered')
})
