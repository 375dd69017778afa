/**
 * One PostgreSQL writer id, one data directory, against the real server:
 * two directories applying under one writer id lost records silently (the
 * change feed kept one's rows, the checkpoint row jumped past the other's
 * unapplied records), so the writer id is bound to the first directory that
 * opens with it (its id in BACKEND and in the checkpoint row) and another is
 * refused at open with WRITER_IN_USE, nothing written to PostgreSQL:
 * - two directories opening at once, and one opening while another is open;
 * - one opening after the first closed with records PostgreSQL has not
 *   applied yet: refused, and the first reopens and applies them;
 * - the same directory reopened, a copy of it put back, and a watcher with
 *   the same writer id open as before;
 * - a checkpoint row from before the binding (schema version 5) and a record
 *   from before the directory id adopt the first directory that opens them
 *   (one that holds records: pg-open-refusals.test.ts);
 * - the CLI reports it as a usage error (exit 16).
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import pg from 'pg'
import { MemWAL, MemwalError, PgBackend } from '../../engine/index.js'
import { BACKEND_RECORD_NAME } from '../../engine/log/backend-record.js'
import { exitCodeFor, ExitCode } from '../../cli/exit-codes.js'
import { PG_URL, schemaWithClient } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'
import { recordOf, refusal } from '../support/open-error.js'

const DIR_ID = /^[0-9a-f]{32}$/

t.test('a second directory with a writer id in use is refused, at once or after, nothing written; the same directory opens as before', async (t) => {
  const server = await schemaWithClient(t, 'wdir')
  if (!server) return
  const { schema, client } = server
  const open = (dir: string, extra: { closeGraceMs?: number } = {}): Promise<MemWAL> =>
    MemWAL.open({ dir, durability: 'interval', backend: new PgBackend({ connectionString: PG_URL, writerId: 'dup', schema, statementTimeoutMs: 2000 }), ...extra })
  const row = async (): Promise<{ lsn: string; dir_id: string | null }[]> =>
    (await client.query(`SELECT lsn, dir_id FROM "${schema}".checkpoints WHERE writer = 'dup'`)).rows
  const keys = async (): Promise<string[]> => (await client.query(`SELECT key FROM "${schema}".entries ORDER BY key`)).rows.map((r: { key: string }) => r.key)

  // Both at once (the report's case: both opened, both acknowledged, one's rows lost): one binds the id, the other is refused.
  const [dirA, dirB] = [tmpDir(t), tmpDir(t)]
  const both = await Promise.allSettled([open(dirA), open(dirB)])
  const opened = both.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  const refused = both.flatMap((r) => (r.status === 'rejected' ? [r.reason as MemwalError] : []))
  t.equal(opened.length, 1, 'one of the two opened')
  t.equal(refused.length, 1, 'the other was refused')
  t.match(refused[0], { code: 'WRITER_IN_USE', transient: false, details: { writerId: 'dup', schema, dirId: DIR_ID, boundTo: DIR_ID } })
  const winner = both[0].status === 'fulfilled' ? dirA : dirB
  const loser = winner === dirA ? dirB : dirA
  t.equal(refused[0]?.details?.['boundTo'], recordOf(winner).dirId, 'bound to the directory that opened')
  t.not(refused[0]?.details?.['dirId'], recordOf(winner).dirId, 'details name the refused directory\'s own id')
  t.notOk(fs.existsSync(path.join(loser, BACKEND_RECORD_NAME)), 'a new directory refused keeps no record (pg-open-refusals.test.ts)')
  await opened[0]?.close()

  // One open, then another opening while it is: refused; it puts and applies as usual.
  let A = await open(winner)
  t.strictSame(await row(), [{ lsn: '0', dir_id: recordOf(winner).dirId }], 'the row is bound to A\'s directory')
  t.match(await refusal(open(loser)), { code: 'WRITER_IN_USE' }, 'B opened while A is: refused')
  for (let i = 0; i < 3; i++) await A.put(`a${i}`, i)
  await A.flush({ timeoutMs: 10_000 })
  t.strictSame(await keys(), ['a0', 'a1', 'a2'])

  // A closes with records PostgreSQL has not applied (the table locked); B opens meanwhile: refused, so A's records are not skipped.
  const lock = await (async () => {
    const c = new pg.Client({ connectionString: PG_URL })
    await c.connect()
    await c.query('BEGIN')
    await c.query(`LOCK TABLE "${schema}".entries IN ACCESS EXCLUSIVE MODE`)
    return c
  })()
  for (let i = 3; i < 6; i++) await A.put(`a${i}`, i)
  await A.close().catch(() => undefined)
  await lock.query('ROLLBACK')
  await lock.end()
  const before = await row()
  const fresh = tmpDir(t)
  t.match(await refusal(open(fresh)), { code: 'WRITER_IN_USE', details: { boundTo: recordOf(winner).dirId } }, 'a third directory after A closed: refused')
  t.match(await refusal(open(loser)), { code: 'WRITER_IN_USE' }, 'and B again')
  t.strictSame(await row(), before, 'the checkpoint row is as A left it')
  t.strictSame(await keys(), ['a0', 'a1', 'a2'], 'nothing written by the refused opens')
  A = await open(winner)
  await A.flush({ timeoutMs: 10_000 })
  t.strictSame(await keys(), ['a0', 'a1', 'a2', 'a3', 'a4', 'a5'], 'A reopened applies the records it acknowledged before closing')

  // A watcher with the same writer id reads only: it opens while A is open.
  const watcher = new PgBackend({ connectionString: PG_URL, writerId: 'dup', schema })
  await watcher.openToWatch()
  t.match(await watcher.resumeTokenNow(), /.+/, 'a watcher opens beside the writer')
  await watcher.close()

  // A copy of the directory put back (MemWAL.backup refuses a PostgreSQL store; a file-level copy keeps BACKEND): the same writer.
  await A.close()
  const restored = path.join(tmpDir(t), 'restored')
  fs.cpSync(winner, restored, { recursive: true })
  t.equal(recordOf(restored).dirId, recordOf(winner).dirId, 'the copy keeps the id')
  const R = await open(restored)
  t.equal(await R.get('a5'), 5, 'the copy opens as the writer')
  await R.close()
})

t.test('a row from before the binding, and a record from before the directory id, adopt the first directory that opens them', async (t) => {
  const server = await schemaWithClient(t, 'wdirold')
  if (!server) return
  const { schema, client } = server
  const open = (dir: string): Promise<MemWAL> => MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId: 'w', schema }) })
  const dirA = tmpDir(t)
  const A = await open(dirA)
  await A.put('k', 1)
  await A.flush({ timeoutMs: 10_000 })
  await A.close()
  // As left by a memwal before the binding: schema version 5 without dir_id, a BACKEND record without dirId.
  await client.query(`ALTER TABLE "${schema}".checkpoints DROP COLUMN dir_id`)
  await client.query(`UPDATE "${schema}".schema_version SET version = 5`)
  const { dirId: _old, ...rest } = recordOf(dirA)
  fs.writeFileSync(path.join(dirA, BACKEND_RECORD_NAME), `${JSON.stringify(rest)}\n`)

  const A2 = await open(dirA)
  t.equal(await A2.get('k'), 1, 'the old directory opens on the migrated schema')
  await A2.close()
  const id = recordOf(dirA).dirId
  t.match(id, DIR_ID, 'its record got an id')
  t.strictSame((await client.query(`SELECT lsn, dir_id FROM "${schema}".checkpoints WHERE writer = 'w'`)).rows, [{ lsn: '1', dir_id: id }], 'and the old row adopted it')
  t.match(await refusal(open(tmpDir(t))), { code: 'WRITER_IN_USE', details: { boundTo: id } }, 'another directory is refused from then on')
})

t.test('the CLI reports WRITER_IN_USE as a usage error', async (t) => {
  t.equal(exitCodeFor(new MemwalError('WRITER_IN_USE', 'in use')), ExitCode.USAGE)
})
