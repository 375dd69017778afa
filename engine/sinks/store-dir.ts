import { posix as path } from 'node:path'
import { makeDirDurable } from '../io/file-ops.js'
import type { FileSystem } from '../io/fs.js'
import { tightenModes } from '../io/modes.js'
import { LevelStore, type GroupSyncOptions, type LevelDatabase } from './level-store.js'

/** The LevelDB store's folder inside a data directory. */
export const STORE_DIR = 'store'

/**
 * Opens the store of data directory `dataDir`, the one way every caller does
 * (the engine, fsck, status). `store/` is made by memwal (0700, its entry
 * synced in the data directory) rather than by LevelDB (0755, never synced);
 * after LevelDB opens, `store/` itself is synced: LevelDB writes a new
 * MANIFEST and renames CURRENT into place at open without a directory sync,
 * and the sinks' synced batches go to files named only there. Then `store/`
 * and its files are made 0700 and 0600 (io/modes.ts says why after open). With `level`
 * (a database of the caller's, memory-level in simulations) nothing is made
 * on disk. With `group` (the engine), apply batches are group-synced; the
 * store's LevelDB logs are counted in `store/` (GroupSyncOptions.logFiles).
 */
export async function openStore(fs: FileSystem, dataDir: string, level?: LevelDatabase, group?: Omit<GroupSyncOptions, 'logFiles'>): Promise<LevelStore> {
  const dir = path.join(dataDir, STORE_DIR)
  if (level) return LevelStore.open(dir, level, group)
  await makeDirDurable(fs, dir)
  const logFiles = async (): Promise<number> => (await fs.readdir(dir)).filter((name) => name.endsWith('.log')).length
  const store = await LevelStore.open(dir, undefined, group ? { ...group, logFiles } : undefined)
  try {
    await fs.syncDir(dir)
    // LevelDB's files are 0644 (0666 under umask 000): its own user's only, like everything memwal makes.
    await tightenModes(dir)
  } catch (err) {
    await store.close().catch(() => undefined)
    throw err
  }
  return store
}
