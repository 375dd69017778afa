import type { AbstractBatchOperation } from 'abstract-level'
import { RecordType } from '../format/format.js'
import type { Op } from '../format/record-codec.js'
import { Sink, type AppliedRecord } from './sink.js'
import { encodeLsn, type LevelStore } from './level-store.js'

type Batch = AbstractBatchOperation<LevelStore['db'], string, Uint8Array>[]

/**
 * The secondary index, persisted in the `idx` sublevel:
 *   f\0<key>            -> msgpack [namespace | null, tags | null]  (what is indexed for the key)
 *   n\0<namespace>\0<key> -> empty
 *   t\0<tag>\0<key>       -> empty
 * `\0` cannot occur in a namespace or tag (the engine refuses them), so a
 * range scan over `n\0<ns>\0` finds exactly that namespace's keys; the `f`
 * entries in key order serve prefix queries.
 */
export interface IndexedEntry {
  readonly namespace?: string
  readonly tags?: readonly string[]
}

export interface IndexQuery {
  readonly namespace?: string
  readonly tag?: string
  readonly prefix?: string
}

const SEP = '\u0000'
/** Sorts after every string that starts with a given prefix (U+10FFFF is the largest code point). */
const HIGH = '\u{10FFFF}'
const EMPTY = new Uint8Array(0)

export class IndexSink extends Sink {
  readonly name = 'index'
  readonly durable = true

  constructor(private readonly store: LevelStore) {
    super()
  }

  protected async _open(): Promise<number> {
    return this.store.readCheckpoint(this.name)
  }

  protected async _apply(records: readonly AppliedRecord[], checkpoint: number): Promise<void> {
    const ops: Op[] = []
    for (const r of records) {
      if (r.record.type === RecordType.BATCH) ops.push(...r.record.ops)
      else ops.push(r.record.op)
    }
    // What each touched key is indexed under now, then as the batch leaves it.
    const keys = [...new Set(ops.map((o) => o.key))]
    const before = new Map<string, IndexedEntry | undefined>()
    const stored = await this.store.index.getMany(keys.map((k) => `f${SEP}${k}`))
    keys.forEach((k, i) => before.set(k, decodeForward(this.store, stored[i])))
    const after = new Map(before)
    for (const op of ops) after.set(op.key, op.type === 'put' ? { ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) } : undefined)
    const batch: Batch = []
    for (const key of keys) this.diff(batch, key, before.get(key), after.get(key))
    batch.push({ type: 'put', sublevel: this.store.meta, key: `checkpoint:${this.name}`, value: encodeLsn(checkpoint) })
    await this.store.writeBatch(batch)
  }

  /** The first indexed key, read and let go: the index answers. */
  override async probe(): Promise<void> {
    const it = this.keys({})[Symbol.asyncIterator]()
    await it.next()
    await it.return?.()
  }

  /** Keys matching every given criterion, in key order, as the index has them. */
  async *keys(q: IndexQuery): AsyncIterable<[string, IndexedEntry]> {
    const idx = this.store.index
    if (q.namespace !== undefined || q.tag !== undefined) {
      const prefix = q.namespace !== undefined ? `n${SEP}${q.namespace}${SEP}` : `t${SEP}${q.tag ?? ''}${SEP}`
      for await (const k of idx.keys({ gte: prefix + (q.prefix ?? ''), lt: prefix + (q.prefix ?? '') + HIGH })) {
        const key = k.slice(prefix.length)
        const entry = decodeForward(this.store, await idx.get(`f${SEP}${key}`))
        if (entry && matches(entry, q)) yield [key, entry]
      }
      return
    }
    const prefix = `f${SEP}`
    for await (const [k, v] of idx.iterator({ gte: prefix + (q.prefix ?? ''), lt: prefix + (q.prefix ?? '') + HIGH })) {
      const entry = decodeForward(this.store, v)
      if (entry) yield [k.slice(prefix.length), entry]
    }
  }

  /** Every indexed key with its entry, in key order (for the reconciler). */
  all(): AsyncIterable<[string, IndexedEntry]> {
    return this.keys({})
  }

  /** Every namespace and tag entry, as (kind, label, key): the reconciler checks each points at a live, matching key. */
  async *postings(): AsyncIterable<{ readonly kind: 'namespace' | 'tag'; readonly label: string; readonly key: string }> {
    for (const [kind, tag] of [['namespace', 'n'], ['tag', 't']] as const) {
      for await (const k of this.store.index.keys({ gte: `${tag}${SEP}`, lt: `${tag}${SEP}${HIGH}` })) {
        const rest = k.slice(2)
        const cut = rest.indexOf(SEP)
        yield { kind, label: rest.slice(0, cut), key: rest.slice(cut + 1) }
      }
    }
  }

  /**
   * Rebuilds the whole index from the backend's entries, replacing what was
   * there, and sets the index checkpoint to the backend's (the reconciler's
   * repair; runs with the engine's appliers stopped or before they start).
   */
  async rebuild(entries: AsyncIterable<[string, IndexedEntry]>, checkpoint: number): Promise<number> {
    // First claim nothing: a crash midway leaves an index that says it is empty-handed, never one that lies.
    await this.store.writeBatch([{ type: 'put', sublevel: this.store.meta, key: `checkpoint:${this.name}`, value: encodeLsn(0) }])
    await this.store.index.clear()
    let batch: Batch = []
    let n = 0
    for await (const [key, e] of entries) {
      this.diff(batch, key, undefined, { ...(e.namespace !== undefined ? { namespace: e.namespace } : {}), ...(e.tags ? { tags: e.tags } : {}) })
      n++
      if (batch.length >= 4096) {
        await this.store.writeBatch(batch)
        batch = []
      }
    }
    batch.push({ type: 'put', sublevel: this.store.meta, key: `checkpoint:${this.name}`, value: encodeLsn(checkpoint) })
    await this.store.writeBatch(batch)
    await this.open()
    return n
  }

  protected async _close(): Promise<void> {
    // The store is closed by its owner.
  }

  private diff(batch: Batch, key: string, was: IndexedEntry | undefined, now: IndexedEntry | undefined): void {
    const idx = this.store.index
    const names = (e: IndexedEntry | undefined): Set<string> => {
      const out = new Set<string>()
      if (!e) return out
      if (e.namespace !== undefined) out.add(`n${SEP}${e.namespace}${SEP}${key}`)
      for (const t of e.tags ?? []) out.add(`t${SEP}${t}${SEP}${key}`)
      return out
    }
    const old = names(was)
    const cur = names(now)
    for (const k of old) if (!cur.has(k)) batch.push({ type: 'del', sublevel: idx, key: k })
    for (const k of cur) if (!old.has(k)) batch.push({ type: 'put', sublevel: idx, key: k, value: EMPTY })
    if (now) batch.push({ type: 'put', sublevel: idx, key: `f${SEP}${key}`, value: this.store.packr.encode([now.namespace ?? null, now.tags ?? null]) })
    else if (was) batch.push({ type: 'del', sublevel: idx, key: `f${SEP}${key}` })
  }
}

export function matches(e: IndexedEntry, q: IndexQuery): boolean {
  return (q.namespace === undefined || e.namespace === q.namespace) && (q.tag === undefined || (e.tags ?? []).includes(q.tag))
}

function decodeForward(store: LevelStore, v: Uint8Array | undefined): IndexedEntry | undefined {
  if (v === undefined) return undefined
  const [ns, tags] = store.packr.decode(v) as [string | null, string[] | null]
  return { ...(ns !== null ? { namespace: ns } : {}), ...(tags !== null ? { tags } : {}) }
}
