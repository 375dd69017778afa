import { BreakerOpenError, MemwalError, isMemwalError } from './errors.js'
import type { PendingLog } from './apply/pending-log.js'
import type { Op } from './format/record-codec.js'
import { holdProcess } from './io/clock.js'
import type { Wal } from './log/wal.js'
import type { EngineMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import type { CacheSink } from './sinks/cache-sink.js'
import type { IndexSink } from './sinks/index-sink.js'
import type { CursorSigner } from './query/cursor.js'
import { QueryRun } from './query/query-run.js'
import { parseQuery, type QueryOptions, type QuerySpec } from './query/query-spec.js'
import type { BackendSink, StoredEntry } from './sinks/sink.js'
import { checkKey } from './validate.js'

export type { QueryOptions }

/** A query's criteria, for count: no limit, cursor or direction. */
export type CountOptions = Omit<QueryOptions, 'limit' | 'cursor' | 'reverse'>

export interface QueryPage {
  readonly entries: readonly QueryResult[]
  /** Pass as `cursor`, with the same criteria, for the next page; absent on the last page. */
  readonly cursor?: string
}

export interface QueryResult {
  readonly key: string
  readonly value: unknown
  readonly namespace?: string
  readonly tags?: readonly string[]
}


export type SinkRead = <T>(fn: (signal: AbortSignal) => Promise<T>) => Promise<T>

export interface ReadPathParts {
  readonly config: ResolvedOptions
  readonly wal: Wal
  readonly pending: PendingLog
  readonly cache: CacheSink
  readonly backend: BackendSink
  readonly index: IndexSink
  /** Signs and checks query cursors with this store's secret. */
  readonly signer: CursorSigner
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

  /** Entries matching every criterion given, in key order (reversed with `reverse`), at most `limit`, after `cursor`. */
  async *query(q: QueryOptions = {}): AsyncGenerator<QueryResult> {
    this.p.assertReadable()
    const spec = parseQuery(q, this.p.config)
    for await (const h of this.run(spec).hits(spec.limit)) yield resultOf(h.key, h.entry)
  }

  /** One page: up to `limit` entries, and a cursor to the next page when there may be one. */
  async queryPage(q: QueryOptions = {}): Promise<QueryPage> {
    this.p.assertReadable()
    const spec = parseQuery(q, this.p.config)
    const run = this.run(spec)
    const entries: QueryResult[] = []
    // One more than the page, to know whether another page follows.
    for await (const h of run.hits(spec.limit + 1)) entries.push(resultOf(h.key, h.entry))
    if (entries.length <= spec.limit) return { entries }
    entries.pop()
    return { entries, cursor: run.cursorAfter((entries[entries.length - 1] as QueryResult).key) }
  }

  /** How many entries match; answered by the index and the pending overlay, no value read. `limit` and `cursor` mean nothing here and are refused. */
  async count(q: CountOptions = {}): Promise<number> {
    this.p.assertReadable()
    for (const field of ['limit', 'cursor', 'reverse'] as const) {
      if (typeof q === 'object' && q !== null && Object.hasOwn(q, field)) throw new MemwalError('INVALID_OPTIONS', `count does not take the query field "${field}"`, { details: { field } })
    }
    return this.run(parseQuery(q, this.p.config)).count()
  }

  private run(spec: QuerySpec): QueryRun {
    return new QueryRun({ index: this.p.index, pending: this.p.pending, getEntry: (key) => this.getEntry(key), signer: this.p.signer }, spec)
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

function entryOf(op: Extract<Op, { type: 'put' }>, lsn: number): StoredEntry {
  return { value: op.value, lsn, ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) }
}

function resultOf(key: string, e: StoredEntry): QueryResult {
  return { key, value: e.value, ...(e.namespace !== undefined ? { namespace: e.namespace } : {}), ...(e.tags ? { tags: e.tags } : {}) }
}
