import type { AbstractIterator } from 'abstract-level'
import { assert } from '../assert.js'
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
  seek(target: string | undefined, exclusive: boolean, far?: boolean): Seeked
  /** What the index says of the id the last seek returned. */
  meta(): ScanMeta
  close(): Promise<void>
}

/**
 * A seek's answer: the id (or undefined at the end) at once when what the
 * scan already holds decides it, else a promise of it. A query's join steps
 * through thousands of postings, most of them answered from a batch already
 * read: a promise (and the await of each layer above) per step cost more
 * than the step (1,589 steps for the first 100 results of issue 11's query).
 */
export type Seeked = string | undefined | Promise<string | undefined>

/** Entries read per step right after a jump: a join mostly needs one or two. */
export const BATCH_AFTER_SEEK = 4
/** Reads on that miss the target, in a row, before a scan jumps with a seek instead. */
const MISSES_BEFORE_SEEK = 2
/**
 * Entries read by a scan's first step, at the start of its range, unless
 * its maker knows it needs fewer (a query of limit 1): a scan read alone
 * (one posting drives the query, or no tag) reads on from there, and each
 * step is a trip to LevelDB's thread and back.
 */
export const BATCH_FIRST = 32
/** Entries read per step when reading straight on (doubling from BATCH_AFTER_SEEK): bounds the memory of one scan. */
export const BATCH_MAX = 1024
/**
 * classic-level ends a step once the entries it read pass this many bytes
 * (its `highWaterMarkBytes`; the default, 16 KiB, ended a step of ~80-byte
 * tag postings at ~190 entries, a trip each). With BATCH_MAX, what bounds a
 * scan's memory: at most this plus one entry.
 */
const STEP_BYTES_MAX = 256 * 1024

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
  private batch: number
  /** Reads on in a row that did not reach the join's target (see seek). */
  private misses = 0
  private readonly dir: 1 | -1

  constructor(
    store: LevelStore,
    private readonly head: string,
    range: IdRange,
    reverse: boolean,
    private readonly decode: (id: string, v: Uint8Array) => ScanMeta,
    firstStep: number = BATCH_FIRST,
  ) {
    assert(Number.isInteger(firstStep) && firstStep >= 1 && firstStep <= BATCH_MAX, 'a scan\'s first step reads 1 to BATCH_MAX entries')
    this.batch = firstStep
    this.dir = reverse ? -1 : 1
    const lo = range.lower ? { [range.lower.exclusive ? 'gt' : 'gte']: head + range.lower.id } : { gte: head }
    const hi = range.upper ? { [range.upper.exclusive ? 'lt' : 'lte']: head + range.upper.id } : { lt: headEnd(head) }
    // highWaterMarkBytes is classic-level's (abstract-level's types lack it); another implementation ignores it.
    const options = { ...lo, ...hi, reverse, highWaterMarkBytes: STEP_BYTES_MAX }
    this.it = store.index.iterator(options)
  }

  seek(target: string | undefined, exclusive: boolean, far = false): Seeked {
    const held = this.seekHeld(target, exclusive, far)
    return held !== null ? held : this.readOn(target, exclusive, far)
  }

  /** Reads until what the scan holds decides the seek. */
  private async readOn(target: string | undefined, exclusive: boolean, far: boolean): Promise<string | undefined> {
    for (;;) {
      await this.fill()
      const held = this.seekHeld(target, exclusive, far)
      if (held !== null) return held
    }
  }

  /**
   * The seek answered from what is read (the id, or undefined at the end),
   * or null when a read must come first; decides whether that read goes on
   * from here or jumps (the iterator's seek).
   */
  private seekHeld(target: string | undefined, exclusive: boolean, far: boolean): string | undefined | null {
    if (this.pos >= this.ids.length) return this.ended ? undefined : null
    // Past the id it stands on (a scan read alone steps so, once per id): the next held, ids being strictly in order.
    if (exclusive && target === this.ids[this.pos] && this.pos + 1 < this.ids.length) return this.ids[++this.pos]
    // Within what is read: a galloping search from the current place (a join's next target is mostly near).
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
    return null
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

/**
 * A tag posting's value, read where it lies: the times at once, the tags
 * only when asked (a query judges the time first, and most postings a
 * time-bounded query reads fail it: decoding every posting's tags was a
 * tenth of a query's time). Also the scan's meta for the posting.
 */
export class PostingValueView implements PostingValue, ScanMeta {
  readonly updatedAt: number | undefined
  readonly expiresAt: number | undefined
  readonly tagsKnown: boolean
  private decoded: readonly string[] | undefined

  constructor(private readonly v: Uint8Array) {
    const at = v.length >= 8 ? float64BE(v, 0) : Number.NaN
    const exp = v.length >= 16 ? float64BE(v, 8) : Number.NaN
    this.updatedAt = Number.isNaN(at) ? undefined : at
    this.expiresAt = Number.isNaN(exp) ? undefined : exp
    this.tagsKnown = v.length > 16 && v[16] === TAGS_FOLLOW
  }

  get tags(): readonly string[] | undefined {
    if (!this.tagsKnown) return undefined
    const v = this.v
    return (this.decoded ??= Buffer.from(v.buffer, v.byteOffset + 17, v.byteLength - 17).toString('utf8').split(SEP_CHAR))
  }
}

export function decodePostingValue(v: Uint8Array): PostingValue {
  return new PostingValueView(v)
}

/** Eight bytes of `v` from `at`, a big-endian float64 (as Buffer.writeDoubleBE wrote it), read without a view made per value. */
function float64BE(v: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) F64_BYTES[LITTLE_ENDIAN ? 7 - i : i] = v[at + i] as number
  return F64[0] as number
}

/** Scratch for float64BE: written and read within one call. */
const F64 = new Float64Array(1)
const F64_BYTES = new Uint8Array(F64.buffer)
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

const SEP_CHAR = '\u0000'
