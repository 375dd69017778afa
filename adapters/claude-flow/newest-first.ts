import type { BatchOp, MemWAL } from '../../engine/index.js'
import { KeySpace, type KeyParts } from '../keyspace.js'

/** Entries indexed per memwal batch when the index is built for a store written before it. */
const BUILD_ENTRIES_PER_BATCH = 1_000
/** The marker's value once every entry is in the index (absent: a store written before the index). */
const NEWEST_FIRST_BUILT = 2
/** The largest page of one namespace's slots walkAll reads at once (its pages double from 1 up to this). */
const MERGE_PAGE_MAX = 1_024

/** A slot as the walks give it: where the entry `id` sorts. */
export interface Slot {
  readonly namespace: string
  readonly age: string
  readonly id: string
}

/** One namespace's place in walkAll's merge: the slots read and not yet given, and how to read on. */
interface MergeHead {
  slots: KeyParts[]
  last: KeyParts
  size: number
  done: boolean
}

/** What the index needs of an entry: where it sorts. */
export interface Slotted {
  readonly id: string
  readonly namespace: string
  readonly createdAt: number
}

/**
 * The entries of each namespace newest first, for claude-flow's query (its
 * SQL backends order by created_at DESC): `cf.t [namespace, age, id]` ->
 * null, where `age` sorts as createdAt descending. A query of one namespace
 * reads from the front of one key range and stops once it has its offset +
 * limit matches, so its cost follows the limit, not the namespace's size
 * (issue 13: 10 newest of a namespace read and sorted every entry of it).
 * Each slot is written and removed in the same atomic batch as its entry
 * (backend.ts storeOps and bulkDelete). `cf.m [newest-first]` says the
 * index is complete: a store written before it is indexed at initialize.
 */
export class NewestFirst {
  private readonly slots: KeySpace
  private readonly marker: KeySpace

  constructor(private readonly db: MemWAL) {
    this.slots = new KeySpace(db, 'cf.t')
    this.marker = new KeySpace(db, 'cf.m')
  }

  putOp(e: Slotted): BatchOp {
    return this.slots.putOp(this.parts(e), null)
  }

  delOp(e: Slotted): BatchOp {
    return this.slots.delOp(this.parts(e))
  }

  /** Whether two versions of an entry sit in the same slot (then the put of the new one is enough). */
  sameSlot(a: Slotted, b: Slotted): boolean {
    return a.id === b.id && a.namespace === b.namespace && ageOf(a.createdAt) === ageOf(b.createdAt)
  }

  /** Whether `e` is what the slot (`age`, in `namespace`) says: false when a write moved it since the slot was read. */
  holds(e: Slotted, namespace: string, age: string): boolean {
    return e.namespace === namespace && ageOf(e.createdAt) === age
  }

  /** The slots of a namespace's entries, newest first (ties in id order), read as the caller consumes them. */
  async *walk(namespace: string): AsyncGenerator<Slot> {
    for await (const hit of this.slots.walk([namespace])) yield slotOf(hit.parts)
  }

  /**
   * The slots of every namespace's entries, newest first across namespaces
   * (ties on age in no set order: the caller orders them), read as the
   * caller consumes them: the namespaces' walks merged. One read finds each
   * namespace and its newest slot (a skip scan), then a namespace's slots are
   * read in pages that double (2, 4, ... up to MERGE_PAGE_MAX) as the merge
   * takes from it: n slots given cost about n + (namespaces) reads, not the
   * store's size. The merge picks the newest head by a pass over the
   * namespaces, O(namespaces) per slot given.
   */
  async *walkAll(): AsyncGenerator<Slot> {
    const heads: MergeHead[] = []
    for await (const hit of this.slots.firstOfEach()) heads.push({ slots: [hit.parts], last: hit.parts, size: 1, done: false })
    for (;;) {
      let best: MergeHead | undefined
      for (const h of heads) if (h.slots.length > 0 && (best === undefined || (h.slots[0]?.[1] as string) < (best.slots[0]?.[1] as string))) best = h
      if (best === undefined) return
      const parts = best.slots.shift() as KeyParts
      best.last = parts
      yield slotOf(parts)
      if (best.slots.length === 0 && !best.done) {
        best.size = Math.min(best.size * 2, MERGE_PAGE_MAX)
        best.slots = (await this.slots.page([parts[0] as string], best.last, best.size)).map((h) => h.parts)
        best.done = best.slots.length < best.size
      }
    }
  }

  /** Builds the index over `entries` unless it is complete, in durable batches; the marker last, so that a crash midway builds again. */
  async ensureBuilt(entries: KeySpace): Promise<void> {
    if ((await this.marker.get(['newest-first'])) === NEWEST_FIRST_BUILT) return
    let ops: BatchOp[] = []
    for await (const hit of entries.walk([])) {
      ops.push(this.putOp(hit.value as Slotted))
      if (ops.length >= BUILD_ENTRIES_PER_BATCH) {
        await this.db.batch(ops)
        ops = []
      }
    }
    if (ops.length > 0) await this.db.batch(ops)
    await this.marker.put(['newest-first'], NEWEST_FIRST_BUILT)
  }

  private parts(e: Slotted): string[] {
    return [e.namespace, ageOf(e.createdAt), e.id]
  }
}

function slotOf(parts: KeyParts): Slot {
  return { namespace: parts[0] as string, age: parts[1] as string, id: parts[2] as string }
}

/**
 * createdAt as 16 hex digits that sort, as strings, newest first: the
 * float64's bits made order-preserving (sign bit flipped for a positive
 * number, every bit for a negative one), then every bit flipped again to
 * descend. -0 is 0. (store refuses a createdAt that is not a finite number.)
 */
export function ageOf(createdAt: number): string {
  const b = Buffer.alloc(8)
  b.writeDoubleBE(createdAt === 0 ? 0 : createdAt)
  const negative = ((b[0] as number) & 0x80) !== 0
  for (let i = 0; i < 8; i++) b[i] = negative ? (b[i] as number) : ~(b[i] as number) & 0xff
  b[0] = (b[0] as number) ^ (negative ? 0 : 0x80)
  return b.toString('hex')
}
