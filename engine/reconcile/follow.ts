import { InvalidOptionsError, MemwalError } from '../errors.js'
import { changesOf, type Change } from '../format/change.js'
import { systemClock, type Clock } from '../io/clock.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { listWal } from '../log/segment-list.js'
import { posix as path } from 'node:path'
import { dumpLog } from './dump.js'
import type { DumpEntry } from '../log/dump-entry.js'

export interface FollowOptions {
  readonly dir: string
  /** Start after this version; default: after the last record in the log now. */
  readonly fromVersion?: number
  /** Only this namespace (exactly). */
  readonly namespace?: string
  /** Only keys starting with this. */
  readonly prefix?: string
  /** How often to look for new records once caught up (default 500 ms). */
  readonly pollMs?: number
  /** Ends the feed (the iterator returns). */
  readonly signal?: AbortSignal
  readonly fs?: FileSystem
  readonly clock?: Clock
}

const FIELDS = ['dir', 'fromVersion', 'namespace', 'prefix', 'pollMs', 'signal', 'fs', 'clock']
const POLL_MS_DEFAULT = 500
const POLL_MS_MIN = 10
const POLL_MS_MAX = 60_000
/**
 * Passes over the log that may see records after a hole before the hole is
 * called damage: a group being written can show as a damaged frame for a
 * moment, never for several polls.
 */
const HOLE_PASSES = 3

/**
 * The changes in a data directory's log, read without its lock: beside the
 * process that writes it, like `dumpLog`, and then following it as it grows
 * (`memwal watch`). Records show once they are whole in the segment files,
 * which is when they are acknowledged or just before: after a power loss the
 * last ones shown may not have survived (they were never acknowledged). Each
 * look re-reads the segment holding the next LSN from its start (the one
 * segment walker verifies every frame), so it polls, by default twice a
 * second. History deleted by retention is HISTORY_PURGED naming the oldest
 * version left; records after a hole that stays are WAL_HOLE; a gap that
 * recovery declared is passed over, as the engine passes over it.
 */
export async function* followLog(o: FollowOptions): AsyncGenerator<Change> {
  checkFollowOptions(o)
  const clock = o.clock ?? systemClock
  const fs = o.fs ?? new NodeFileSystem()
  const filter = { namespace: o.namespace, prefix: o.prefix ?? '' }
  const pollMs = o.pollMs ?? POLL_MS_DEFAULT
  let next = o.fromVersion !== undefined ? o.fromVersion + 1 : (await lastLsn(o, fs)) + 1
  let holePasses = 0
  const aborted = (): boolean => o.signal?.aborted === true
  while (!aborted()) {
    let blocked: DumpEntry | undefined
    let ahead: number | undefined
    try {
      for await (const e of dumpLog({ dir: o.dir, fromLsn: next, fs })) {
        if (e.kind === 'missing' && e.declared && e.lsnFirst <= next && e.lsnLast >= next) {
          next = e.lsnLast + 1
          continue
        }
        if (e.kind !== 'record') {
          blocked ??= e
          continue
        }
        if (e.lsn < next) continue
        if (e.lsn > next) {
          ahead = e.lsn
          break
        }
        for (const c of changesOf(e.lsn, e.record, filter)) yield c
        next = e.lsn + 1
        if (aborted()) return
      }
    } catch (err) {
      // A segment retention deleted under the walk: look again (what is gone is then HISTORY_PURGED below).
      if ((err as { code?: unknown }).code !== 'ENOENT' && (err as { details?: { errno?: unknown } }).details?.errno !== 'ENOENT') throw err
      continue
    }
    if (ahead !== undefined) {
      if (blocked === undefined) {
        throw new MemwalError('HISTORY_PURGED', `changes after version ${next - 1} are no longer in the log; the oldest still there is ${ahead}`, {
          details: { fromVersion: next - 1, oldestVersion: ahead },
        })
      }
      if (++holePasses >= HOLE_PASSES) {
        const where = 'segment' in blocked ? ` (segment ${blocked.segment}${'offset' in blocked ? `, offset ${blocked.offset}` : ''})` : ''
        throw new MemwalError('WAL_HOLE', `the log has no readable record ${next} but has ${ahead}${where}: run memwal fsck`, { details: { lsn: next, next: ahead } })
      }
    } else holePasses = 0
    await sleep(clock, pollMs, o.signal)
  }
}

/** The last LSN in the log now (0 for an empty one), from its last segment (whose base is the LSN after the one before it). */
async function lastLsn(o: FollowOptions, fs: FileSystem): Promise<number> {
  const { segments } = await listWal(fs, path.join(path.resolve(o.dir), 'wal'))
  const base = segments.at(-1)?.baseLsn
  if (base === undefined) return 0
  let last = base - 1
  for await (const e of dumpLog({ dir: o.dir, fromLsn: base, fs })) if (e.kind === 'record' && e.lsn > last) last = e.lsn
  return last
}

function sleep(clock: Clock, ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      cancel()
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const cancel = clock.setTimer(ms, done)
    signal?.addEventListener('abort', done, { once: true })
  })
}

function checkFollowOptions(o: FollowOptions): void {
  if (typeof o !== 'object' || o === null) throw new InvalidOptionsError('followLog options are required')
  for (const f of Object.keys(o)) if (!FIELDS.includes(f)) throw new InvalidOptionsError(`followLog: unknown option ${JSON.stringify(f)} (known: ${FIELDS.join(', ')})`, f)
  if (typeof o.dir !== 'string' || o.dir.length === 0) throw new InvalidOptionsError('followLog: dir is required', 'dir')
  if (o.fromVersion !== undefined && !(Number.isSafeInteger(o.fromVersion) && o.fromVersion >= 0)) throw new InvalidOptionsError(`followLog: fromVersion must be an integer >= 0, not ${String(o.fromVersion)}`, 'fromVersion')
  if (o.namespace !== undefined && (typeof o.namespace !== 'string' || o.namespace.length === 0)) throw new InvalidOptionsError('followLog: namespace must be a non-empty string', 'namespace')
  if (o.prefix !== undefined && typeof o.prefix !== 'string') throw new InvalidOptionsError('followLog: prefix must be a string', 'prefix')
  if (o.pollMs !== undefined && !(Number.isInteger(o.pollMs) && o.pollMs >= POLL_MS_MIN && o.pollMs <= POLL_MS_MAX)) throw new InvalidOptionsError(`followLog: pollMs must be an integer in [${POLL_MS_MIN}, ${POLL_MS_MAX}], not ${String(o.pollMs)}`, 'pollMs')
}
