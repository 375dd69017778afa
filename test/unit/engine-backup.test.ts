/**
 * MemWAL.backup and restoreBackup, on real directories:
 * - a backup taken while writers keep writing (small segments: the log
 *   rotates and retention purges meanwhile) passes fsck, and restored and
 *   opened, holds for every entry the last write acknowledged at or below the
 *   backup's version, or a later acknowledged one (the active segment is read
 *   as it is then), never an older value and never a value nobody wrote;
 * - the source is never needed again: the backup is read after the source
 *   directory is deleted;
 * - a non-empty target, a target inside the data directory and a live
 *   (locked) directory given to restore are refused with their codes, and a
 *   refused backup or restore leaves nothing behind.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { fsck, isMemwalError, MemWAL, restoreBackup } from '../../engine/index.js'
import { tmpDir } from '../support/tmp-dir.js'

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return isMemwalError(err) ? err.code : `not a MemwalError: ${String(err)}`
  }
}

interface Acked {
  readonly lsn: number
  readonly id: string
  /** undefined: a delete. */
  readonly value: unknown
}

t.test('a backup under a write load holds every write acknowledged up to its version; restored, it opens and reads back', async (t) => {
  const root = tmpDir(t)
  const dir = path.join(root, 'data')
  const db = await MemWAL.open({ dir, segmentBytes: 64 * 1024, recordBytesMax: 16 * 1024 })
  const acked: Acked[] = []
  let writing = true
  let n = 0
  const writer = async (w: number): Promise<void> => {
    while (writing) {
      const i = n++
      const key = `k${i % 150}`
      const namespace = `ns${i % 3}`
      if (i % 11 === 10) {
        const { lsn } = await db.delete(key, { namespace })
        acked.push({ lsn, id: `${namespace}/${key}`, value: undefined })
      } else {
        const value = { i, w, pad: 'x'.repeat(200 + (i % 300)) }
        const { lsn } = await db.put(key, value, { namespace, tags: [`t${i % 5}`] })
        acked.push({ lsn, id: `${namespace}/${key}`, value })
      }
    }
  }
  const writers = [0, 1, 2, 3].map(writer)
  while (acked.length < 1500) await new Promise((r) => setTimeout(r, 5))
  const target = path.join(root, 'backup')
  const result = await db.backup(target)
  const afterBackup = acked.length
  while (acked.length < afterBackup + 300) await new Promise((r) => setTimeout(r, 5))
  writing = false
  await Promise.all(writers)
  t.ok(result.version >= 1500, `the backup's version (${result.version}) covers what was acknowledged before it began`)
  t.ok(result.segments >= 1 && result.storeEntries > 0, `${result.segments} segments and ${result.storeEntries} store entries copied`)
  t.notOk(fs.readdirSync(root).some((n) => n.includes('.partial-')), 'no partial directory is left')
  await db.close()
  fs.rmSync(dir, { recursive: true, force: true }) // the source is gone: the backup must stand alone

  const report = await fsck({ dir: target, repair: false })
  t.equal(report.unrepaired, 0, `fsck finds the backup clean: ${JSON.stringify(report.findings.slice(0, 3))}`)

  const restored = path.join(root, 'restored')
  await restoreBackup(target, restored)
  const back = await MemWAL.open({ dir: restored })
  t.teardown(() => back.close())
  const ids = [...new Set(acked.map((a) => a.id))]
  const wrong: string[] = []
  for (const id of ids) {
    const [namespace, key] = id.split('/') as [string, string]
    const got = await back.get(key, { namespace })
    const writes = acked.filter((a) => a.id === id).sort((a, b) => a.lsn - b.lsn)
    const atVersion = writes.filter((a) => a.lsn <= result.version).at(-1)
    // What may be read: the last write at or below the version, or any acknowledged after it (none at all if nothing was written by then).
    const allowed = [atVersion, ...writes.filter((a) => a.lsn > result.version)].map((a) => JSON.stringify(a?.value))
    if (!allowed.includes(JSON.stringify(got))) wrong.push(`${id}: read ${JSON.stringify(got)?.slice(0, 60)}, last at version ${JSON.stringify(atVersion?.value)?.slice(0, 60)}`)
  }
  t.strictSame(wrong, [], `all ${ids.length} entries read back as of the backup's version (or later)`)
  const { lsn } = await back.put('after-restore', 1)
  t.ok(lsn > result.version, 'the restored store writes on after its log')
})

t.test('refusals: non-empty target, target inside the store, a live directory to restore', async (t) => {
  const root = tmpDir(t)
  const dir = path.join(root, 'data')
  const db = await MemWAL.open({ dir })
  t.teardown(() => db.close())
  await db.put('k', 1)
  const busy = path.join(root, 'busy')
  fs.mkdirSync(busy)
  fs.writeFileSync(path.join(busy, 'something'), 'x')
  t.equal(await codeOf(db.backup(busy)), 'TARGET_NOT_EMPTY', 'a backup into a non-empty directory is refused')
  t.strictSame(fs.readdirSync(busy), ['something'], 'and touches nothing there')
  t.equal(await codeOf(db.backup(path.join(dir, 'b'))), 'INVALID_OPTIONS', 'a backup inside the data directory is refused')
  const empty = path.join(root, 'empty')
  fs.mkdirSync(empty)
  const r = await db.backup(empty)
  t.equal(r.dir, empty, 'an empty directory is a fine target')
  t.equal(await codeOf(restoreBackup(empty, busy)), 'TARGET_NOT_EMPTY', 'a restore into a non-empty directory is refused')
  t.equal(await codeOf(restoreBackup(dir, path.join(root, 'r2'))), 'LOCK_HELD', 'a live data directory is not a backup')
  t.notOk(fs.existsSync(path.join(root, 'r2')), 'a refused restore leaves nothing')
  t.strictSame(fs.readdirSync(root).filter((n) => n.includes('.partial-')), [], 'no partial directories')
})
