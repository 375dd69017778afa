import fs from 'node:fs'
import os from 'node:os'
import { posix as path } from 'node:path'
import lockfile from 'proper-lockfile'
import { LockHeldError, MemwalError } from '../errors.js'

const TEMP_SUFFIX = '.tmp'

/** One writer per data directory (G7). */
export interface DirLocker {
  /** Takes the lock or rejects with LockHeldError naming the holder. `onCompromised` fires if it is lost later. */
  acquire(dir: string, onCompromised: (err: Error) => void): Promise<DirLock>
}

export interface DirLock {
  release(): Promise<void>
}

export const LOCK_NAME = 'memwal.lock'
const OWNER_FILE = 'owner.json'

interface Owner {
  readonly pid: number
  readonly hostname: string
  readonly startedAtMs: number
}

/**
 * The lock is proper-lockfile's directory `<dir>/memwal.lock`, kept fresh by
 * its timer; `owner.json` inside names the holder. A lock whose holder was
 * killed (same host, PID gone) is taken over at once rather than after
 * proper-lockfile's stale period; a lock whose owner cannot be told is taken
 * over once stale (mtime older than `staleMs`).
 */
export class ProcessDirLocker implements DirLocker {
  /**
   * `staleMs` is generous on purpose: a holder killed on this host is taken
   * over at once through its PID, so the stale period only matters for a
   * holder on another host or one whose owner file is unreadable, while a
   * short one lets a busy event loop or a slow disk "compromise" a live lock.
   */
  constructor(
    private readonly staleMs = 60_000,
    private readonly updateMs = 5_000,
  ) {}

  async acquire(dir: string, onCompromised: (err: Error) => void): Promise<DirLock> {
    const lockPath = path.join(dir, LOCK_NAME)
    removeDeadTemps(dir)
    const owner: Owner = { pid: process.pid, hostname: os.hostname(), startedAtMs: Date.now() }
    const options = {
      lockfilePath: lockPath,
      realpath: false,
      stale: this.staleMs,
      update: this.updateMs,
      retries: 0,
      onCompromised,
      fs: {
        ...fs,
        // The lock directory appears with its owner file already inside (made
        // aside, then renamed into place): writing into it later would change
        // its mtime, which proper-lockfile reads as another process taking it.
        mkdir: (p: string, cb: (err: NodeJS.ErrnoException | null) => void) => mkdirWithOwner(p, owner, cb),
        // Release removes the directory with the owner file inside it; so does
        // proper-lockfile's clean-up at process exit (rmdirSync), which a plain
        // rmdir could not do with the owner file inside.
        rmdir: (p: string, cb: (err: NodeJS.ErrnoException | null) => void) => removeLockDir(p, owner, cb),
        rmdirSync: (p: string) => removeLockDirSync(p, owner),
      },
    }
    let release: () => Promise<void>
    try {
      release = await lockfile.lock(dir, options)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw new MemwalError('IO_ERROR', `cannot lock ${dir}: ${(err as Error).message}`, { cause: err })
      const holder = readOwner(lockPath)
      if (!holder || !holderIsGone(holder)) throw new LockHeldError(dir, describe(holder), err)
      // The holder was killed: its lock is left over. Take it, if nobody else did meanwhile.
      const again = readOwner(lockPath)
      if (again?.pid === holder.pid && again.startedAtMs === holder.startedAtMs) removeLockDirSync(lockPath, owner)
      try {
        release = await lockfile.lock(dir, options)
      } catch (err2) {
        throw new LockHeldError(dir, describe(readOwner(lockPath)), err2)
      }
    }
    return { release: () => release() }
  }
}

function mkdirWithOwner(lockPath: string, owner: Owner, cb: (err: NodeJS.ErrnoException | null) => void): void {
  const temp = `${lockPath}.${owner.pid}.${process.hrtime.bigint()}${TEMP_SUFFIX}`
  const fail = (err: NodeJS.ErrnoException): void => fs.rm(temp, { recursive: true, force: true }, () => cb(err))
  fs.mkdir(temp, { mode: 0o700 }, (err) => {
    if (err) return cb(err)
    fs.writeFile(path.join(temp, OWNER_FILE), JSON.stringify(owner), { mode: 0o600 }, (err2) => {
      if (err2) return fail(err2)
      fs.rename(temp, lockPath, (err3) => {
        if (!err3) return cb(null)
        // Renaming onto a lock that exists (never empty: it holds its owner file) fails: that is "already held".
        if (err3.code === 'ENOTEMPTY' || err3.code === 'EEXIST') err3.code = 'EEXIST'
        fail(err3)
      })
    })
  })
}

/**
 * Removes a lock directory by first renaming it aside, then deleting the
 * renamed copy: emptying it in place would leave, for a moment, an empty
 * directory that a new holder's rename could replace, and the recursive
 * delete would then take the new holder's lock with it.
 */
function removeLockDir(lockPath: string, owner: Owner, cb: (err: NodeJS.ErrnoException | null) => void): void {
  const aside = asideName(lockPath, owner)
  fs.rename(lockPath, aside, (err) => {
    if (err) return cb(err.code === 'ENOENT' ? null : err)
    fs.rm(aside, { recursive: true, force: true }, cb)
  })
}

function removeLockDirSync(lockPath: string, owner: Owner): void {
  const aside = asideName(lockPath, owner)
  try {
    fs.renameSync(lockPath, aside)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  fs.rmSync(aside, { recursive: true, force: true })
}

function asideName(lockPath: string, owner: Owner): string {
  return `${lockPath}.${owner.pid}.${process.hrtime.bigint()}.released${TEMP_SUFFIX}`
}

/** Lock directories being made by processes that died before renaming them into place. */
function removeDeadTemps(dir: string): void {
  let names: string[] = []
  try {
    names = fs.readdirSync(dir)
  } catch {
    return
  }
  for (const name of names) {
    const m = new RegExp(`^${LOCK_NAME.replace('.', '\\.')}\\.(\\d+)\\..*\\${TEMP_SUFFIX}$`).exec(name)
    if (m?.[1] && holderIsGone({ pid: Number(m[1]), hostname: os.hostname(), startedAtMs: 0 })) fs.rmSync(path.join(dir, name), { recursive: true, force: true })
  }
}

/** For a simulated filesystem, where no other process can look. */
export const noDirLocker: DirLocker = Object.freeze({
  acquire: () => Promise.resolve({ release: () => Promise.resolve() }),
})

/** Who holds the lock of `dir`, for messages; undefined when it is not locked. */
export function lockHolder(dir: string): string | undefined {
  const lockPath = path.join(dir, LOCK_NAME)
  if (!fs.existsSync(lockPath)) return undefined
  return describe(readOwner(lockPath))
}

function readOwner(lockPath: string): Owner | undefined {
  try {
    const o: unknown = JSON.parse(fs.readFileSync(path.join(lockPath, OWNER_FILE), 'utf8'))
    if (typeof o === 'object' && o !== null && 'pid' in o && 'hostname' in o && typeof o.pid === 'number' && typeof o.hostname === 'string') {
      return { pid: o.pid, hostname: o.hostname, startedAtMs: 'startedAtMs' in o && typeof o.startedAtMs === 'number' ? o.startedAtMs : 0 }
    }
  } catch {
    // No owner file yet (being taken right now), or unreadable: the holder is unknown.
  }
  return undefined
}

function holderIsGone(o: Owner): boolean {
  if (o.hostname !== os.hostname()) return false
  if (o.pid === process.pid) return false
  try {
    process.kill(o.pid, 0)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

function describe(o: Owner | undefined): string {
  return o ? `process ${o.pid} on ${o.hostname} (since ${new Date(o.startedAtMs).toISOString()})` : 'an unknown process'
}
