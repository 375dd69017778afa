import type { PendingLog } from '../apply/pending-log.js'
import { isExpired } from '../format/expiry-key.js'
import { compareCodePoints, identityOf, prefixEnd, prefixRange, splitIdentity } from '../format/identity.js'
import type { IdBound, IdRange, IndexSink, ScanMeta, SeekableIds } from '../sinks/index-sink.js'
import { BATCH_AFTER_SEEK, BATCH_FIRST } from '../sinks/index-scan.js'
import type { Entry } from '../read-path.js'
import type { CursorSigner } from './cursor.js'
import { leapfrog, UnionScan } from './leapfrog.js'
import { boundsTime, entryMatches, keyInRange, namespaceMatches, tagsMatch, timeMatches } from './match.js'
import { mergeOverlay, pendingOverlay, type PendingOverlay } from './pending-overlay.js'
import { queryFingerprint, type QuerySpec } from './query-spec.js'

export interface QueryRunParts {
  /** The index's scans, each jump counted toward the index's health (index-reads.ts). */
  readonly index: Pick<IndexSink, 'forwardScan' | 'tagScan' | 'postingBytes'>
  readonly pending: PendingLog
  /** The entry as a read returns it now (pending first, then the cache, then the backend), undefined when absent or expired. */
  readonly entry: (id: string) => Promise<Entry | undefined>
  readonly nowMs: () => number
  readonly signer: CursorSigner
}

/**
 * Runs one checked query. The plan (docs/design.md, "How queries are
 * planned"): the spec's namespace, key bounds and cursor make one range of
 * identities; inside it, the postings of every `tags.all` tag and the union
 * of the `tags.any` tags' postings are joined (leapfrog.ts), or, with no tag,
 * the forward entries are scanned. A query of several tags whose postings
 * carry their entries' tags (store layout 4) reads only the tag posting that
 * LevelDB estimates smallest in the range and judges the other tags from it
 * (`drive`), where the join would read every posting asked; what no posting holds (a namespace under a
 * prefix, a key range across namespaces) rejects an id and says where the
 * next may be, so the join jumps there. The write time and the expiry come
 * with each tag posting and forward entry: a count reads no row. Pending
 * puts and deletes override the index for their identities, as reads do.
 * Results are in identity order (namespace, then key, by code point),
 * reversed with `reverse`, strictly after the cursor's position.
 */
export class QueryRun {
  private readonly fingerprint: string
  private readonly range: IdRange | undefined
  private readonly keyLow: IdBound | undefined
  private readonly keyHigh: IdBound | undefined

  constructor(private readonly p: QueryRunParts, private readonly spec: QuerySpec) {
    this.fingerprint = queryFingerprint(spec)
    const after = spec.cursor !== undefined ? p.signer.open(this.fingerprint, spec.cursor) : undefined
    ;[this.keyLow, this.keyHigh] = keyBounds(spec)
    this.range = idRange(spec, this.keyLow, this.keyHigh, after)
  }

  /** A cursor that continues this query after identity `id`. */
  cursorAfter(id: string): string {
    return this.p.signer.make(this.fingerprint, id)
  }

  /**
   * Matching entries, in order, at most `limit`. `whole`: the caller takes
   * all of them (a page), so the scans start with larger steps; an iterator
   * its consumer may leave at any entry starts small.
   */
  async *entries(limit: number, whole = false): AsyncGenerator<Entry> {
    if (this.range === undefined) return
    const drive = await this.drive(this.range)
    const overlay = this.pendingHits()
    const scans = this.scans(this.range, drive, whole ? firstStep(limit) : BATCH_AFTER_SEEK)
    let closing: Promise<void> | undefined
    const close = (): Promise<void> => (closing ??= closeAll(scans))
    try {
      yield* mergeOverlay(this.matches(scans, drive, close), overlay, this.spec.reverse, limit, (id) => this.entry(id))
    } finally {
      await close()
    }
  }

  /**
   * The ids the join finds that the index does not rule out, each with the
   * read of its entry. When the join is over, `done` lets the index's
   * iterators go before the pending hits after the last id are read.
   */
  private async *matches(scans: readonly SeekableIds[], drive: string | undefined, done: () => Promise<void>): AsyncGenerator<readonly [string, () => Promise<Entry | undefined>]> {
    for await (const [id, meta] of this.indexed(scans)) if (this.judge(meta, drive) !== false) yield [id, () => this.entry(id)]
    await done()
  }

  /** How many entries match: from the postings' times and expiries and the pending overlay; a row is read only where the index does not know an entry's time. */
  async count(): Promise<number> {
    if (this.range === undefined) return 0
    const drive = await this.drive(this.range)
    const { overridden, hits } = this.pendingHits()
    const scans = this.scans(this.range, drive, BATCH_FIRST)
    let n = hits.length
    try {
      for await (const [id, meta] of this.indexed(scans)) {
        if (overridden.has(id)) continue
        const sure = this.judge(meta, drive)
        if (sure === true || (sure === undefined && (await this.entry(id)) !== undefined)) n++
      }
    } finally {
      await closeAll(scans)
    }
    return n
  }

  /** The entry as it is now, if it still matches (a write may have landed since the index or the overlay was read). */
  private async entry(id: string): Promise<Entry | undefined> {
    const e = await this.p.entry(id)
    return e && entryMatches(this.spec, e) ? e : undefined
  }

  /**
   * What the index says of an id the join found: true (matches), false, or
   * undefined when its write time is not known and the query bounds it, or
   * when the tags are not known where they are judged here. Namespace and
   * key range are the join's, and so are the tags unless one posting
   * `drive`s the query; expiry and time are here.
   */
  private judge(meta: ScanMeta, drive: string | undefined): boolean | undefined {
    if (isExpired(meta.expiresAt, this.p.nowMs())) return false
    // The time before the tags: a number to compare, where the tags are a string to split (ScanMeta's may be read only when asked).
    let sure: true | undefined = true
    if (boundsTime(this.spec)) {
      if (meta.updatedAt === undefined) sure = undefined
      else if (!timeMatches(this.spec, meta.updatedAt)) return false
    }
    if (drive !== undefined) {
      // A posting written before layout 4 does not say the entry's other tags: the entry read decides.
      if (!meta.tagsKnown) return undefined
      if (!tagsMatch(this.spec, meta.tags)) return false
    }
    return sure
  }

  /**
   * The one tag posting to read for a query of several tags: the `tags.all`
   * tag whose posting LevelDB estimates smallest in the range. Undefined (join
   * every posting, which reads each as far as the join needs and no further)
   * for a query of one tag, where an estimate is missing, or where every
   * estimate is zero: the estimates count LevelDB's table files only, so a
   * store whose postings all sit in its memtable (at most its 4 MiB write
   * buffer) gives no sizes to choose by. A zero beside larger ones is a
   * posting of less than a table block, or one written since the last
   * memtable flush (bounded by the same buffer): the cheaper to read.
   */
  private async drive(range: IdRange): Promise<string | undefined> {
    const { tagsAll, tagsAny } = this.spec
    if (tagsAll.length === 0 || tagsAll.length + (tagsAny.length > 0 ? 1 : 0) < 2) return undefined
    const sizes = await Promise.all(tagsAll.map((t) => this.p.index.postingBytes(t, range)))
    let best = 0
    let known = 0
    for (let i = 0; i < sizes.length; i++) {
      const b = sizes[i]
      if (b === undefined) return undefined
      known = Math.max(known, b)
      if (b < (sizes[best] as number)) best = i
    }
    return known > 0 ? tagsAll[best] : undefined
  }

  /** The scans to join, made in one tick (with the pending overlay read just before): one view of the index. Each reads `first` entries at its first step. */
  private scans(range: IdRange, drive: string | undefined, first: number): SeekableIds[] {
    const { index } = this.p
    const reverse = this.spec.reverse
    if (drive !== undefined) return [index.tagScan(drive, range, reverse, first)]
    const scans: SeekableIds[] = this.spec.tagsAll.map((t) => index.tagScan(t, range, reverse, first))
    if (this.spec.tagsAny.length > 0) scans.push(new UnionScan(this.spec.tagsAny.map((t) => index.tagScan(t, range, reverse, first)), reverse))
    if (scans.length === 0) scans.push(index.forwardScan(range, reverse, first))
    return scans
  }

  /** The ids the join finds, with what the index says of each. A failed read is already ENGINE_BACKEND_UNAVAILABLE (index-reads.ts), counted toward the index's health. */
  private indexed(scans: readonly SeekableIds[]): AsyncGenerator<[string, ScanMeta]> {
    return leapfrog(scans, this.spec.reverse, (id) => this.skip(id))
  }

  /**
   * Undefined when `id` is in the query's namespaces and key range; else
   * where the next id that can be is (in the scan's direction): the key
   * range's start in this namespace, the next namespace, or, under a
   * namespace prefix, past the namespaces that only start like it (`ab` for `a`).
   */
  private skip(id: string): { target: string; exclusive: boolean } | undefined {
    const { namespace, key } = splitIdentity(id)
    const s = this.spec
    const fwd = !s.reverse
    if (!namespaceMatches(s, namespace)) {
      const p = s.namespacePrefix as string
      return fwd ? { target: `${p}/`, exclusive: false } : { target: `${p}\u0001`, exclusive: true }
    }
    if (keyInRange(s.key, key)) return undefined
    const below = this.keyLow !== undefined && beyond(this.keyLow, key, -1)
    if (below) return fwd ? { target: identityOf(namespace, (this.keyLow as IdBound).id), exclusive: (this.keyLow as IdBound).exclusive } : { target: identityOf(namespace, ''), exclusive: true }
    const above = this.keyHigh !== undefined && beyond(this.keyHigh, key, 1)
    if (above) return fwd ? { target: `${namespace}\u0001`, exclusive: false } : { target: identityOf(namespace, (this.keyHigh as IdBound).id), exclusive: (this.keyHigh as IdBound).exclusive }
    return { target: id, exclusive: true }
  }

  /** The pending overlay (pending-overlay.ts), its hits inside the id range (which holds the cursor). */
  private pendingHits(): PendingOverlay {
    return pendingOverlay(this.p.pending, this.spec, this.p.nowMs(), (id) => inRange(this.range as IdRange, id))
  }
}

/**
 * The first step of a page's scans for `limit` results: BATCH_FIRST, or
 * fewer for a small limit (limit 1 reads 2 where it reads all it needs
 * there), never below what a step after a jump reads.
 */
function firstStep(limit: number): number {
  return Math.min(BATCH_FIRST, Math.max(BATCH_AFTER_SEEK, limit + 1))
}

/** Whether `key` is past a bound: below it (side -1) or above it (side 1). */
function beyond(b: IdBound, key: string, side: -1 | 1): boolean {
  const c = side * compareCodePoints(key, b.id)
  return c > 0 || (c === 0 && b.exclusive)
}

/** The key range as two bounds on keys (prefix, gt/gte, lt/lte merged): the tighter of each side. */
function keyBounds(s: QuerySpec): [IdBound | undefined, IdBound | undefined] {
  const k = s.key
  let low: IdBound | undefined = k.prefix !== undefined && k.prefix !== '' ? { id: k.prefix, exclusive: false } : undefined
  if (k.gt !== undefined) low = tighter(low, { id: k.gt, exclusive: true }, 1)
  if (k.gte !== undefined) low = tighter(low, { id: k.gte, exclusive: false }, 1)
  const end = k.prefix !== undefined && k.prefix !== '' ? prefixEnd(k.prefix) : undefined
  let high: IdBound | undefined = end !== undefined ? { id: end, exclusive: true } : undefined
  if (k.lt !== undefined) high = tighter(high, { id: k.lt, exclusive: true }, -1)
  if (k.lte !== undefined) high = tighter(high, { id: k.lte, exclusive: false }, -1)
  return [low, high]
}

/** Of two bounds, the one that lets less through: the larger lower bound (side 1) or the smaller upper one (side -1); on a tie the exclusive one. */
function tighter(a: IdBound | undefined, b: IdBound, side: 1 | -1): IdBound {
  if (a === undefined) return b
  const c = side * compareCodePoints(a.id, b.id)
  if (c !== 0) return c > 0 ? a : b
  return a.exclusive ? a : b
}

/**
 * The one range of identities that can hold results: a namespace with its
 * key bounds, a namespace prefix (`p NUL` up to the end of `p/`; the
 * namespaces between, `p-x` and the like, are skipped by the join), or
 * everything; narrowed by the cursor's position. Undefined: empty.
 */
function idRange(s: QuerySpec, keyLow: IdBound | undefined, keyHigh: IdBound | undefined, after: string | undefined): IdRange | undefined {
  let lower: IdBound | undefined
  let upper: IdBound | undefined
  if (s.namespace !== undefined) {
    const ns = s.namespace
    lower = keyLow !== undefined ? { id: identityOf(ns, keyLow.id), exclusive: keyLow.exclusive } : { id: identityOf(ns, ''), exclusive: false }
    upper = keyHigh !== undefined ? { id: identityOf(ns, keyHigh.id), exclusive: keyHigh.exclusive } : { id: prefixRange(identityOf(ns, '')).lt, exclusive: true }
  } else if (s.namespacePrefix !== undefined) {
    lower = { id: identityOf(s.namespacePrefix, ''), exclusive: false }
    upper = { id: prefixRange(`${s.namespacePrefix}/`).lt, exclusive: true }
  }
  if (after !== undefined) {
    if (s.reverse) upper = tighter(upper, { id: after, exclusive: true }, -1)
    else lower = tighter(lower, { id: after, exclusive: true }, 1)
  }
  if (lower !== undefined && upper !== undefined) {
    const c = compareCodePoints(lower.id, upper.id)
    if (c > 0 || (c === 0 && (lower.exclusive || upper.exclusive))) return undefined
  }
  return { ...(lower !== undefined ? { lower } : {}), ...(upper !== undefined ? { upper } : {}) }
}

function inRange(r: IdRange, id: string): boolean {
  return (r.lower === undefined || !beyond(r.lower, id, -1)) && (r.upper === undefined || !beyond(r.upper, id, 1))
}

async function closeAll(scans: readonly SeekableIds[]): Promise<void> {
  await Promise.all(scans.map((s) => s.close()))
}
