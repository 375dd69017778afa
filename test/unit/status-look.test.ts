/**
 * `memwal status` (inspectDataDir) is a look: it takes no directory lock (a
 * process starting meanwhile must not be refused for it), opens the store
 * once and reads the dead letters once, and its dry-run check changes nothing.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { inspectDataDir, MemWAL, PgBackend } from '../../engine/index.js'
import { NodeFileSystem, ProcessDirLocker } from '../../engine/testing.js'
import { LevelStore } from '../../engine/sinks/level-store.js'
import { tmpDir } from '../support/tmp-dir.js'

/** The real filesystem, counting what status does to the store (a sync: something written) and the dead letters. */
class CountingFs extends NodeFileSystem {
  storeSyncs = 0
  deadLetterListings = 0
  override async syncDir(p: string): Promise<void> {
    if (path.basename(p) === 'store') this.storeSyncs++
    return super.syncDir(p)
  }
  override async readdir(p: string): Promise<string[]> {
    if (path.basename(p) === 'deadletter') this.deadLetterListings++
    return super.readdir(p)
  }
}

t.test('status takes no lock, opens the store once, reads the dead letters once', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const db = await MemWAL.open({ dir })
  for (let i = 0; i < 20; i++) await db.put(`k${i}`, i)
  await db.flush()
  await db.close()
  fs.mkdirSync(path.join(dir, 'deadletter'), { recursive: true })
  let locks = 0
  const acquire = ProcessDirLocker.prototype.acquire
  ProcessDirLocker.prototype.acquire = function (this: ProcessDirLocker, ...args: Parameters<typeof acquire>) {
    locks++
    return acquire.apply(this, args)
  }
  let opens = 0
  const open = LevelStore.open.bind(LevelStore)
  LevelStore.open = (...args: Parameters<typeof open>) => {
    opens++
    return open(...args)
  }
  t.teardown(() => {
    ProcessDirLocker.prototype.acquire = acquire
    LevelStore.open = open
  })
  const counting = new CountingFs()
  const s = await inspectDataDir(dir, { fs: counting })
  t.match(s.verified, { clean: true }, 'the dry-run check ran')
  t.equal(s.lastLsn, 20)
  t.equal(locks, 0, 'no directory lock taken')
  t.equal(opens, 1, 'the store opened once')
  // A look opens a private copy of the store (LevelDB rewrites what it opens): store/ itself is neither written nor synced.
  t.equal(counting.storeSyncs, 0, 'store/ not synced: nothing was written in it')
  // One listing for the sizes status shows, one for the dead letters themselves.
  t.equal(counting.deadLetterListings, 2, 'the dead letters read once')
})

t.test('inspectDataDir refuses an option it does not know, and a backend that is not the recorded one', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const db = await MemWAL.open({ dir })
  await db.close()
  await t.rejects(inspectDataDir(dir, { fss: new NodeFileSystem() } as never), { code: 'INVALID_OPTIONS', details: { field: 'fss' } })
  await t.rejects(inspectDataDir(dir, { backend: {} } as never), { code: 'INVALID_OPTIONS', details: { field: 'backend' } }, 'not a backend sink')
  // Never opened: BACKEND_MISMATCH comes before any connection.
  const pg = new PgBackend({ connectionString: 'postgres://127.0.0.1:1/none', writerId: 'w' })
  await t.rejects(inspectDataDir(dir, { backend: pg }), { code: 'BACKEND_MISMATCH', details: { recorded: { kind: 'leveldb' }, given: { kind: 'postgres', writerId: 'w' } } })
  t.match(await inspectDataDir(dir), { backend: { kind: 'leveldb' }, checkpoints: { backend: 0, index: 0 } })
})

t.test('a checkpoint past the log\'s last record is a warning, not a backlog of 0 alone', async (t) => {
  // The directory's log restored from an older copy: the store has applied records the log no longer holds.
  const root = tmpDir(t)
  const dir = path.join(root, 'data')
  const db = await MemWAL.open({ dir })
  for (let i = 0; i < 5; i++) await db.put(`k${i}`, i)
  await db.flush()
  await db.close()
  fs.cpSync(path.join(dir, 'wal'), path.join(root, 'wal-at-5'), { recursive: true })
  const again = await MemWAL.open({ dir })
  for (let i = 5; i < 12; i++) await again.put(`k${i}`, i)
  await again.flush()
  await again.close()
  const clean = await inspectDataDir(dir)
  t.same(clean.warnings, [], 'no warning while log and checkpoints agree')
  fs.rmSync(path.join(dir, 'wal'), { recursive: true })
  fs.cpSync(path.join(root, 'wal-at-5'), path.join(dir, 'wal'), { recursive: true })
  const s = await inspectDataDir(dir)
  t.equal(s.lastLsn, 5)
  t.equal(s.backlogRecords, 0)
  t.equal(s.warnings.length, 2, 'one warning per sink ahead')
  t.match(s.warnings.join('\n'), /backend's checkpoint \(12\) is past the log's last record \(5\)/)
  t.match(s.warnings.join('\n'), /index's checkpoint \(12\) is past the log's last record \(5\)/)
})
