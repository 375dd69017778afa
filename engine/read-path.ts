import { BreakerOpenError, isMemwalError, MemwalError } from './errors.js'
import type { PendingLog } from './apply/pending-log.js'
import { identityOf, splitIdentity } from './format/identity.js'
import { isExpired, keepsCreatedAt } from './format/expiry-key.js'
import { holdProcess } from './io/clock.js'
import type { Wal } from './log/wal.js'
import type { EngineMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import { CREATED_UNKNOWN, type CacheSink } from './sinks/cache-sink.js'
import type { IndexReads } from './index-reads.js'
import type { CursorSigner } from './query/cursor.js'
import { AllWritersRun } from './query/all-writers-run.js'
import { QueryRun } from './query/query-run.js'
import { parseQuery, type QueryOptions, type QuerySpec } from './query/query-spec.js'
import type { BackendSink, StoredEntry } from './sinks/sink.js'
import type { PendingVersion } from './apply/pending-log.js'
import { checkKey, checkReadOptions, type ReadOptions } from './validate.js'

export type { QueryOptions } from './query/query-spec.js'

/** What count takes: a query's criteria (and `reverse`, which changes no count); `limit` and `cursor` are refused. */
export type CountOptions = Omit<QueryOptions, 'limit' | 'cursor'>

/** One page of a query: its entries and, when more may follow, the cursor that continues it. */
export interface QueryPage {
  readonly entries: readonly Entry[]
  readonly cursor?: string
}

/** An entry with its metadata, as getEntry and query return it. */
export interface Entry {
  readonly namespace: string
  readonly key: string
  readonly value: unknown
  readonly tags: readonly string[]
  /** The LSN of the record that wrote it: what `put` resolved with. */
  readonly version: number
  /**
   * ms of the first put of this (namespace, key) still live: an overwrite
   * keeps it, a delete then a put starts again. Absent only for a pending put
   * whose earlier version only the backend knows while the backend cannot
   * answer (G4: the value is returned, the unknown time is not guessed).
   */
  readonly createdAt?: number
  /** ms of the write (from the record's clock stamp). */
  readonly updatedAt: number
  readonly expiresAt?: number
}

export type QueryResult = Entry

export type SinkRead = <T>(fn: (signal: AbortSignal) => Promise<T>) => Promise<T>

export interface ReadPathParts {
  readonly config: ResolvedOptions
  readonly wal: Wal
  readonly pending: PendingLog
  readonly cache: CacheSink
  readonly backend: BackendSink
  /** Read through the index applier's count (index-reads.ts): its failures count toward the index's health. */
  readonly index: IndexReads
  readonly signer: CursorSigner
  /**
   * A read of the backend through its applier's breaker and timeout: failures
   * count toward its health. (The index is read without its breaker: a query
   * must go on over a stale index while its applies fail, merged with what is pending.)
   */
  readonly readBackend: SinkRead
  readonly assertReadable: () => void
  readonly metrics: EngineMetrics | undefined
}

/**
 * get, getEntry and query: what is pending first (a reader sees its own
 * writes even while the backend is down, G4), then the cache, then the
 * backend; queries merge the index with pending puts and deletes.
 *
 * Expiry: an entry whose expiresAt is at or before the injected clock reads
 * as absent from every source (pending, cache, backend), at once, whether or
 * not the expiry sweep has deleted it yet (expiry-sweep.ts).
 */
export class ReadPath {
  constructor(private readonly p: ReadPathParts) {}

  /** The value of (namespace, key), or undefined: pending writes first (G4), then the cache, then the backend. */
  async get(key: string, options?: ReadOptions): Promise<unknown> {
    const id = this.identity(key, options)
    const p = this.p.pending.lookup(id)
    if (p) {
      this.p.metrics?.readHit('overlay')
      return p.kind === 'del' || this.expired(p.op.expiresAt) ? undefined : p.op.value
    }
    const e = await this.stored(id)
    // Written while the backend was read: the pending version is the newer one.
    const again = this.p.pending.lookup(id)
    if (again) return again.kind === 'del' || this.expired(again.op.expiresAt) ? undefined : again.op.value
    return e === undefined || this.expired(e.expiresAt) ? undefined : e.value
  }

  /**
   * The entry with its metadata. Pending writes first (G4), then the cache,
   * then the backend. When the backend cannot answer and the entry is neither
   * pending nor cached, rejects with ENGINE_BACKEND_UNAVAILABLE: it never
   * guesses "not found". A pending put whose createdAt depends on what the
   * backend holds (nothing pending before it) reads the backend's row for it.
   */
  async getEntry(key: string, options?: ReadOptions): Promise<Entry | undefined> {
    return this.visible(await this.entryAt(this.identity(key, options)))
  }

  /**
   * The expiry of identities' entries as they are now, expired or not
   * (undefined: no entry), in their order: what the expiry sweep judges
   * before it deletes. Pending first, then the backend's rows (not the cache:
   * with a shared backend (PostgreSQL) the cache may hold this process's own
   * expired version after another writer wrote over it, and the sweep's
   * delete, newer, would then remove that writer's version), read in one go:
   * the sweep judges hundreds at a time, and one read each waited once per
   * entry (behind a writer putting in a loop, an event-loop turn each: 20,000
   * entries took 112 s).
   */
  async currentMany(ids: readonly string[]): Promise<({ readonly expiresAt?: number } | undefined)[]> {
    const of = (p: PendingVersion): { expiresAt?: number } | undefined => (p.kind === 'del' ? undefined : p.op.expiresAt !== undefined ? { expiresAt: p.op.expiresAt } : {})
    const unpending = ids.filter((id) => this.p.pending.lookup(id) === undefined)
    const rows = unpending.length > 0 ? await this.readBackend(() => this.p.backend.metaMany(unpending)) : []
    const stored = new Map(unpending.map((id, i) => [id, rows[i]]))
    // Pending now wins, as in current: a write during the read is newer than the row.
    return ids.map((id) => {
      const p = this.p.pending.lookup(id)
      if (p) return of(p)
      const e = stored.get(id)
      return e && (e.expiresAt !== undefined ? { expiresAt: e.expiresAt } : {})
    })
  }

  /** Whether an entry expiring at `expiresAt` has expired by the engine's clock now. */
  private expired(expiresAt: number | undefined): boolean {
    return isExpired(expiresAt, this.p.config.clock.nowMs())
  }

  /** The entry, or undefined when it has expired: no reader ever sees an expired entry. */
  private visible(e: Entry | undefined): Entry | undefined {
    return e === undefined || this.expired(e.expiresAt) ? undefined : e
  }

  /** The entry as stored (pending, cache, backend), expired or not. */
  private async entryAt(id: string): Promise<Entry | undefined> {
    const p = this.p.pending.lookup(id)
    if (p) {
      this.p.metrics?.readHit('overlay')
      return this.pendingEntry(id, p)
    }
    const e = await this.stored(id)
    const again = this.p.pending.lookup(id)
    if (again) return this.pendingEntry(id, again)
    if (e?.createdAt !== CREATED_UNKNOWN) return e ? entryOf(e) : undefined
    // Cached without its createdAt: the backend's row carries it. A down backend leaves it out, never guessed (the value itself is known).
    let row: StoredEntry | undefined
    try {
      row = await this.stored(id, true)
    } catch (err) {
      if (isMemwalError(err) && err.code === 'ENGINE_BACKEND_UNAVAILABLE') {
        const { createdAt: _unknown, ...known } = entryOf(e)
        return known
      }
      throw err
    }
    return entryOf({ ...e, createdAt: row?.lsn === e.lsn ? row.createdAt : e.updatedAt })
  }

  private identity(key: string, options: ReadOptions | undefined): string {
    const k = checkKey(key, this.p.config)
    const { namespace } = checkReadOptions(options, this.p.config, 'get options')
    this.p.assertReadable()
    return identityOf(namespace, k)
  }

  private async pendingEntry(id: string, p: PendingVersion): Promise<Entry | undefined> {
    if (p.kind === 'del') return undefined
    const createdAt = p.createdFromStore ? await this.storedCreatedAt(id, p.createdAt, p.createdFromLsn) : p.createdAt
    const { op } = p
    return { namespace: splitIdentity(id).namespace, key: op.key, value: op.value, tags: op.tags ?? [], version: p.lsn, ...(createdAt !== undefined ? { createdAt } : {}), updatedAt: p.updatedAt, ...(op.expiresAt !== undefined ? { expiresAt: op.expiresAt } : {}) }
  }

  /**
   * createdAt of a pending run of puts with nothing pending before it, which
   * began at LSN `fromLsn` at time `own`: the stored row's if there is one
   * and it carries over (a row older than the run had not expired by `own`,
   * keepsCreatedAt; a row of the run itself was carried by its sink), else
   * `own`; undefined when the backend cannot answer.
   */
  private async storedCreatedAt(id: string, own: number, fromLsn: number): Promise<number | undefined> {
    const carried = (row: StoredEntry | undefined): number => (row === undefined || (row.lsn < fromLsn && !keepsCreatedAt(row.expiresAt, own)) ? own : row.createdAt)
    try {
      const row = await this.stored(id)
      if (row?.createdAt !== CREATED_UNKNOWN) return carried(row)
      // Cached without its createdAt: the backend's row knows it (which may be older than the cached version).
      return carried(await this.stored(id, true))
    } catch (err) {
      if (isMemwalError(err) && err.code === 'ENGINE_BACKEND_UNAVAILABLE') return undefined
      throw err
    }
  }

  /** The cache, then the backend (the caller looks at what is pending, before and after). `rowOnly`: the backend's row, for its createdAt; never cached. */
  private async stored(id: string, rowOnly = false): Promise<StoredEntry | undefined> {
    const { pending, cache, wal } = this.p
    const cached = rowOnly ? undefined : cache.get(id)
    if (cached) {
      this.p.metrics?.readHit('cache')
      return cached
    }
    const lastBefore = wal.lastLsn
    // Nothing pending for `id` now means every sink, the backend included, has applied its latest version: only then can what the backend returns be cached.
    const latestKnown = pending.latest(id) === undefined
    const e = await this.readBackend(() => this.p.backend.get(id))
    if (rowOnly) {
      // Read for its createdAt, which a cached version of the same LSN keeps (safe whatever was written meanwhile: a version is never rewritten).
      if (e) cache.learnCreatedAt(id, e)
      return e
    }
    // Fill the cache only with the latest version: nothing pending before the read (a version pending then may have been
    // applied, and left the pending log, while the backend's answer predates it) and nothing written meanwhile.
    if (e && latestKnown && wal.lastLsn === lastBefore && !pending.latest(id)) cache.fill(id, e)
    this.p.metrics?.readHit('backend')
    return e
  }

  /**
   * The version the cache or the backend holds for an identity (null:
   * absent, or expired by the clock now, as readers see it), for conditional
   * writes; ENGINE_BACKEND_UNAVAILABLE when the backend cannot answer. The
   * caller has looked at what is pending.
   */
  async storedVersion(id: string): Promise<number | null> {
    const e = await this.stored(id)
    return e === undefined || this.expired(e.expiresAt) ? null : e.lsn
  }

  /** Entries matching every criterion given (README, "Queries"), in identity order (namespace, then key), reversed with `reverse`. */
  async *query(q: QueryOptions = {}): AsyncGenerator<QueryResult> {
    const [run, spec] = this.run(q)
    yield* run.entries(spec.limit)
  }

  /** One page: up to `limit` entries and, when another follows, the cursor after the last of them. */
  async queryPage(q: QueryOptions = {}): Promise<QueryPage> {
    const [run, { limit }] = this.run(q)
    const entries: Entry[] = []
    // One more than the page: whether another page follows, without a cursor to an empty page.
    for await (const e of run.entries(limit + 1, true)) entries.push(e)
    if (entries.length <= limit) return { entries }
    entries.length = limit
    const last = entries[limit - 1] as Entry
    return { entries, cursor: run.cursorAfter(identityOf(last.namespace, last.key)) }
  }

  /** How many entries match: from the index (or a shared backend: PgBackend) and the pending overlay, no value read. */
  async count(q: CountOptions = {}): Promise<number> {
    for (const f of ['limit', 'cursor'] as const) {
      if (q !== null && typeof q === 'object' && Object.hasOwn(q, f)) throw new MemwalError('INVALID_OPTIONS', `count does not take ${f} (it counts every match)`, { details: { field: f } })
    }
    return this.run(q)[0].count()
  }

  /**
   * The query's runner: over a backend several writers share (PgBackend),
   * the backend answers for every writer (all-writers-run.ts); otherwise the
   * local index does (query-run.ts). Either merges the pending overlay in.
   */
  private run(q: QueryOptions): [QueryRun | AllWritersRun, QuerySpec] {
    const spec = parseQuery(q, this.p.config)
    this.p.assertReadable()
    const common = {
      pending: this.p.pending,
      entry: async (id: string) => this.visible(await this.entryAt(id)),
      nowMs: () => this.p.config.clock.nowMs(),
      signer: this.p.signer,
    }
    const shared = this.p.backend.allWritersQuery
    if (shared !== undefined) return [new AllWritersRun({ ...common, backend: shared, read: (fn) => this.readBackend(fn), entryOf }, spec), spec]
    return [new QueryRun({ ...common, index: this.p.index }, spec), spec]
  }

  private async readBackend<T>(read: () => Promise<T>): Promise<T> {
    // A read that never returns must not hang the caller: it fails, typed, after applyTimeoutMs (the call itself cannot be cancelled).
    const release = holdProcess() // the caller awaits this; the timer alone is unref'd
    try {
      return await this.p.readBackend(read)
    } catch (cause) {
      this.p.metrics?.readFailed('backend', isMemwalError(cause) ? cause.code : ((cause as { code?: unknown })?.code as string | undefined) ?? 'UNKNOWN')
      if (cause instanceof BreakerOpenError) {
        throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', 'the backend is down (circuit breaker open) and the value is neither pending nor cached', { cause, transient: true })
      }
      throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `the backend cannot answer: ${(cause as Error).message}`, { cause, transient: true })
    } finally {
      release()
    }
  }
}

function entryOf(e: StoredEntry): Entry {
  return { namespace: e.namespace, key: e.key, value: e.value, tags: e.tags ?? [], version: e.lsn, createdAt: e.createdAt, updatedAt: e.updatedAt, ...(e.expiresAt !== undefined ? { expiresAt: e.expiresAt } : {}) }
}
