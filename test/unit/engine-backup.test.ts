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
 *   refused backup or restore leaves nothing behind;
 * - a backup that fails midway (ENOSPC on a write, EIO on a sync, injected
 *   through the engine's FileSystem while it copies the log) rejects with
 *   IO_ERROR naming the errno and removes its partial directory; the engine
 *   goes on, and the next backup to the same target works;
 * - a partial directory a crash left is removed by the next backup or
 *   restore to the same target (only `<target>.partial-<8 hex>`).
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { fsck, isMemwalError, MemWAL, restoreBackup, type FileHandle, type OpenMode, type OpenOptions } from '../../engine/index.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { ForwardingFileHandle, ForwardingFileSystem } from '../support/forwarding-fs.js'
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
  t.ok(result.segments >= 1 && result.bytes > 0, `${result.segments} segments and ${result.bytes} bytes copied`)
  t.equal(result.storeCopy, 'files', 'the store was copied by its files')
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

/** The real filesystem, except that once armed, the copy of a log segment into a backup fails: `write` (ENOSPC) or `datasync` (EIO). */
class FailingCopyFs extends ForwardingFileSystem {
  armed: { readonly op: 'write' | 'datasync'; readonly code: string } | undefined
  failures = 0

  constructor() {
    super(new NodeFileSystem())
  }

  override async open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    const h = await this.inner.open(p, mode, options)
    if (mode !== 'create' || !p.includes('.partial-') || !p.endsWith('.seg')) return h
    const owner = this
    const fail = (op: 'write' | 'datasync'): void => {
      if (owner.armed?.op !== op) return
      owner.failures++
      throw Object.assign(new Error(`${owner.armed.code}: injected on ${op} of ${p}`), { code: owner.armed.code })
    }
    return new (class extends ForwardingFileHandle {
      override async write(data: Uint8Array, position: number): Promise<void> {
        fail('write')
        return super.write(data, position)
      }

      override async datasync(): Promise<void> {
        fail('datasync')
        return super.datasync()
      }
    })(h)
  }
}

for (const fault of [{ op: 'write', code: 'ENOSPC' }, { op: 'datasync', code: 'EIO' }] as const) {
  t.test(`a backup that fails midway (${fault.code} on ${fault.op}) removes its partial directory; the next one works`, async (t) => {
    const root = tmpDir(t)
    const failing = new FailingCopyFs()
    const db = await MemWAL.open({ dir: path.join(root, 'data'), fs: failing })
    t.teardown(() => db.close())
    for (let i = 0; i < 50; i++) await db.put(`k${i}`, i)
    const target = path.join(root, 'backup')
    failing.armed = fault
    const err = await db.backup(target).then(() => undefined, (e: unknown) => e)
    t.match(err, { code: 'IO_ERROR', details: { errno: fault.code } }, `rejected, typed: IO_ERROR with errno ${fault.code}`)
    t.ok(failing.failures > 0, 'the fault was met while copying the log (after the store snapshot)')
    t.strictSame(fs.readdirSync(root).sort(), ['data'], 'no partial directory left, no target')
    failing.armed = undefined
    await db.put('after', 1)
    const r = await db.backup(target)
    t.equal(r.dir, target, 'the next backup to the same target works')
    t.equal((await fsck({ dir: target, repair: false })).clean, true, 'and passes fsck')
    t.strictSame(fs.readdirSync(root).sort(), ['backup', 'data'])
  })
}

t.test('a partial directory a crash left is removed by the next backup or restore to the same target', async (t) => {
  const root = tmpDir(t)
  const db = await MemWAL.open({ dir: path.join(root, 'data') })
  t.teardown(() => db.close())
  await db.put('k', 1)
  const target = path.join(root, 'backup')
  const stale = (name: string): string => {
    const p = path.join(root, name)
    fs.mkdirSync(path.join(p, 'wal'), { recursive: true })
    fs.writeFileSync(path.join(p, 'wal', '00000000000000000001.seg'), 'half a segment')
    fs.writeFileSync(path.join(p, 'MEMWAL'), '{}')
    return p
  }
  stale('backup.partial-0badc0de')
  stale('backup.partial-notmine') // not a name a backup makes: left alone
  stale('backups.partial-00000000') // another target's
  await db.backup(target)
  t.strictSame(fs.readdirSync(root).sort(), ['backup', 'backup.partial-notmine', 'backups.partial-00000000', 'data'], 'the stale partial of this target is gone, nothing else')
  stale('restored.partial-12345678')
  await restoreBackup(target, path.join(root, 'restored'))
  t.notOk(fs.existsSync(path.join(root, 'restored.partial-12345678')), 'restore removes its target\'s stale partial too')
  t.ok(fs.existsSync(path.join(root, 'restored', 'MEMWAL')))
})
