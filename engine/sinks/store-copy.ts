import { posix as path } from 'node:path'
import { MemwalError } from '../errors.js'
import { copyFileData, makeDirDurable, removeTree } from '../io/file-ops.js'
import { errnoCode, type FileSystem } from '../io/fs.js'
import { COPY_ATTEMPTS_MAX, raceWithCompaction } from './copy-race.js'
import type { LevelStore } from './level-store.js'
import { openStore, STORE_DIR } from './store-dir.js'

/**
 * A copy of the live LevelDB store (rows, index and both checkpoints: one
 * database) into `<dataDir>/store` that holds the database as of one moment
 * of its history: every sink batch (data and checkpoint together) wholly or
 * not at all. backup.ts relies on that, and on the moment being no earlier
 * than the call.
 *
 * By its files, while LevelDB goes on writing (issue 12: a store copied entry
 * by entry took 49 s per GiB). What LevelDB does to its files meanwhile:
 * tables (`*.ldb`, `*.sst`) are written whole and synced before the MANIFEST
 * names them, never changed after, and deleted once a later MANIFEST edit
 * dropped them; the MANIFEST and the current `*.log` are only appended to
 * (each record framed and checksummed; LevelDB reads a record cut short at
 * the end of the file as never written); a log is deleted once a MANIFEST
 * edit says its writes are in a table. So the copy is made in this order:
 * 1. list the directory;
 * 2. copy the MANIFEST that CURRENT names: a prefix of its edits, naming the
 *    tables and the first log of some moment;
 * 3. copy every log of the listing (a prefix of each): the logs that moment
 *    needs were there at 1 (a log is made before an edit names it). One gone
 *    by now may have been needed, and LevelDB would not miss it: the copy is
 *    made again;
 * 4. copy the tables of the listing and of a second one (a compaction's new
 *    tables, which the MANIFEST prefix may name): a table gone meanwhile was
 *    dropped by an edit, so the copy needs it only if its MANIFEST prefix is
 *    older than that edit; LevelDB refuses to open a database missing a table
 *    its MANIFEST names ("missing files");
 * 5. open the copy (LevelDB replays the logs' prefix over the tables and
 *    writes its own MANIFEST): if it refuses, the copy is made again.
 * Tables go through the filesystem's own copy (copy_file_range); the appended
 * files are read through a handle. After COPY_ATTEMPTS_MAX copies refused
 * (a store compacting hard all the while), or for a database that is not
 * LevelDB's files (memory-level in simulations), the store is copied entry by
 * entry through one iterator (a snapshot as of its creation): slow, but it
 * cannot race with a compaction. A reopen of LevelDB (level-store.ts, after a
 * failed write) closes that iterator: the copy is then made again once the
 * reopen is done, up to COPY_ATTEMPTS_MAX times, and IO_ERROR after that.
 * A reopen during a copy by files is one more race of the kind above: it
 * deletes the MANIFEST and the log it replaced (the copy is made again),
 * and its new table is in the second listing
 * (test/unit/backup-store-reopen.test.ts).
 */
export interface StoreCopy {
  readonly method: 'files' | 'entries'
  /** Bytes copied: the files' (whole tables, the prefixes of the others), or the entries' keys and values. */
  readonly bytes: number
}

/** Copies by files before falling back to entries: each attempt that races with a compaction or a log switch is made again. */
export { COPY_ATTEMPTS_MAX }
/** Tables copied at once (each its own copy and fdatasync). */
const TABLE_COPIES_IN_FLIGHT = 4
/** Store entries per batch written into the copy when copying entry by entry: bounds the memory of one step. */
const STORE_BATCH_ENTRIES = 4096

const TABLE = /^\d+\.(ldb|sst)$/
const LOG = /^\d+\.log$/
const MANIFEST = /^MANIFEST-\d+$/

export async function copyLiveStore(fs: FileSystem, store: LevelStore, toDataDir: string): Promise<StoreCopy> {
  const to = path.join(toDataDir, STORE_DIR)
  if (store.onDisk) {
    for (let attempt = 0; attempt < COPY_ATTEMPTS_MAX; attempt++) {
      const bytes = await copyStoreFiles(fs, store.location, to)
      if (bytes !== undefined && (await opens(fs, toDataDir))) return { method: 'files', bytes }
      await removeTree(fs, to)
    }
  }
  // A reopen of the live store (level-store.ts, after a failed write) closes the iterator this copy reads: once the
  // reopen is done, the copy is made again (the error it met says nothing about the copy).
  for (let attempt = 1; ; attempt++) {
    const reopens = store.reopens
    try {
      return { method: 'entries', bytes: await copyStoreEntries(fs, store, toDataDir) }
    } catch (err) {
      if (store.reopens === reopens) throw err
      await removeTree(fs, to)
      if (attempt >= COPY_ATTEMPTS_MAX) {
        throw new MemwalError('IO_ERROR', `the LevelDB store at ${store.location} was reopened after a failed write during each of ${attempt} copies of it entry by entry: no backup is made`, {
          cause: err,
          details: { path: store.location, attempts: attempt },
        })
      }
      await store.ready()
    }
  }
}

/** Steps 1 to 4 above; undefined when a log of the listing was gone (the copy must be made again). */
async function copyStoreFiles(fs: FileSystem, from: string, to: string): Promise<number | undefined> {
  const listed = await fs.readdir(from)
  const current = Buffer.from(await fs.readFile(path.join(from, 'CURRENT')))
  const manifest = current.toString('utf8').trim()
  if (!MANIFEST.test(manifest)) return undefined // not a MANIFEST's name: not a database to copy now
  await makeDirDurable(fs, to)
  // Gone: LevelDB reopened meanwhile (level-store.ts does after a failed write) and wrote a new MANIFEST.
  const manifestBytes = await copyUnlessGone(fs, path.join(from, manifest), path.join(to, manifest), false)
  if (manifestBytes === undefined) return undefined
  let bytes = manifestBytes
  for (const name of listed.filter((n) => LOG.test(n))) {
    const copied = await copyUnlessGone(fs, path.join(from, name), path.join(to, name), false)
    if (copied === undefined) return undefined
    bytes += copied
  }
  const tables = [...new Set([...listed, ...(await fs.readdir(from))].filter((n) => TABLE.test(n)))]
  // Several at once: a table is ~2 MiB, and each copy waits for its fdatasync (one at a time, that wait was most of the copy).
  // All settle before a failure is reported: none is still writing when the caller removes the copy.
  let next = 0
  let failed = false
  const copier = async (): Promise<void> => {
    for (let i = next++; i < tables.length && !failed; i = next++) {
      const name = tables[i] as string
      try {
        const copied = await copyUnlessGone(fs, path.join(from, name), path.join(to, name), true)
        bytes += copied ?? 0 // after the await: `bytes += await ...` would add to a total read before it
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  for (const r of await Promise.allSettled(Array.from({ length: TABLE_COPIES_IN_FLIGHT }, copier))) if (r.status === 'rejected') throw r.reason
  const currentCopy = await fs.open(path.join(to, 'CURRENT'), 'create')
  try {
    await currentCopy.write(current, 0)
    await currentCopy.datasync()
  } finally {
    await currentCopy.close()
  }
  await fs.syncDir(to)
  return bytes + current.length
}

/** The bytes copied, or undefined when `from` is gone (deleted by LevelDB since it was listed). */
async function copyUnlessGone(fs: FileSystem, from: string, to: string, stable: boolean): Promise<number | undefined> {
  try {
    return await copyFileData(fs, from, to, { stable })
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT' || (await fs.stat(from))) throw err
    // Gone before its copy was made (the new file was never created) or while it was made: nothing of it is kept.
    if (await fs.stat(to)) await fs.unlink(to)
    return undefined
  }
}

/**
 * Step 5: whether LevelDB opens the copy (it replays the logs, refuses a table
 * its MANIFEST names and the copy lacks). Only what a race with a compaction
 * makes (copy-race.ts) is a copy to make again; an error of the disk the copy
 * is on is reported as it is rather than taken for a race and met four times more.
 */
async function opens(fs: FileSystem, dataDir: string): Promise<boolean> {
  let copy: LevelStore
  try {
    copy = await openStore(fs, dataDir)
  } catch (err) {
    if (raceWithCompaction(err)) return false
    throw err
  }
  await copy.close()
  return true
}

/** The fallback: every entry through one iterator (a snapshot as of its creation) into a new database, in batches. */
async function copyStoreEntries(fs: FileSystem, store: LevelStore, toDataDir: string): Promise<number> {
  const entries = store.db.iterator({ keyEncoding: 'view', valueEncoding: 'view' })
  let bytes = 0
  const copy = await openStore(fs, toDataDir)
  try {
    let batch: { type: 'put'; key: Uint8Array; value: Uint8Array }[] = []
    const write = async (sync: boolean): Promise<void> => {
      await copy.db.batch(batch, { keyEncoding: 'view', valueEncoding: 'view', sync } as never)
      batch = []
    }
    for await (const [key, value] of entries as AsyncIterable<[Uint8Array, Uint8Array]>) {
      batch.push({ type: 'put', key, value })
      bytes += key.length + value.length
      if (batch.length >= STORE_BATCH_ENTRIES) await write(false)
    }
    await write(true)
  } finally {
    await entries.close()
    await copy.close()
  }
  await fs.syncDir(path.join(toDataDir, STORE_DIR))
  return bytes
}
