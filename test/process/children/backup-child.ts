/**
 * The kill child's backup and restore profiles (test/process/backup-kill9.test.ts):
 * a backup of a closed store (`backup-slow <dir> <target>`) or a restore of a
 * backup (`restore-slow <backup> <target>`) whose writes into the partial
 * directory's `store/` and `wal/` each wait `SLOW_WRITE_MS` first, so that the
 * test can SIGKILL it part-way, as the review did (the marker copied, the
 * store's tables not). It prints `copying <path>` before the first write it
 * slows, and
 * `done` if it ever finishes. The real filesystem and the real lock
 * (ProcessDirLocker) are used, as `memwal backup` and `memwal restore` do.
 */
import { MemWAL, restoreBackup } from '../../../engine/index.js'
import { ProcessDirLocker, systemRandom } from '../../../engine/testing.js'
import { writeLine } from '../../support/child-process.js'
import { PartialCopyFs } from '../../support/partial-copy-fs.js'

/** Long enough that a kill lands before the copy of the first file is over. */
const SLOW_WRITE_MS = 500

/** Every write of the copy slowed; the first one says so. */
function slowCopyFs(): PartialCopyFs {
  let told = false
  return new PartialCopyFs(async (file) => {
    if (!told) {
      told = true
      writeLine(`copying ${file}`)
    }
    await new Promise((resolve) => setTimeout(resolve, SLOW_WRITE_MS))
  })
}

export async function slowBackup(dir: string, target: string): Promise<void> {
  const db = await MemWAL.open({ dir, fs: slowCopyFs(), locker: new ProcessDirLocker() })
  await db.backup(target)
  writeLine('done')
  await db.close()
}

export async function slowRestore(backup: string, target: string): Promise<void> {
  await restoreBackup(backup, target, slowCopyFs(), systemRandom, new ProcessDirLocker())
  writeLine('done')
}
