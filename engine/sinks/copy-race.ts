import { errnoCode } from '../io/fs.js'

/**
 * A copy of a LevelDB store by its files, made while LevelDB may compact it,
 * is made again at most this many times in all (store-copy.ts for backups,
 * store-view.ts for status and a dry-run fsck) before the caller gives up.
 */
export const COPY_ATTEMPTS_MAX = 4

/**
 * Whether an error from opening a copy (its cause chain) is what a compaction
 * under the copy explains: LevelDB's Corruption ("missing files" among them),
 * or a file not found. An error of the disk the copy is on (ENOSPC, EIO: an
 * errno, or LevelDB's IO error saying anything else) is not: it is reported
 * as it is rather than taken for a race and met again.
 */
export function raceWithCompaction(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; typeof e === 'object' && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = errnoCode(e)
    if (code === 'LEVEL_CORRUPTION') return true
    if (code === 'LEVEL_IO_ERROR') return /No such file|not found/i.test(String((e as { message?: unknown }).message))
    if (code !== undefined && /^E[A-Z0-9]+$/.test(code)) return false
  }
  return false
}
