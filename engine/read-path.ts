import { BreakerOpenError, MemwalError, isMemwalError } from './errors.js'
import type { PendingLog } from './apply/pending-log.js'
import type { Op } from './format/record-codec.js'
import { holdProcess } from './io/clock.js'
import type { Wal } from './log/wal.js'
import type { EngineMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import type { CacheSink } from './sinks/cache-sink.js'
import { matches, type IndexQuery, type IndexSink } from './sinks/index-sink.js'
import type { BackendSink, StoredEntry } from './sinks/sink.js'
import { checkKey, checkPutOptions, invalidValue } from './validate.js'

export interface QueryOptions extends IndexQuery {
  /** At most this many results (default 1,000; at most 100,000). */
  readonly limit?: number
}

export interface QueryResult {
  readonly key: string
  readonly value: unknown
  readonly namespace?: string
  readonly tags?: readonly string[]
}

const QUERY_LIMIT_DEFAULT = 1000
const QUERY_LIMIT_MAX = 100_000

export type SinkRead = <T>(fn: (signal: AbortSignal) => Promise<T>) => Promise<T>

export interface ReadPathParts {
  readonly config: ResolvedOptions
  readonly wal: Wal
  readonly pending: PendingLog
  readonly cache: CacheSink
  readonly backend: BackendSink
  readonly index: IndexSink
  /**
   * A read of the backend through its applier's breaker and timeout: failures
   * count toward its health. (The index is read directly: a query must go on
   * over a stale index while its applies fail, merged with what is pending.)
   */
  readonly readBackend: SinkRead
  readonly assertReadable: () => void
  readonly metrics: EngineMetrics | undefined
}

/**
 * get, getEntry and query: what is pending first (a reader sees its own
 * writes even while the backend is down, G4), then the cache, then the
 * backend; queries merge the index with pending puts and deletes.
 */
export class ReadPath {
  constructor(private readonly p: ReadPathParts) {}

  /**
   * Pending writes first (G4), then the cache, then the backend. When the
   * backend cannot answer and the key is neither pending nor cached, rejects
   * with ENGINE_BACKEND_UNAVAILABLE: it never guesses "not found".
   */
  async getEntry(key: string): Promise<StoredEntry | undefined> {
    const { pending, cache, wal } = this.p
    const k = checkKey(key, this.p.config)
    this.p.assertReadable()
    const metrics = this.p.metrics
    const p = pending.lookup(k)
    if (p) {
      metrics?.readHit('overlay')
      return p.kind === 'del' ? undefined : entryOf(p.op, p.lsn)
    }
    const cached = cache.get(k)
    if (cached) {
      metrics?.readHit('cache')
      return cached
    }
    const lastBefore = wal.lastLsn
    const e = await this.readBackend(() => this.p.backend.get(k))
    // Fill the cache only if nothing was written meanwhile (a later write could be older than what we read).
    if (e && wal.lastLsn === lastBefore && !pending.lookup(k)) cache.fill(k, e)
    const again = pending.lookup(k)
    metrics?.readHit(again ? 'overlay' : 'backend')
    if (again) return again.kind === 'del' ? undefined : entryOf(again.op, again.lsn)
    return e
  }

  /** Entries matching every criterion given, in key order. */
  async *query(q: QueryOptions = {}): AsyncGenerator<QueryResult> {
    const { pending } = this.p
    this.p.assertReadable()
    const query = checkQuery(q, this.p.config)
    const limit = q.limit ?? QUERY_LIMIT_DEFAULT
    if (!Number.isInteger(limit) || limit < 1 || limit > QUERY_LIMIT_MAX) throw invalidValue(`limit must be an integer in [1, ${QUERY_LIMIT_MAX}]`)
    // Pending versions override the index for their keys.
    const overridden = new Set<string>()
    const pendingHits: QueryResult[] = []
    for (const key of pending.keys()) {
      if (query.prefix !== undefined && !key.startsWith(query.prefix)) continue
      const v = pending.lookup(key)
      if (!v) continue
      overridden.add(key)
      if (v.kind === 'put' && matches(v.op, query)) pendingHits.push(resultOf(key, entryOf(v.op, v.lsn)))
    }
    pendingHits.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    let n = 0
    let i = 0
    const it = this.p.index.keys(query)[Symbol.asyncIterator]()
    for (;;) {
      // The index is not the backend: a down backend must not stop a query whose values are pending or cached (G4 refuses per value, in getEntry).
      let next: IteratorResult<[string, unknown]>
      try {
        next = await it.next()
      } catch (cause) {
        throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `the index cannot answer: ${(cause as Error).message}`, { cause, transient: true })
      }
      if (next.done) break
      const [key] = next.value
      if (overridden.has(key)) continue
      while (i < pendingHits.length && (pendingHits[i] as QueryResult).key < key) {
        yield pendingHits[i++] as QueryResult
        if (++n >= limit) return
      }
      const e = await this.getEntry(key)
      if (!e || !matches(e, query)) continue
      yield resultOf(key, e)
      if (++n >= limit) return
    }
    while (i < pendingHits.length) {
      yield pendingHits[i++] as QueryResult
      if (++n >= limit) return
    }
  }

  private async readBackend<T>(read: () => Promise<T>): Promise<T> {
    // A read that never returns must not hang the caller: it fails, typed, after applyTimeoutMs (the call itself cannot be cancelled).
    const release = holdProcess() // the caller awaits this; the timer alone is unref'd
    try {
      return await this.p.readBackend(read)
    } catch (cause) {
      this.p.metrics?.readFailed(isMemwalError(cause) ? cause.code : ((cause as { code?: unknown })?.code as string | undefined) ?? 'UNKNOWN')
      if (cause instanceof BreakerOpenError) {
        throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', 'the backend is down (circuit breaker open) and the value is neither pending nor cached', { cause, transient: true })
      }
      throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `the backend cannot answer: ${(cause as Error).message}`, { cause, transient: true })
    } finally {
      release()
    }
  }
}

function checkQuery(q: QueryOptions, l: ResolvedOptions): IndexQuery {
  if (typeof q !== 'object' || q === null) throw invalidValue('query takes an options object')
  const opts = checkPutOptions({ ...(q.namespace !== undefined ? { namespace: q.namespace } : {}), ...(q.tag !== undefined ? { tags: [q.tag] } : {}) }, l)
  if (q.prefix !== undefined && typeof q.prefix !== 'string') throw invalidValue('prefix must be a string')
  return { ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}), ...(opts.tags?.[0] !== undefined ? { tag: opts.tags[0] } : {}), ...(q.prefix !== undefined ? { prefix: q.prefix } : {}) }
}

function entryOf(op: Extract<Op, { type: 'put' }>, lsn: number): StoredEntry {
  return { value: op.value, lsn, ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) }
}

function resultOf(key: string, e: StoredEntry): QueryResult {
  return { key, value: e.value, ...(e.namespace !== undefined ? { namespace: e.namespace } : {}), ...(e.tags ? { tags: e.tags } : {}) }
}
