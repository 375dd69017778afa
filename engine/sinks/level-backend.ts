import type { AbstractBatchOperation } from 'abstract-level'
import { RecordType } from '../format/format.js'
import type { Op } from '../format/record-codec.js'
import { toWireValue } from '../format/value-codec.js'
import { BackendSink, type AppliedRecord, type StoredEntry } from './sink.js'
import { encodeLsn, type LevelStore } from './level-store.js'

type Batch = AbstractBatchOperation<LevelStore['db'], string, Uint8Array>[]

/**
 * The default backend: LevelDB (`level`). A value is stored as msgpack
 * `[value, namespace | null, tags | null, lsn]`. Each apply is one synced
 * batch holding the data and the checkpoint.
 */
export class LevelBackend extends BackendSink {
  readonly name = 'backend'

  constructor(private readonly store: LevelStore) {
    super()
  }

  protected async _open(): Promise<number> {
    return this.store.readCheckpoint(this.name)
  }

  protected async _apply(records: readonly AppliedRecord[], checkpoint: number): Promise<void> {
    const ops: Batch = []
    const { data, meta, packr } = this.store
    const add = (op: Op, lsn: number): void => {
      if (op.type === 'put') ops.push({ type: 'put', sublevel: data, key: op.key, value: packr.encode([toWireValue(op.value), op.namespace ?? null, op.tags ?? null, lsn]) })
      else ops.push({ type: 'del', sublevel: data, key: op.key })
    }
    for (const r of records) {
      if (r.record.type === RecordType.BATCH) for (const op of r.record.ops) add(op, r.lsn)
      else add(r.record.op, r.lsn)
    }
    ops.push({ type: 'put', sublevel: meta, key: `checkpoint:${this.name}`, value: encodeLsn(checkpoint) })
    await this.store.writeBatch(ops)
  }

  async repair(entries: readonly (readonly [string, StoredEntry | undefined])[]): Promise<void> {
    const { data, packr } = this.store
    const ops: Batch = entries.map(([key, e]) =>
      e ? { type: 'put', sublevel: data, key, value: packr.encode([toWireValue(e.value), e.namespace ?? null, e.tags ?? null, e.lsn]) } : { type: 'del', sublevel: data, key },
    )
    if (ops.length > 0) await this.store.writeBatch(ops)
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    const v = await this.store.data.get(key)
    return v === undefined ? undefined : this.decode(v)
  }

  async *entries(options: { readonly gte?: string; readonly lt?: string } = {}): AsyncIterable<[string, StoredEntry]> {
    const range = { ...(options.gte !== undefined ? { gte: options.gte } : {}), ...(options.lt !== undefined ? { lt: options.lt } : {}) }
    for await (const [k, v] of this.store.data.iterator(range)) yield [k, this.decode(v)]
  }

  protected async _close(): Promise<void> {
    // The store is closed by its owner, after every sink on it.
  }

  private decode(v: Uint8Array): StoredEntry {
    const [value, ns, tags, lsn] = this.store.packr.decode(v) as [unknown, string | null, string[] | null, number]
    return { value, lsn, ...(ns !== null ? { namespace: ns } : {}), ...(tags !== null ? { tags } : {}) }
  }
}
