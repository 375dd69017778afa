/**
 * A data directory says which backend its writer used (`<dir>/BACKEND`,
 * engine/log/backend-record.ts), so that a PostgreSQL-backed store opened
 * without its PgBackend (or a LevelDB one opened with one) is refused with
 * BACKEND_MISMATCH instead of answering from the wrong store:
 * - a new directory records its backend at its first open, durably, before
 *   the log is made; PgBackend records its writerId and schema, never the URL;
 * - a different kind, writer, schema or custom name is refused, with the
 *   recorded and the given backend in details, and nothing written (on disk,
 *   and in PostgreSQL: the schema is not even created);
 * - a directory from before records opens as before and is recorded, except a
 *   default open of one whose store shows another backend (an index checkpoint
 *   and no LevelDB backend checkpoint): refused;
 * - fsck (which judges the local LevelDB backend) refuses a PG-recorded directory;
 *   a backup keeps the record;
 * - a crash at any point of the record's write leaves a directory that opens.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemoryLevel } from 'memory-level'
import { fsck, isMemwalError, MemWAL, PgBackend, type LevelDatabase, type MemwalError, type MemwalOptions } from '../../engine/index.js'
import { NodeFileSystem, SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'
import { BACKEND_RECORD_NAME, readBackendRecord, writeBackendRecord } from '../../engine/log/backend-record.js'
import { makeDirDurable } from '../../engine/io/file-ops.js'
import { writeMarker } from '../../engine/log/data-dir.js'
import { EmptyBackend } from '../support/empty-backend.js'
import { RecordingFileSystem } from '../support/recording-fs.js'
import { PG_URL, schemaWithClient } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'

const DATADIRS = path.resolve(import.meta.dirname, '..', '..', 'fixtures', 'datadirs')

async function refusal(options: MemwalOptions): Promise<MemwalError | undefined> {
  try {
    await (await MemWAL.open(options)).close()
    return undefined
  } catch (err) {
    if (!isMemwalError(err)) throw err
    return err
  }
}

/** Every path under `dir` with its size and mtime: to show that nothing changed. */
function tree(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort().map((f) => {
    const st = fs.statSync(path.join(dir, f))
    return `${f} ${st.isDirectory() ? 'dir' : `${st.size} ${st.mtimeMs}`}`
  })
}

function record(dir: string): unknown {
  return JSON.parse(fs.readFileSync(path.join(dir, BACKEND_RECORD_NAME), 'utf8'))
}

t.test('a new directory records its backend at its first open, durably, before the log is made', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const rec = new RecordingFileSystem(new NodeFileSystem())
  const db = await MemWAL.open({ dir, fs: rec })
  await db.put('k', 1)
  await db.close()
  t.strictSame(record(dir), { kind: 'leveldb' })
  const renamed = rec.calls.indexOf(`rename ${path.join(dir, BACKEND_RECORD_NAME)}`)
  t.ok(renamed >= 0, 'renamed into place')
  t.equal(rec.calls[renamed + 1], `syncDir ${dir}`, 'the directory synced right after')
  t.ok(renamed < rec.calls.indexOf(`mkdirp ${path.join(dir, 'wal')}`), 'before wal/ is made')
  const again = await MemWAL.open({ dir })
  t.equal(await again.get('k'), 1, 'the same backend opens it again')
  await again.close()
})

t.test('a LevelDB directory opened with a backend of its own: BACKEND_MISMATCH, nothing written; a custom one compared by name', async (t) => {
  const dir = tmpDir(t)
  const db = await MemWAL.open({ dir })
  await db.put('k', 1)
  await db.close()
  const before = tree(dir)
  const err = await refusal({ dir, backend: new EmptyBackend('mine') })
  t.equal(err?.code, 'BACKEND_MISMATCH')
  t.strictSame(err?.details, { path: dir, recorded: { kind: 'leveldb' }, given: { kind: 'custom', name: 'mine' } })
  t.match(err?.message, /was written with the LevelDB backend .*opened with a backend of its own named "mine"/)
  t.strictSame(tree(dir), before, 'nothing in the directory changed')
  const backup = path.join(tmpDir(t), 'backup')
  const live = await MemWAL.open({ dir })
  await live.backup(backup)
  await live.close()
  t.strictSame(record(backup), { kind: 'leveldb' }, 'a backup keeps the record')
  t.match(await refusal({ dir: backup, backend: new EmptyBackend('mine') }), { code: 'BACKEND_MISMATCH' }, 'and is refused the same way')

  const own = tmpDir(t)
  await (await MemWAL.open({ dir: own, backend: new EmptyBackend('mine') })).close()
  t.strictSame(record(own), { kind: 'custom', name: 'mine' })
  await (await MemWAL.open({ dir: own, backend: new EmptyBackend('mine') })).close()
  t.pass('the same custom backend opens it')
  t.match(await refusal({ dir: own, backend: new EmptyBackend('theirs') }), { code: 'BACKEND_MISMATCH', details: { recorded: { kind: 'custom', name: 'mine' }, given: { name: 'theirs' } } })
  t.match(await refusal({ dir: own }), { code: 'BACKEND_MISMATCH', details: { given: { kind: 'leveldb' } } }, 'and the default is refused')
})

t.test('PostgreSQL: the record holds writerId and schema, not the URL; other kinds, writers and schemas refused with nothing written', async (t) => {
  const pg = await schemaWithClient(t, 'bkind')
  if (!pg) return
  const { schema, client } = pg
  const backend = (writerId: string, s = schema): PgBackend => new PgBackend({ connectionString: PG_URL, writerId, schema: s })
  const dir = tmpDir(t)
  const db = await MemWAL.open({ dir, backend: backend('w1') })
  await db.put('k', 'v')
  await db.flush({ timeoutMs: 10_000 })
  await db.close()
  const dirId = (record(dir) as { dirId: string }).dirId
  t.strictSame(record(dir), { kind: 'postgres', writerId: 'w1', schema, dirId }, 'and the directory\'s own id')
  t.match(dirId, /^[0-9a-f]{32}$/)
  t.notMatch(fs.readFileSync(path.join(dir, BACKEND_RECORD_NAME), 'utf8'), /postgres:\/\//, 'no URL, no credentials')
  const before = tree(dir)
  const other = `${schema}_other`
  for (const [what, options, given] of [
    ['no backend (LevelDB)', { dir }, { kind: 'leveldb' }],
    ['another writer id', { dir, backend: backend('w2') }, { kind: 'postgres', writerId: 'w2', schema }],
    ['another schema', { dir, backend: backend('w1', other) }, { kind: 'postgres', writerId: 'w1', schema: other }],
  ] as const) {
    const err = await refusal(options)
    t.equal(err?.code, 'BACKEND_MISMATCH', what)
    t.strictSame(err?.details, { path: dir, recorded: { kind: 'postgres', writerId: 'w1', schema, dirId }, given }, `${what}: recorded and given in details`)
  }
  t.strictSame(tree(dir), before, 'nothing in the directory changed')
  t.equal((await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [other])).rowCount, 0, 'the other schema was not created')
  t.strictSame((await client.query(`SELECT writer FROM "${schema}".checkpoints ORDER BY writer`)).rows, [{ writer: 'w1' }], 'no checkpoint for w2')

  const level = tmpDir(t)
  await (await MemWAL.open({ dir: level })).close()
  const levelBefore = tree(level)
  t.match(await refusal({ dir: level, backend: backend('w3') }), { code: 'BACKEND_MISMATCH', details: { recorded: { kind: 'leveldb' }, given: { kind: 'postgres', writerId: 'w3', schema } } }, 'a LevelDB directory opened with PgBackend')
  t.strictSame(tree(level), levelBefore, 'nothing in that directory changed')
  t.strictSame((await client.query(`SELECT writer FROM "${schema}".checkpoints WHERE writer = 'w3'`)).rows, [], 'nothing in PostgreSQL for w3')

  t.match(await fsck({ dir, repair: false }).then(() => undefined, (e: unknown) => e), { code: 'BACKEND_MISMATCH' }, 'fsck (which judges the local LevelDB backend) refuses a PG directory')

  // A PG directory from before records: a default open is refused (its store has an index checkpoint, no LevelDB backend one), PgBackend records it.
  fs.rmSync(path.join(dir, BACKEND_RECORD_NAME))
  // Such a directory is older than the binding of writer ids to directories: its checkpoint row names none.
  await client.query(`UPDATE "${schema}".checkpoints SET dir_id = NULL`)
  t.match(await refusal({ dir }), { code: 'BACKEND_MISMATCH', details: { recorded: null, given: { kind: 'leveldb' } } }, 'old PG directory opened without its backend: refused')
  t.notOk(fs.existsSync(path.join(dir, BACKEND_RECORD_NAME)), 'and not recorded')
  const back = await MemWAL.open({ dir, backend: backend('w1') })
  t.equal(await back.get('k'), 'v')
  await back.close()
  t.match(record(dir), { kind: 'postgres', writerId: 'w1', schema, dirId: /^[0-9a-f]{32}$/ }, 'recorded by the open with its backend')
})

t.test('directories from before records (fixtures/datadirs/*) open as before and get the record', async (t) => {
  const cases = fs.readdirSync(DATADIRS).filter((n) => fs.statSync(path.join(DATADIRS, n)).isDirectory())
  let opened = 0
  for (const name of cases) {
    t.notOk(fs.existsSync(path.join(DATADIRS, name, BACKEND_RECORD_NAME)), `${name}: made without a record`)
    const dir = path.join(tmpDir(t), name)
    fs.cpSync(path.join(DATADIRS, name), dir, { recursive: true })
    const err = await refusal({ dir })
    // Damaged fixtures are refused by recovery (after the record is settled): never for their backend.
    t.not(err?.code, 'BACKEND_MISMATCH', `${name}: ${err?.code ?? 'opened'}`)
    if (err === undefined) opened++
    t.strictSame(record(dir), { kind: 'leveldb' }, `${name}: recorded as LevelDB`)
  }
  t.ok(opened >= 3, `${opened} fixtures opened`)
  // A fresh directory made before records whose first open never wrote (no checkpoints): recorded as given.
  const sim = new SimulatedFileSystem(new SeededRandom(3))
  await makeDirDurable(sim, '/old')
  await writeMarker(sim, '/old')
  await (await MemWAL.open(simOptions(sim, '/old', { backend: new EmptyBackend('mine') }))).close()
  t.strictSame(await readBackendRecord(sim, '/old'), { kind: 'custom', name: 'mine' })
})

function simOptions(sim: SimulatedFileSystem, dir: string, extra: Partial<MemwalOptions> = {}): MemwalOptions {
  return { dir, fs: sim, level: new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as LevelDatabase, random: new SeededRandom(9), segmentBytes: 64 * 1024, ...extra }
}

t.test('a crash at any point of the record\'s write leaves a directory that opens, and gets its record', async (t) => {
  let n = 1
  for (; n < 50; n++) {
    const sim = new SimulatedFileSystem(new SeededRandom(n))
    await makeDirDurable(sim, '/d')
    await writeMarker(sim, '/d')
    sim.cutPowerAtOp(n)
    const done = await writeBackendRecord(sim, '/d', { kind: 'leveldb' }).then(() => true, () => false)
    const after = sim.restart(n)
    const kept = await readBackendRecord(after, '/d')
    t.ok(kept === undefined || kept.kind === 'leveldb', `power cut at op ${n}: no record or the whole one`)
    const db = await MemWAL.open(simOptions(after, '/d'))
    await db.put('k', n)
    await db.close()
    t.strictSame(await readBackendRecord(after, '/d'), { kind: 'leveldb' }, `power cut at op ${n}: opens, and is recorded`)
    if (done) break
  }
  t.ok(n > 2 && n < 50, `the write has ${n - 1} mutating ops, each cut through`)

  // The same through a whole first open of a new directory, the power cut anywhere up to the record being durable.
  for (let at = 1; at < 50; at++) {
    const sim = new SimulatedFileSystem(new SeededRandom(100 + at))
    sim.cutPowerAtOp(at)
    await MemWAL.open(simOptions(sim, '/n')).then((db) => db.close(), () => undefined)
    const after = sim.restart(at)
    const recorded = await readBackendRecord(after, '/n').catch(() => 'unreadable')
    const db = await MemWAL.open(simOptions(after, '/n'))
    await db.close()
    t.strictSame(await readBackendRecord(after, '/n'), { kind: 'leveldb' }, `first open cut at op ${at}: opens and is recorded`)
    if (recorded !== undefined) break
  }
})
