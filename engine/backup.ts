import { posix as path } from 'node:path'
import { MemwalError, osError } from './errors.js'
import { copyFile, makeDirDurable, removeTree } from './io/file-ops.js'
import type { FileSystem } from './io/fs.js'
import { NodeFileSystem } from './io/node-fs.js'
import type { Random } from './io/random.js'
import { systemRandom } from './io/random.js'
import { checkDataDir, recogniseDataDir, writeMarker } from './log/data-dir.js'
import type { LevelStore } from './sinks/level-store.js'
import { openStore, STORE_DIR } from './sinks/store-dir.js'

/**
 * Online backup and restore (issue 12 item 3). A backup is a data directory:
 * `memwal fsck` checks it and `MemWAL.open` opens it like any other.
 *
 * What makes it consistent without stopping writes: the LevelDB store (rows,
 * index and both checkpoints, one database) is read through one iterator,
 * which reads a snapshot taken when it is made, so the copy holds each sink's
 * data exactly as of its checkpoint; the log's segments are then copied whole
 * while retention is held off, and retention only ever deleted segments below
 * the durable checkpoints, which the snapshot's are at or above. Every record
 * acknowledged before the copy began is in the copied segments, so opening the
 * backup replays what the snapshot's sinks had not applied: the backup holds
 * every write acknowledged up to its `version`, and possibly later ones (the
 * active segment is read as it is then; a frame being written shows as a torn
 * tail, which the backup's first open truncates). Writers wait for nothing:
 * the snapshot costs one iterator, and the copy runs beside them.
 *
 * The copy is built under `<target>.partial-<random>` and renamed to
 * `<target>` once everything in it is synced: a crash leaves a partial
 * directory (named so), never a backup that looks whole and is not. A copy
 * that fails (ENOSPC, EIO) removes its partial directory before it rejects
 * (IO_ERROR, the errno in details), and the next backup or restore to the
 * same target removes any a crash left (two at once to one target are not
 * supported: one would remove the other's).
 */
export interface BackupResult {
  /** The backup's data directory. */
  readonly dir: string
  /** Every write acknowledged at or below this LSN is in the backup. */
  readonly version: number
  readonly segments: number
  readonly storeEntries: number
  /** Bytes copied (segments, store entries, dead letters, gaps). */
  readonly bytes: number
}

export interface BackupSource {
  readonly fs: FileSystem
  readonly random: Random
  readonly dir: string
  readonly store: LevelStore
  /** The PostgreSQL backend keeps its rows outside the data directory: they are not in a copy of it. */
  readonly externalBackend: boolean
  /** Highest LSN acknowledged with every LSN below it acknowledged too. */
  committedLsn(): number
  /** Runs `fn` with no segment purged meanwhile. */
  holding<T>(fn: () => Promise<T>): Promise<T>
}

/** Store entries per batch written into the backup's LevelDB: bounds the memory of one step. */
const STORE_BATCH_ENTRIES = 4096
/** What a data directory holds besides `wal/` and `store/` that a backup keeps: the dead letters and the declared gaps. */
const KEPT_FILES = ['gaps.json']
const KEPT_DIRS = ['deadletter']

export async function backupStore(src: BackupSource, target: string): Promise<BackupResult> {
  const { fs } = src
  if (src.externalBackend) {
    throw new MemwalError('BACKUP_UNSUPPORTED', 'this store keeps its backend rows in PostgreSQL: a copy of the data directory would not hold them (back up the database with its own tools)')
  }
  const to = path.resolve(target)
  const from = path.resolve(src.dir)
  if (to === from || to.startsWith(`${from}/`)) throw new MemwalError('INVALID_OPTIONS', `the backup target ${to} is inside the data directory ${from}`, { details: { field: 'target' } })
  await refuseNonEmpty(fs, to)
  return buildDir(fs, src.random, to, `back up ${from} to ${to}`, async (partial) => {
    await makeDirDurable(fs, partial)
    await writeMarker(fs, partial)
    let bytes = 0
    const copied = await src.holding(async () => {
      // The snapshot first, the LSN after: every record at or below it is acknowledged, so in the segments read below.
      const entries = src.store.db.iterator({ keyEncoding: 'view', valueEncoding: 'view' })
      const version = src.committedLsn()
      let storeEntries = 0
      const store = await openStore(fs, partial)
      try {
        let batch: { type: 'put'; key: Uint8Array; value: Uint8Array }[] = []
        const write = async (sync: boolean): Promise<void> => {
          await store.db.batch(batch, { keyEncoding: 'view', valueEncoding: 'view', sync } as never)
          batch = []
        }
        for await (const [key, value] of entries as AsyncIterable<[Uint8Array, Uint8Array]>) {
          batch.push({ type: 'put', key, value })
          storeEntries++
          bytes += key.length + value.length
          if (batch.length >= STORE_BATCH_ENTRIES) await write(false)
        }
        await write(true)
      } finally {
        await entries.close()
        await store.close()
      }
      await fs.syncDir(path.join(partial, STORE_DIR))
      const walFrom = path.join(from, 'wal')
      const walTo = path.join(partial, 'wal')
      await makeDirDurable(fs, walTo)
      let segments = 0
      for (const name of (await fs.readdir(walFrom)).sort()) {
        if (!name.endsWith('.seg')) continue
        bytes += await copyFile(fs, path.join(walFrom, name), path.join(walTo, name))
        segments++
      }
      return { version, storeEntries, segments }
    })
    for (const name of KEPT_FILES) if (await fs.stat(path.join(from, name))) bytes += await copyFile(fs, path.join(from, name), path.join(partial, name))
    for (const d of KEPT_DIRS) bytes += await copyTree(fs, path.join(from, d), path.join(partial, d))
    return { dir: to, bytes, ...copied }
  })
}

/**
 * `memwal restore <backup> <dir>`: copies a backup (any closed data
 * directory) into `dir`, which must be missing or empty, through a partial
 * directory renamed into place once synced. The restored directory is opened
 * like any other (the first open replays what the backup's sinks had not
 * applied).
 */
export async function restoreBackup(backup: string, target: string, fs: FileSystem = new NodeFileSystem(), random: Random = systemRandom): Promise<{ readonly dir: string; readonly bytes: number }> {
  const from = path.resolve(backup)
  const to = path.resolve(target)
  await checkDataDir(from, fs)
  if (await fs.stat(path.join(from, 'memwal.lock'))) {
    throw new MemwalError('LOCK_HELD', `${from} is locked (memwal.lock): it is a live data directory, not a backup; make one with memwal backup`, { details: { path: from } })
  }
  await refuseNonEmpty(fs, to)
  const bytes = await buildDir(fs, random, to, `restore ${from} to ${to}`, (partial) => copyTree(fs, from, partial))
  return { dir: to, bytes }
}

/** `<target>.partial-<8 hex digits>`: where a backup or a restore builds its target. */
const PARTIAL_SUFFIX = /^\.partial-[0-9a-f]{8}$/

/**
 * Builds the directory `to` under `<to>.partial-<random>` with `build`, then
 * renames it into place and syncs the parent. Partial directories an earlier
 * build of `to` left (a crash) are removed first; a build that fails removes
 * its own and rejects with IO_ERROR (or PERMISSION_DENIED) saying `doing`.
 */
async function buildDir<T>(fs: FileSystem, random: Random, to: string, doing: string, build: (partial: string) => Promise<T>): Promise<T> {
  const parent = path.dirname(to)
  const base = path.basename(to)
  for (const name of (await fs.stat(parent)) ? await fs.readdir(parent) : []) {
    if (name.startsWith(base) && PARTIAL_SUFFIX.test(name.slice(base.length))) await removeTree(fs, path.join(parent, name))
  }
  const partial = `${to}.partial-${random.nextU32().toString(16).padStart(8, '0')}`
  let result: T
  try {
    result = await build(partial)
    await fs.rename(partial, to)
  } catch (err) {
    // What the failed copy wrote goes; the error it met is the one reported.
    await removeTree(fs, partial).catch(() => undefined)
    throw osError(err, doing, partial)
  }
  await fs.syncDir(parent)
  return result
}

async function refuseNonEmpty(fs: FileSystem, dir: string): Promise<void> {
  const kind = await recogniseDataDir(fs, dir).catch(() => 'other' as const)
  if (kind !== 'missing' && kind !== 'empty') {
    throw new MemwalError('TARGET_NOT_EMPTY', `${dir} exists and is not empty: a backup or a restore goes into a new or empty directory`, { details: { path: dir } })
  }
}

/** Copies a directory tree (files synced, each directory's entries synced); a missing `from` copies nothing. Returns the bytes copied. */
async function copyTree(fs: FileSystem, from: string, to: string): Promise<number> {
  const st = await fs.stat(from)
  if (!st?.isDirectory) return 0
  await makeDirDurable(fs, to)
  let bytes = 0
  for (const name of await fs.readdir(from)) {
    const s = await fs.stat(path.join(from, name))
    if (s?.isDirectory) bytes += await copyTree(fs, path.join(from, name), path.join(to, name))
    else if (s?.isFile) bytes += await copyFile(fs, path.join(from, name), path.join(to, name))
  }
  return bytes
}
