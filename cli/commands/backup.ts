import { checkDataDir, MemWAL, restoreBackup } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import type { Output } from '../output.js'

/**
 * `memwal backup <dir> <target>`: a consistent copy of a store into a new or
 * empty directory. It opens the store, so it needs the lock: a store another
 * process has open is backed up by that process (`db.backup(target)`), and
 * here it is LOCK_HELD naming the holder.
 */
export async function backup(dir: string, target: string, out: Output): Promise<number> {
  await checkDataDir(dir)
  const db = await MemWAL.open({ dir })
  try {
    const started = performance.now()
    const r = await db.backup(target)
    const ms = Math.round(performance.now() - started)
    if (out.json) out.document({ ...r, elapsedMs: ms })
    else out.line(`backed up ${dir} to ${r.dir}: every write up to version ${r.version} (${r.segments} segments, the store copied by ${r.storeCopy}, ${r.bytes} bytes) in ${ms} ms`)
    return ExitCode.CLEAN
  } finally {
    await db.close()
  }
}

/** `memwal restore <backup> <dir>`: copies a backup into a new or empty directory, ready to open. */
export async function restore(backupDir: string, dir: string, out: Output): Promise<number> {
  const r = await restoreBackup(backupDir, dir)
  if (out.json) out.document(r)
  else out.line(`restored ${backupDir} into ${r.dir} (${r.bytes} bytes); the first open replays what its sinks had not applied`)
  return ExitCode.CLEAN
}
