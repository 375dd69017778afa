import fs from 'node:fs'
import type { DiskSpace, FileHandle, FileStat, FileSystem, OpenMode, OpenOptions } from './fs.js'
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './modes.js'
import { IoThread } from './io-thread.js'

const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL, O_DSYNC } = fs.constants

/**
 * The real filesystem. Callback-style `fs` calls on raw descriptors: each is one
 * trip through libuv's thread pool and nothing more, which matters on the
 * append path (fs.promises' FileHandle adds work per call).
 */
export class NodeFileSystem implements FileSystem {
  /** The log's I/O thread, while an appender handle is open (started by the first, stopped with the last). */
  private logIo: { readonly thread: IoThread; handles: number } | undefined

  /** statfs: the blocks available to an unprivileged user (what a write can still take), and the filesystem's size. */
  async diskSpace(path: string): Promise<DiskSpace> {
    const s = await fs.promises.statfs(path)
    return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize }
  }

  async copyFile(from: string, to: string): Promise<void> {
    await fs.promises.copyFile(from, to, fs.constants.COPYFILE_EXCL)
    // copyFile gives the new file the source's mode: memwal's files are its own user's only.
    await fs.promises.chmod(to, PRIVATE_FILE_MODE)
  }

  async open(path: string, mode: OpenMode, options: OpenOptions = {}): Promise<FileHandle> {
    let flags = mode === 'read' ? O_RDONLY : mode === 'readwrite' ? O_RDWR : O_RDWR | O_CREAT | O_EXCL
    if (options.dsync === true) flags |= O_DSYNC
    const fd = await new Promise<number>((resolve, reject) =>
      fs.open(path, flags, PRIVATE_FILE_MODE, (err, fd) => (err ? reject(err) : resolve(fd))),
    )
    if (options.appender !== true) return new NodeFileHandle(fd)
    let io = this.logIo
    // A thread that ended by itself is kept until its last handle closes: a segment the log opens
    // meanwhile is refused as the others are, so the log fails closed rather than carry on half-way.
    if (io === undefined) {
      let thread: IoThread
      try {
        thread = new IoThread()
      } catch {
        // No worker to be had (a permission model without --allow-worker, a thread limit): the log's
        // writes go through libuv's pool as they did before the thread, rather than the store not opening.
        return new NodeFileHandle(fd)
      }
      io = this.logIo = { thread, handles: 0 }
    }
    io.handles++
    return new AppenderFileHandle(fd, io.thread, async () => {
      if (--io.handles > 0) return
      if (this.logIo === io) this.logIo = undefined
      await io.thread.stop()
    })
  }

  /** For tests only: whether the log's I/O thread runs and takes requests (an appender handle is open, and the thread has not ended). */
  logIoThreadRunningForTesting(): boolean {
    return this.logIo !== undefined && this.logIo.thread.ended === undefined
  }

  /** For tests only: ends the log's I/O thread as a crash would (IoThread.terminateForTesting); false when none runs. */
  async terminateLogIoThreadForTesting(): Promise<boolean> {
    if (this.logIo === undefined) return false
    await this.logIo.thread.terminateForTesting()
    return true
  }

  async readFile(path: string): Promise<Uint8Array> {
    return fs.promises.readFile(path)
  }

  async readdir(path: string): Promise<string[]> {
    return (await fs.promises.readdir(path)).sort()
  }

  async mkdirp(path: string): Promise<void> {
    await fs.promises.mkdir(path, { recursive: true, mode: PRIVATE_DIR_MODE })
  }

  async rename(from: string, to: string): Promise<void> {
    await fs.promises.rename(from, to)
  }

  async unlink(path: string): Promise<void> {
    await fs.promises.unlink(path)
  }

  async rmdir(path: string): Promise<void> {
    await fs.promises.rmdir(path)
  }

  async stat(path: string): Promise<FileStat | undefined> {
    try {
      const s = await fs.promises.stat(path)
      return { size: s.size, isFile: s.isFile(), isDirectory: s.isDirectory(), mode: s.mode & 0o7777 }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  async lstat(path: string): Promise<FileStat | undefined> {
    try {
      const s = await fs.promises.lstat(path)
      return { size: s.size, isFile: s.isFile(), isDirectory: s.isDirectory(), isSymbolicLink: s.isSymbolicLink(), mode: s.mode & 0o7777 }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  realpath(path: string): Promise<string> {
    return fs.promises.realpath(path)
  }

  async syncDir(path: string): Promise<void> {
    const handle = await fs.promises.open(path, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  }
}

class NodeFileHandle implements FileHandle {
  constructor(protected readonly fd: number) {}

  write(data: Uint8Array, position: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        fs.write(this.fd, data, done, data.byteLength - done, position + done, (err, written) => {
          if (err) return reject(err)
          const total = done + written
          if (total < data.byteLength) return step(total) // short write: carry on where it stopped
          resolve()
        })
      }
      step(0)
    })
  }

  writeSync(data: Uint8Array, position: number): void {
    for (let done = 0; done < data.byteLength; ) done += fs.writeSync(this.fd, data, done, data.byteLength - done, position + done)
  }

  read(into: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return new Promise((resolve, reject) =>
      fs.read(this.fd, into, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))),
    )
  }

  datasync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())))
  }

  truncate(length: number): Promise<void> {
    return new Promise((resolve, reject) => fs.ftruncate(this.fd, length, (err) => (err ? reject(err) : resolve())))
  }

  size(): Promise<number> {
    return new Promise((resolve, reject) => fs.fstat(this.fd, (err, s) => (err ? reject(err) : resolve(s.size))))
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())))
  }
}

/**
 * The log's active segment: writes and syncs on the log's I/O thread
 * (io-thread.ts), not in libuv's pool behind LevelDB's work; `writeSync`
 * (the writer's small groups) stays on the calling thread. Closing waits for
 * this handle's requests still in flight before the descriptor is closed, so
 * a number the kernel hands out again can never take a late write. Once the
 * thread has ended by itself, the inline writes are refused too: the writer
 * fails closed at its next write, whatever its size.
 */
class AppenderFileHandle extends NodeFileHandle {
  /** This handle's requests not yet settled (the thread keeps the requests themselves). */
  private inFlight = 0
  /** Resolves close's wait once the last request in flight settles. */
  private onIdle: (() => void) | undefined
  /** Set as close begins: from then on the descriptor's number may belong to another file, so nothing more goes out. */
  private closing: Promise<void> | undefined

  constructor(
    fd: number,
    private readonly io: IoThread,
    private readonly released: () => Promise<void>,
  ) {
    super(fd)
  }

  override write(data: Uint8Array, position: number): Promise<void> {
    if (this.closing) return Promise.reject(closedError('write'))
    return this.track(this.io.write(this.fd, data, position))
  }

  override writeSync(data: Uint8Array, position: number): void {
    if (this.closing) throw closedError('write')
    if (this.io.ended) throw this.io.ended
    super.writeSync(data, position)
  }

  override datasync(): Promise<void> {
    if (this.closing) return Promise.reject(closedError('fdatasync'))
    return this.track(this.io.datasync(this.fd))
  }

  /** Closes once: a second call waits for the first (closing the number twice could close another file's). */
  override close(): Promise<void> {
    return (this.closing ??= this.closeOnce())
  }

  private async closeOnce(): Promise<void> {
    // No request goes out from here on, so the count only falls.
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.onIdle = resolve))
    try {
      await super.close()
    } finally {
      await this.released()
    }
  }

  private track(p: Promise<void>): Promise<void> {
    this.inFlight++
    const settled = (): void => {
      if (--this.inFlight === 0) this.onIdle?.()
    }
    p.then(settled, settled)
    return p
  }
}

/** What fs gives for a call on a closed descriptor (EBADF), for a handle that knows it is closed. */
function closedError(syscall: string): Error {
  return Object.assign(new Error(`EBADF: bad file descriptor, ${syscall} (the handle is closed)`), { code: 'EBADF', errno: -9, syscall })
}
