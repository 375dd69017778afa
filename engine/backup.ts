import { posix as path } from 'node:path'
import { isMemwalError, MemwalError, osError } from './errors.js'
import { assert } from './assert.js'
import { FRAME_HEADER_BYTES } from './format/format.js'
import { parseSegmentName } from './format/segment-name.js'
import { defaultDirLocker, LOCK_NAME, type DirLock, type DirLocker } from './io/dir-lock.js'
import { copyFile, copyFileData, makeDirDurable, removeTree, writeNewFile } from './io/file-ops.js'
import { errnoCode, type FileStat, type FileSystem } from './io/fs.js'
import { NodeFileSystem } from './io/node-fs.js'
import type { Random } from './io/random.js'
import { systemRandom } from './io/random.js'
import { checkDataDir, INCOMPLETE_NAME, writeMarker } from './log/data-dir.js'
import { SPARE_NAME } from './log/segment-file.js'
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
 * `<target>` once everything in it is synced. The partial directory holds
 * the INCOMPLETE sentinel from before anything else is in it until
 * everything else is synced: a crash or a kill leaves a directory that every
 * tool refuses (BACKUP_INCOMPLETE, log/data-dir.ts), never one that opens as
 * a store with part of its data (the marker is copied long before the
 * store's tables). A copy that fails (ENOSPC, EIO) removes its partial
 * directory before it rejects (IO_ERROR, the errno in details). While it is
 * built the partial directory holds its own lock (the DirLocker): the next
 * backup or restore to the same target removes one whose holder is gone, and
 * is refused (LOCK_HELD) while one is being built.
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
  /** The engine's lock: the partial directory is held with it while it is built. */
  readonly locker: DirLocker
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
  await refuseNested(fs, from, to)
  await refuseNonEmpty(fs, to)
  return buildDir({ fs, random: src.random, locker: src.locker }, to, `back up ${from} to ${to}`, async (partial) => {
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
 *
 * The backup's lock (`locker`, the one the engine takes) is held for the
 * whole copy: a writer that opens it meanwhile is refused rather than change
 * it under the copy, a live store is refused (LOCK_HELD naming its holder),
 * and a lock left by a holder that is gone (killed) is taken over. Where no
 * lock can be made (a read-only filesystem, a backup this user may not
 * write: EROFS, EACCES, EPERM), no writer can open the backup either, and
 * the copy goes on without one.
 */
export async function restoreBackup(backup: string, target: string, fs: FileSystem = new NodeFileSystem(), random: Random = systemRandom, locker: DirLocker = defaultDirLocker(fs)): Promise<{ readonly dir: string; readonly bytes: number }> {
  const to = path.resolve(target)
  await checkDataDir(path.resolve(backup), fs)
  // The backup given through a symbolic link is copied from where it is; nothing under it is followed.
  const from = await fs.realpath(path.resolve(backup)).catch((cause: unknown) => {
    throw osError(cause, `read the backup ${backup}`, backup)
  })
  await refuseNested(fs, from, to)
  const held = await lockSource(locker, from)
  try {
    await refuseNonEmpty(fs, to)
    const bytes = await buildDir({ fs, random, locker }, to, `restore ${from} to ${to}`, (partial) => copyTree(fs, from, partial, notCopied))
    if (held.lost) throw held.lost
    return { dir: to, bytes }
  } finally {
    // A lock that cannot be released (its directory gone) holds nothing back: the restore's own outcome is what is reported.
    await held.lock?.release().catch(() => undefined)
  }
}

/** What a restore leaves out: the lock it holds on the backup (and a lock's temporaries), the log's preallocated spare. */
function notCopied(rel: string): boolean {
  return rel === LOCK_NAME || rel.startsWith(`${LOCK_NAME}.`) || rel === path.join('wal', SPARE_NAME)
}

interface HeldLock {
  lock: DirLock | undefined
  /** Set when the lock was lost during the copy (LOCK_COMPROMISED): the copy may be of a changing directory. */
  lost: Error | undefined
}

async function lockSource(locker: DirLocker, from: string): Promise<HeldLock> {
  const held: HeldLock = { lock: undefined, lost: undefined }
  try {
    held.lock = await locker.acquire(from, (err) => {
      held.lost = err
    })
    return held
  } catch (err) {
    if (isMemwalError(err) && err.code === 'LOCK_HELD') {
      throw new MemwalError('LOCK_HELD', `${from} is locked by ${String(err.details?.['holder'] ?? 'another process')}: a store open there (a live data directory is backed up with memwal backup, not restored), or another restore copying it`, { cause: err, details: { ...err.details, path: from } })
    }
    // No lock can be made in a backup this user may not write (a read-only mount, another user's files, 0555): no writer
    // can open it there either, so the copy goes on without one (restoring such a backup worked before the lock existed).
    const unlockable = (code: string | undefined): boolean => code === 'EROFS' || code === 'EACCES' || code === 'EPERM'
    if (unlockable(errnoCode(err)) || unlockable(errnoCode(isMemwalError(err) ? err.cause : undefined))) return held
    throw osError(err, `lock the backup ${from}`, from)
  }
}

/** `<target>.partial-<8 hex digits>`: where a backup or a restore builds its target. */
const PARTIAL_SUFFIX = /^\.partial-[0-9a-f]{8}$/

interface Builder {
  readonly fs: FileSystem
  readonly random: Random
  readonly locker: DirLocker
}

/**
 * Builds the directory `to` under `<to>.partial-<random>` with `build`, then
 * renames it into place and syncs the parent. The partial directory holds the
 * INCOMPLETE sentinel (log/data-dir.ts) from before anything else is in it
 * until everything else is synced, and its own lock (the DirLocker) while it
 * is built. Partial directories an earlier build of `to` left (a crash) are
 * removed first: taking their lock tells them from a build that is running,
 * which is refused (LOCK_HELD) rather than deleted. A build that fails removes
 * its own and rejects with IO_ERROR (or PERMISSION_DENIED) saying `doing`.
 */
async function buildDir<T>(b: Builder, to: string, doing: string, build: (partial: string) => Promise<T>): Promise<T> {
  const { fs } = b
  const parent = path.dirname(to)
  await removeLeftPartials(b, to)
  const partial = `${to}.partial-${b.random.nextU32().toString(16).padStart(8, '0')}`
  let lost: Error | undefined
  let lock: DirLock | undefined
  let result: T
  try {
    await makeDirDurable(fs, partial)
    lock = await b.locker.acquire(partial, (err) => {
      lost = err
    })
    await writeNewFile(fs, path.join(partial, INCOMPLETE_NAME), Buffer.from(`${JSON.stringify({ memwal: 'incomplete', doing, pid: process.pid, startedAtMs: Date.now() })}\n`))
    result = await build(partial)
    if (lost) throw lost
    // Everything else is synced: the sentinel goes, durably, before the name says the directory is whole.
    await fs.unlink(path.join(partial, INCOMPLETE_NAME))
    await lock.release()
    lock = undefined
    await fs.syncDir(partial)
    await fs.rename(partial, to)
  } catch (err) {
    // What the failed copy wrote goes; the error it met is the one reported.
    await lock?.release().catch(() => undefined)
    await removeTree(fs, partial).catch(() => undefined)
    throw osError(err, doing, partial)
  }
  await fs.syncDir(parent)
  return result
}

/** Removes the partial directories of `to` that no running build holds; one that is held is refused (LOCK_HELD). */
async function removeLeftPartials(b: Builder, to: string): Promise<void> {
  const parent = path.dirname(to)
  const base = path.basename(to)
  const names = await b.fs.readdir(parent).catch((cause: unknown) => {
    if (errnoCode(cause) === 'ENOENT') return []
    throw osError(cause, `read ${parent}`, parent)
  })
  for (const name of names) {
    if (!name.startsWith(base) || !PARTIAL_SUFFIX.test(name.slice(base.length))) continue
    const partial = path.join(parent, name)
    let lock: DirLock
    try {
      lock = await b.locker.acquire(partial, () => undefined)
    } catch (err) {
      if (isMemwalError(err) && err.code === 'LOCK_HELD') {
        throw new MemwalError('LOCK_HELD', `another backup or restore to ${to} is running (${partial} is locked by ${String(err.details?.['holder'] ?? 'another process')}): wait for it, or pick another target`, { cause: err, details: { ...err.details, path: partial } })
      }
      // Gone meanwhile (another build's clean-up removed it): nothing to do.
      if (!(await b.fs.stat(partial).catch(() => undefined))) continue
      throw osError(err, `lock ${partial}`, partial)
    }
    // Its holder is gone (or it never had one): released, then removed; a build never takes an existing partial's name.
    await lock.release()
    await removeTree(b.fs, partial).catch((cause: unknown) => {
      if (errnoCode(cause) !== 'ENOENT') throw osError(cause, `remove ${partial}, left by an interrupted backup or restore`, partial)
    })
  }
}

/** Inside, or the same: compared by real paths (of the deepest existing ancestor, for a path not made yet). */
async function refuseNested(fs: FileSystem, from: string, to: string): Promise<void> {
  const realFrom = await realPathOf(fs, from)
  const realTo = await realPathOf(fs, to)
  const within = (a: string, b: string): boolean => a === b || a.startsWith(b.endsWith('/') ? b : `${b}/`)
  if (within(realTo, realFrom)) throw new MemwalError('INVALID_OPTIONS', `the target ${to} is inside ${from} (${realTo} in ${realFrom}): it would be copied into itself`, { details: { field: 'target', path: to } })
  if (within(realFrom, realTo)) throw new MemwalError('INVALID_OPTIONS', `${from} is inside the target ${to} (${realFrom} in ${realTo})`, { details: { field: 'target', path: to } })
}

/** The real path of `p`: its deepest existing ancestor's real path, then the rest of `p` as given. */
async function realPathOf(fs: FileSystem, p: string): Promise<string> {
  const rest: string[] = []
  for (let d = path.resolve(p); ; d = path.dirname(d)) {
    try {
      return path.join(await fs.realpath(d), ...rest)
    } catch (cause) {
      const code = errnoCode(cause)
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || path.dirname(d) === d) throw osError(cause, `resolve ${p}`, p)
      rest.unshift(path.basename(d))
    }
  }
}

/**
 * A target is missing or an empty directory. What is there is looked at
 * itself (lstat): a symbolic link is refused rather than followed, and an OS
 * error (EACCES, EIO, a file in the way on the path) is reported as it is.
 */
async function refuseNonEmpty(fs: FileSystem, dir: string): Promise<void> {
  const st = await fs.lstat(dir).catch((cause: unknown) => {
    if (errnoCode(cause) === 'ENOTDIR') throw new MemwalError('INVALID_OPTIONS', `cannot make ${dir}: a file is in the way on its path (ENOTDIR)`, { cause, details: { field: 'target', path: dir } })
    throw osError(cause, `look at the target ${dir}`, dir)
  })
  if (!st) return
  if (st.isSymbolicLink === true) throw new MemwalError('INVALID_OPTIONS', `the target ${dir} is a symbolic link: give the path it points to`, { details: { field: 'target', path: dir } })
  if (!st.isDirectory) throw new MemwalError('TARGET_NOT_EMPTY', `${dir} exists and is not a directory: a backup or a restore goes into a new or empty directory`, { details: { path: dir } })
  const names = await fs.readdir(dir).catch((cause: unknown) => {
    throw osError(cause, `read the target ${dir}`, dir)
  })
  if (names.length > 0) {
    throw new MemwalError('TARGET_NOT_EMPTY', `${dir} exists and is not empty: a backup or a restore goes into a new or empty directory`, { details: { path: dir } })
  }
}

/**
 * Copies a directory tree (files synced, each directory's entries synced),
 * except the paths (relative to the top) `skip` names; a missing `from` copies
 * nothing. Returns the bytes copied. Nothing is followed: memwal makes only
 * plain files and directories, so a symbolic link or a special file is
 * refused (BACKUP_UNSUPPORTED) rather than skipped or followed (a link to a
 * directory above would loop).
 */
async function copyTree(fs: FileSystem, from: string, to: string, skip: (rel: string) => boolean = () => false, rel = ''): Promise<number> {
  const st = await fs.lstat(from)
  if (!st) return 0
  if (!st.isDirectory) throw notCopiable(from, st)
  await makeDirDurable(fs, to)
  let bytes = 0
  for (const name of await fs.readdir(from)) {
    const r = rel === '' ? name : path.join(rel, name)
    if (skip(r)) continue
    const s = await fs.lstat(path.join(from, name))
    if (s?.isDirectory === true) bytes += await copyTree(fs, path.join(from, name), path.join(to, name), skip, r)
    else if (s?.isFile === true) bytes += await copyFile(fs, path.join(from, name), path.join(to, name))
    else if (s) throw notCopiable(path.join(from, name), s)
  }
  return bytes
}

function notCopiable(p: string, st: FileStat): MemwalError {
  const kind = st.isSymbolicLink === true ? 'a symbolic link' : st.isFile ? 'a file' : 'a special file (socket, FIFO or device)'
  return new MemwalError('BACKUP_UNSUPPORTED', `${p} is ${kind}: a data directory holds only plain files and directories, and a copy follows no link; move it out of the way`, { details: { path: p } })
}
