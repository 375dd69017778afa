import type { AbstractBatchOperation } from 'abstract-level'
import { opIdentity } from '../format/identity.js'
import { hlcMs, opsOf, packedValueOf } from '../format/record-codec.js'
import { keepsCreatedAt } from '../format/expiry-key.js'
import { BackendSink, type AppliedRecord, type EntryMeta, type StoredEntry } from './sink.js'
import { encodeLsn, type LevelStore } from './level-store.js'
import { namespacesByKey, resolveLegacyOps } from './legacy-ops.js'
import { decodeRow, encodeRow, rowMeta, spliceRow } from './backend-row.js'
import type { BackendKind } from '../log/backend-record.js'

type Batch = AbstractBatchOperation<LevelStore['db'], string, Uint8Array>[]

/** What a put over a version needs of it: its createdAt, and its expiry, which says whether that createdAt carries over. */
interface CreatedOf {
  readonly createdAt: number
  readonly expiresAt: number | undefined
}

const createdOf = (e: EntryMeta): CreatedOf => ({ createdAt: e.createdAt, expiresAt: e.expiresAt })

/**
 * The default backend: LevelDB (`level`), store layout 2. A row is keyed by
 * the entry's identity and laid out as backend-row.ts says (a put's row
 * spliced from its value as logged, not encoded again). Each apply is one
 * batch holding the data and the checkpoint, group-synced by the store
 * (store-sync.ts).
 *
 * createdAt is carried here: a put over a live row keeps the row's
 * createdAt (read with one getMany per apply batch, or taken from an earlier
 * put of the same batch); a put after a delete, of a new identity, or over a
 * version that had expired by the put's write time (keepsCreatedAt, not yet
 * swept) starts at its own updatedAt.
 */
export class LevelBackend extends BackendSink {
  readonly name = 'backend'

  constructor(private readonly store: LevelStore) {
    super()
  }

  override backendKind(): BackendKind {
    return { kind: 'leveldb' }
  }

  protected async _open(): Promise<number> {
    return this.store.openCheckpoint(this.name)
  }

  override get durableCheckpoint(): number {
    return this.store.durableCheckpoint(this.name) ?? this.checkpoint
  }

  protected async _apply(applied: readonly AppliedRecord[], checkpoint: number): Promise<void> {
    // A write that failed earlier leaves the store to reopen first (level-store.ts writeBatch); the reads below need it open.
    await this.store.ready()
    // One LevelDB write for the backend's and the index's batches of an apply group (level-store.ts joinApplyGroup).
    this.store.beginApply(this.name)
    try {
      const { data, meta } = this.store
      const records = await resolveLegacyOps(applied, async (keys) => {
        const out = new Map<string, Set<string>>()
        const ids: string[] = []
        for await (const id of data.keys()) ids.push(id)
        return namespacesByKey(ids, keys, out)
      })
      const putIds = new Set<string>()
      for (const r of records) for (const op of opsOf(r.record)) if (op.type === 'put') putIds.add(opIdentity(op))
      const ids = [...putIds]
      const stored = ids.length > 0 ? await data.getMany(ids) : []
      // Each identity's version now, as far as createdAt goes: undefined when absent (deleted or never put).
      const current = new Map<string, CreatedOf | undefined>()
      ids.forEach((id, i) => {
        const v = stored[i]
        current.set(id, v === undefined ? undefined : createdOf(rowMeta(this.store.packr, v)))
      })
      const ops: Batch = []
      for (const r of records) {
        const updatedAt = hlcMs(r.record.hlc ?? 0)
        for (const op of opsOf(r.record)) {
          const id = opIdentity(op)
          if (op.type === 'del') {
            current.set(id, undefined)
            ops.push({ type: 'del', sublevel: data, key: id })
            continue
          }
          const cur = current.get(id)
          const createdAt = cur !== undefined && keepsCreatedAt(cur.expiresAt, updatedAt) ? cur.createdAt : updatedAt
          current.set(id, { createdAt, expiresAt: op.expiresAt })
          ops.push({ type: 'put', sublevel: data, key: id, value: spliceRow(this.store.packr, packedValueOf(this.store.packr, op), { ...(op.tags ? { tags: op.tags } : {}), lsn: r.lsn, createdAt, updatedAt, ...(op.expiresAt !== undefined ? { expiresAt: op.expiresAt } : {}) }) })
        }
      }
      ops.push({ type: 'put', sublevel: meta, key: `checkpoint:${this.name}`, value: encodeLsn(checkpoint) })
      await this.store.applyBatch(this.name, checkpoint, ops)
    } finally {
      this.store.endApply(this.name)
    }
  }

  /** The base probe's read, after the store is ready for writes again (level-store.ts writeBatch). */
  override async probe(): Promise<void> {
    await this.store.ready()
    await super.probe()
  }

  async repair(entries: readonly (readonly [string, StoredEntry | undefined])[]): Promise<void> {
    const { data } = this.store
    const ops: Batch = entries.map(([id, e]) => (e ? { type: 'put', sublevel: data, key: id, value: encodeRow(this.store.packr, e) } : { type: 'del', sublevel: data, key: id }))
    if (ops.length > 0) await this.store.writeBatch(ops)
  }

  async get(id: string): Promise<StoredEntry | undefined> {
    const v = await this.store.data.get(id)
    return v === undefined ? undefined : decodeRow(this.store.packr, id, v)
  }

  override async metaMany(ids: readonly string[]): Promise<(EntryMeta | undefined)[]> {
    const rows = ids.length > 0 ? await this.store.data.getMany([...ids]) : []
    return rows.map((v) => (v === undefined ? undefined : rowMeta(this.store.packr, v)))
  }

  async *entries(options: { readonly gte?: string; readonly lt?: string } = {}): AsyncIterable<[string, StoredEntry]> {
    const rows = this.snapshot(options)
    try {
      yield* rows
    } finally {
      await rows.close()
    }
  }

  /**
   * The rows in a range as of now: the iterator (and with it LevelDB's
   * snapshot) is made by this call, synchronously, so a caller can read other
   * state in the same tick and know both are of one moment (export).
   * A reopen of the store (after a failed write) closes the iterator:
   * `reopened()` tells a reader whose read failed that this was why.
   */
  snapshot(range: { readonly gte?: string; readonly lt?: string }): AsyncIterable<[string, StoredEntry]> & { close(): Promise<void>; reopened(): boolean } {
    const { store } = this
    const reopens = store.reopens
    const it = store.data.iterator({ ...(range.gte !== undefined ? { gte: range.gte } : {}), ...(range.lt !== undefined ? { lt: range.lt } : {}) })
    const decode = (id: string, v: Uint8Array): StoredEntry => decodeRow(store.packr, id, v)
    return {
      async *[Symbol.asyncIterator]() {
        for await (const [k, v] of it) yield [k, decode(k, v)] as [string, StoredEntry]
      },
      close: () => it.close(),
      reopened: () => store.reopens !== reopens,
    }
  }

  protected async _close(): Promise<void> {
    // The store is closed by its owner, after every sink on it.
  }
}
