import { posix as path } from 'node:path'
import { MemwalError, osError } from './errors.js'
import { assert } from './assert.js'
import { FRAME_HEADER_BYTES } from './format/format.js'
import { parseSegmentName } from './format/segment-name.js'
import { copyFile, copyFileData, makeDirDurable, removeTree } from './io/file-ops.js'
import type { FileSystem } from './io/fs.js'
import { NodeFileSystem } from './io/node-fs.js'
import type { Random } from './io/random.js'
import { systemRandom } from './io/random.js'
import { checkDataDir, recogniseDataDir, writeMarker } from './log/data-dir.js'
import { BACKEND_RECORD_NAME } from './log/backend-record.js'
import { listWal } from './log/segment-list.js'
import type { LogExtent } from './log/wal-writer.js'
import type { LevelStore } from './sinks/level-store.js'
import { copyLiveStore } from './sinks/store-copy.js'

/**
 * Online backup and restore (issue 12 item 3). A backup is a data directory:
 * `memwal fsck` checks it and `MemWAL.open` opens it like any other.
 *
 * What makes it consistent without stopping writes, all with retention held
 * off (no segment is deleted meanwhile): first the LevelDB store (rows, index
 * and both checkpoints, one database) is copied as of one moment of its
 * history (sinks/store-copy.ts: by its files, or entry by entry), so the copy
 * holds each sink's data exactly as of its checkpoint; then, in one tick, the
 * committed LSN (the backup's `version`) and the log's extent (the active
 * segment and the offset below which every write completed) are read; then
 * the segments up to that extent are copied: the sealed ones whole (nothing
 * writes them; the filesystem's own copy), the active one up to the extent
 * only, not its preallocated rest. Retention only ever deleted segments below
 * the durable checkpoints, which the copied store's are at or above, and the
 * sinks only apply acknowledged records, so the copy's checkpoints are at or
 * below `version`: opening the backup replays what its store had not applied,
 * and the backup holds every write acknowledged up to `version` (and maybe
 * some after it: those written before the extent was read). Its last segment
 * ends where the log did, with the end-of-log marker (a zero frame header)
 * and no room after it: the backup's first write starts a new segment. Writers wait for nothing.
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
  /** How the store was copied: by its files, or entry by entry (a store that kept compacting under the copy; sinks/store-copy.ts). */
  readonly storeCopy: 'files' | 'entries'
  /** Bytes copied (segments, store, dead letters, gaps). */
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
  /** Where the written log ends (Wal.extent). */
  logExtent(): LogExtent
  /** Runs `fn` with no segment purged meanwhile. */
  holding<T>(fn: () => Promise<T>): Promise<T>
}

/** What a data directory holds besides `wal/` and `store/` that a backup keeps: the dead letters, the declared gaps and the backend record. */
const KEPT_FILES = ['gaps.json', BACKEND_RECORD_NAME]
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
    const copied = await src.holding(async () => {
      const store = await copyLiveStore(fs, src.store, partial)
      // The store first, then the LSN and the extent, in one tick: every record at or below the LSN lies below the extent.
      const version = src.committedLsn()
      const extent = src.logExtent()
      const log = await copyLog(fs, path.join(from, 'wal'), path.join(partial, 'wal'), extent)
      return { version, storeCopy: store.method, segments: log.segments, bytes: store.bytes + log.bytes }
    })
    let bytes = copied.bytes
    for (const name of KEPT_FILES) if (await fs.stat(path.join(from, name))) bytes += await copyFile(fs, path.join(from, name), path.join(partial, name))
    for (const d of KEPT_DIRS) bytes += await copyTree(fs, path.join(from, d), path.join(partial, d))
    return { dir: to, version: copied.version, segments: copied.segments, storeCopy: copied.storeCopy, bytes }
  })
}

/** The segments up to `extent`: the sealed ones whole, the active one up to the extent; later ones (written after it) are not needed. */
async function copyLog(fs: FileSystem, walFrom: string, walTo: string, extent: LogExtent): Promise<{ segments: number; bytes: number }> {
  await makeDirDurable(fs, walTo)
  const active = parseSegmentName(extent.segment)
  assert(active !== undefined, 'the active segment has a segment name')
  let segments = 0
  let bytes = 0
  for (const s of (await listWal(fs, walFrom)).segments) {
    if (s.baseLsn > active) break
    const last = s.name === extent.segment
    // The active segment ends with the log's end marker (a zero frame header), and no room: the backup's first write rotates.
    bytes += await copyFileData(fs, s.path, path.join(walTo, s.name), last ? { bytes: extent.bytes, zerosAfter: FRAME_HEADER_BYTES } : { stable: true })
    segments++
  }
  await fs.syncDir(walTo)
  return { segments, bytes }
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
