/**
 * A backup and a restore SIGKILLed part-way (review of 2026-12-02, item 1),
 * with real processes, the real lock and LevelDB: the kill child's
 * `backup-slow` and `restore-slow` profiles (children/backup-child.ts) slow
 * every write into their partial directory and say when the first one starts;
 * this process kills them then. What they leave, `<target>.partial-<hex>`,
 * holds the marker and part of a store: it must never restore, open or check
 * as a store (BACKUP_INCOMPLETE, for the INCOMPLETE sentinel it holds). The
 * killed child's locks are left too (on the partial directory, and on the
 * source of a restore): the next backup or restore to the same target takes
 * them over, removes the partial directory and makes a whole copy.
 */
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { fsck, MemWAL, restoreBackup } from '../../engine/index.js'
import { expectRefusedAsIncomplete } from '../support/incomplete-copy.js'
import { tmpDir } from '../support/tmp-dir.js'
import { spawnKillChild } from './kill-child.js'

const ENTRIES = 300

async function makeStore(dir: string): Promise<void> {
  const db = await MemWAL.open({ dir })
  for (let i = 0; i < ENTRIES; i += 50) await db.batch(Array.from({ length: 50 }, (_, j) => ({ type: 'put' as const, key: `k${i + j}`, value: { i: i + j, pad: 'x'.repeat(500) } })))
  await db.flush()
  await db.close()
}

/** Runs the child until its first slowed write, then SIGKILLs it; returns the partial directory it left. */
async function killPartWay(t: Test, args: string[], target: string): Promise<string> {
  const child = spawnKillChild(args)
  t.teardown(() => child.killIfRunning())
  const line = await child.waitFor((l) => l.startsWith('copying ') || l.startsWith('error ') || l === 'done')
  t.match(line, /^copying /, `the child is copying (${line})`)
  child.proc.kill('SIGKILL')
  t.equal((await child.ended).signal, 'SIGKILL', 'killed part-way')
  const parent = path.dirname(target)
  const partials = fs.readdirSync(parent).filter((n) => n.startsWith(`${path.basename(target)}.partial-`))
  t.equal(partials.length, 1, `one partial directory left: ${partials.join(', ')}`)
  t.notOk(fs.existsSync(target), 'and no target')
  return path.join(parent, partials[0] ?? '')
}

async function refusedEverywhere(t: Test, partial: string, root: string): Promise<void> {
  t.ok(fs.existsSync(path.join(partial, 'MEMWAL')), 'the partial directory holds the marker (what made it look like a store)')
  t.ok(fs.existsSync(path.join(partial, 'INCOMPLETE')), 'and the sentinel')
  await expectRefusedAsIncomplete(t, partial, root)
}

async function readsBack(t: Test, dir: string): Promise<void> {
  const db = await MemWAL.open({ dir })
  try {
    let missing = 0
    for (let i = 0; i < ENTRIES; i++) if (((await db.get(`k${i}`)) as { i?: number } | undefined)?.i !== i) missing++
    t.equal(missing, 0, `all ${ENTRIES} entries read back from ${path.basename(dir)}`)
  } finally {
    await db.close()
  }
}

t.test('a backup SIGKILLed part-way leaves a directory nothing restores, opens or checks; the next backup replaces it', async (t) => {
  const root = tmpDir(t, 'memwal-backup-kill-')
  const dir = path.join(root, 'data')
  await makeStore(dir)
  const target = path.join(root, 'bk')
  const partial = await killPartWay(t, ['backup-slow', dir, target], target)
  await refusedEverywhere(t, partial, root)
  // The killed child's locks (the store's, the partial's) are taken over: it is gone.
  const db = await MemWAL.open({ dir })
  const r = await db.backup(target)
  await db.close()
  t.equal(r.dir, target, 'the next backup to the same target works')
  t.notOk(fs.existsSync(partial), 'and removed the partial directory')
  t.notOk(fs.existsSync(path.join(target, 'INCOMPLETE')), 'the backup holds no sentinel')
  t.equal((await fsck({ dir: target, repair: false })).clean, true, 'the backup passes fsck')
  await readsBack(t, target)
})

t.test('a restore SIGKILLed part-way leaves a directory nothing restores, opens or checks; the backup\'s lock it left is taken over', async (t) => {
  const root = tmpDir(t, 'memwal-restore-kill-')
  const dir = path.join(root, 'data')
  await makeStore(dir)
  const backup = path.join(root, 'bk')
  const db = await MemWAL.open({ dir })
  await db.backup(backup)
  await db.close()
  const target = path.join(root, 'restored')
  const partial = await killPartWay(t, ['restore-slow', backup, target], target)
  await refusedEverywhere(t, partial, root)
  t.ok(fs.existsSync(path.join(backup, 'memwal.lock')), 'the killed restore left its lock on the backup')
  const r = await restoreBackup(backup, target)
  t.equal(r.dir, target, 'the next restore takes the lock over (its holder is gone) and works')
  t.notOk(fs.existsSync(partial), 'removing the partial directory')
  t.notOk(fs.existsSync(path.join(backup, 'memwal.lock')), 'and releasing the backup\'s lock')
  t.strictSame(fs.readdirSync(target).filter((n) => n === 'INCOMPLETE' || n.startsWith('memwal.lock')), [], 'the restored directory holds no sentinel and no lock')
  await readsBack(t, target)
})
