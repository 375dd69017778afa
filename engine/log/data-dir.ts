import { posix as path } from 'node:path'
import { MemwalError, osError } from '../errors.js'
import { SEGMENT_MAGIC } from '../format/format.js'
import { TEMP_SUFFIX } from '../format/segment-name.js'
import { makeDirDurable, replaceFile } from '../io/file-ops.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { writableByOthers } from '../io/modes.js'
import { listWal, readPrefix } from './segment-list.js'

/**
 * How memwal knows a data directory for its own: the marker file `<dir>/MEMWAL`,
 * written durably when the directory is created (before anything else in it).
 * A directory without it is refused with DIR_NOT_MEMWAL, whatever it holds (a
 * `wal/` folder of someone else's), so that `fsck --repair` and `replay` never
 * initialise a foreign directory.
 *
 * Directories made before the marker existed are recognised by their layout:
 * a `wal/` holding a segment file that begins with memwal's segment magic.
 * The engine adds the marker to such a directory at its next open, once it
 * holds the lock; the read-only tools (status, dump, fsck without --repair)
 * leave it as it is.
 *
 * The marker is one line of JSON: `{"memwal":"data directory","version":1}`.
 * `version` is that of the directory's layout as a whole (which files and
 * folders it has); the log's format and the store's layout carry versions of
 * their own (the segment header; the store's `meta`).
 */
export const MARKER_NAME = 'MEMWAL'
export const MARKER_VERSION = 1
const MARKER_KIND = 'data directory'
/**
 * The sentinel of a directory a backup or a restore is building (backup.ts):
 * written, durably, before anything else in it and removed, durably, after
 * everything else is synced. A directory holding it is refused everywhere
 * with BACKUP_INCOMPLETE: an interrupted copy may hold the marker and a store
 * with none of its tables, which would open as an empty store.
 */
export const INCOMPLETE_NAME = 'INCOMPLETE'
/** The temporary replaceFile writes the marker through (`<file>.tmp`): a directory holding only it is still empty. */
const MARKER_TEMP = `${MARKER_NAME}${TEMP_SUFFIX}`

/**
 * What is at a data directory's path:
 * - `marked`: a memwal directory with its marker;
 * - `unmarked`: a memwal directory made before the marker (recognised by its log);
 * - `empty`: a directory with nothing in it (or only a marker's temp file left by a crash);
 * - `missing`: nothing at that path.
 * A directory holding the INCOMPLETE sentinel is none of these: refused (BACKUP_INCOMPLETE).
 */
export type DataDirKind = 'marked' | 'unmarked' | 'empty' | 'missing'

/**
 * Tells what `dir` is, or refuses it: a file in the way or a directory that is
 * not memwal's (DIR_NOT_MEMWAL naming the path), an interrupted backup or
 * restore (BACKUP_INCOMPLETE), a marker from a newer memwal
 * (WAL_UNKNOWN_VERSION), an OS refusal (PERMISSION_DENIED, IO_ERROR). Reads only.
 */
export async function recogniseDataDir(fs: FileSystem, dir: string): Promise<DataDirKind> {
  const st = await fs.stat(dir).catch((cause: unknown) => {
    const code = (cause as NodeJS.ErrnoException).code
    if (code === 'ENOTDIR') throw notMemwal(dir, `cannot use ${dir} as a data directory: a file is in the way (${code})`, cause)
    throw osError(cause, `read the data directory ${dir}`, dir)
  })
  if (!st) return 'missing'
  if (!st.isDirectory) throw notMemwal(dir, `${dir} exists and is not a directory`)
  const names = (await fs.readdir(dir).catch((cause: unknown) => {
    throw osError(cause, `read the data directory ${dir}`, dir)
  })).filter((n) => n !== MARKER_TEMP)
  if (names.includes(INCOMPLETE_NAME)) {
    const sentinel = path.join(dir, INCOMPLETE_NAME)
    throw new MemwalError('BACKUP_INCOMPLETE', `${dir} is a backup or restore that was interrupted (it holds ${sentinel}): it lacks part of its data; delete it and run the backup or restore again`, { details: { path: dir, sentinel } })
  }
  if (names.includes(MARKER_NAME)) {
    await readMarker(fs, dir)
    return 'marked'
  }
  if (names.length === 0) return 'empty'
  if (await hasMemwalSegment(fs, dir)) return 'unmarked'
  throw notMemwal(dir, `${dir} is not a memwal data directory: it has no ${MARKER_NAME} marker and no memwal log in wal/ (it holds ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', ...' : ''})`)
}

/**
 * For the tools that work on an existing directory (status, dump, fsck,
 * replay): a missing directory is DIR_NOT_FOUND, an empty one or a foreign
 * one DIR_NOT_MEMWAL; nothing is created or changed.
 */
export async function checkDataDir(dir: string, fs: FileSystem = new NodeFileSystem()): Promise<Exclude<DataDirKind, 'missing' | 'empty'>> {
  const kind = await recogniseDataDir(fs, dir)
  if (kind === 'missing') throw new MemwalError('DIR_NOT_FOUND', `no such directory: ${dir}`, { details: { path: dir } })
  if (kind === 'empty') throw notMemwal(dir, `${dir} is empty: not a memwal data directory (open it with memwal to make one)`)
  return kind
}

/**
 * For the engine's open: makes the directory (0700, durably) with its marker
 * when it is missing or empty; says `unmarked` for a directory the caller
 * should mark once it holds the lock; refuses anything else.
 */
export async function prepareDataDir(fs: FileSystem, dir: string): Promise<DataDirKind> {
  const kind = await recogniseDataDir(fs, dir)
  if (kind !== 'missing' && kind !== 'empty') return kind
  try {
    await makeDirDurable(fs, dir)
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    if (code === 'EEXIST' || code === 'ENOTDIR') throw notMemwal(dir, `cannot create the data directory ${dir}: a file is in the way (${code})`, cause)
    throw osError(cause, `create the data directory ${dir}`, dir)
  }
  await writeMarker(fs, dir)
  return kind
}

/**
 * Writes the marker durably (replaceFile: a temp file synced, renamed into
 * place, the directory synced). A crash leaves either no marker (and at most
 * the temp file, which counts for nothing) or a whole one.
 */
export async function writeMarker(fs: FileSystem, dir: string): Promise<void> {
  const file = path.join(dir, MARKER_NAME)
  try {
    await replaceFile(fs, file, Buffer.from(`${JSON.stringify({ memwal: MARKER_KIND, version: MARKER_VERSION })}\n`))
  } catch (cause) {
    // Another opener of the same new directory may have written it meanwhile, the same bytes: its rename took
    // our temporary (ENOENT) or its temporary was in the way (EEXIST). Any other failure, an EIO from a sync
    // above all, is this write's: the marker may not be durable.
    const code = (cause as NodeJS.ErrnoException).code
    if ((code === 'ENOENT' || code === 'EEXIST') && (await fs.stat(file).catch(() => undefined))) return
    throw osError(cause, `write the data directory marker ${file}`, dir)
  }
}

async function readMarker(fs: FileSystem, dir: string): Promise<void> {
  const file = path.join(dir, MARKER_NAME)
  let m: unknown
  try {
    m = JSON.parse(Buffer.from(await fs.readFile(file)).toString('utf8'))
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== undefined) throw osError(cause, `read the data directory marker ${file}`, file)
    throw notMemwal(dir, `${file} is not a memwal marker (not JSON)`, cause)
  }
  if (typeof m !== 'object' || m === null || !('memwal' in m) || m.memwal !== MARKER_KIND || !('version' in m) || typeof m.version !== 'number') {
    throw notMemwal(dir, `${file} is not a memwal marker`)
  }
  if (m.version !== MARKER_VERSION) {
    throw new MemwalError('WAL_UNKNOWN_VERSION', `${dir} has data directory layout version ${m.version}; this memwal knows version ${MARKER_VERSION} (a newer memwal made it)`, { details: { path: dir, version: m.version } })
  }
}

/** A data directory from before the marker: `wal/` holds a segment file that begins with memwal's segment magic. */
async function hasMemwalSegment(fs: FileSystem, dir: string): Promise<boolean> {
  const walDir = path.join(dir, 'wal')
  if (!(await fs.stat(walDir))?.isDirectory) return false
  const listing = await listWal(fs, walDir).catch((cause: unknown) => {
    throw osError(cause, `read the log directory ${walDir}`, walDir)
  })
  for (const s of listing.segments) {
    const head = Buffer.from(await readPrefix(fs, s.path, SEGMENT_MAGIC.length).catch(() => new Uint8Array(0)))
    if (head.equals(SEGMENT_MAGIC)) return true
  }
  return false
}

/** A directory of a data directory that others may write, with its mode. */
export interface LooseDir {
  readonly path: string
  readonly mode: number
}

/**
 * The data directory and memwal's folders in it that the group or others may
 * write: they could delete, rename or replace the log and the store. Warned
 * about (at open, through the logger; in `status`), not refused: a shared
 * volume may be set up that way on purpose, and a refusal would stop a memory
 * that works. Empty where the filesystem has no modes (the simulated one).
 */
export async function looseDirs(fs: FileSystem, dir: string): Promise<LooseDir[]> {
  const out: LooseDir[] = []
  for (const p of [dir, ...['wal', 'store', 'deadletter', 'quarantine'].map((n) => path.join(dir, n))]) {
    const mode = (await fs.stat(p).catch(() => undefined))?.mode
    if (mode !== undefined && writableByOthers(mode)) out.push({ path: p, mode })
  }
  return out
}

/** The warning for a loose directory, with the fix. */
export function describeLooseDir(l: LooseDir): string {
  return `${l.path} is writable by group or others (mode 0${(l.mode & 0o777).toString(8)}): another user could delete or replace memwal's files; chmod go-w ${l.path} (memwal makes its directories 0700)`
}

function notMemwal(dir: string, message: string, cause?: unknown): MemwalError {
  return new MemwalError('DIR_NOT_MEMWAL', message, { ...(cause !== undefined ? { cause } : {}), details: { path: dir } })
}
