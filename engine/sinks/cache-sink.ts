import { LRUCache } from 'lru-cache'
import { RecordType } from '../wal/format.js'
import type { Op } from '../wal/record-codec.js'
import { Sink, type AppliedRecord, type StoredEntry } from './sink.js'

/** Per-entry bookkeeping the byte bound counts on top of the value's encoded size. */
const ENTRY_OVERHEAD_BYTES = 64

/**
 * The in-memory cache: an LRU bounded in bytes (lru-cache, which does the
 * eviction bookkeeping well). Volatile: it starts empty and at the head of
 * the log after a restart, so it never holds WAL retention.
 */
export class CacheSink extends Sink {
  readonly name = 'cache'
  readonly durable = false
  private readonly lru: LRUCache<string, StoredEntry & { readonly bytes: number }>

  constructor(maxBytes: number, private readonly startLsn: () => number) {
    super()
    this.lru = new LRUCache({ maxSize: Math.max(1, maxBytes), sizeCalculation: (e) => Math.max(1, e.bytes + ENTRY_OVERHEAD_BYTES) })
  }

  protected _open(): Promise<number> {
    return Promise.resolve(this.startLsn())
  }

  protected _apply(records: readonly AppliedRecord[]): Promise<void> {
    for (const r of records) {
      if (r.record.type === RecordType.BATCH) {
        const share = Math.ceil(r.bytes / Math.max(1, r.record.ops.length))
        for (const op of r.record.ops) this.applyOp(op, r.lsn, share)
      } else {
        this.applyOp(r.record.op, r.lsn, r.bytes)
      }
    }
    return Promise.resolve()
  }

  get(key: string): StoredEntry | undefined {
    const e = this.lru.get(key)
    if (!e) return undefined
    // Without the size bookkeeping: a reader gets the same shape whichever tier answers.
    return { value: e.value, lsn: e.lsn, ...(e.namespace !== undefined ? { namespace: e.namespace } : {}), ...(e.tags ? { tags: e.tags } : {}) }
  }

  /** Fills the cache from a backend read, unless a newer version is there already. */
  fill(key: string, entry: StoredEntry, bytes: number): void {
    const cur = this.lru.peek(key)
    if (cur && cur.lsn >= entry.lsn) return
    this.lru.set(key, { ...entry, bytes })
  }

  invalidate(key: string): void {
    this.lru.delete(key)
  }

  entries(): IterableIterator<[string, StoredEntry]> {
    return this.lru.entries()
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

  private applyOp(op: Op, lsn: number, bytes: number): void {
    if (op.type === 'del') this.lru.delete(op.key)
    else this.lru.set(op.key, { value: op.value, lsn, bytes, ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) })
  }
}
