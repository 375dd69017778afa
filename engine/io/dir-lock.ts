import fs from 'node:fs'
import os from 'node:os'
import { posix as path } from 'node:path'
import lockfile from 'proper-lockfile'
import { LockHeldError, MemwalError, osError } from '../errors.js'
import type { FileSystem } from './fs.js'
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './modes.js'
import { NodeFileSystem } from './node-fs.js'

const TEMP_SUFFIX = '.tmp'

/** One writer per data directory (G7). */
export interface DirLocker {
  /** Takes the lock or rejects with LockHeldError naming the holder. `onCompromised` fires if it is lost later (LOCK_COMPROMISED). */
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
  /** The kernel's boot id when the lock was taken: a lock from another boot of this host is left over from before a reboot. */
  readonly bootId?: string
  /**
   * When the holder process began, as its host tells (LockHost.processStart):
   * with the boot id, it tells the holder from a later process given the same
   * PID (a container's PID 1 after a restart, a PID reused), which PID and
   * host alone cannot.
   */
  readonly processStart?: string
}

/**
 * What the locker asks of the machine it runs on, injected so that tests can
 * play a reboot (another boot id, a later boot time) without one.
 */
export interface LockHost {
  hostname(): string
  /** This boot's id (Linux: /proc/sys/kernel/random/boot_id); undefined where the system has none. */
  bootId(): string | undefined
  /** When this boot began, in ms since the epoch. */
  bootTimeMs(): number
  /** True when no process `pid` runs on this host. */
  processIsGone(pid: number): boolean
  /**
   * When process `pid` began, exactly, in this boot (Linux: the start time
   * in clock ticks, field 22 of /proc/<pid>/stat); undefined where the
   * system does not say, or no such process runs.
   */
  processStart(pid: number): string | undefined
}

const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id'

/** Field 22 of /proc/<pid>/stat, the start time: counted after the command's closing parenthesis (the command may hold spaces and parentheses), where field 3 begins. */
function procStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3]
    return start !== undefined && /^\d+$/.test(start) ? start : undefined
  } catch {
    return undefined
  }
}

export const systemLockHost: LockHost = Object.freeze({
  hostname: () => os.hostname(),
  bootId: () => {
    try {
      return fs.readFileSync(BOOT_ID_PATH, 'utf8').trim() || undefined
    } catch {
      return undefined
    }
  },
  bootTimeMs: () => Date.now() - os.uptime() * 1000,
  processIsGone: (pid: number) => {
    try {
      process.kill(pid, 0)
      return false
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH'
    }
  },
  processStart: procStartTime,
})

/**
 * How far before this boot's start a lock with no readable owner must have
 * last been refreshed to count as left over from an earlier boot: the boot
 * time is derived from the uptime, which is rounded.
 */
const BOOT_TIME_SLACK_MS = 2_000

export interface ProcessDirLockerOptions {
  /** A lock whose holder cannot be told apart from a live one is taken over after this long without refresh (default 60 s). */
  readonly staleMs?: number
  /** The holder refreshes the lock's mtime this often (default 5 s). */
  readonly updateMs?: number
  readonly host?: LockHost
}

/**
 * The lock is proper-lockfile's directory `<dir>/memwal.lock`, kept fresh by
 * its timer; `owner.json` inside names the holder, and is durable (file and
 * directories synced) so that it survives a power loss. A lock left over is
 * taken over at once rather than after proper-lockfile's stale period when
 * its holder is known to be gone: same host and PID gone, or same host and
 * another boot; or when no owner can be read and the lock was last refreshed
 * before this boot began. Any other lock whose owner cannot be told is taken
 * over once stale (mtime older than `staleMs`).
 */
export class ProcessDirLocker implements DirLocker {
  /**
   * `staleMs` is generous on purpose: a holder killed on this host is taken
   * over at once through its PID or boot id, so the stale period only matters
   * for a holder on another host or one whose owner file is unreadable, while
   * a short one lets a busy event loop or a slow disk "compromise" a live lock.
   */
  private readonly staleMs: number
  private readonly updateMs: number
  private readonly host: LockHost

  constructor(o: ProcessDirLockerOptions = {}) {
    this.staleMs = o.staleMs ?? 60_000
    this.updateMs = o.updateMs ?? 5_000
    this.host = o.host ?? systemLockHost
  }

  async acquire(dir: string, onCompromised: (err: Error) => void): Promise<DirLock> {
    const lockPath = path.join(dir, LOCK_NAME)
    const host = this.host
    removeDeadTemps(dir, host)
    const bootId = host.bootId()
    const processStart = host.processStart(process.pid)
    const owner: Owner = { pid: process.pid, hostname: host.hostname(), startedAtMs: Date.now(), ...(bootId !== undefined ? { bootId } : {}), ...(processStart !== undefined ? { processStart } : {}) }
    const options = {
      lockfilePath: lockPath,
      realpath: false,
      stale: this.staleMs,
      update: this.updateMs,
      retries: 0,
      // proper-lockfile's ECOMPROMISED (the lock directory went, or was refreshed by someone else) as memwal's code.
      onCompromised: (err: Error) => onCompromised(new MemwalError('LOCK_COMPROMISED', `the lock of ${dir} was lost (${err.message}): another process may write there now`, { cause: err, details: { dir } })),
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
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw osError(err, `lock ${dir}`, dir)
      const holder = readOwner(lockPath)
      const seen = lockMtimeMs(lockPath)
      if (!leftOver(holder, seen, host, this.updateMs)) throw new LockHeldError(dir, describe(holder, host), err)
      // The holder is gone: its lock is left over. Take it, if nobody else did meanwhile.
      const again = readOwner(lockPath)
      if (again?.pid === holder?.pid && again?.startedAtMs === holder?.startedAtMs && lockMtimeMs(lockPath) === seen) removeLockDirSync(lockPath, owner)
      try {
        release = await lockfile.lock(dir, options)
      } catch (err2) {
        throw new LockHeldError(dir, describe(readOwner(lockPath), host), err2)
      }
    }
    return { release: () => release() }
  }
}

/**
 * Makes the lock directory with its owner file inside, durably: the file and
 * the directory are synced before the rename, and the parent after it, so
 * that after a power loss the lock names its (dead) holder instead of coming
 * back empty, which would make it look held by an unknown process.
 */
function mkdirWithOwner(lockPath: string, owner: Owner, cb: (err: NodeJS.ErrnoException | null) => void): void {
  const temp = `${lockPath}.${owner.pid}.${process.hrtime.bigint()}${TEMP_SUFFIX}`
  const made = async (): Promise<void> => {
    await fs.promises.mkdir(temp, { mode: PRIVATE_DIR_MODE })
    const file = await fs.promises.open(path.join(temp, OWNER_FILE), 'wx', PRIVATE_FILE_MODE)
    try {
      await file.writeFile(JSON.stringify(owner))
      await file.sync()
    } finally {
      await file.close()
    }
    await syncDirectory(temp)
    try {
      await fs.promises.rename(temp, lockPath)
    } catch (err) {
      // Renaming onto a lock that exists (never empty: it holds its owner file) fails: that is "already held".
      const e = err as NodeJS.ErrnoException
      if (e.code === 'ENOTEMPTY' || e.code === 'EEXIST') e.code = 'EEXIST'
      throw e
    }
    await syncDirectory(path.dirname(lockPath))
  }
  made().then(
    () => cb(null),
    (err: NodeJS.ErrnoException) => fs.rm(temp, { recursive: true, force: true }, () => cb(err)),
  )
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.promises.open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
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
function removeDeadTemps(dir: string, host: LockHost): void {
  let names: string[] = []
  try {
    names = fs.readdirSync(dir)
  } catch {
    return
  }
  for (const name of names) {
    const m = new RegExp(`^${LOCK_NAME.replace('.', '\\.')}\\.(\\d+)\\..*\\${TEMP_SUFFIX}$`).exec(name)
    if (m?.[1] && Number(m[1]) !== process.pid && host.processIsGone(Number(m[1]))) fs.rmSync(path.join(dir, name), { recursive: true, force: true })
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
  return describe(readOwner(lockPath), systemLockHost)
}

function readOwner(lockPath: string): Owner | undefined {
  try {
    const o: unknown = JSON.parse(fs.readFileSync(path.join(lockPath, OWNER_FILE), 'utf8'))
    if (typeof o === 'object' && o !== null && 'pid' in o && 'hostname' in o && typeof o.pid === 'number' && typeof o.hostname === 'string') {
      const bootId = 'bootId' in o && typeof o.bootId === 'string' ? o.bootId : undefined
      const processStart = 'processStart' in o && typeof o.processStart === 'string' ? o.processStart : undefined
      return { pid: o.pid, hostname: o.hostname, startedAtMs: 'startedAtMs' in o && typeof o.startedAtMs === 'number' ? o.startedAtMs : 0, ...(bootId !== undefined ? { bootId } : {}), ...(processStart !== undefined ? { processStart } : {}) }
    }
  } catch {
    // No owner file yet (being taken right now), or unreadable: the holder is unknown.
  }
  return undefined
}

/**
 * Whether a lock that is held on disk was left by a holder that can no longer
 * hold it. A holder on another host is never judged here (its PID and boot
 * mean nothing on this one): proper-lockfile's stale period decides.
 */
function leftOver(o: Owner | undefined, mtimeMs: number | undefined, host: LockHost, updateMs: number): boolean {
  // No owner to ask (an owner file lost by a crash of an older release, or being written right now): only its age can tell.
  // A live holder, even on another host sharing the directory, refreshes the mtime every updateMs.
  if (!o) return mtimeMs !== undefined && mtimeMs < host.bootTimeMs() - BOOT_TIME_SLACK_MS && Date.now() - mtimeMs > 2 * updateMs
  if (o.hostname !== host.hostname()) return false
  if (otherBoot(o, host)) return true
  // The PID runs a process that began at another moment (or none): not the holder, though it may be this very process.
  const started = samePidStart(o, host)
  if (started !== undefined) return !started
  if (o.pid === process.pid) return false
  return host.processIsGone(o.pid)
}

/** The owner's boot is known to be another than this one (of the same host). */
function otherBoot(o: Owner, host: LockHost): boolean {
  const bootId = host.bootId()
  return o.bootId !== undefined && bootId !== undefined && o.bootId !== bootId
}

/**
 * Whether the process now running under the owner's PID began when the owner
 * did; undefined when that cannot be told (an owner record from before start
 * times were kept, a system that does not say). A PID gone reads as false.
 */
function samePidStart(o: Owner, host: LockHost): boolean | undefined {
  if (o.processStart === undefined) return undefined
  const now = host.processStart(o.pid)
  if (now === undefined) return host.processIsGone(o.pid) ? false : undefined
  return now === o.processStart
}

/** The owner is this very process: same host, boot, PID and, where both are known, start time. */
function isThisProcess(o: Owner, host: LockHost): boolean {
  return o.pid === process.pid && o.hostname === host.hostname() && !otherBoot(o, host) && samePidStart(o, host) !== false
}

function lockMtimeMs(lockPath: string): number | undefined {
  try {
    return fs.statSync(lockPath).mtimeMs
  } catch {
    return undefined
  }
}

/**
 * The holder, as the refusal names it. When it is this very process, say so:
 * a second MemWAL (or adapter) opened on a directory this process already has
 * open is a mistake in the caller (a dev server's hot reload keeps the old
 * module's store open), not another program to look for.
 */
function describe(o: Owner | undefined, host: LockHost): string {
  if (!o) return 'an unknown process'
  const holder = `process ${o.pid} on ${o.hostname} (since ${new Date(o.startedAtMs).toISOString()})`
  return isThisProcess(o, host) ? `${holder}, this very process: it already has the directory open; close that MemWAL first (a hot reload keeps the old one open)` : holder
}

/**
 * The lock a data directory gets unless the caller passes one: a process lock
 * on the real filesystem, none on another (no other process can look there).
 */
export function defaultDirLocker(fs: FileSystem): DirLocker {
  return fs instanceof NodeFileSystem ? new ProcessDirLocker() : noDirLocker
}
