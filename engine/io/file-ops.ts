import { posix as path } from 'node:path'
import { MemwalError } from '../errors.js'
import type { FileSystem } from './fs.js'

/** Chunk used when writing zeros over a range (zero-fill, truncation of a preallocated segment). */
export const ZERO_CHUNK_BYTES = 1024 * 1024

/** Overwrites [from, to) of a file with zeros, durably; the file keeps its size (segments are preallocated). */
export async function zeroRange(fs: FileSystem, file: string, from: number, to: number): Promise<void> {
  if (to <= from) return
  const h = await fs.open(file, 'readwrite')
  try {
    const chunk = Buffer.alloc(Math.min(ZERO_CHUNK_BYTES, to - from))
    for (let at = from; at < to; at += chunk.length) await h.write(at + chunk.length <= to ? chunk : chunk.subarray(0, to - at), at)
    await h.datasync()
  } finally {
    await h.close()
  }
}

/** Overwrites the bytes of a file at `at` with `bytes`, durably. */
export async function writeRange(fs: FileSystem, file: string, at: number, bytes: Uint8Array): Promise<void> {
  const h = await fs.open(file, 'readwrite')
  try {
    await h.write(bytes, at)
    await h.datasync()
  } finally {
    await h.close()
  }
}

/**
 * Creates `dir` and any missing parents (0700), durably: the parent of every
 * directory made here is synced after it, top down, so that a power loss
 * cannot take back a directory that later durability relies on (a segment
 * synced into a `wal/` whose own entry was never synced is lost with it).
 * A directory that already exists costs one stat and no sync.
 */
export async function makeDirDurable(fs: FileSystem, dir: string): Promise<void> {
  const missing: string[] = []
  for (let d = path.resolve(dir); !(await fs.stat(d)); d = path.dirname(d)) {
    missing.push(d)
    if (path.dirname(d) === d) break
  }
  if (missing.length === 0) return
  await fs.mkdirp(dir)
  for (const made of missing.reverse()) await fs.syncDir(path.dirname(made))
}

/** Writes `bytes` to a new file, durably (file and directory entry). */
export async function writeNewFile(fs: FileSystem, file: string, bytes: Uint8Array): Promise<void> {
  await writeSyncedData(fs, file, bytes)
  await fs.syncDir(path.dirname(file))
}

/** Writes `bytes` to a new file and syncs its data; its directory entry is the caller's to make durable. */
async function writeSyncedData(fs: FileSystem, file: string, bytes: Uint8Array): Promise<void> {
  const h = await fs.open(file, 'create')
  try {
    await h.write(bytes, 0)
    await h.datasync()
  } finally {
    await h.close()
  }
}

/**
 * Removes `dir` and everything in it (files unlinked, directories removed
 * bottom up), then syncs its parent: for what a failed or interrupted copy
 * left, never for evidence. A missing `dir` is nothing to do.
 */
export async function removeTree(fs: FileSystem, dir: string): Promise<void> {
  if (!(await fs.stat(dir))) return
  await removeEntries(fs, dir)
  await fs.rmdir(dir)
  await fs.syncDir(path.dirname(dir))
}

async function removeEntries(fs: FileSystem, dir: string): Promise<void> {
  for (const name of await fs.readdir(dir)) {
    const p = path.join(dir, name)
    if ((await fs.stat(p))?.isDirectory) {
      await removeEntries(fs, p)
      await fs.rmdir(p)
    } else {
      await fs.unlink(p)
    }
  }
}

/** Chunk of a copy through handles: bounds the memory one copy takes. */
export const COPY_CHUNK_BYTES = 8 * 1024 * 1024

export interface CopyData {
  /** Copy only the first `bytes` of `from` (fewer if it is shorter); default: all of it. */
  readonly bytes?: number
  /**
   * Nothing writes `from` while it is copied (a sealed segment, a LevelDB
   * table): the filesystem's own copy may be used. A file being appended to
   * is copied through handles, a prefix of what it holds then.
   */
  readonly stable?: boolean
  /** Zero bytes written after what was copied (a segment's end-of-log marker). */
  readonly zerosAfter?: number
}

/**
 * Creates `to` holding the bytes of `from` (see CopyData), its data synced;
 * its directory entry is the caller's to make durable (one directory sync
 * after many copies). Returns the bytes copied.
 */
export async function copyFileData(fs: FileSystem, from: string, to: string, o: CopyData = {}): Promise<number> {
  if (o.stable === true && o.bytes === undefined && o.zerosAfter === undefined && fs.copyFile) {
    await fs.copyFile(from, to)
    const h = await fs.open(to, 'readwrite')
    try {
      await h.datasync()
      return await h.size()
    } finally {
      await h.close()
    }
  }
  const src = await fs.open(from, 'read')
  try {
    const dst = await fs.open(to, 'create')
    try {
      const want = o.bytes ?? (await src.size())
      const chunk = Buffer.allocUnsafe(Math.max(1, Math.min(COPY_CHUNK_BYTES, want)))
      let at = 0
      while (at < want) {
        const n = await src.read(chunk, 0, Math.min(chunk.length, want - at), at)
        if (n === 0) break
        await dst.write(chunk.subarray(0, n), at)
        at += n
      }
      if (o.zerosAfter !== undefined && o.zerosAfter > 0) await dst.write(Buffer.alloc(o.zerosAfter), at)
      await dst.datasync()
      return at
    } finally {
      await dst.close()
    }
  } finally {
    await src.close()
  }
}

/** Copies `from`, which nothing writes meanwhile, to a new file `to`, durably (data and directory entry); returns the bytes copied. */
export async function copyFile(fs: FileSystem, from: string, to: string): Promise<number> {
  const bytes = await copyFileData(fs, from, to, { stable: true })
  await fs.syncDir(path.dirname(to))
  return bytes
}

/** A path in `dir` for `name` that nothing holds yet: evidence is never overwritten. */
export async function freeName(fs: FileSystem, dir: string, name: string): Promise<string> {
  for (let n = 0; ; n++) {
    const candidate = path.join(dir, n === 0 ? name : `${name}.${n}`)
    if (!(await fs.stat(candidate))) return candidate
  }
}

/**
 * Replaces `file` with `bytes` atomically and durably: a synced temporary
 * (`<file>.tmp`, left over only by a crash and replaced here) renamed over
 * it, then the directory synced, once: the temporary's own entry need not be
 * durable (a crash before the sync leaves the old file, or a temporary that
 * counts for nothing). A reader sees the old bytes or the new ones.
 */
export async function replaceFile(fs: FileSystem, file: string, bytes: Uint8Array): Promise<void> {
  const temp = `${file}.tmp`
  if (await fs.stat(temp)) await fs.unlink(temp)
  await writeSyncedData(fs, temp, bytes)
  await fs.rename(temp, file)
  await fs.syncDir(path.dirname(file))
}

/**
 * The list under `field` of a JSON file that memwal replaces atomically
 * (replaceFile), every item checked by `isItem`; empty when there is no file.
 * Anything else was not written by memwal: a typed refusal naming the file.
 */
export async function readJsonList<T>(fs: FileSystem, file: string, field: string, isItem: (v: unknown) => v is T, what: string): Promise<T[]> {
  if (!(await fs.stat(file))) return []
  let v: unknown
  try {
    v = JSON.parse(Buffer.from(await fs.readFile(file)).toString('utf8'))
  } catch (cause) {
    throw new MemwalError('IO_ERROR', `${file} cannot be read as JSON: it is replaced atomically, so something else wrote it; move it aside to go on`, { cause, details: { file } })
  }
  const list = (v as Record<string, unknown> | null)?.[field]
  if (!Array.isArray(list) || !list.every(isItem)) throw new MemwalError('IO_ERROR', `${file} does not hold a list of ${what}; move it aside to go on`, { details: { file } })
  return list
}
