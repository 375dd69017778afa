import os from 'node:os'
import { posix as path } from 'node:path'
import { MemwalError, osError } from '../errors.js'
import { manifestTables } from '../format/leveldb-manifest.js'
import type { FileSystem } from '../io/fs.js'
import { privateCopy, PrivateCopyFailure, removeOwnCopiesSync, type PrivateCopy } from '../io/private-copy.js'
import { COPY_ATTEMPTS_MAX, raceWithCompaction } from './copy-race.js'
import { LevelStore } from './level-store.js'
import { refuseHeadless, STORE_DIR } from './store-dir.js'

/** A store opened to be read only, and what closes it. */
export interface StoreView {
  readonly store: LevelStore
  close(): Promise<void>
}

/** LevelDB's tables: written whole once, never changed in place. */
const TABLE_FILE = /^(\d+)\.(ldb|sst)$/
/** Read first, from the copy: which tables the copy's MANIFEST names. */
const NAMES_FILE = /^(CURRENT|MANIFEST-\d+)$/

/**
 * Opens data directory `dataDir`'s store for the tools that write nothing (a
 * dry-run fsck, status), leaving its files as they are. LevelDB has no
 * read-only open: its open writes its log into a table, a new MANIFEST and
 * LOG, deletes what they replace, and LevelStore's close writes a synced
 * record; openStore then makes the files 0600. So the store is opened from
 * a private copy under `tmpRoot` (the system's temp directory, TMPDIR, by
 * default; io/private-copy.ts): its tables (written whole, never changed
 * after, only deleted) hard-linked, so that the copy costs no more than the
 * MANIFEST and the logs (a few MB) on the same filesystem; LOCK and
 * LevelDB's info logs left out. Closing removes the copy. A headless store is
 * refused first, as openStore does.
 *
 * The copy is no snapshot: a live engine (status takes no lock) may compact
 * the store meanwhile, deleting a table or log before it is copied, or
 * leaving a MANIFEST that names a table the copy lacks. Such a copy is made
 * again, up to COPY_ATTEMPTS_MAX copies in all (as a backup's, store-copy.ts),
 * then STORE_CHANGING. A failure of the copy itself (TMPDIR full, read-only,
 * missing) is said to be the copy's, with what to do, not the store's.
 */
export async function openStoreView(fs: FileSystem, dataDir: string, tmpRoot: string = os.tmpdir()): Promise<StoreView> {
  const dir = path.join(dataDir, STORE_DIR)
  await refuseHeadless(fs, dir)
  for (let attempt = 1; ; attempt++) {
    const before = await listing(fs, dir)
    const copy = await copyOf(dir, tmpRoot)
    let raced: unknown
    if (copy !== undefined) {
      try {
        return viewOf(await LevelStore.open(copy.dir), copy)
      } catch (err) {
        await copy.remove()
        // LevelDB's refusal of a copy of a store that did not change is the store's: said as of the store.
        if (!raceWithCompaction(err) || (await listing(fs, dir)) === before) throw openFailure(err, dir, copy.dir, tmpRoot)
        raced = err
      }
    }
    if (attempt >= COPY_ATTEMPTS_MAX) {
      throw new MemwalError('STORE_CHANGING', `the LevelDB store at ${dir} kept changing while it was copied to be read (${attempt} copies, each raced by a compaction): a process writes it (an engine opened the directory meanwhile). Its files are not damaged by this; run again once it is idle, or ask the process that holds it (db.verify())`, {
        transient: true,
        ...(raced !== undefined ? { cause: raced } : {}),
        details: { dir, attempts: attempt },
      })
    }
  }
}

function viewOf(store: LevelStore, copy: PrivateCopy): StoreView {
  return {
    store,
    close: async () => {
      try {
        await store.close()
      } finally {
        await copy.remove()
      }
    },
  }
}

/** The copy, or undefined when a file listed was deleted before it was copied (the store changed: made again). */
async function copyOf(dir: string, tmpRoot: string): Promise<PrivateCopy | undefined> {
  try {
    return await privateCopy(dir, { tmpRoot, first: (name) => NAMES_FILE.test(name), choose: linkNamedTables })
  } catch (err) {
    if (!(err instanceof PrivateCopyFailure)) throw err
    if (err.side === 'gone') return undefined
    // A store/ that cannot be listed (a file there, no access) is named as LevelDB's open would be.
    if (err.side === 'source') throw osError(err.cause, `open the LevelDB store at ${dir}`, dir)
    throw copyFailure(err.cause, dir, tmpRoot)
  }
}

/**
 * Links the tables the copy's MANIFEST names, and only those: a table of the
 * store it does not name may be one a live engine's compaction is writing
 * (or wrote since), numbered at or above the MANIFEST's next file number; the
 * copy's LevelDB gives that number to the table it writes at open, and
 * opening a link for writing truncates the store's own table (measured: the
 * live engine died of SIGBUS reading it). Such a table is left out (the
 * copy's MANIFEST does not need it). Logs are copied (LevelDB appends to
 * them); LOCK and the info logs are left out. A MANIFEST that does not parse
 * has every table copied, none linked.
 */
async function linkNamedTables(read: (name: string) => Promise<Uint8Array | undefined>): Promise<(name: string) => 'link' | 'copy' | 'skip'> {
  const current = Buffer.from((await read('CURRENT')) ?? []).toString('utf8').trim()
  const manifest = /^MANIFEST-\d+$/.test(current) ? await read(current) : undefined
  const named = manifest !== undefined ? manifestTables(manifest) : undefined
  return (name) => {
    const table = TABLE_FILE.exec(name)
    if (table !== null) return named === undefined ? 'copy' : named.has(Number(table[1])) ? 'link' : 'skip'
    return name === 'LOCK' || name === 'LOG' || name === 'LOG.old' ? 'skip' : 'copy'
  }
}

/** The store's names and what CURRENT says: what changes when LevelDB compacts, switches logs or reopens. */
async function listing(fs: FileSystem, dir: string): Promise<string> {
  const names = (await fs.readdir(dir).catch(() => [] as string[])).sort()
  const current = await fs.readFile(path.join(dir, 'CURRENT')).then((b) => Buffer.from(b).toString('utf8'), () => '')
  return `${names.join('/')}\n${current}`
}

const ROOM_ADVICE = "free space there, or set TMPDIR to a filesystem with room, ideally the store's (its tables are then linked, not copied)"

/** Making the copy under tmpRoot failed: the copy's fault, said so with its errno, never the store's. */
function copyFailure(cause: unknown, dir: string, tmpRoot: string): MemwalError {
  const doing = `make the private copy of the LevelDB store ${dir} that status and a dry-run fsck open, under TMPDIR ${tmpRoot}`
  const e = osError(cause, doing, tmpRoot)
  if (e.code === 'PERMISSION_DENIED') return e
  return new MemwalError('IO_ERROR', `${e.message}. The store itself is not changed: ${ROOM_ADVICE}`, { cause, details: { ...e.details, store: dir, tmpRoot } })
}

/**
 * LevelDB refused the copy while the store did not change, or failed on the
 * copy's disk. Its message names the copy's files (since removed): they are
 * named by the store's where the fault is the store's content (LevelDB's
 * Corruption: the copy holds the store's bytes), and as the temporary copy
 * otherwise.
 */
function openFailure(err: unknown, dir: string, copyDir: string, tmpRoot: string): MemwalError {
  const level = err instanceof MemwalError && err.cause !== undefined ? err.cause : err
  const text = (level as Error | undefined)?.message ?? String(level)
  if (raceWithCompaction(err)) {
    return new MemwalError('IO_ERROR', `cannot open the LevelDB store at ${dir} (read from a private copy): ${text.split(copyDir).join(dir)}`, { cause: err, details: { path: dir } })
  }
  return new MemwalError('IO_ERROR', `cannot open the private copy of the LevelDB store ${dir} made under TMPDIR ${tmpRoot} (removed since): ${text.split(copyDir).join('<the copy>')}. The store itself is not changed: ${ROOM_ADVICE}`, { cause: err, details: { store: dir, tmpRoot } })
}

/**
 * Removes this process's private copies of stores at once: for the CLI's
 * SIGINT and SIGTERM handlers, which end the process next (a view open then
 * goes with it). A copy a process killed outright left is removed by the
 * next view's close (io/private-copy.ts).
 */
export function removeOwnStoreViewsSync(tmpRoot: string = os.tmpdir()): void {
  removeOwnCopiesSync(tmpRoot)
}
