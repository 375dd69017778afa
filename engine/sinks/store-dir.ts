import { posix as path } from 'node:path'
import { MemwalError } from '../errors.js'
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
  await refuseHeadless(fs, dir)
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

/**
 * Whether data directory `dataDir` has a store to open: `store/` holding
 * LevelDB's `CURRENT` or a data file (a headless store is there, and
 * openStore refuses it). A missing `store/` (never made, or lost), or one
 * whose creation stopped before LevelDB wrote anything, is not: openStore
 * would make it, so the tools that write nothing (a dry-run fsck, status)
 * ask first and report it instead. A `store/` that cannot be listed counts
 * as there, so that opening it says what is wrong.
 */
export async function storeExists(fs: FileSystem, dataDir: string): Promise<boolean> {
  const dir = path.join(dataDir, STORE_DIR)
  if (!(await fs.stat(dir))) return false
  const names = await fs.readdir(dir).catch(() => undefined)
  return names === undefined || names.some((n) => n === 'CURRENT' || DATA_FILE.test(n))
}

/** LevelDB's files that hold data: its tables and its write-ahead logs (`000123.ldb`, `.sst`, `.log`). */
const DATA_FILE = /^\d+\.(ldb|sst|log)$/

/**
 * Refuses a store whose `CURRENT` is gone while its tables or logs are there
 * (a copy or a backup cut short, a file deleted by hand). LevelDB would
 * open it as a new database (we open with createIfMissing) that replays its
 * newest log and forgets every table: the sinks' checkpoints read back from
 * that log while the rows and index entries in the tables are gone (measured:
 * a 60,000-entry store opened with 0 entries and its checkpoints at the log's
 * end, so nothing was replayed). Without data files, a missing `CURRENT` is a
 * create that was interrupted (LevelDB writes MANIFEST-000001, then CURRENT),
 * which opening again finishes.
 */
export async function refuseHeadless(fs: FileSystem, dir: string): Promise<void> {
  // Unreadable (a file where store/ should be, no access): LevelDB's open says so, as IO_ERROR naming the store.
  const names = await fs.readdir(dir).catch(() => undefined)
  if (names === undefined || names.includes('CURRENT')) return
  const data = names.filter((n) => DATA_FILE.test(n))
  if (data.length === 0) return
  throw new MemwalError('STORE_DAMAGED', `the LevelDB store ${dir} has data files (${data.slice(0, 3).join(', ')}${data.length > 3 ? ', ...' : ''}) but no CURRENT file: it cannot be opened without losing them. Restore the data directory from a backup (memwal restore), or, if its log still holds every record from LSN 1, move store/ aside and open again to rebuild it from the log`, { details: { dir, dataFiles: data.length } })
}

