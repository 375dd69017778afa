/**
 * A backup while the live store's LevelDB is reopened (level-store.ts
 * reopens it after a failed write): the reopen recovers LevelDB's log into a
 * new table, writes a new MANIFEST and a new log, and deletes the old
 * MANIFEST and log, all while the backup copies the store by its files
 * (sinks/store-copy.ts). Here a real store's write is made to fail and the
 * reopen it brings is run to its end at one point of the copy, chosen through
 * the engine's FileSystem (the one the copy reads through):
 * - after the copy listed the store's files (before it read CURRENT);
 * - after the copy read CURRENT (the MANIFEST it names is then gone);
 * - once the copy opened the MANIFEST (its handle still reads the old one);
 * - once the copy opened LevelDB's log (the same for the log);
 * - before the copy of the first table (the reopen's table is new);
 * - at every copy by files, and then once more while the store is copied
 *   entry by entry (the reopen closes the iterator the copy reads: the copy
 *   is made again once the reopen is done);
 * - at every copy by files and every copy entry by entry: IO_ERROR.
 * In each case but the last the backup is right: fsck finds it clean, and
 * restored it reads back every entry as of its version (the ones written
 * during the backup included when its version covers them). Never silently
 * wrong.
 */
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { fsck, isMemwalError, MemWAL, restoreBackup, type BackupResult, type FileHandle, type OpenMode, type OpenOptions } from '../../engine/index.js'
import { COPY_ATTEMPTS_MAX } from '../../engine/sinks/store-copy.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { ForwardingFileSystem } from '../support/forwarding-fs.js'
import { failAndReopen as failAndReopenStore } from '../support/store-reopen.js'
import { tmpDir } from '../support/tmp-dir.js'

type Point = 'listed' | 'after CURRENT' | 'MANIFEST opened' | 'log opened' | 'before a table' | 'entries'

const inStore = (p: string): boolean => p.includes(`${path.sep}store${path.sep}`) && !p.includes('.partial-')

/** The real filesystem, which runs `reopen` (once per copy attempt, at the points `at` picks) as the backup reaches them. */
class ReopeningFs extends ForwardingFileSystem {
  /** Copies by files begun (reads of the live store's CURRENT). */
  attempts = 0
  /** Syncs of the directory of a copy entry by entry (its new database is opened, then written): a point of it. */
  entryCopies = 0
  reopens = 0
  /** Set by the test once its store is built: what the backup's copy triggers. */
  reopen: (() => Promise<void>) | undefined
  /** Points (with their attempt) already fired: each at most once. */
  private readonly fired = new Set<string>()

  constructor(private readonly at: (point: Point, attempt: number) => boolean) {
    super(new NodeFileSystem())
  }

  private async maybe(point: Point): Promise<void> {
    const attempt = point === 'entries' ? this.entryCopies : this.attempts
    const key = `${point} ${attempt}`
    if (this.reopen === undefined || this.fired.has(key) || !this.at(point, attempt)) return
    this.fired.add(key)
    this.reopens++
    await this.reopen()
  }

  override async readdir(p: string): Promise<string[]> {
    const names = await super.readdir(p)
    // The copy by files lists the store before it reads CURRENT: the attempt about to begin.
    if (p.endsWith(`${path.sep}store`) && !p.includes('.partial-') && this.reopen !== undefined) {
      this.attempts++
      await this.maybe('listed')
      this.attempts--
    }
    return names
  }

  override async readFile(p: string): Promise<Uint8Array> {
    const bytes = await super.readFile(p)
    if (p.endsWith(`${path.sep}store${path.sep}CURRENT`) && inStore(p)) {
      this.attempts++
      await this.maybe('after CURRENT')
    }
    return bytes
  }

  override async open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    const h = await super.open(p, mode, options)
    if (mode === 'read' && inStore(p)) {
      if (/MANIFEST-\d+$/.test(p)) await this.maybe('MANIFEST opened')
      if (p.endsWith('.log')) await this.maybe('log opened')
    }
    return h
  }

  async copyFile(from: string, to: string): Promise<void> {
    if (inStore(from) && /\.(ldb|sst)$/.test(from)) await this.maybe('before a table')
    await new NodeFileSystem().copyFile(from, to)
  }

  override async syncDir(p: string): Promise<void> {
    // The copy entry by entry opens its new database (openStore syncs its directory) after it made its iterator of the live store.
    if (p.includes('.partial-') && p.endsWith(`${path.sep}store`) && this.attempts >= COPY_ATTEMPTS_MAX) {
      this.entryCopies++
      await this.maybe('entries')
    }
    return super.syncDir(p)
  }
}

const value = (i: number): { i: number; pad: string } => ({ i, pad: `v${i}-`.repeat(60) })

/** The reopen a write failed into (test/support/store-reopen.ts), its put's LSN kept with the others. */
async function failAndReopen(db: MemWAL, key: string, lsns: Map<string, number>): Promise<void> {
  lsns.set(key, await failAndReopenStore(db, key, value(-1)))
}

/** A store with a table, and writes in LevelDB's log since. */
async function liveStore(t: Test, reopening: ReopeningFs): Promise<{ db: MemWAL; dir: string; lsns: Map<string, number> }> {
  const dir = path.join(tmpDir(t), 'data')
  const first = await MemWAL.open({ dir, segmentBytes: 64 * 1024 })
  const lsns = new Map<string, number>()
  for (let i = 0; i < 300; i++) lsns.set(`k${i}`, (await first.put(`k${i}`, value(i))).lsn)
  await first.flush({ timeoutMs: 20_000 })
  await first.close()
  const db = await MemWAL.open({ dir, segmentBytes: 64 * 1024, fs: reopening }) // LevelDB wrote its log into a table at this open
  for (let i = 300; i < 500; i++) lsns.set(`k${i}`, (await db.put(`k${i}`, value(i))).lsn)
  await db.flush({ timeoutMs: 20_000 })
  t.ok(fs.readdirSync(path.join(dir, 'store')).some((f) => /^\d+\.ldb$/.test(f)), 'the store has a table')
  let n = 0
  reopening.reopen = () => failAndReopen(db, `during-${n++}`, lsns)
  return { db, dir, lsns }
}

/** fsck finds the backup clean, and restored alone it reads back every entry written at or below its version. */
async function right(t: Test, root: string, backup: BackupResult, lsns: Map<string, number>): Promise<void> {
  const report = await fsck({ dir: backup.dir, repair: false })
  t.equal(report.unrepaired, 0, `fsck finds the backup clean: ${JSON.stringify(report.findings.slice(0, 3))}`)
  const restored = path.join(root, 'restored')
  await restoreBackup(backup.dir, restored)
  const back = await MemWAL.open({ dir: restored })
  try {
    const wrong: string[] = []
    let covered = 0
    for (const [key, lsn] of lsns) {
      if (lsn > backup.version) continue
      covered++
      const want = key.startsWith('during-') ? value(-1) : value(Number(key.slice(1)))
      const got = await back.get(key)
      if (JSON.stringify(got) !== JSON.stringify(want)) wrong.push(`${key} (lsn ${lsn}): ${JSON.stringify(got)?.slice(0, 40)}`)
    }
    t.strictSame(wrong.slice(0, 10), [], `restored, the backup reads back all ${covered} entries at or below its version ${backup.version}`)
  } finally {
    await back.close()
  }
}

const cases: readonly { name: string; at: (point: Point, attempt: number) => boolean; expect: 'files' | 'entries' | 'refused' }[] = [
  { name: 'reopened after the copy listed its files', at: (p, a) => p === 'listed' && a === 1, expect: 'files' },
  { name: 'reopened after the copy read CURRENT', at: (p, a) => p === 'after CURRENT' && a === 1, expect: 'files' },
  { name: 'reopened once the copy opened the MANIFEST', at: (p, a) => p === 'MANIFEST opened' && a === 1, expect: 'files' },
  { name: "reopened once the copy opened LevelDB's log", at: (p, a) => p === 'log opened' && a === 1, expect: 'files' },
  { name: 'reopened before the copy of the first table', at: (p, a) => p === 'before a table' && a === 1, expect: 'files' },
  { name: 'reopened at every copy by files, then during the copy entry by entry', at: (p, a) => p === 'after CURRENT' || (p === 'entries' && a === 1), expect: 'entries' },
  { name: 'reopened at every copy by files and every copy entry by entry', at: (p) => p === 'after CURRENT' || p === 'entries', expect: 'refused' },
]

for (const c of cases) {
  t.test(`backup while the store is ${c.name}: ${c.expect === 'refused' ? 'refused with a typed error' : 'right'}`, async (t) => {
    const reopening = new ReopeningFs(c.at)
    const { db, dir, lsns } = await liveStore(t, reopening)
    const root = path.dirname(dir)
    const target = path.join(root, 'backup')
    let backup: BackupResult | undefined
    let refused: unknown
    try {
      backup = await db.backup(target)
    } catch (err) {
      refused = err
    }
    t.ok(reopening.reopens >= 1, `the store was reopened during the copy (${reopening.reopens} times; ${reopening.attempts} copies by files; ${reopening.entryCopies} syncs of the directory of a copy entry by entry)`)
    // The engine goes on after the reopen: a write after the backup lands and reads back.
    await db.put('after', 1)
    t.equal(await db.get('after'), 1, 'the engine goes on')
    await db.close()
    fs.rmSync(dir, { recursive: true, force: true }) // the backup must stand alone
    t.notOk(fs.readdirSync(root).some((n) => n.includes('.partial-')), 'no partial directory is left')
    if (c.expect === 'refused') {
      t.equal(backup, undefined, 'no backup is made')
      t.ok(isMemwalError(refused) && refused.code === 'IO_ERROR', `refused with IO_ERROR: ${String(refused)}`)
      t.match(String(refused), /reopened after a failed write during each of 4 copies/, 'saying why')
      t.notOk(fs.existsSync(target), 'a refused backup leaves no directory that looks whole')
      return
    }
    if (backup === undefined) throw refused
    t.equal(backup.storeCopy, c.expect, `the store copied by ${c.expect}`)
    await right(t, root, backup, lsns)
  })
}
