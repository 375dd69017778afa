import type { AbstractIterator } from 'abstract-level'
import { compareCodePoints } from '../format/identity.js'
import type { LevelStore } from './level-store.js'

/**
 * What the index knows of an entry without reading its row: from a forward
 * entry everything, from a tag posting's value the write time, the expiry
 * and (layout 4) every tag of the entry. `updatedAt` undefined: not known
 * here (an entry indexed by layout 2 under a backend that is not this
 * store's: the query reads the entry).
 */
export interface ScanMeta {
  readonly tags?: readonly string[] | undefined
  readonly expiresAt?: number | undefined
  readonly updatedAt?: number | undefined
  /** Whether `tags` are all the entry's tags: false for a tag posting written before layout 4 (it says only that the entry holds its tag). */
  readonly tagsKnown: boolean
}

/** One end of an id range: the id and whether it is itself excluded. */
export interface IdBound {
  readonly id: string
  readonly exclusive: boolean
}

/** A range of identities, always written low to high whatever the scan's direction; an absent side is open. */
export interface IdRange {
  readonly lower?: IdBound
  readonly upper?: IdBound
}

/**
 * A sorted stream of identities that can jump ahead: the unit the query
 * planner joins (engine/query/leapfrog.ts). "Ahead" is the scan's direction:
 * up, or down when reverse.
 */
export interface SeekableIds {
  /**
   * The first id at `target` or beyond it (strictly beyond when `exclusive`;
   * no target: the first of all), or undefined at the end. Targets never go back.
   * `far`: the target is known to be far (past a namespace or a key range
   * the query cannot match), so a scan jumps there rather than read on.
   */
  seek(target: string | undefined, exclusive: boolean, far?: boolean): Promise<string | undefined>
  /** What the index says of the id the last seek returned. */
  meta(): ScanMeta
  close(): Promise<void>
}

/** Entries read per step right after a jump: a join mostly needs one or two. */
const BATCH_AFTER_SEEK = 4
/** Reads on that miss the target, in a row, before a scan jumps with a seek instead. */
const MISSES_BEFORE_SEEK = 2
/** Entries read per step when reading straight on (doubling from BATCH_AFTER_SEEK): bounds the memory of one scan. */
const BATCH_MAX = 1024

/**
 * A seekable scan of one posting (every key under `head`: `f NUL` for the
 * forward entries, `t NUL tag NUL` for a tag) within an id range. Reads in
 * batches (nextv), and jumps with the iterator's seek only past what it
 * holds: a join that steps to a near id costs a comparison, a far one a
 * LevelDB seek. Created synchronously: several scans made in one tick see the
 * same index (no apply batch lands between them).
 */
export class PostingScan implements SeekableIds {
  private readonly it: AbstractIterator<LevelStore['index'], string, Uint8Array>
  /** The ids read (the keys without the posting's head, cut once per entry: a join compares them many times) and their values. */
  private ids: string[] = []
  private values: Uint8Array[] = []
  private pos = 0
  private ended = false
  private batch = BATCH_AFTER_SEEK
  /** Reads on in a row that did not reach the join's target (see seek). */
  private misses = 0
  private readonly dir: 1 | -1

  constructor(
    store: LevelStore,
    private readonly head: string,
    range: IdRange,
    reverse: boolean,
    private readonly decode: (id: string, v: Uint8Array) => ScanMeta,
  ) {
    this.dir = reverse ? -1 : 1
    const lo = range.lower ? { [range.lower.exclusive ? 'gt' : 'gte']: head + range.lower.id } : { gte: head }
    const hi = range.upper ? { [range.upper.exclusive ? 'lt' : 'lte']: head + range.upper.id } : { lt: headEnd(head) }
    this.it = store.index.iterator({ ...lo, ...hi, reverse })
  }

  async seek(target: string | undefined, exclusive: boolean, far = false): Promise<string | undefined> {
    for (;;) {
      // Within what is read: a galloping search from the current place (a join's next target is mostly near).
      if (this.pos < this.ids.length) {
        const last = this.ids[this.ids.length - 1] as string
        if (this.ahead(last, target, exclusive)) {
          // Found in what was read: the posting is dense here, reading on pays.
          this.misses = 0
          this.pos = this.firstAhead(target, exclusive)
          return this.current()
        }
        // Beyond what is read: read on while that has been finding the targets (dense postings: a read of
        // up to BATCH_MAX entries costs about one seek), jump once reading on has missed twice in a row
        // (a sparse posting against a dense one: each jump a seek). The target is past the current
        // place, so inside the range.
        if ((far || this.misses >= MISSES_BEFORE_SEEK) && !(exclusive && last === target)) {
          this.it.seek(this.head + (target as string))
          this.batch = BATCH_AFTER_SEEK
        } else this.misses++
      } else if (this.ended) {
        return undefined
      }
      await this.fill()
    }
  }

  meta(): ScanMeta {
    return this.decode(this.ids[this.pos] as string, this.values[this.pos] as Uint8Array)
  }

  async close(): Promise<void> {
    await this.it.close()
  }

  private current(): string | undefined {
    return this.ids[this.pos]
  }

  private async fill(): Promise<void> {
    const read = await this.it.nextv(this.batch)
    const cut = this.head.length
    this.ids = read.map((e) => e[0].slice(cut))
    this.values = read.map((e) => e[1])
    this.pos = 0
    // Fewer than asked is no end (the iterator may return what it has at hand): only an empty batch is.
    if (read.length === 0) this.ended = true
    this.batch = Math.min(BATCH_MAX, this.batch * 2)
  }

  /** Whether `id` is at `target` or beyond it in the scan's direction (strictly beyond when exclusive). */
  private ahead(id: string, target: string | undefined, exclusive: boolean): boolean {
    if (target === undefined) return true
    const c = this.dir * compareCodePoints(id, target)
    return exclusive ? c > 0 : c >= 0
  }

  /**
   * The first buffered index from `pos` whose id is ahead of the target (one
   * exists: the last is): steps that double from `pos` until one is ahead,
   * then a binary search within the last step, so a target d entries on
   * costs about 2 log2(d) comparisons, not log2 of the buffer.
   */
  private firstAhead(target: string | undefined, exclusive: boolean): number {
    const ids = this.ids
    const end = ids.length - 1
    let lo = this.pos
    let step = 1
    while (lo + step < end && !this.ahead(ids[lo + step] as string, target, exclusive)) {
      lo += step
      step *= 2
    }
    if (this.ahead(ids[lo] as string, target, exclusive)) return lo
    let hi = Math.min(lo + step, end)
    lo++
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.ahead(ids[mid] as string, target, exclusive)) hi = mid
      else lo = mid + 1
    }
    return lo
  }
}

/** Past every key under `head` (which ends in NUL): the same head with its NUL made U+0001. */
function headEnd(head: string): string {
  return `${head.slice(0, -1)}\u0001`
}

/** The byte after a layout-4 posting value's times: the entry's tags follow it. */
const TAGS_FOLLOW = 0x01

/**
 * A tag posting's value: what a query needs of the entry without its
 * forward entry or its row. Layout 4: updatedAt (ms, float64 BE; NaN when
 * not known), expiresAt (float64 BE; NaN when none), the byte 0x01, then
 * every tag of the entry, UTF-8, NUL between (a tag never holds NUL: the
 * engine refuses it), so that a query of several tags reads one tag's
 * posting and judges the others from it (engine/query/query-run.ts).
 * Layout 3's values were the 8 bytes of updatedAt, and 8 more with expiresAt
 * when the entry had one (no tags: decoded with `tags` undefined); layout
 * 2's were empty (nothing known).
 */
export function encodePostingValue(updatedAt: number | undefined, expiresAt: number | undefined, tags: readonly string[]): Uint8Array {
  const joined = Buffer.from(tags.join(SEP_CHAR), 'utf8')
  const b = Buffer.allocUnsafe(17 + joined.length)
  b.writeDoubleBE(updatedAt ?? Number.NaN, 0)
  b.writeDoubleBE(expiresAt ?? Number.NaN, 8)
  b[16] = TAGS_FOLLOW
  joined.copy(b, 17)
  return b
}

/** What a tag posting's value holds; `tags` undefined for a value written before layout 4. */
export interface PostingValue {
  readonly updatedAt: number | undefined
  readonly expiresAt: number | undefined
  readonly tags: readonly string[] | undefined
}

export function decodePostingValue(v: Uint8Array): PostingValue {
  if (v.length < 8) return { updatedAt: undefined, expiresAt: undefined, tags: undefined }
  const view = new DataView(v.buffer, v.byteOffset, v.byteLength)
  const at = view.getFloat64(0)
  const exp = v.length >= 16 ? view.getFloat64(8) : Number.NaN
  const tags = v.length > 16 && v[16] === TAGS_FOLLOW ? Buffer.from(v.buffer, v.byteOffset + 17, v.byteLength - 17).toString('utf8').split(SEP_CHAR) : undefined
  // One literal of one shape: a query decodes one per entry it reads.
  return { updatedAt: Number.isNaN(at) ? undefined : at, expiresAt: Number.isNaN(exp) ? undefined : exp, tags }
}

const SEP_CHAR = '\u0000'
