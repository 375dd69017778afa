import fs from 'node:fs'
import { posix as path } from 'node:path'

/** What memwal gives what it makes: only its own user may read, write or enter. */
export const PRIVATE_FILE_MODE = 0o600
export const PRIVATE_DIR_MODE = 0o700

/**
 * Takes group and other access away from `dir` and the files and folders
 * directly in it (LevelDB's store is flat), on the real filesystem: LevelDB
 * creates its files 0644 (0666 under umask 000) and offers no mode option.
 * Resolves how many entries were changed.
 *
 * Why chmod after open rather than a umask around it: the umask is
 * process-global (every file the host application creates meanwhile would get
 * it too), and LevelDB creates files later as well (a new log file, a
 * compaction's tables), on its own thread, where no umask set around a call
 * reaches. Those later files keep LevelDB's mode until the next open; they
 * sit in `store/`, which is 0700, so no other user can reach them.
 */
export async function tightenModes(dir: string): Promise<number> {
  let changed = 0
  const tighten = async (p: string, isDir: boolean, mode: number): Promise<void> => {
    const want = mode & (isDir ? PRIVATE_DIR_MODE : PRIVATE_FILE_MODE)
    if ((mode & 0o777) === want) return
    await fs.promises.chmod(p, want)
    changed++
  }
  await tighten(dir, true, (await fs.promises.stat(dir)).mode)
  for (const e of await fs.promises.readdir(dir, { withFileTypes: true })) {
    if (!e.isFile() && !e.isDirectory()) continue
    const p = path.join(dir, e.name)
    try {
      await tighten(p, e.isDirectory(), (await fs.promises.stat(p)).mode)
    } catch (err) {
      // LevelDB, already open, may delete a file between the listing and the chmod (a compaction's old table, a replaced log): nothing left to tighten.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  return changed
}

/** True when a mode lets the group or others write (create, rename, delete entries of a directory). */
export function writableByOthers(mode: number): boolean {
  return (mode & 0o022) !== 0
}
