/**
 * The read-only tools leave a data directory as they found it: `memwal fsck`
 * without --repair, `memwal status` and `memwal dump` on a directory whose
 * store/ is missing (never made, or lost) create nothing, and fsck and
 * status report the missing store; `fsck --repair` makes it again from the
 * log. On a directory with its store, LevelDB's open (which rewrites its
 * files) is of a private copy: every file as it was, its mode too.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemWAL } from '../../engine/index.js'
import { tmpDir } from '../support/tmp-dir.js'
import { copyFixture, fsckReport, oneJson, runCli } from '../support/cli-run.js'

/** Every entry under `root` (itself included) with its size, mtime and mode: what a write would change. */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>()
  const visit = (p: string): void => {
    const s = fs.lstatSync(p, { bigint: true })
    out.set(path.relative(root, p) || '.', `${s.size} ${s.mtimeNs} ${s.mode.toString(8)}`)
    if (s.isDirectory()) for (const name of fs.readdirSync(p)) visit(path.join(p, name))
  }
  visit(root)
  return out
}

/** A copy of the clean fixture (480 records, both checkpoints at 480) whose store/ is gone. */
function storeless(t: Parameters<typeof copyFixture>[0]): string {
  const dir = copyFixture(t, 'clean')
  fs.rmSync(path.join(dir, 'store'), { recursive: true })
  return dir
}

t.test('fsck without --repair on a directory with no store/ creates nothing and reports the missing store (exit 4)', async (t) => {
  const dir = storeless(t)
  const before = snapshot(dir)
  const r = await runCli(['fsck', dir, '--json'])
  const after = snapshot(dir)
  // The data directory's own mtime moves with the lock fsck takes and releases (memwal.lock/ made, then removed): only that.
  before.delete('.')
  after.delete('.')
  t.strictSame([...after], [...before], 'every entry as it was: no store/ made')
  t.equal(r.code, 4, r.stderr)
  const doc = fsckReport(t, r)
  t.match(doc, { clean: false, unrepaired: 1, counts: { 'missing-store': 1 }, lastLsn: 480, checkpoints: { backend: 0, index: 0 } })
  t.match(doc.findings, [{ kind: 'missing-store', repaired: false, detail: /--repair makes it and replays the log into it/ }])
  const text = await runCli(['fsck', dir])
  t.match(text.stdout, /missing-store: .*store is missing/)
})

t.test('status and dump on a directory with no store/ leave it as it was; status reports the missing store', async (t) => {
  const dir = storeless(t)
  const before = snapshot(dir)
  const s = await runCli(['status', dir, '--json'])
  t.equal(s.code, 0, s.stderr)
  t.strictSame([...snapshot(dir)], [...before], 'status: every entry as it was, the directory\'s mtime too')
  const doc = oneJson<{ verified: { clean?: boolean; counts?: Record<string, number> }; checkpoints?: { backend: number; index: number }; backlogRecords?: number }>(s)
  t.match(doc, { verified: { clean: false, counts: { 'missing-store': 1 } }, checkpoints: { backend: 0, index: 0 }, backlogRecords: 480 })
  const d = await runCli(['dump', dir, '--json'])
  t.equal(d.code, 0, d.stderr)
  t.match(oneJson(d), { records: 480, damaged: 0 })
  t.strictSame([...snapshot(dir)], [...before], 'dump: every entry as it was')
})

t.test('fsck --repair makes the missing store again from the log (exit 1), and it is clean after', async (t) => {
  const dir = storeless(t)
  const r = await runCli(['fsck', dir, '--repair', '--json'])
  t.equal(r.code, 1, r.stderr)
  t.match(fsckReport(t, r), { repaired: 1, unrepaired: 0, findings: [{ kind: 'missing-store', repaired: true }], checkpoints: { backend: 480, index: 480 } })
  const again = await runCli(['fsck', dir, '--json'])
  t.equal(again.code, 0, again.stderr)
  t.match(fsckReport(t, again), { clean: true, findings: [] })
})

t.test('fsck without --repair and status on a directory with its store leave every file as it was (LevelDB opened from a copy)', async (t) => {
  // A store memwal wrote (its LevelDB log not yet in a table: the next open of it would write one), and a fixture's (mode 0644).
  const written = path.join(tmpDir(t), 'data')
  const db = await MemWAL.open({ dir: written })
  for (let i = 0; i < 200; i++) await db.put(`k${i}`, { i }, { namespace: 'ns', tags: ['t'] })
  await db.flush()
  await db.close()
  for (const [label, dir] of [['written by memwal', written], ['the clean fixture', copyFixture(t, 'clean')]] as const) {
    const before = snapshot(dir)
    const s = await runCli(['status', dir, '--json'])
    t.equal(s.code, 0, s.stderr)
    t.match(oneJson(s), { verified: { clean: true } }, `${label}: status verified it`)
    t.strictSame([...snapshot(dir)], [...before], `${label}: status left every entry as it was, the directory's mtime too`)
    const r = await runCli(['fsck', dir, '--json'])
    t.equal(r.code, 0, r.stderr)
    t.match(fsckReport(t, r), { clean: true })
    const after = snapshot(dir)
    before.delete('.')
    after.delete('.')
    t.strictSame([...after], [...before], `${label}: fsck left every entry as it was (the directory's mtime aside: the lock)`)
  }
})
