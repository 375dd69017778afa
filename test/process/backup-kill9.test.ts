/**
 * Online backup under load, then SIGKILL (issue 12 item 3), with real
 * processes, a real directory and LevelDB: a child (the kill child's `engine`
 * profile `backup`, test/process/children/engine-writer.ts) writes bursts of
 * puts and batches on keys of its own while its backend goes down, fails and
 * comes back, and once 300 writes were issued runs `MemWAL.backup` while the
 * writes go on. It prints the backup's version when the backup resolved, and
 * is SIGKILLed 0-30 ms later, writes still in flight. Then this process:
 * - runs fsck on the backup: clean;
 * - restores it: into the killed store's directory (not empty) and into a
 *   non-empty directory it is refused (TARGET_NOT_EMPTY); into a new one it
 *   works;
 * - opens the restored store and reads back every put the child saw
 *   acknowledged at or below the backup's version, each key written once
 *   (`u/<seed>/<counter>...`), so each must hold exactly that write's value;
 * - reopens the killed store for the next round (kill-loop.ts).
 *
 * MEMWAL_KILLS sets the number of rounds (default 3); MEMWAL_SEED replays a
 * run's child seeds and kill delays.
 */
import { randomInt } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { fsck, MemWAL, restoreBackup } from '../../engine/index.js'
import { tmpDir } from '../support/tmp-dir.js'
import { ENGINE_PROFILES, ownKeyWrite, type WriteValue } from './children/engine-writer.js'
import { killLoop, type Round } from './kill-loop.js'

const KILLS = Number(process.env['MEMWAL_KILLS'] ?? 3)
const SEED = Number(process.env['MEMWAL_SEED'] ?? randomInt(0, 2 ** 31))
const KILL_DELAY_MS_MAX = 30
const PROFILE = ENGINE_PROFILES.backup

t.test(`backup under load, SIGKILL, restore: every write acknowledged at or below the backup's version reads back (seed ${SEED})`, async (t) => {
  const root = tmpDir(t, 'memwal-backup-kill9-')
  const dir = path.join(root, 'data')
  const busy = path.join(root, 'busy')
  fs.mkdirSync(busy)
  fs.writeFileSync(path.join(busy, 'something'), 'x')
  const target = (round: number): string => path.join(root, `backup-${round}`)
  let checkedPuts = 0
  const check = async (r: Round): Promise<number | undefined> => {
    const version = r.backupVersion
    if (version === undefined) {
      t.fail(`round ${r.round}: killed before the backup resolved`)
      return undefined
    }
    const backup = target(r.round)
    const report = await fsck({ dir: backup, repair: false })
    t.equal(report.unrepaired, 0, `round ${r.round}: fsck finds the backup (version ${version}) clean`)
    await t.rejects(restoreBackup(backup, dir), { code: 'TARGET_NOT_EMPTY' }, 'a restore into the killed store\'s directory is refused')
    await t.rejects(restoreBackup(backup, busy), { code: 'TARGET_NOT_EMPTY' }, 'and into any non-empty directory')
    t.strictSame(fs.readdirSync(busy), ['something'], 'which it leaves as it was')
    const restoredDir = path.join(root, `restored-${r.round}`)
    await restoreBackup(backup, restoredDir)
    // The child's 60 ms apply timeout is for its flaky backend; this process reads a healthy one with the defaults.
    const restored = await MemWAL.open({ segmentBytes: PROFILE.options.segmentBytes, dir: restoredDir })
    const wrong: string[] = []
    let puts = 0
    let after = 0
    try {
      for (const [counter, lsn] of r.acks) {
        if (lsn > version) {
          after++
          continue
        }
        for (const op of ownKeyWrite(r.childSeed, counter, [])) {
          if (op.type !== 'put' || !op.key.startsWith('u/')) continue
          puts++
          const got = (await restored.get(op.key, op.namespace !== undefined ? { namespace: op.namespace } : undefined)) as WriteValue | undefined
          const want = op.value as WriteValue
          if (got?.s !== want.s || got.c !== want.c || got.i !== want.i) wrong.push(`${op.key} (LSN ${lsn}): ${JSON.stringify(got)?.slice(0, 80)}`)
        }
      }
    } finally {
      await restored.close()
    }
    checkedPuts += puts
    t.strictSame(wrong.slice(0, 5), [], `round ${r.round}: all ${puts} own-key puts acknowledged at or below ${version} read back from the restored backup (${r.acks.size} acknowledged in all, ${after} after it)`)
    // The next child must open the killed store where this process leaves it.
    const source = await MemWAL.open({ segmentBytes: PROFILE.options.segmentBytes, dir })
    const last = source.health().wal.lastLsn
    await source.close()
    return last
  }
  const result = await killLoop(t, {
    kills: KILLS,
    seed: SEED,
    args: (childSeed, round) => ['engine', dir, String(childSeed), 'backup', '-', target(round)],
    killMoment: (rng) => ({ after: 'backup', delayMs: rng.below(KILL_DELAY_MS_MAX + 1) }),
    check,
  })
  t.equal(result.kills, KILLS, `${KILLS} children killed after their backup resolved`)
  t.ok(checkedPuts > 0, `${checkedPuts} acknowledged puts checked in the restored backups, ${result.acks} writes acknowledged in all`)
})
