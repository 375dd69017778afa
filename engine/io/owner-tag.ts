import { createHash } from 'node:crypto'
import { systemLockHost, type LockHost } from './dir-lock.js'

/** What an owner tag records of its process, and how a later process tells whether that owner still runs (dir-lock.ts's host). */
export type OwnerHost = Pick<LockHost, 'hostname' | 'processIsGone' | 'processStart'>

/**
 * This process's owner tag, `<host>-<pid>-<start>`, for the names of files a
 * process makes and a killed one leaves behind (the private copies of a
 * store, an export's partial file): `host` the first 8 hex digits of the
 * SHA-256 of the host name, `start` the process's start time as its host
 * tells (`x` where it cannot), so that a later process tells a PID reused
 * by another process (a container's PID 1 after a restart) from the owner.
 */
export function ownerTag(host: OwnerHost = systemLockHost): string {
  return `${hostTag(host)}-${process.pid}-${host.processStart(process.pid) ?? 'x'}`
}

/** The owner tag at the start of `text`, the rest after its `-`; undefined when `text` does not start with one. */
export function splitOwnerTag(text: string): { readonly tag: string; readonly rest: string } | undefined {
  const m = /^([0-9a-f]{8}-\d+-(?:\d+|x))-(.*)$/s.exec(text)
  return m === null ? undefined : { tag: m[1] as string, rest: m[2] as string }
}

/**
 * Whether the process an owner tag names is gone: a process of this host
 * whose PID no longer runs, or now runs another process (a start time other
 * than the one recorded). The tag of a live process, of another host (a
 * directory shared between hosts), or one whose owner cannot be told (no
 * start time recorded or readable, its PID alive) is not.
 */
export function ownerGone(tag: string, host: OwnerHost = systemLockHost): boolean {
  const m = /^([0-9a-f]{8})-(\d+)-(\d+|x)$/.exec(tag)
  if (m === null || m[1] !== hostTag(host)) return false
  const pid = Number(m[2])
  if (host.processIsGone(pid)) return true
  const start = host.processStart(pid)
  return m[3] !== 'x' && start !== undefined && start !== m[3]
}

function hostTag(host: OwnerHost): string {
  return createHash('sha256').update(host.hostname()).digest('hex').slice(0, 8)
}
