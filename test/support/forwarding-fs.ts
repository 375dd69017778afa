/**
 * A FileSystem (and FileHandle) that hands every call to another one: the
 * base of the filesystems tests wrap around the simulated one to trace or
 * watch what the engine does. A subclass overrides only what it looks at.
 * No `writeSync` is forwarded: the simulated filesystem has none, and a
 * wrapper that had one would move the log's small writes onto the calling
 * thread.
 */
import type { FileHandle, FileStat, FileSystem, OpenMode, OpenOptions } from '../../engine/index.js'

export class ForwardingFileSystem implements FileSystem {
  constructor(protected readonly inner: FileSystem) {}

  open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    return this.inner.open(p, mode, options)
  }

  readFile(p: string): Promise<Uint8Array> {
    return this.inner.readFile(p)
  }

  readdir(p: string): Promise<string[]> {
    return this.inner.readdir(p)
  }

  mkdirp(p: string): Promise<void> {
    return this.inner.mkdirp(p)
  }

  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to)
  }

  unlink(p: string): Promise<void> {
    return this.inner.unlink(p)
  }

  rmdir(p: string): Promise<void> {
    return this.inner.rmdir(p)
  }

  stat(p: string): Promise<FileStat | undefined> {
    return this.inner.stat(p)
  }

  lstat(p: string): Promise<FileStat | undefined> {
    return this.inner.lstat(p)
  }

  realpath(p: string): Promise<string> {
    return this.inner.realpath(p)
  }

  syncDir(p: string): Promise<void> {
    return this.inner.syncDir(p)
  }
}

export class ForwardingFileHandle implements FileHandle {
  constructor(protected readonly inner: FileHandle) {}

  write(data: Uint8Array, position: number): Promise<void> {
    return this.inner.write(data, position)
  }

  read(into: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.inner.read(into, offset, length, position)
  }

  datasync(): Promise<void> {
    return this.inner.datasync()
  }

  truncate(length: number): Promise<void> {
    return this.inner.truncate(length)
  }

  size(): Promise<number> {
    return this.inner.size()
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
