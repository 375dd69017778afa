import { MemwalError } from '../errors.js'
import type { PendingLog } from '../apply/pending-log.js'
import { hlcMs } from '../hlc.js'
import { limits } from '../limits.js'
import type { IndexedEntry, IndexSink, KeyBounds, Posting } from '../sinks/index-sink.js'
import type { StoredEntry } from '../sinks/sink.js'
import type { CursorSigner } from './cursor.js'
import { compareCodePoints, entryMatches } from './match.js'
import { queryFingerprint, type QuerySpec } from './query-spec.js'

/** Sorts after every string that starts with a given prefix (U+10FFFF is the largest code point). */
const HIGH = '\u{10FFFF}'

export interface QueryHit {
  readonly key: string
  readonly entry: StoredEntry
}

export interface QueryRunParts {
  readonly index: IndexSink
  readonly pending: PendingLog
  /** The read path's getEntry: pending, cache, backend (G4). */
  readonly getEntry: (key: string) => Promise<StoredEntry | undefined>
  readonly signer: CursorSigner
}

/** Where a query reads its candidates: a posting of the index in key order, or the keys the time posting gave, sorted. */
type Source = { readonly kind: 'posting'; readonly posting: Posting } | { readonly kind: 'keys'; readonly keys: readonly string[] }

/**
 * Runs a checked query: plans it on the index postings (the most selective of
 * the namespace's, each required tag's and the write-time posting, estimated
 * by counting each up to queryPlanProbeKeysMax), filters the candidates by
 * every criterion, and merges what is pending (a pending put or delete
 * overrides the index for its key, as reads do), in key order (reversed with
 * `reverse`), strictly after the cursor's position.
 */
export class QueryRun {
  private readonly fingerprint: string
  private readonly bounds: KeyBounds

  constructor(private readonly p: QueryRunParts, private readonly spec: QuerySpec) {
    this.fingerprint = queryFingerprint(spec)
    const after = spec.cursor !== undefined ? p.signer.open(this.fingerprint, spec.cursor) : undefined
    this.bounds = boundsOf(spec, after)
  }

  /** A cursor that continues this query after `key`. */
  cursorAfter(key: string): string {
    return this.p.signer.make(this.fingerprint, key)
  }

  /** Matching entries with their values, in order, at most `limit`. */
  async *hits(limit: number): AsyncGenerator<QueryHit> {
    const { overridden, hits: pendingHits } = await this.pendingHits()
    const order = this.spec.reverse ? -1 : 1
    let n = 0
    let i = 0
    for await (const [key, indexed] of this.candidates(await this.plan())) {
      if (overridden.has(key)) continue
      while (i < pendingHits.length && order * compareCodePoints((pendingHits[i] as QueryHit).key, key) < 0) {
        yield pendingHits[i++] as QueryHit
        if (++n >= limit) return
      }
      if (!this.matchesIndexed(key, indexed)) continue
      const e = await this.p.getEntry(key)
      // A write may have landed since the index was read: judge what getEntry returned.
      if (!e || !entryMatches(this.spec, { key, ...labels(e), ...timeOf(indexed) })) continue
      yield { key, entry: e }
      if (++n >= limit) return
    }
    while (i < pendingHits.length) {
      yield pendingHits[i++] as QueryHit
      if (++n >= limit) return
    }
  }

  /** How many entries match, from the index and the pending overlay: no value is read. */
  async count(): Promise<number> {
    const { overridden, hits } = await this.pendingHits()
    let n = hits.length
    for await (const [key, indexed] of this.candidates(await this.plan())) if (!overridden.has(key) && this.matchesIndexed(key, indexed)) n++
    return n
  }

  private matchesIndexed(key: string, e: IndexedEntry): boolean {
    return entryMatches(this.spec, { key, ...labels(e), ...timeOf(e) })
  }

  /** Pending versions within the bounds: each overrides the index for its key; the puts that match, sorted. */
  private async pendingHits(): Promise<{ overridden: Set<string>; hits: QueryHit[] }> {
    const { pending } = this.p
    const overridden = new Set<string>()
    const hits: QueryHit[] = []
    for (const key of pending.keys()) {
      if (!inBounds(this.bounds, key)) continue
      const v = pending.lookup(key)
      if (!v) continue
      overridden.add(key)
      if (v.kind !== 'put') continue
      const hlc = pending.recordAt(v.lsn)?.record.hlc
      const entry: StoredEntry = { value: v.op.value, lsn: v.lsn, ...labels(v.op) }
      if (entryMatches(this.spec, { key, ...labels(v.op), ...(hlc !== undefined ? { updatedAt: hlcMs(hlc) } : {}) })) hits.push({ key, entry })
    }
    const order = this.spec.reverse ? -1 : 1
    hits.sort((a, b) => order * compareCodePoints(a.key, b.key))
    return { overridden, hits }
  }

  /** The most selective access path; the whole index (within the key bounds) when nothing narrows it. */
  private async plan(): Promise<Source> {
    const { index } = this.p
    const cap = limits.queryPlanProbeKeysMax
    const postings: Posting[] = [
      ...(this.spec.namespace !== undefined ? [{ kind: 'namespace', namespace: this.spec.namespace } as const] : []),
      ...this.spec.tagsAll.map((tag) => ({ kind: 'tag', tag }) as const),
    ]
    let best: { source: Source; size: number } = { source: { kind: 'posting', posting: postings[0] ?? { kind: 'all' } }, size: Infinity }
    if (postings.length > 1 || this.spec.since !== undefined || this.spec.until !== undefined) {
      const sizes = await Promise.all(postings.map((p) => index.countUpTo(p, this.bounds, cap)))
      sizes.forEach((size, i) => {
        if (size < best.size) best = { source: { kind: 'posting', posting: postings[i] as Posting }, size }
      })
      if (this.spec.since !== undefined || this.spec.until !== undefined) {
        // The time posting is in time order: it drives only when small enough to sort in memory.
        const keys = await index.keysWrittenIn(this.spec.since, this.spec.until, cap)
        if (keys !== undefined && keys.length < best.size) {
          const order = this.spec.reverse ? -1 : 1
          best = { source: { kind: 'keys', keys: [...new Set(keys)].filter((k) => inBounds(this.bounds, k)).sort((a, b) => order * compareCodePoints(a, b)) }, size: keys.length }
        }
      }
    }
    return best.source
  }

  private async *candidates(source: Source): AsyncIterable<[string, IndexedEntry]> {
    try {
      if (source.kind === 'posting') {
        yield* this.p.index.scan(source.posting, this.bounds, this.spec.reverse)
        return
      }
      for (let i = 0; i < source.keys.length; i += 256) {
        const page = source.keys.slice(i, i + 256)
        const entries = await this.p.index.forward(page)
        for (let j = 0; j < page.length; j++) {
          const e = entries[j]
          if (e) yield [page[j] as string, e]
        }
      }
    } catch (cause) {
      // The index is not the backend: a down backend must not stop a query whose values are pending or cached (G4 refuses per value, in getEntry).
      if (cause instanceof MemwalError) throw cause
      throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `the index cannot answer: ${(cause as Error).message}`, { cause, transient: true })
    }
  }
}

function labels(e: { readonly namespace?: string; readonly tags?: readonly string[] }): { namespace?: string; tags?: readonly string[] } {
  return { ...(e.namespace !== undefined ? { namespace: e.namespace } : {}), ...(e.tags ? { tags: e.tags } : {}) }
}

function timeOf(e: IndexedEntry): { updatedAt?: number } {
  return e.hlc !== undefined ? { updatedAt: hlcMs(e.hlc) } : {}
}

/**
 * The key bounds of a query: its range and prefix, narrowed by the cursor
 * (strictly after its position in the query's direction). The tighter bound
 * wins on each side.
 */
export function boundsOf(spec: QuerySpec, after: string | undefined): KeyBounds {
  const lower: [string, boolean][] = [] // [bound, inclusive]
  const upper: [string, boolean][] = []
  const { prefix, gt, gte, lt, lte } = spec.key
  if (prefix !== undefined) {
    lower.push([prefix, true])
    upper.push([prefix + HIGH, false])
  }
  if (gt !== undefined) lower.push([gt, false])
  if (gte !== undefined) lower.push([gte, true])
  if (lt !== undefined) upper.push([lt, false])
  if (lte !== undefined) upper.push([lte, true])
  if (after !== undefined) (spec.reverse ? upper : lower).push([after, false])
  const lo = lower.reduce<[string, boolean] | undefined>((a, b) => (!a ? b : compareCodePoints(b[0], a[0]) > 0 || (b[0] === a[0] && !b[1]) ? b : a), undefined)
  const hi = upper.reduce<[string, boolean] | undefined>((a, b) => (!a ? b : compareCodePoints(b[0], a[0]) < 0 || (b[0] === a[0] && !b[1]) ? b : a), undefined)
  return { ...(lo ? (lo[1] ? { gte: lo[0] } : { gt: lo[0] }) : {}), ...(hi ? (hi[1] ? { lte: hi[0] } : { lt: hi[0] }) : {}) }
}

export function inBounds(b: KeyBounds, key: string): boolean {
  return (b.gt === undefined || compareCodePoints(key, b.gt) > 0) && (b.gte === undefined || compareCodePoints(key, b.gte) >= 0) &&
    (b.lt === undefined || compareCodePoints(key, b.lt) < 0) && (b.lte === undefined || compareCodePoints(key, b.lte) <= 0)
}
