/**
 * lmdb-js as a benchmark peer, with its default durable commits.
 *
 * lmdb-js queues every `put` and commits all the puts of one event turn in
 * one transaction on its write thread (`eventTurnBatching`, on by default).
 * On Linux it also defaults to `overlappingSync`: a transaction is committed
 * (visible) first and flushed (fdatasync of the data file) afterwards, and
 * the promise `put` returns resolves at the commit, before the flush. So
 * that an acknowledgement means here what it means for memwal (the bytes
 * are on disk), the database is opened with `separateFlushed: true`, which
 * changes nothing in how lmdb writes or syncs but exposes each commit's flush
 * as a `flushed` promise on the promise `put` returns; an operation counts as
 * acknowledged when both have resolved. Everything else is lmdb-js's
 * default (msgpack values, no `noSync`, no `useWritemap`).
 */
import { posix as path } from 'node:path'
import { open } from 'lmdb'
import { driveAwaited, driveInFlight } from './peers.js'
import type { TrialResult } from './stats.js'

export interface LmdbOptions {
  readonly key: (n: number) => string
  readonly value: string
  readonly warmupMs: number
  readonly measureMs: number
  /** 1 with `awaited`: one awaited writer; otherwise that many puts in flight. */
  readonly depth: number
  readonly awaited: boolean
}

type CommitPromise = Promise<boolean> & { readonly flushed?: Promise<unknown> }

/** `put(key, value)` on a fresh lmdb environment in `dir`, acknowledged once its commit is flushed. */
export async function lmdbTrial(dir: string, o: LmdbOptions): Promise<TrialResult> {
  const db = open<string, string>({ path: path.join(dir, 'lmdb'), separateFlushed: true })
  try {
    let n = 0
    const op = (): Promise<unknown> => {
      const committed = db.put(o.key(n++), o.value) as CommitPromise
      const flushed = committed.flushed
      // Without a separate flush promise (overlappingSync off), the commit itself includes the sync.
      return flushed === undefined ? committed : committed.then(() => flushed)
    }
    const drive = (ms: number): Promise<TrialResult> => (o.awaited ? driveAwaited(op, ms) : driveInFlight(op, ms, o.depth))
    await drive(o.warmupMs)
    return await drive(o.measureMs)
  } finally {
    await db.close()
  }
}
