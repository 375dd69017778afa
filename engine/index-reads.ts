import type { Applier } from './apply/applier.js'
import { isMemwalError, MemwalError } from './errors.js'
import type { IndexSink, Seeked, SeekableIds } from './sinks/index-sink.js'

/** What the engine reads of the index: queries (forwardScan, tagScan, postingBytes), clear (keys), listNamespaces and stats (forward), the expiry sweep (expired). */
export type IndexReads = Pick<IndexSink, 'keys' | 'forward' | 'expired' | 'forwardScan' | 'tagScan' | 'postingBytes'>

/**
 * The index as the engine reads it: every read (each step of a range
 * scan) goes through the index applier's
 * `counted`, so read failures count toward the index's health as the
 * backend's do (breakerThreshold in a row make it down: `sink-down`, state
 * `degraded`, its lastError and consecutiveFailures in health(); the next
 * read or probe that works brings it back), and `failed` counts them for the
 * metrics. Unlike the backend's, these reads are not refused while the
 * index's breaker is open (it guards applies: a query goes on over a stale
 * index, merged with what is pending) and not timed (a scan's step cannot be
 * abandoned: the iterator's close would wait for it). A failure is
 * ENGINE_BACKEND_UNAVAILABLE (transient), the cause kept.
 */
export function countedIndexReads(index: IndexSink, applier: Applier, failed: (code: string) => void): IndexReads {
  const read = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await applier.counted(fn)
    } catch (cause) {
      failed(isMemwalError(cause) ? cause.code : (((cause as { code?: unknown } | undefined)?.code as string | undefined) ?? 'UNKNOWN'))
      throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `the index cannot answer: ${(cause as Error)?.message ?? String(cause)}`, { cause, transient: true })
    }
  }
  return {
    keys: (q) => stepwise(index.keys(q), read),
    expired: (nowMs) => stepwise(index.expired(nowMs), read),
    // Made now, not at the first step: forward takes its snapshot (and calls overlay) in the caller's tick.
    forward: (prefix, overlay) => stepwise(index.forward(prefix, overlay), read),
    // Made now, in the caller's tick (a query makes its scans together, over one view of the index); each jump is a read.
    forwardScan: (range, reverse, firstStep) => seekwise(index.forwardScan(range, reverse, firstStep), read),
    tagScan: (tag, range, reverse, firstStep) => seekwise(index.tagScan(tag, range, reverse, firstStep), read),
    postingBytes: (tag, range) => read(() => index.postingBytes(tag, range)),
  }
}

/** `scan` with each `seek` that reads made through `read`; one answered from what the scan holds read nothing, and is passed on as it is. */
function seekwise(scan: SeekableIds, read: <R>(fn: () => Promise<R>) => Promise<R>): SeekableIds {
  return {
    seek: (target, exclusive, far) => {
      let s: Seeked
      try {
        s = scan.seek(target, exclusive, far)
      } catch (err) {
        // A jump is made at once (the iterator's seek), and throws at once on an iterator the store's reopen closed: a failed read all the same.
        return read(() => Promise.reject(err))
      }
      return s instanceof Promise ? read(() => s) : s
    },
    meta: () => scan.meta(),
    close: () => scan.close(),
  }
}

/** `source` with each `next` made through `read`; `return` (letting the scan go) is passed on as it is. */
function stepwise<T>(source: AsyncIterable<T>, read: <R>(fn: () => Promise<R>) => Promise<R>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const it = source[Symbol.asyncIterator]()
      return {
        next: () => read(() => it.next()),
        return: async (value?: unknown) => (it.return ? it.return(value) : { done: true, value: value as T }),
      }
    },
  }
}
