/**
 * lmdb-js as a peer, with its default durable commits.
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
 *
 * The agent shape stores the object itself (lmdb-js encodes it) and its index
 * entries, put in the same event turn: one transaction.
 */
import { posix as path } from 'node:path'
import { timedTrial, type Load, type Timing } from '../drive.js'
import { loadLmdb } from '../peer-modules.js'
import { indexKeys, type RecordShape } from '../records.js'
import type { TrialResult } from '../stats.js'

type CommitPromise = Promise<boolean> & { readonly flushed?: Promise<unknown> }

/** `put` of each record on a fresh lmdb environment in `dir`, acknowledged once its commit is flushed. */
export async function lmdbTrial(dir: string, shape: RecordShape, load: Load, timing: Timing): Promise<TrialResult> {
  const { open } = await loadLmdb()
  const db = open<unknown, string>({ path: path.join(dir, 'lmdb'), separateFlushed: true })
  try {
    let n = 0
    const op = (): Promise<unknown> => {
      const i = n++
      for (const k of indexKeys(shape, i)) void db.put(k, '')
      const committed = db.put(shape.key(i), shape.value(i)) as CommitPromise
      const flushed = committed.flushed
      // Without a separate flush promise (overlappingSync off), the commit itself includes the sync.
      return flushed === undefined ? committed : committed.then(() => flushed)
    }
    return await timedTrial(op, load, timing)
  } finally {
    await db.close()
  }
}
