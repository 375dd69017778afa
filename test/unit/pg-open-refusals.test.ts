/**
 * What a refused or damaged PgBackend open leaves, against the real server
 * (review of 2026-12-02, items 1-4):
 * - a new directory refused with WRITER_IN_USE keeps no BACKEND record: it
 *   opens with another writer id at once (after one refusal, and after two);
 * - a directory that applied records to PostgreSQL is refused with
 *   BACKEND_SCHEMA_DAMAGED when its schema was dropped or its checkpoint row
 *   deleted, and nothing is recreated; a new directory still creates the
 *   schema;
 * - a checkpoint row from schema 5 (no dir_id) holding a checkpoint is not
 *   adopted by a brand-new directory (its log never held those LSNs): refused
 *   with WRITER_IN_USE, while the directory that wrote them adopts it;
 * - the WRITER_IN_USE message offers no "release the id" recipe: following
 *   it ended in WAL_HOLE under durability sync.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemWAL, MemwalError, PgBackend, type MemwalOptions } from '../../engine/index.js'
import { BACKEND_RECORD_NAME } from '../../engine/log/backend-record.js'
import { exitCodeFor, ExitCode } from '../../cli/exit-codes.js'
import { PG_URL, schemaWithClient } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'
import { recordOf, refusal } from '../support/open-error.js'

function opener(schema: string): (dir: string, writerId: string, o?: Partial<MemwalOptions>) => Promise<MemWAL> {
  return (dir, writerId, o = {}) => MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId, schema, statementTimeoutMs: 2000 }), ...o })
}

/** A directory that opened with `writerId`, wrote `n` records, saw them applied and closed. */
async function written(open: ReturnType<typeof opener>, dir: string, writerId: string, n = 3): Promise<void> {
  const db = await open(dir, writerId)
  for (let i = 0; i < n; i++) await db.put(`${writerId}-${i}`, i)
  await db.flush({ timeoutMs: 10_000 })
  await db.close()
}

t.test('a new directory refused with WRITER_IN_USE keeps no record: it opens with another writer id', async (t) => {
  const server = await schemaWithClient(t, 'refrec')
  if (!server) return
  const open = opener(server.schema)
  await written(open, tmpDir(t), 'taken')

  const fresh = tmpDir(t)
  t.match(await refusal(open(fresh, 'taken')), { code: 'WRITER_IN_USE' }, 'a new directory with the bound id: refused')
  t.notOk(fs.existsSync(path.join(fresh, BACKEND_RECORD_NAME)), 'and it holds no BACKEND record')
  const db = await open(fresh, 'free')
  await db.put('k', 1)
  await db.close()
  t.equal(recordOf(fresh).writerId, 'free', 'it opened with another writer id, recorded')

  // Refused twice (the second open finds a marked directory without a record): still openable.
  const twice = path.join(tmpDir(t), 'made-by-open')
  for (let i = 0; i < 2; i++) t.match(await refusal(open(twice, 'taken')), { code: 'WRITER_IN_USE' }, `refusal ${i + 1}`)
  t.notOk(fs.existsSync(path.join(twice, BACKEND_RECORD_NAME)), 'no record after two refusals')
  t.equal(await refusal(open(twice, 'free2')), undefined, 'opens with another writer id')
  t.equal(await refusal(MemWAL.open({ dir: path.join(tmpDir(t), 'x') })), undefined, '(a LevelDB open of a new directory is unchanged)')
})

t.test('a directory that applied records is refused when its schema or its checkpoint row is gone; nothing is recreated', async (t) => {
  const server = await schemaWithClient(t, 'gone')
  if (!server) return
  const { schema, client } = server
  const open = opener(schema)
  const exists = async (): Promise<boolean> => (await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rows.length === 1
  const dirA = tmpDir(t)
  const dirB = tmpDir(t)
  await written(open, dirA, 'a')
  await written(open, dirB, 'b')

  await client.query(`DROP SCHEMA "${schema}" CASCADE`)
  const dropped = await refusal(open(dirA, 'a'))
  t.match(dropped, { code: 'BACKEND_SCHEMA_DAMAGED', details: { schema, writerId: 'a', missing: ['schema'] } }, 'the schema dropped: refused')
  t.match(dropped?.message, /Restore the schema from a backup/, `the message says what to do: ${dropped?.message ?? ''}`)
  t.equal(exitCodeFor(dropped as MemwalError), ExitCode.UNCORRECTED, 'CLI exit 4')
  t.notOk(await exists(), 'and the schema is not recreated')

  // A brand-new directory still creates the schema; the directory that applied records is still refused (no row).
  await (await open(tmpDir(t), 'new')).close()
  t.ok(await exists(), 'a new directory created the schema')
  t.match(await refusal(open(dirA, 'a')), { code: 'BACKEND_SCHEMA_DAMAGED', details: { missing: ['checkpoint row'] } }, 'the schema recreated empty: still refused')
  t.strictSame((await client.query(`SELECT writer FROM "${schema}".checkpoints ORDER BY writer`)).rows, [{ writer: 'new' }], 'no row made for it')

  // The checkpoints table emptied under a schema left whole otherwise.
  const server2 = await schemaWithClient(t, 'gonerow')
  if (!server2) return
  const open2 = opener(server2.schema)
  const dirC = tmpDir(t)
  await written(open2, dirC, 'c')
  await server2.client.query(`DELETE FROM "${server2.schema}".checkpoints`)
  t.match(await refusal(open2(dirC, 'c')), { code: 'BACKEND_SCHEMA_DAMAGED', details: { missing: ['checkpoint row'] } }, 'its checkpoint row deleted: refused')
  t.equal((await server2.client.query(`SELECT count(*)::int AS n FROM "${server2.schema}".checkpoints`)).rows[0].n, 0, 'and not recreated')
})

t.test('a schema-5 row holding a checkpoint is adopted only by a directory that holds records, not by a new one', async (t) => {
  const server = await schemaWithClient(t, 'adopt')
  if (!server) return
  const { schema, client } = server
  const open = opener(schema)
  const dirA = tmpDir(t)
  await written(open, dirA, 'w')
  const asSchema5 = async (): Promise<void> => {
    await client.query(`ALTER TABLE "${schema}".checkpoints DROP COLUMN dir_id`)
    await client.query(`UPDATE "${schema}".schema_version SET version = 5`)
  }
  await asSchema5()
  const fresh = tmpDir(t)
  const err = await refusal(open(fresh, 'w'))
  t.match(err, { code: 'WRITER_IN_USE', details: { writerId: 'w', boundTo: null, checkpoint: 3 } }, 'a new directory does not adopt a row through LSN 3')
  t.match(err?.message, /Open the data directory that wrote them first/, `guidance: ${err?.message ?? ''}`)
  t.notOk(fs.existsSync(path.join(fresh, BACKEND_RECORD_NAME)), 'the refused new directory keeps no record')
  t.strictSame((await client.query(`SELECT lsn, dir_id FROM "${schema}".checkpoints`)).rows, [{ lsn: '3', dir_id: null }], 'the row is left unbound')
  const A = await open(dirA, 'w')
  t.equal(await A.get('w-2'), 2, 'the directory that wrote them adopts it')
  await A.close()
  t.equal((await client.query(`SELECT dir_id FROM "${schema}".checkpoints`)).rows[0].dir_id, recordOf(dirA).dirId)

  // An unbound row that applied nothing is adopted by a new directory, as before.
  await client.query(`UPDATE "${schema}".checkpoints SET dir_id = NULL, lsn = 0`)
  t.equal(await refusal(open(tmpDir(t), 'w')), undefined, 'a row at LSN 0: adopted')
})

t.test('WRITER_IN_USE offers no release recipe: releasing the id led a new directory to WAL_HOLE', async (t) => {
  const server = await schemaWithClient(t, 'recipe')
  if (!server) return
  const { schema, client } = server
  const open = opener(schema)
  await written(open, tmpDir(t), 'w')
  const replacement = tmpDir(t)
  const err = await refusal(open(replacement, 'w'))
  t.match(err, { code: 'WRITER_IN_USE' })
  t.notMatch(err?.message, /dir_id = NULL|release/, `no recipe in: ${err?.message ?? ''}`)
  t.match(err?.message, /another writerId/, 'it says to open with another writer id')
  // The recipe as docs/postgres.md gave it, followed: the replacement is refused at open, with what to do, not WAL_HOLE.
  await client.query(`UPDATE "${schema}".checkpoints SET dir_id = NULL WHERE writer = 'w'`)
  t.match(await refusal(open(replacement, 'w', { durability: 'sync' })), { code: 'WRITER_IN_USE', details: { boundTo: null } }, 'refused as a new directory, not WAL_HOLE')
  t.equal(await refusal(open(replacement, 'w2', { durability: 'sync' })), undefined, 'and it opens with another writer id')
})
