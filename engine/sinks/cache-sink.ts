import { LRUCache } from 'lru-cache'
import { RecordType } from '../format/format.js'
import type { Op } from '../format/record-codec.js'
import { createPackr, packValue } from '../format/value-codec.js'
import { Sink, type AppliedRecord, type StoredEntry } from './sink.js'

/** Per-entry bookkeeping the byte bound counts on top of the value's encoded size. */
const ENTRY_OVERHEAD_BYTES = 64

/** A cached version: the value packed, so that every reader gets its own copy and the size is exact. */
interface CachedEntry {
  readonly packed: Uint8Array
  readonly lsn: number
  readonly namespace?: string
  readonly tags?: readonly string[]
}

/**
 * The in-memory cache: an LRU bounded in bytes (lru-cache, which does the
 * eviction bookkeeping well). Values are kept msgpack-packed and unpacked on
 * each read: a caller that changes what it read never changes the cache.
 * Volatile: it starts empty and at the head of the log after a restart, so it
 * never holds WAL retention.
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

  protected _apply(records: readonly AppliedRecord[]): Promise<void> {
    for (const r of records) {
      if (r.record.type === RecordType.BATCH) for (const op of r.record.ops) this.applyOp(op, r.lsn)
      else this.applyOp(r.record.op, r.lsn)
    }
    return Promise.resolve()
  }

  /** A fresh copy of the cached version of `key`. */
  get(key: string): StoredEntry | undefined {
    const e = this.lru.get(key)
    if (!e) return undefined
    return { value: this.packr.unpack(e.packed), lsn: e.lsn, ...(e.namespace !== undefined ? { namespace: e.namespace } : {}), ...(e.tags ? { tags: [...e.tags] } : {}) }
  }

  /** Fills the cache from a backend read, unless a newer version is there already. */
  fill(key: string, entry: StoredEntry): void {
    const cur = this.lru.peek(key)
    if (cur && cur.lsn >= entry.lsn) return
    this.lru.set(key, this.pack(entry.value, entry.lsn, entry.namespace, entry.tags))
  }

  invalidate(key: string): void {
    this.lru.delete(key)
  }

  /** Every cached key with its version's LSN (for the reconciler). */
  *entries(): IterableIterator<[string, { readonly lsn: number }]> {
    for (const [k, e] of this.lru.entries()) yield [k, { lsn: e.lsn }]
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

  private applyOp(op: Op, lsn: number): void {
    if (op.type === 'del') this.lru.delete(op.key)
    else this.lru.set(op.key, this.pack(op.value, lsn, op.namespace, op.tags))
  }

  private pack(value: unknown, lsn: number, namespace: string | undefined, tags: readonly string[] | undefined): CachedEntry {
    // Copied out of msgpackr's shared buffer.
    const packed = Uint8Array.prototype.slice.call(packValue(this.packr, value))
    return { packed, lsn, ...(namespace !== undefined ? { namespace } : {}), ...(tags ? { tags } : {}) }
  }
}
