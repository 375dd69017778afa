/**
 * The filesystem seam. Every byte the WAL reads or writes goes through a
 * FileSystem, so that tests can swap in a simulated one that loses unsynced
 * bytes, tears writes and injects errors (see sim-fs.ts).
 *
 * Only what the WAL needs is here, with durability stated per call:
 * - a handle opened with `dsync: true` makes every completed `write` durable
 *   (O_DSYNC: data and the metadata needed to read it back);
 * - otherwise written bytes are durable only after `datasync()`;
 * - a directory entry (create, rename, unlink) is durable only after
 *   `syncDir()` of its parent.
 */
export interface FileHandle {
  /** Writes all of `data` at `position`; rejects (ENOSPC, EIO, ...) having written any prefix of it. */
  write(data: Uint8Array, position: number): Promise<void>
  /**
   * The same, on the calling thread, where the filesystem can (the real one).
   * For a lone small write the trip through libuv's thread pool and back
   * costs as much as the write; a caller uses this only for small writes.
   */
  writeSync?(data: Uint8Array, position: number): void
  /** Reads up to `length` bytes at `position` into `into[offset..]`; resolves the count read (0 at end of file). */
  read(into: Uint8Array, offset: number, length: number, position: number): Promise<number>
  datasync(): Promise<void>
  truncate(length: number): Promise<void>
  size(): Promise<number>
  close(): Promise<void>
}

export type OpenMode =
  /** Read only. */
  | 'read'
  /** Read and write an existing file. */
  | 'readwrite'
  /** Create a new file (fails if it exists), read and write. */
  | 'create'

export interface OpenOptions {
  readonly dsync?: boolean
  /**
   * The log's active segment, whose writes and syncs acknowledge appends: the
   * real filesystem does them on a thread of the log's own (io/io-thread.ts),
   * not in libuv's pool behind the store's work. A simulated one may ignore it.
   */
  readonly appender?: boolean
}

export interface FileStat {
  readonly size: number
  readonly isFile: boolean
  readonly isDirectory: boolean
  /** Permission bits (`st_mode & 0o7777`), where the filesystem has them. */
  readonly mode?: number
  /** Set by `lstat` only: the path is a symbolic link (neither isFile nor isDirectory then). */
  readonly isSymbolicLink?: boolean
}

export interface FileSystem {
  open(path: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle>
  /** The whole file, in a buffer of the caller's own that nothing else writes: open's backlog keeps views of segments read so. */
  readFile(path: string): Promise<Uint8Array>
  /** Names in a directory, sorted. */
  readdir(path: string): Promise<string[]>
  /** Creates a directory and its parents with mode 0700; no error if it exists. */
  mkdirp(path: string): Promise<void>
  rename(from: string, to: string): Promise<void>
  unlink(path: string): Promise<void>
  /** Removes an empty directory (ENOTEMPTY otherwise, ENOENT if missing). Durable after `syncDir()` of its parent. */
  rmdir(path: string): Promise<void>
  /** Undefined when nothing is at `path`. */
  stat(path: string): Promise<FileStat | undefined>
  /** As `stat`, of the link itself when `path` is a symbolic link (a filesystem without links: as `stat`). */
  lstat(path: string): Promise<FileStat | undefined>
  /** The absolute path with every symbolic link resolved (ENOENT when nothing is there). */
  realpath(path: string): Promise<string>
  /** Makes the directory's entries (creates, renames, unlinks) durable. */
  syncDir(path: string): Promise<void>
  /**
   * Space on the filesystem holding `path`: bytes free to this user, and the
   * size. Optional: without it the engine reports no disk figures and never
   * goes read-only for a full disk (the simulated filesystem has none).
   */
  diskSpace?(path: string): Promise<DiskSpace>
  /**
   * Copies a file that nothing writes meanwhile (a sealed segment, a LevelDB
   * table) into a new file `to` (EEXIST if something is there), 0600, in the
   * kernel where it can (copy_file_range: no trip of the bytes through this
   * process). Nothing is synced. Optional: without it a copy reads and writes
   * through handles (file-ops.ts copyFileData).
   */
  copyFile?(from: string, to: string): Promise<void>
}

export interface DiskSpace {
  readonly freeBytes: number
  readonly totalBytes: number
}

/** The errno-style code of an error from a FileSystem, if it has one. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code
  return undefined
}

/**
 * Errors after which the bytes of a write are known not to matter yet:
 * no space, quota, file too big. Anything else (EIO above all) leaves the
 * state of the disk unknown, and the WAL must fail closed (G2).
 */
export function isSpaceError(err: unknown): boolean {
  const code = errnoCode(err)
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG'
}
