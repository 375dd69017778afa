import { LRUCache } from 'lru-cache'
import { opIdentity, splitIdentity } from '../format/identity.js'
import { hlcMs, opsOf, packedValueOf, type Op } from '../format/record-codec.js'
import { keepsCreatedAt } from '../format/expiry-key.js'
import { createPackr, packValue } from '../format/value-codec.js'
import { Sink, type AppliedRecord, type StoredEntry } from './sink.js'
import { legacyKeysOf, namespacesByKey, resolveLegacyOps } from './legacy-ops.js'

/** The createdAt of a cached entry whose earlier version the cache did not hold: the backend's row knows it. */
export const CREATED_UNKNOWN = -1

/** Per-entry bookkeeping the byte bound counts on top of the value's encoded size. */
const ENTRY_OVERHEAD_BYTES = 64

/** A cached version: the value packed, so that every reader gets its own copy and the size is exact. */
interface CachedEntry {
  readonly packed: Uint8Array
  readonly meta: Omit<StoredEntry, 'value' | 'namespace' | 'key'>
}

/**
 * The in-memory cache, keyed by identity (engine/format/identity.ts): an LRU
 * bounded in bytes (lru-cache, which does the eviction bookkeeping well).
 * Values are kept msgpack-packed and unpacked on each read: a caller that
 * changes what it read never changes the cache. Volatile: it starts empty and
 * at the head of the log after a restart, so it never holds WAL retention.
 *
 * createdAt is carried when the identity is cached (or was deleted in the
 * records applied since), by the rule every sink follows (keepsCreatedAt:
 * not over a version expired by the put's write time); otherwise a cached
 * put holds CREATED_UNKNOWN and getEntry reads the backend's row for it (the
 * backend carries it), once: the row's createdAt is then kept
 * (learnCreatedAt).
 */
export class CacheSink extends Sink {
  readonly name = 'cache'
  readonly durable = false
  private readonly lru: LRUCache<string, CachedEntry>
  private readonly packr = createPackr()

  constructor(
    maxBytes: number,
    private readonly startLsn: () => number,
  ) {
    super()
    this.lru = new LRUCache({ maxSize: Math.max(1, maxBytes), sizeCalculation: (e) => e.packed.length + ENTRY_OVERHEAD_BYTES })
  }

  protected _open(): Promise<number> {
    return Promise.resolve(this.startLsn())
  }

  protected _apply(applied: readonly AppliedRecord[]): Promise<void> {
    const apply = (records: readonly AppliedRecord[]): void => {
      for (const r of records) for (const op of opsOf(r.record)) this.applyOp(op, r.lsn, hlcMs(r.record.hlc ?? 0))
    }
    // Applied at once (no promise hop) unless version-1 operations need resolving first.
    if (legacyKeysOf(applied).size === 0) {
      apply(applied)
      return Promise.resolve()
    }
    return resolveLegacyOps(applied, async (keys) => namespacesByKey(this.lru.keys(), keys)).then(apply)
  }

  /** A fresh copy of the cached version of identity `id`. */
  get(id: string): StoredEntry | undefined {
    const e = this.lru.get(id)
    if (!e) return undefined
    return { value: this.packr.unpack(e.packed), ...splitIdentity(id), ...e.meta, ...(e.meta.tags ? { tags: [...e.meta.tags] } : {}) }
  }

  /** Fills the cache from a backend read, unless a newer version is there already. */
  fill(id: string, entry: StoredEntry): void {
    const cur = this.lru.peek(id)
    if (cur && cur.meta.lsn >= entry.lsn) return
    const { value, namespace: _ns, key: _key, ...meta } = entry
    this.lru.set(id, this.pack(value, meta))
  }

  /**
   * The backend's row of `id` says its createdAt: a cached version of the
   * same LSN that lacked it (CREATED_UNKNOWN) keeps it from now on, so that
   * row is read once, not on every read (and an overwrite applied later
   * carries it forward).
   */
  learnCreatedAt(id: string, row: Pick<StoredEntry, 'lsn' | 'createdAt'>): void {
    const cur = this.lru.peek(id)
    if (!cur || cur.meta.lsn !== row.lsn || cur.meta.createdAt !== CREATED_UNKNOWN || row.createdAt === CREATED_UNKNOWN) return
    this.lru.set(id, { packed: cur.packed, meta: { ...cur.meta, createdAt: row.createdAt } })
  }

  invalidate(id: string): void {
    this.lru.delete(id)
  }

  /** Every cached identity with its version's LSN (for the reconciler). */
  *entries(): IterableIterator<[string, { readonly lsn: number }]> {
    for (const [k, e] of this.lru.entries()) yield [k, { lsn: e.meta.lsn }]
  }

  get size(): number {
    return this.lru.size
  }

  get bytes(): number {
    return this.lru.calculatedSize
  }

  protected _close(): Promise<void> {
    this.lru.clear()
    return Promise.resolve()
  }

  private applyOp(op: Op, lsn: number, updatedAt: number): void {
    const id = opIdentity(op)
    const cur = this.lru.peek(id)
    if (op.type === 'del') {
      this.lru.delete(id)
      return
    }
    // Unknown without the earlier version; started again when that version had expired by this put's write time.
    const createdAt = cur === undefined ? CREATED_UNKNOWN : keepsCreatedAt(cur.meta.expiresAt, updatedAt) ? cur.meta.createdAt : updatedAt
    this.lru.set(id, this.packed(packedValueOf(this.packr, op), { lsn, createdAt, updatedAt, ...(op.tags ? { tags: op.tags } : {}), ...(op.expiresAt !== undefined ? { expiresAt: op.expiresAt } : {}) }))
  }

  private pack(value: unknown, meta: CachedEntry['meta']): CachedEntry {
    return this.packed(packValue(this.packr, value), meta)
  }

  /** An entry of a value's bytes, copied: out of msgpackr's shared buffer, or out of the log payload's slab (which a view would pin). */
  private packed(bytes: Uint8Array, meta: CachedEntry['meta']): CachedEntry {
    return { packed: Uint8Array.prototype.slice.call(bytes), meta }
  }
}
