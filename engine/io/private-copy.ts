import fs from 'node:fs'
import { posix as path } from 'node:path'
import { systemLockHost } from './dir-lock.js'
import { ownerGone, ownerTag, splitOwnerTag, type OwnerHost } from './owner-tag.js'

/** What a copy's name records of its owner (owner-tag.ts). */
export type CopyOwnerHost = OwnerHost

export interface PrivateCopyOptions {
  /** Where the copy's directory is made (its own, from mkdtemp, mode 0700). */
  readonly tmpRoot: string
  /** Files copied before the others (never linked): what `choose` reads in the copy. */
  readonly first: (name: string) => boolean
  /**
   * Once those are in the copy (`read` reads one of them, undefined if it cannot), what to do with each other file:
   * a hard link (only a file never changed in place once written, where the
   * filesystem allows), a copy, or nothing.
   */
  readonly choose: (read: (name: string) => Promise<Uint8Array | undefined>) => Promise<(name: string) => 'link' | 'copy' | 'skip'>
  /** Default: the system's (systemLockHost). */
  readonly host?: CopyOwnerHost
}

export interface PrivateCopy {
  readonly dir: string
  /** Removes the copy (and only it: a link's file stays where it was), then the copies under tmpRoot of processes gone. */
  remove(): Promise<void>
}

/**
 * Why a copy was not made (the copy's directory removed): `source`, reading
 * `from` failed (its listing, or a file that is there but cannot be read);
 * `gone`, a file listed was deleted before it was copied (its directory
 * changes under the copy); `copy`, making the copy failed (its directory,
 * a link, a write: the filesystem of tmpRoot, full or read-only).
 */
export class PrivateCopyFailure extends Error {
  constructor(
    readonly side: 'source' | 'gone' | 'copy',
    cause: unknown,
  ) {
    super((cause as Error | undefined)?.message ?? String(cause), { cause })
  }
}

/** Every copy's name begins so; then `<host>-<pid>-<start>-` of the process that made it and mkdtemp's 6 characters. */
const COPY_PREFIX = 'memwal-view-'

/**
 * A private copy of the flat directory `from`, for a program that rewrites
 * what it opens (LevelDB has no read-only open): whatever it writes, renames
 * or deletes is in the copy. The files `first` accepts are copied first;
 * then `choose` says, for each other, whether it is a hard link (no bytes
 * copied; a link that cannot be made, across filesystems (EXDEV) or where
 * links are not allowed (EPERM), is a copy), a copy or left out. A link is
 * safe only for a file nobody changes in place, and only if the program
 * never writes one of that name in the copy (it would write the original);
 * the copy's modes must not be changed (a link shares its file's).
 *
 * The copy's name says whose it is: `memwal-view-<host>-<pid>-<start>-XXXXXX`
 * (host: 8 hex of the SHA-256 of the host name; start: the process's start
 * time, which tells it from a later process given the same PID, as the lock's
 * owner.json does). A process killed while its copy is there (SIGKILL, a
 * power loss) leaves it, holding links to tables (pinning the room compaction
 * frees) and copies of logs (user data): every later remove() also removes
 * the copies of this host's processes that are gone (removeLeftCopies), and
 * the CLI removes its own on SIGINT and SIGTERM (removeOwnCopiesSync).
 */
export async function privateCopy(from: string, o: PrivateCopyOptions): Promise<PrivateCopy> {
  const host = o.host ?? systemLockHost
  const dir = await fs.promises.mkdtemp(path.join(o.tmpRoot, ownPrefix(host))).catch((err: unknown) => {
    throw new PrivateCopyFailure('copy', err)
  })
  const removeOwn = (): Promise<void> => fs.promises.rm(dir, { recursive: true, force: true })
  try {
    const entries = await fs.promises.readdir(from, { withFileTypes: true }).catch((err: unknown) => {
      throw new PrivateCopyFailure('source', err)
    })
    const files = entries.filter((e) => e.isFile()).map((e) => e.name)
    for (const name of files.filter(o.first)) await copyOne(path.join(from, name), path.join(dir, name), false)
    const choice = await o.choose((name) => fs.promises.readFile(path.join(dir, name)).catch(() => undefined))
    for (const name of files.filter((n) => !o.first(n))) {
      const what = choice(name)
      if (what !== 'skip') await copyOne(path.join(from, name), path.join(dir, name), what === 'link')
    }
  } catch (err) {
    await removeOwn()
    throw err
  }
  return {
    dir,
    remove: async () => {
      await removeOwn()
      await removeLeftCopies(o.tmpRoot, host)
    },
  }
}

/** One file, linked or copied; a failure said as whose it is (PrivateCopyFailure). */
async function copyOne(source: string, target: string, link: boolean): Promise<void> {
  try {
    if (link && (await linked(source, target))) return
    await fs.promises.copyFile(source, target)
  } catch (err) {
    // Whose failure it is: a source that is gone or unreadable is the directory's, any other the copy's (ENOSPC, EROFS, EIO there).
    const readable = await fs.promises.access(source, fs.constants.R_OK).then(
      () => true,
      (e: unknown) => (e as NodeJS.ErrnoException).code,
    )
    throw new PrivateCopyFailure(readable === true ? 'copy' : readable === 'ENOENT' ? 'gone' : 'source', err)
  }
}

async function linked(source: string, target: string): Promise<boolean> {
  try {
    await fs.promises.link(source, target)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EXDEV' || code === 'EPERM' || code === 'ENOTSUP' || code === 'EMLINK') return false
    throw err
  }
}

function ownPrefix(host: CopyOwnerHost): string {
  return `${COPY_PREFIX}${ownerTag(host)}-`
}

/**
 * Whether the copy named `name` (any name) was left by a process of this
 * host that no longer runs (ownerGone): `memwal-view-<owner tag>-<6 chars
 * of mkdtemp>`. Any other name is not.
 */
function leftByGone(name: string, host: CopyOwnerHost): boolean {
  const owned = name.startsWith(COPY_PREFIX) ? splitOwnerTag(name.slice(COPY_PREFIX.length)) : undefined
  return owned !== undefined && /^[A-Za-z0-9]{6}$/.test(owned.rest) && ownerGone(owned.tag, host)
}

/** Removes the copies under `tmpRoot` that processes now gone left (leftByGone); what cannot be listed or removed is left. */
export async function removeLeftCopies(tmpRoot: string, host: CopyOwnerHost = systemLockHost): Promise<void> {
  const names = await fs.promises.readdir(tmpRoot).catch(() => [] as string[])
  for (const name of names) {
    if (leftByGone(name, host)) await fs.promises.rm(path.join(tmpRoot, name), { recursive: true, force: true }).catch(() => undefined)
  }
}

/**
 * Removes this process's own copies under `tmpRoot`, at once: for a signal
 * handler that ends the process next (a copy open at that moment goes with
 * it). Best effort: what cannot be removed is left for removeLeftCopies.
 */
export function removeOwnCopiesSync(tmpRoot: string, host: CopyOwnerHost = systemLockHost): void {
  const prefix = ownPrefix(host)
  let names: string[]
  try {
    names = fs.readdirSync(tmpRoot)
  } catch {
    return
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue
    try {
      // Retried: LevelDB's own thread may still be writing a file there (ENOTEMPTY).
      fs.rmSync(path.join(tmpRoot, name), { recursive: true, force: true, maxRetries: 5, retryDelay: 10 })
    } catch {
      // left for a later removeLeftCopies
    }
  }
}
