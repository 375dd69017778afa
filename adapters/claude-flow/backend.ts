import { MemWAL, MemwalError, type BatchOp, type MemwalOptions } from '../../engine/index.js'
import { compareStrings, invalid } from '../args.js'
import { KeySpace } from '../keyspace.js'
import { openOwned } from '../open.js'
import { NewestFirst } from './newest-first.js'
import type { BackendStats, DistanceMetric, HealthCheckResult, IMemoryBackend, MemoryEntry, MemoryEntryUpdate, MemoryQuery, MemoryType, SearchOptions, SearchResult } from './types.js'

/** Entries per memwal batch in bulkInsert (each entry is 2-3 operations; the engine's default batchOpsMax is 10,000). */
const BULK_ENTRIES_PER_BATCH = 1_000
const MEMORY_TYPES: readonly MemoryType[] = ['episodic', 'semantic', 'procedural', 'working', 'cache']
const METRICS: readonly DistanceMetric[] = ['cosine', 'euclidean', 'dot']
const QUERY_FIELDS = new Set(['type', 'content', 'embedding', 'key', 'keyPrefix', 'namespace', 'tags', 'memoryType', 'accessLevel', 'ownerId', 'metadata', 'createdAfter', 'createdBefore', 'updatedAfter', 'updatedBefore', 'limit', 'offset', 'threshold', 'includeExpired', 'distanceMetric'])

/** Either MemWAL options (the backend opens and closes its own MemWAL) or a MemWAL the caller shares, with an optional clock for timestamps. */
export type MemwalMemoryBackendOptions = MemwalOptions | { readonly db: MemWAL; readonly nowMs?: () => number }

/** An entry as stored: the embedding as a plain array (msgpack has no Float32Array), undefined fields left out. */
type StoredEntry = Omit<MemoryEntry, 'embedding'> & { embedding?: number[] }

/**
 * claude-flow's IMemoryBackend on memwal. Every store, update, delete,
 * bulkInsert, bulkDelete and clearNamespace resolves only once durable in
 * memwal's log (claude-flow's SqlJsBackend resolves before anything is on
 * disk); reads answer from memwal, pending writes included, while its
 * LevelDB backend is down.
 *
 * Layout: `cf.e [id]` -> the entry, tagged `cf.ns:<namespace>` so that a
 * namespace is one index range; `cf.k [namespace, key]` -> id ((namespace,
 * key) is unique, as in claude-flow's SQL schema: storing an entry replaces
 * any other entry with the same namespace and key); `cf.t [namespace, age,
 * id]`, the namespace's entries newest first (newest-first.ts).
 *
 * Costs: get/getByKey one or two reads; query of a namespace reads its
 * entries newest first and stops at offset + limit matches (all of them
 * when the filters match few); query without a namespace does the same over
 * every namespace's newest-first walk merged (one more read per namespace);
 * count reads no entry; search(embedding) is exact, O(n x d) over the
 * embeddings of the namespace in `filters.namespace` (all entries without
 * one): correct first, no approximate index. Scans stop, typed, past 100,000
 * entries. Not kept: access tracking (accessCount, lastAccessedAt are
 * returned as stored: a read is not a write here).
 */
export class MemwalMemoryBackend implements IMemoryBackend {
  private db: MemWAL | undefined
  private entries: KeySpace | undefined
  private keys: KeySpace | undefined
  private newest: NewestFirst | undefined
  private readonly now: () => number
  private searches = { n: 0, ms: 0 }
  private queries = { n: 0, ms: 0 }

  constructor(private readonly options: MemwalMemoryBackendOptions) {
    const clock = 'db' in options ? undefined : options.clock
    this.now = 'db' in options ? (options.nowMs ?? Date.now) : clock ? () => clock.nowMs() : Date.now
  }

  async initialize(): Promise<void> {
    if (this.db) return
    const db = 'db' in this.options ? this.options.db : await openOwned(this.options, 'MemwalMemoryBackend')
    const entries = new KeySpace(db, 'cf.e')
    const newest = new NewestFirst(db)
    await newest.ensureBuilt(entries)
    this.db = db
    this.entries = entries
    this.keys = new KeySpace(db, 'cf.k')
    this.newest = newest
  }

  async shutdown(): Promise<void> {
    const db = this.db
    this.db = undefined
    if (db && !('db' in this.options)) await db.close()
  }

  async store(entry: MemoryEntry): Promise<void> {
    checkEntry(entry)
    await this.open().db.batch(await this.storeOps(entry))
  }

  async get(id: string): Promise<MemoryEntry | null> {
    const s = (await this.open().entries.get([checkId(id)])) as StoredEntry | undefined
    return s ? entryOf(s) : null
  }

  async getByKey(namespace: string, key: string): Promise<MemoryEntry | null> {
    const id = (await this.open().keys.get([checkString('namespace', namespace), checkString('key', key)])) as string | undefined
    return id === undefined ? null : this.get(id)
  }

  async update(id: string, update: MemoryEntryUpdate): Promise<MemoryEntry | null> {
    const existing = await this.get(id)
    if (!existing) return null
    const updated: MemoryEntry = { ...existing, ...definedOnly(update), updatedAt: this.now(), version: existing.version + 1 }
    await this.store(updated)
    return updated
  }

  async delete(id: string): Promise<boolean> {
    return (await this.bulkDelete([id])) === 1
  }

  async query(query: MemoryQuery): Promise<MemoryEntry[]> {
    const started = this.now()
    checkQuery(query)
    const now = this.now()
    const offset = query.offset ?? 0
    const hits = await this.newestOf(query, offset + query.limit, now)
    hits.sort((a, b) => b.createdAt - a.createdAt || compareStrings(a.id, b.id))
    this.queries = { n: this.queries.n + 1, ms: this.queries.ms + this.now() - started }
    return hits.slice(offset, offset + query.limit)
  }

  /**
   * The first `want` matches of the query's namespace (without one: of every
   * namespace, their newest-first walks merged), newest first, and those
   * tied with the last of them on createdAt (the caller's sort orders ties
   * by id, as claude-flow does). A slot whose entry a write has moved since
   * (another namespace or createdAt) is passed over: the entry is found at
   * its new slot, if that is still ahead.
   */
  private async newestOf(query: MemoryQuery, want: number, now: number): Promise<MemoryEntry[]> {
    const { entries, newest } = this.open()
    const hits: MemoryEntry[] = []
    if (query.limit === 0) return hits // nothing to return: not even the namespaces are read
    let lastAge: string | undefined
    for await (const { namespace, id, age } of query.namespace ? newest.walk(query.namespace) : newest.walkAll()) {
      if (hits.length >= want && age !== lastAge) break
      const s = (await entries.get([id])) as StoredEntry | undefined
      if (!s || !newest.holds(s, namespace, age)) continue
      const e = entryOf(s)
      if (!matches(e, query, now)) continue
      hits.push(e)
      lastAge = age
    }
    return hits
  }

  async search(embedding: Float32Array, options: SearchOptions): Promise<SearchResult[]> {
    const started = this.now()
    if (!(embedding instanceof Float32Array)) throw invalid('search takes a Float32Array embedding')
    if (!Number.isInteger(options.k) || options.k < 1) throw invalid('k must be a positive integer')
    const metric = options.metric ?? 'cosine'
    if (!METRICS.includes(metric)) throw invalid(`metric ${metric} is not supported (cosine, euclidean, dot)`)
    const filters = options.filters
    if (filters) checkQuery(filters)
    const now = this.now()
    const results: SearchResult[] = []
    for (const s of await this.scanStored(filters?.namespace)) {
      if (!s.embedding) continue
      const e = entryOf(s)
      if (filters && !matches(e, filters, now)) continue
      if (s.embedding.length !== embedding.length) throw invalid(`embedding of ${embedding.length} dimensions against a stored one of ${s.embedding.length}`)
      const { score, distance } = similarity(metric, embedding, s.embedding)
      if (options.threshold !== undefined && score < options.threshold) continue
      results.push({ entry: e, score, distance })
    }
    results.sort((a, b) => b.score - a.score || compareStrings(a.entry.id, b.entry.id))
    this.searches = { n: this.searches.n + 1, ms: this.searches.ms + this.now() - started }
    return results.slice(0, options.k)
  }

  /** Atomic per chunk of 1,000 entries, each chunk durable before the next is written. */
  async bulkInsert(entries: MemoryEntry[]): Promise<void> {
    entries.forEach(checkEntry)
    for (let i = 0; i < entries.length; i += BULK_ENTRIES_PER_BATCH) {
      const ops: BatchOp[] = []
      // Within one chunk a later entry wins, as with one store() after another.
      const overlay: Overlay = { entries: new Map(), keys: new Map() }
      for (const e of entries.slice(i, i + BULK_ENTRIES_PER_BATCH)) ops.push(...(await this.storeOps(e, overlay)))
      await this.open().db.batch(ops)
    }
  }

  async bulkDelete(ids: string[]): Promise<number> {
    const { db, entries, keys, newest } = this.open()
    const ops: BatchOp[] = []
    const seen = new Set<string>()
    for (const id of ids) {
      if (seen.has(checkId(id))) continue
      seen.add(id)
      const s = (await entries.get([id])) as StoredEntry | undefined
      if (!s) continue
      ops.push(entries.delOp([id]), keys.delOp([s.namespace, s.key]), newest.delOp(s))
    }
    if (ops.length > 0) await db.batch(ops)
    return ops.length / 3
  }

  async count(namespace?: string): Promise<number> {
    const { entries } = this.open()
    return namespace ? entries.count([], nsTag(namespace)) : entries.count([])
  }

  async listNamespaces(): Promise<string[]> {
    const names = new Set<string>()
    for (const hit of await this.open().keys.scan([])) names.add(hit.parts[0] as string)
    return [...names].sort()
  }

  async clearNamespace(namespace: string): Promise<number> {
    const ids = (await this.scanStored(checkString('namespace', namespace))).map((s) => s.id)
    let n = 0
    for (let i = 0; i < ids.length; i += BULK_ENTRIES_PER_BATCH) n += await this.bulkDelete(ids.slice(i, i + BULK_ENTRIES_PER_BATCH))
    return n
  }

  async getStats(): Promise<BackendStats> {
    const all = await this.scanStored(undefined)
    const entriesByNamespace: Record<string, number> = {}
    const entriesByType = Object.fromEntries(MEMORY_TYPES.map((t) => [t, 0])) as Record<MemoryType, number>
    for (const s of all) {
      entriesByNamespace[s.namespace] = (entriesByNamespace[s.namespace] ?? 0) + 1
      entriesByType[s.type] = (entriesByType[s.type] ?? 0) + 1
    }
    return {
      totalEntries: all.length,
      entriesByNamespace,
      entriesByType,
      memoryUsage: process.memoryUsage().heapUsed,
      avgQueryTime: this.queries.n ? this.queries.ms / this.queries.n : 0,
      avgSearchTime: this.searches.n ? this.searches.ms / this.searches.n : 0,
    }
  }

  async healthCheck(): Promise<HealthCheckResult> {
    const h = this.open().db.health()
    const storage = h.state === 'open' ? 'healthy' : h.state === 'degraded' ? 'degraded' : 'unhealthy'
    const issues = h.state === 'open' ? [] : [`memwal is ${h.state}${h.reason ? `: ${h.reason}` : ''}`]
    return {
      status: storage,
      components: { storage: { status: storage, latency: 0 }, index: { status: storage, latency: 0 }, cache: { status: 'healthy', latency: 0 } },
      timestamp: this.now(),
      issues,
      recommendations: storage === 'healthy' ? [] : ['writes stay durable in the log; the backend catches up when it recovers'],
    }
  }

  /**
   * The operations that store `entry`: the entry, its key index, and the
   * removal of whatever held its id or its (namespace, key) before. `overlay`
   * holds what earlier entries of the same batch wrote (undefined: deleted).
   */
  private async storeOps(entry: MemoryEntry, overlay: Overlay = { entries: new Map(), keys: new Map() }): Promise<BatchOp[]> {
    const { entries, keys, newest } = this.open()
    const ops: BatchOp[] = []
    const storedAt = async (id: string): Promise<StoredEntry | undefined> => (overlay.entries.has(id) ? overlay.entries.get(id) : ((await entries.get([id])) as StoredEntry | undefined))
    const before = await storedAt(entry.id)
    if (before && (before.namespace !== entry.namespace || before.key !== entry.key)) {
      ops.push(keys.delOp([before.namespace, before.key]))
      overlay.keys.set(keyOf(before), undefined)
    }
    if (before && !newest.sameSlot(before, entry)) ops.push(newest.delOp(before))
    const k = keyOf(entry)
    const holder = overlay.keys.has(k) ? overlay.keys.get(k) : ((await keys.get([entry.namespace, entry.key])) as string | undefined)
    if (holder !== undefined && holder !== entry.id) {
      const replaced = await storedAt(holder)
      ops.push(entries.delOp([holder]), ...(replaced ? [newest.delOp(replaced)] : []))
      overlay.entries.set(holder, undefined)
    }
    const stored = storedOf(entry)
    ops.push(entries.putOp([entry.id], stored, [nsTag(entry.namespace)]), keys.putOp([entry.namespace, entry.key], entry.id), newest.putOp(entry))
    overlay.entries.set(entry.id, stored)
    overlay.keys.set(k, entry.id)
    return ops
  }

  private async scanStored(namespace: string | undefined): Promise<StoredEntry[]> {
    const { entries } = this.open()
    const hits = namespace ? await entries.scan([], nsTag(namespace)) : await entries.scan([])
    return hits.map((h) => h.value as StoredEntry)
  }

  private open(): { db: MemWAL; entries: KeySpace; keys: KeySpace; newest: NewestFirst } {
    if (!this.db || !this.entries || !this.keys || !this.newest) throw new MemwalError('ENGINE_CLOSED', 'MemwalMemoryBackend is not initialized (call initialize())')
    return { db: this.db, entries: this.entries, keys: this.keys, newest: this.newest }
  }
}

/** What earlier entries of one batch wrote, by id and by (namespace, key); undefined: removed. */
interface Overlay {
  readonly entries: Map<string, StoredEntry | undefined>
  readonly keys: Map<string, string | undefined>
}

function keyOf(e: { readonly namespace: string; readonly key: string }): string {
  return JSON.stringify([e.namespace, e.key])
}

function nsTag(namespace: string): string {
  return `cf.ns:${namespace}`
}

function storedOf(e: MemoryEntry): StoredEntry {
  const { embedding, ...rest } = e
  return { ...(definedOnly(rest) as Omit<MemoryEntry, 'embedding'>), ...(embedding ? { embedding: Array.from(embedding) } : {}) }
}

function entryOf(s: StoredEntry): MemoryEntry {
  const { embedding, ...rest } = s
  return { ...rest, ...(embedding ? { embedding: Float32Array.from(embedding) } : {}) }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)) as Partial<T>
}

/** What claude-flow's SQL backends filter on, applied after the scan (limit and offset after every filter). */
function matches(e: MemoryEntry, q: MemoryQuery, now: number): boolean {
  if (q.namespace && e.namespace !== q.namespace) return false
  if (q.memoryType && e.type !== q.memoryType) return false
  if (q.ownerId && e.ownerId !== q.ownerId) return false
  if (q.accessLevel && e.accessLevel !== q.accessLevel) return false
  if (q.key) {
    if (e.key !== q.key) return false
  } else if (q.keyPrefix && !e.key.startsWith(q.keyPrefix)) return false
  if (q.createdAfter && e.createdAt < q.createdAfter) return false
  if (q.createdBefore && e.createdAt > q.createdBefore) return false
  if (q.updatedAfter && e.updatedAt < q.updatedAfter) return false
  if (q.updatedBefore && e.updatedAt > q.updatedBefore) return false
  if (!q.includeExpired && e.expiresAt && e.expiresAt <= now) return false
  if (q.tags && !q.tags.every((t) => e.tags.includes(t))) return false
  if (q.metadata && !Object.entries(q.metadata).every(([k, v]) => e.metadata[k] === v)) return false
  return true
}

function similarity(metric: DistanceMetric, a: Float32Array, b: readonly number[]): { score: number; distance: number } {
  let dot = 0
  let na = 0
  let nb = 0
  let sq = 0
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number
    const y = Math.fround(b[i] as number)
    dot += x * y
    na += x * x
    nb += y * y
    sq += (x - y) * (x - y)
  }
  if (metric === 'dot') return { score: dot, distance: -dot }
  if (metric === 'euclidean') {
    const d = Math.sqrt(sq)
    return { score: 1 / (1 + d), distance: d }
  }
  const cos = na === 0 || nb === 0 ? 0 : dot / (Math.sqrt(na) * Math.sqrt(nb))
  return { score: cos, distance: 1 - cos }
}

function checkEntry(e: MemoryEntry): void {
  if (typeof e !== 'object' || e === null) throw invalid('an entry must be an object')
  checkId(e.id)
  checkString('namespace', e.namespace)
  checkString('key', e.key)
  if (typeof e.content !== 'string') throw invalid('content must be a string')
  if (!MEMORY_TYPES.includes(e.type)) throw invalid(`unknown memory type ${String(e.type)}`)
  // The query's order (newest-first.ts): a createdAt that is no number would have no place in it.
  if (typeof e.createdAt !== 'number' || !Number.isFinite(e.createdAt)) throw invalid('createdAt must be a finite number (ms since the epoch)')
  if (e.embedding !== undefined && !(e.embedding instanceof Float32Array)) throw invalid('embedding must be a Float32Array')
}

function checkQuery(q: MemoryQuery): void {
  const unknown = Object.keys(q).filter((k) => !QUERY_FIELDS.has(k))
  if (unknown.length > 0) throw invalid(`unknown query fields: ${unknown.join(', ')}`)
  if (!Number.isInteger(q.limit) || q.limit < 0) throw invalid('limit must be a non-negative integer')
  if (q.offset !== undefined && (!Number.isInteger(q.offset) || q.offset < 0)) throw invalid('offset must be a non-negative integer')
}

function checkId(id: unknown): string {
  return checkString('id', id)
}

function checkString(what: string, s: unknown): string {
  if (typeof s !== 'string' || s.length === 0) throw invalid(`${what} must be a non-empty string`)
  return s
}
