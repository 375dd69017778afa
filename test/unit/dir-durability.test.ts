/**
 * Directory durability (issue 14 item 9c): every directory that later
 * durability relies on is made with its parent synced after it (the data
 * directory, wal/, store/, deadletter/, quarantine/), and store/ is synced
 * once LevelDB has opened (LevelDB renames CURRENT into place without a
 * directory sync). Shown through the injected filesystem: a forwarding one
 * records every mkdirp and syncDir, in order.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { fsck, MemWAL, type FileSystem } from '../../engine/index.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { DeadLetterLog } from '../../engine/apply/dead-letter.js'
import { createChecksums } from '../../engine/format/checksum.js'
import { ForwardingFileSystem } from '../support/forwarding-fs.js'
import { tmpDir } from '../support/tmp-dir.js'

const FIXTURES = path.resolve(import.meta.dirname, '..', '..', 'fixtures', 'datadirs')

class RecordingFileSystem extends ForwardingFileSystem {
  readonly calls: string[] = []
  constructor(inner: FileSystem = new NodeFileSystem()) {
    super(inner)
  }

  override mkdirp(p: string): Promise<void> {
    this.calls.push(`mkdirp ${p}`)
    return super.mkdirp(p)
  }

  override syncDir(p: string): Promise<void> {
    this.calls.push(`syncDir ${p}`)
    return super.syncDir(p)
  }
}

/** The parent of `made` was synced after the mkdirp that made it. */
function syncedAfterMade(calls: readonly string[], made: string): boolean {
  const at = calls.findIndex((c) => c.startsWith('mkdirp ') && (c === `mkdirp ${made}` || c.slice(7).startsWith(`${made}/`)))
  return at >= 0 && calls.slice(at + 1).includes(`syncDir ${path.dirname(made)}`)
}

t.test('open of a new data directory syncs the parent of every directory it makes, and store/ after LevelDB opens', async (t) => {
  const root = tmpDir(t)
  const dir = path.join(root, 'a', 'b')
  const rec = new RecordingFileSystem()
  const db = await MemWAL.open({ dir, fs: rec })
  await db.put('k', 1)
  await db.close()
  for (const d of [path.join(root, 'a'), dir, path.join(dir, 'wal'), path.join(dir, 'store')]) t.ok(syncedAfterMade(rec.calls, d), `${path.relative(root, d)}: its parent synced after it was made`)
  const storeOpened = rec.calls.indexOf(`syncDir ${path.join(dir, 'store')}`)
  t.ok(storeOpened >= 0, 'store/ synced after LevelDB opened')
  t.ok(fs.existsSync(path.join(dir, 'store', 'CURRENT')), 'LevelDB had written CURRENT by then')

  const again = new RecordingFileSystem()
  await (await MemWAL.open({ dir, fs: again })).close()
  t.notOk(again.calls.some((c) => c.startsWith('mkdirp ')), 'directories that exist are not made again')
})

t.test('deadletter/ and quarantine/ are made with their parent synced', async (t) => {
  const root = tmpDir(t)
  const rec = new RecordingFileSystem()
  const dl = await DeadLetterLog.open(rec, path.join(root, 'deadletter'), 'backend', await createChecksums(), 1, 0)
  await dl.close()
  t.ok(syncedAfterMade(rec.calls, path.join(root, 'deadletter')), 'deadletter/')

  const dir = path.join(root, 'damaged')
  fs.cpSync(path.join(FIXTURES, 'corrupt-middle-segment'), dir, { recursive: true })
  const q = new RecordingFileSystem()
  await fsck({ dir, repair: true, fs: q })
  t.ok(fs.existsSync(path.join(dir, 'quarantine')), 'the repair kept evidence')
  t.ok(syncedAfterMade(q.calls, path.join(dir, 'quarantine')), 'quarantine/')
})
