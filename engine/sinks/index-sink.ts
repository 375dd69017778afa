import type { AbstractBatchOperation } from 'abstract-level'
import { ID_SEP, identityOf, opIdentity, prefixRange, splitIdentity } from '../format/identity.js'
import { hlcMs, opsOf, packedValueOf, type Op } from '../format/record-codec.js'
import { Sink, type AppliedRecord } from './sink.js'
import { namespacesByKey, resolveLegacyOps } from './legacy-ops.js'
import { encodeLsn, type LevelStore } from './level-store.js'
import { EXPIRY_POSTING_PREFIX, expiredRange, expiryPosting, parseExpiryPosting, type ExpiredPosting } from '../format/expiry-key.js'
import { decodePostingValue, encodePostingValue, PostingScan, PostingValueView, type IdRange, type PostingValue, type ScanMeta, type SeekableIds } from './index-scan.js'

type Batch = AbstractBatchOperation<LevelStore['db'], string, Uint8Array>[]

/**
 * The secondary index, persisted in the `ix` sublevel (store layout 3), keyed
 * by identity (engine/format/identity.ts: namespace NUL key):
 *   f\0<id>         -> msgpack [tags | null, expiresAt | null, valueBytes | null, updatedAt | null]
 *                     (what is indexed for the entry; valueBytes: the value's size as stored, for
 *                     stats(), absent in entries indexed before it was kept; updatedAt: ms of the
 *                     write, layout 3)
 *   t\0<tag>\0<id>   -> updatedAt, expiresAt and the entry's tags (index-scan.ts's
 *                     posting value, layout 4), so a query judges time, expiry and
 *                     its other tags from one tag's posting, without reading the
 *                     forward entry or the row
 *   x\0<expiresAt>\0<id> -> empty  (engine/format/expiry-key.ts: time order, so the
 *                     expiry sweep reads only the expired range)
 * `\0` cannot occur in a namespace or tag (the engine refuses them), and ids
 * sort by namespace then key, so a range scan over `f\0<ns>\0<prefix>` finds
 * exactly that namespace's keys with that prefix, and `t\0<tag>\0<ns>\0` that
 * namespace's keys with that tag. A key prefix without a namespace is one
 * range per namespace (see `ranges`).
 */
export interface IndexedEntry {
  readonly namespace: string
  readonly tags?: readonly string[]
  /** The entry's expiry (ms since the epoch), which its expiry posting is keyed by. */
  readonly expiresAt?: number
  /**
   * Bytes of the entry's value as stored: the value codec's msgpack, as the
   * log record and the backend row hold it (not the key, namespace, tags or
   * metadata). Undefined for an entry indexed before sizes were kept.
   */
  readonly valueBytes?: number
  /** ms of the write (its record's hlc stamp); absent when not known (layout 2 under an external backend). */
  readonly updatedAt?: number
}

export interface IndexQuery {
  readonly namespace?: string
  readonly tag?: string
  readonly prefix?: string
}

const SEP = ID_SEP
const EMPTY = new Uint8Array(0)

export class IndexSink extends Sink {
  readonly name = 'index'
  readonly durable = true

  constructor(private readonly store: LevelStore) {
    super()
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
      const records = await resolveLegacyOps(applied, async (keys) => {
        const ids: string[] = []
        for await (const k of this.store.index.keys(prefixRange(`f${SEP}`))) ids.push(k.slice(2))
        return namespacesByKey(ids, keys)
      })
      const ops = records.flatMap((r) => opsOf(r.record).map((op) => [op, hlcMs(r.record.hlc ?? 0)] as const))
      // What each touched identity is indexed under now, then as the batch leaves it.
      const ids = [...new Set(ops.map(([o]) => opIdentity(o)))]
      const before = new Map<string, IndexedEntry | undefined>()
      const stored = await this.store.index.getMany(ids.map((id) => `f${SEP}${id}`))
      ids.forEach((id, i) => before.set(id, decodeForward(this.store, id, stored[i])))
      const after = new Map(before)
      for (const [op, at] of ops) after.set(opIdentity(op), indexedOf(this.store, op, at))
      const batch: Batch = []
      for (const id of ids) this.diff(batch, id, before.get(id), after.get(id))
      batch.push({ type: 'put', sublevel: this.store.meta, key: `checkpoint:${this.name}`, value: encodeLsn(checkpoint) })
      await this.store.applyBatch(this.name, checkpoint, batch)
    } finally {
      this.store.endApply(this.name)
    }
  }

  /** The first indexed key, read and let go: the index answers. */
  override async probe(): Promise<void> {
    await this.store.ready()
    const it = this.keys({})[Symbol.asyncIterator]()
    await it.next()
    await it.return?.()
  }

  /** A seekable scan of the forward entries within `range` (every entry, with all it indexes). */
  forwardScan(range: IdRange, reverse: boolean, firstStep?: number): SeekableIds {
    return new PostingScan(this.store, `f${SEP}`, range, reverse, (id, v) => ({ ...(decodeForward(this.store, id, v) as IndexedEntry), tagsKnown: true }), firstStep)
  }

  /** A seekable scan of one tag's posting within `range`: its entries' write time and expiry, not their other tags. */
  tagScan(tag: string, range: IdRange, reverse: boolean, firstStep?: number): SeekableIds {
    return new PostingScan(this.store, `t${SEP}${tag}${SEP}`, range, reverse, (_id, v): ScanMeta => new PostingValueView(v), firstStep)
  }

  /**
   * LevelDB's estimate of the bytes of one tag's posting within `range`
   * (LevelStore.indexBytes: table files only): how a query of several tags
   * picks the posting to read. Undefined where the database cannot say.
   */
  postingBytes(tag: string, range: IdRange): Promise<number | undefined> {
    const head = `t${SEP}${tag}${SEP}`
    return this.store.indexBytes(head + (range.lower?.id ?? ''), range.upper ? head + range.upper.id : `t${SEP}${tag}\u0001`)
  }

  /** Identities matching every given criterion, in identity order, as the index has them. */
  async *keys(q: IndexQuery): AsyncIterable<[string, IndexedEntry]> {
    const idx = this.store.index
    if (q.tag !== undefined) {
      const head = `t${SEP}${q.tag}${SEP}`
      for await (const range of this.ranges(head, q)) {
        for await (const k of idx.keys(range)) {
          const id = k.slice(head.length)
          const entry = decodeForward(this.store, id, await idx.get(`f${SEP}${id}`))
          if (entry && matches(id, entry, q)) yield [id, entry]
        }
      }
      return
    }
    const head = `f${SEP}`
    for await (const range of this.ranges(head, q)) {
      for await (const [k, v] of idx.iterator(range)) {
        const id = k.slice(head.length)
        const entry = decodeForward(this.store, id, v)
        if (entry && matches(id, entry, q)) yield [id, entry]
      }
    }
  }

  /**
   * The ranges of `head id` keys that hold q's identities, in order. A key
   * prefix without a namespace bounds each namespace's part of the ids, not
   * the whole (the namespace comes first): one range per namespace, each
   * found by reading the first key after the previous namespace. That costs
   * a seek and a key per namespace instead of reading every entry of the
   * index (and more than the scan only where nearly every entry matches).
   */
  private async *ranges(head: string, q: IndexQuery): AsyncIterable<{ readonly gte: string; readonly lt: string }> {
    if (q.namespace !== undefined) {
      yield prefixRange(head + identityOf(q.namespace, q.prefix ?? ''))
      return
    }
    const all = prefixRange(head)
    if (q.prefix === undefined || q.prefix === '') {
      yield all
      return
    }
    for (let from = all.gte; ; ) {
      const it = this.store.index.keys({ gte: from, lt: all.lt, limit: 1 })
      let first: string | undefined
      try {
        first = await it.next()
      } finally {
        await it.close()
      }
      if (first === undefined) return
      const { namespace } = splitIdentity(first.slice(head.length))
      yield prefixRange(head + identityOf(namespace, q.prefix))
      // Past every id of this namespace: `namespace NUL` is their common prefix.
      from = prefixRange(head + identityOf(namespace, '')).lt
    }
  }

  /**
   * The forward entries of namespace `prefix` and those under it
   * (`prefix/...`; every one without a prefix), in identity order, from a
   * snapshot made by this call, leaving out the identities `overlay` returns.
   * `overlay` is called once, in the same tick the index's iterator (a
   * snapshot) is made, so the caller's view of its own state (the pending
   * writes) and the index's agree. Reads each entry in the range once.
   */
  forward(prefix: string | undefined, overlay: () => ReadonlySet<string>): AsyncIterable<[string, IndexedEntry]> {
    const head = `f${SEP}`
    const it = this.store.index.iterator(prefixRange(head + (prefix ?? '')))
    const skip = overlay()
    const store = this.store
    return (async function* (): AsyncGenerator<[string, IndexedEntry]> {
      try {
        for await (const [k, v] of it) {
          const id = k.slice(head.length)
          if (skip.has(id)) continue
          const e = decodeForward(store, id, v)
          if (e && isUnder(e.namespace, prefix)) yield [id, e]
        }
      } finally {
        await it.close()
      }
    })()
  }

  /** Every indexed key with its entry, in key order (for the reconciler). */
  all(): AsyncIterable<[string, IndexedEntry]> {
    return this.keys({})
  }

  /**
   * Every tag and expiry posting, as (kind, label, identity), the label being
   * the tag or the expiresAt (digits), a tag posting with what its value says:
   * the reconciler checks each points at a live, matching entry. A malformed expiry posting has no identity to name:
   * its key is the whole posting, which matches no entry.
   */
  async *postings(): AsyncIterable<Posting> {
    for await (const [k, v] of this.store.index.iterator(prefixRange(`t${SEP}`))) {
      const rest = k.slice(2)
      const cut = rest.indexOf(SEP)
      yield { kind: 'tag', label: rest.slice(0, cut), key: rest.slice(cut + 1), meta: decodePostingValue(v) }
    }
    for await (const k of this.store.index.keys(prefixRange(EXPIRY_POSTING_PREFIX))) {
      const p = parseExpiryPosting(k)
      yield p ? { kind: 'expiry', label: String(p.expiresAt), key: p.identity } : { kind: 'expiry', label: k, key: k }
    }
  }

  /**
   * The postings of the entries expired at `nowMs` (expiresAt <= nowMs), in
   * expiry order: one range scan that reads what has expired and nothing else.
   */
  async *expired(nowMs: number): AsyncIterable<ExpiredPosting> {
    for await (const k of this.store.index.keys(expiredRange(nowMs))) {
      const p = parseExpiryPosting(k)
      if (p) yield p
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
      this.diff(batch, key, undefined, e)
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
    const names = (e: IndexedEntry | undefined): Map<string, Uint8Array> => {
      const out = new Map<string, Uint8Array>()
      if (!e) return out
      const tags = e.tags ?? []
      const posted = tags.length > 0 ? encodePostingValue(e.updatedAt, e.expiresAt, tags) : EMPTY
      for (const t of tags) out.set(`t${SEP}${t}${SEP}${key}`, posted)
      if (e.expiresAt !== undefined) out.set(expiryPosting(e.expiresAt, key), EMPTY)
      return out
    }
    const old = names(was)
    const cur = names(now)
    for (const k of old.keys()) if (!cur.has(k)) batch.push({ type: 'del', sublevel: idx, key: k })
    // A tag posting kept is written again: its value (the write time, maybe the other tags) changed with the put.
    for (const [k, v] of cur) if (!old.has(k) || v.length > 0) batch.push({ type: 'put', sublevel: idx, key: k, value: v })
    if (now) batch.push({ type: 'put', sublevel: idx, key: `f${SEP}${key}`, value: encodeForward(this.store, now) })
    else if (was) batch.push({ type: 'del', sublevel: idx, key: `f${SEP}${key}` })
  }
}

/** Whether `namespace` is `prefix` or under it (`prefix/...`); every namespace is under no prefix. */
export function isUnder(namespace: string, prefix: string | undefined): boolean {
  return prefix === undefined || namespace === prefix || namespace.startsWith(`${prefix}/`)
}

/** Whether an entry at identity `id` matches a query. */
export function matches(id: string, e: IndexedEntry, q: IndexQuery): boolean {
  return (q.namespace === undefined || e.namespace === q.namespace) && (q.tag === undefined || (e.tags ?? []).includes(q.tag)) && (q.prefix === undefined || splitIdentity(id).key.startsWith(q.prefix))
}

export function labelsOf(namespace: string, tags: readonly string[] | undefined, expiresAt?: number, valueBytes?: number, updatedAt?: number): IndexedEntry {
  return { namespace, ...(tags ? { tags } : {}), ...(expiresAt !== undefined ? { expiresAt } : {}), ...(valueBytes !== undefined ? { valueBytes } : {}), ...(updatedAt !== undefined ? { updatedAt } : {}) }
}

/** What the index keeps for an op written at `atMs`: a put's labels, value size and time; nothing for a delete. */
function indexedOf(store: LevelStore, op: Op, atMs: number): IndexedEntry | undefined {
  return op.type === 'put' ? labelsOf(splitIdentity(opIdentity(op)).namespace, op.tags, op.expiresAt, packedValueOf(store.packr, op).length, atMs) : undefined
}

/** A tag or expiry posting as the reconciler checks it. */
export type Posting =
  | { readonly kind: 'tag'; readonly label: string; readonly key: string; readonly meta: PostingValue }
  | { readonly kind: 'expiry'; readonly label: string; readonly key: string }

export function encodeForward(store: LevelStore, e: IndexedEntry): Uint8Array {
  return store.packr.encode([e.tags ?? null, e.expiresAt ?? null, e.valueBytes ?? null, e.updatedAt ?? null])
}

export function decodeForward(store: LevelStore, id: string, v: Uint8Array | undefined): IndexedEntry | undefined {
  if (v === undefined) return undefined
  // Indexed before expiry was: [tags] alone (no expiry then, as no put took one that anything enforced); before sizes were: no
  // valueBytes; before layout 3: no write time.
  const [tags, expiresAt, valueBytes, updatedAt] = store.packr.decode(v) as [string[] | null, number | null | undefined, number | null | undefined, number | null | undefined]
  return labelsOf(splitIdentity(id).namespace, tags ?? undefined, expiresAt ?? undefined, valueBytes ?? undefined, updatedAt ?? undefined)
}

export type { IdBound, IdRange, ScanMeta, Seeked, SeekableIds } from './index-scan.js'
