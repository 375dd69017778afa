/**
 * The backup's copy of the live LevelDB store by its files
 * (engine/sinks/store-copy.ts), against what LevelDB does to its files while
 * it is copied, simulated through the engine's FileSystem (LevelDB itself
 * writes beside it): a file of the directory listing gone by the time its
 * copy is made, as a log switch or a compaction deletes them.
 * - a log gone: it may hold writes no table has, and LevelDB would open a copy
 *   without it: the copy is made again;
 * - a table gone that the copied MANIFEST names: LevelDB refuses to open the
 *   copy, which is made again;
 * - every attempt raced: the store is copied entry by entry.
 * In each case the backup, opened alone, reads back every entry. The store
 * under test has a table (written when it was reopened), writes in its log
 * since, and a log whose head retention purged: a store copy older than its
 * files would need records the backup's segments no longer hold.
 */
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { MemWAL } from '../../engine/index.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { ForwardingFileSystem } from '../support/forwarding-fs.js'
import { tmpDir } from '../support/tmp-dir.js'
import type { FileHandle, FileStat, OpenMode, OpenOptions } from '../../engine/index.js'

/** The real filesystem, except that files `hidden` picks (by path and copy attempt, counted by reads of the store's CURRENT) are gone. */
class VanishingFs extends ForwardingFileSystem {
  attempts = 0
  constructor(private readonly hidden: (p: string, attempt: number) => boolean) {
    super(new NodeFileSystem())
  }

  private gone(p: string): boolean {
    return this.attempts > 0 && p.includes(`${path.sep}store${path.sep}`) && this.hidden(p, this.attempts)
  }

  override readFile(p: string): Promise<Uint8Array> {
    if (p.endsWith(`${path.sep}store${path.sep}CURRENT`) && !p.includes('.partial-')) this.attempts++
    return super.readFile(p)
  }

  override open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    if (mode === 'read' && this.gone(p)) return Promise.reject(Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' }))
    return super.open(p, mode, options)
  }

  override stat(p: string): Promise<FileStat | undefined> {
    return this.gone(p) ? Promise.resolve(undefined) : super.stat(p)
  }

  async copyFile(from: string, to: string): Promise<void> {
    if (this.gone(from)) throw Object.assign(new Error(`ENOENT: ${from}`), { code: 'ENOENT' })
    await new NodeFileSystem().copyFile(from, to)
  }
}

const value = (i: number): { i: number; pad: string } => ({ i, pad: `v${i}-`.repeat(60) })

/** A store with a table, writes in its log after it, and the head of its log purged. */
async function storeWithHistory(t: Test, vanishing: VanishingFs): Promise<{ db: MemWAL; dir: string; n: number }> {
  const dir = path.join(tmpDir(t), 'data')
  const first = await MemWAL.open({ dir, segmentBytes: 64 * 1024 })
  for (let i = 0; i < 600; i++) await first.put(`k${i}`, value(i))
  await first.flush({ timeoutMs: 20_000 })
  await first.close()
  const db = await MemWAL.open({ dir, segmentBytes: 64 * 1024, fs: vanishing }) // LevelDB wrote its log into a table at this open
  let n = 600
  for (; n < 800; n++) await db.put(`k${n}`, value(n))
  await db.flush({ timeoutMs: 20_000 })
  const firstBase = (): number => Number(fs.readdirSync(path.join(dir, 'wal')).find((f) => f.endsWith('.seg'))?.slice(0, 20))
  const deadline = Date.now() + 20_000
  while (firstBase() <= 600) {
    if (Date.now() > deadline) throw new Error(`the log's head was not purged (first segment ${firstBase()})`)
    await new Promise((r) => setTimeout(r, 300))
    await db.put(`k${n}`, value(n)) // a purge is considered after writes, at most once a second
    n++
  }
  await db.flush({ timeoutMs: 20_000 })
  t.ok(fs.readdirSync(path.join(dir, 'store')).some((f) => /^\d+\.ldb$/.test(f)), 'the store has a table')
  return { db, dir, n }
}

async function readsBack(t: Test, backupDir: string, n: number): Promise<void> {
  const back = await MemWAL.open({ dir: backupDir })
  try {
    const wrong: number[] = []
    for (let i = 0; i < n; i++) if (JSON.stringify(await back.get(`k${i}`)) !== JSON.stringify(value(i))) wrong.push(i)
    t.strictSame(wrong.slice(0, 10), [], `the backup, opened alone, reads back all ${n} entries`)
  } finally {
    await back.close()
  }
}

const cases = [
  { name: 'a log gone before its copy: the copy is made again', hide: (p: string, a: number) => a === 1 && p.endsWith('.log'), attempts: 2, storeCopy: 'files' },
  { name: 'a table the MANIFEST names gone before its copy: LevelDB refuses the copy, which is made again', hide: (p: string, a: number) => a === 1 && p.endsWith('.ldb'), attempts: 2, storeCopy: 'files' },
  { name: 'every attempt raced: the store is copied entry by entry', hide: (p: string) => p.endsWith('.log'), attempts: 4, storeCopy: 'entries' },
] as const

for (const c of cases) {
  t.test(c.name, async (t) => {
    const vanishing = new VanishingFs(c.hide)
    const { db, dir, n } = await storeWithHistory(t, vanishing)
    const target = `${dir}-backup`
    vanishing.attempts = 0
    const r = await db.backup(target)
    await db.close()
    t.equal(vanishing.attempts, c.attempts, `${c.attempts} copies by files attempted`)
    t.equal(r.storeCopy, c.storeCopy, `the store copied by ${c.storeCopy}`)
    fs.rmSync(dir, { recursive: true, force: true })
    await readsBack(t, target, n)
  })
}

t.test('nothing vanishing: one copy by files, and the active segment copied up to where the log ends', async (t) => {
  const vanishing = new VanishingFs(() => false)
  const { db, dir, n } = await storeWithHistory(t, vanishing)
  const target = `${dir}-backup`
  vanishing.attempts = 0
  const active = db.health().wal.activeSegment
  const r = await db.backup(target)
  await db.close()
  t.equal(vanishing.attempts, 1)
  t.equal(r.storeCopy, 'files')
  const size = (d: string): number => fs.statSync(path.join(d, 'wal', active)).size
  t.ok(size(target) < size(dir), `the backup's active segment (${size(target)} bytes) is not the preallocated file (${size(dir)})`)
  fs.rmSync(dir, { recursive: true, force: true })
  await readsBack(t, target, n)
})
