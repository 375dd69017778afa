import { assert } from '../assert.js'
import { RecordType } from '../format/format.js'
import { opIdentity } from '../format/identity.js'
import { hlcMs, isLegacyDelete, opsOf, type Op, type RecordCodec, type WalRecord } from '../format/record-codec.js'
import type { AppliedRecord } from '../sinks/sink.js'

/** The type of a placeholder for an LSN that holds no record. */
const GAP = 0
/** Payloads are copied into slabs of this size: one allocation per slab, not per record. */
const SLAB_BYTES = 1024 * 1024
/** Decoded records kept for the appliers, so that three sinks decode a record once. */
const DECODED_MAX = 16_384

/** One acknowledged record not yet applied by every sink. */
interface TailEntry {
  readonly lsn: number
  readonly type: RecordType | typeof GAP
  /** The record's msgpack payload, a view into a slab: decoded on demand, so the caller's objects are never shared. */
  readonly payload: Uint8Array
  readonly ackedAtMs: number
  /** ms of the record's hlc stamp. */
  readonly updatedAt: number
  /** The identity of each op of the record, in order (null for a v1 delete, which names no namespace). */
  readonly keys: readonly (string | null)[]
  /** Whether each op is a put. */
  readonly puts: readonly boolean[]
}

/**
 * The overlay maps an identity to the entry holding its latest version, with
 * the op's position, and what its createdAt is: `createdAt` when an earlier
 * pending version of the identity settles it (a put carries its createdAt
 * forward, a delete starts again), or "the backend's row, if it has one,
 * else `createdAt`" (`fromStore`) when nothing pending came before.
 */
interface OverlayEntry {
  readonly entry: TailEntry
  readonly opIndex: number
  readonly createdAt: number
  readonly fromStore: boolean
}

export type PendingVersion =
  | { readonly kind: 'put'; readonly lsn: number; readonly op: Extract<Op, { type: 'put' }>; readonly updatedAt: number; readonly createdAt: number; readonly createdFromStore: boolean }
  | { readonly kind: 'del'; readonly lsn: number }

/**
 * The records acknowledged but not yet applied by every sink, in LSN order
 * (the tail the appliers read), and per key the latest of them (the overlay
 * that reads consult first, G4). Its size is the backlog that
 * `maxBacklogBytes` bounds (G6). Memory per record is kept near its payload:
 * payloads live in shared slabs, and the overlay points at tail entries.
 */
export class PendingLog {
  private readonly tail: TailEntry[] = []
  private head = 0
  private first: number
  private readonly overlay = new Map<string, OverlayEntry>()
  private bytesValue = 0
  /** Acknowledgements can resolve out of order; they are held here until the gap closes. */
  private readonly early = new Map<number, TailEntry>()
  private slab = Buffer.allocUnsafe(0)
  private slabUsed = 0
  private readonly decoded = new Map<number, AppliedRecord>()
  /** LSNs in `decoded`, oldest first, for O(1) eviction (a Map's first key is slow to find after many deletes). */
  private decodedOrder: number[] = []
  private decodedHead = 0

  constructor(
    private readonly codec: RecordCodec,
    nextLsn: number,
  ) {
    this.first = nextLsn
  }

  /** LSN of the oldest record held. */
  get firstLsn(): number {
    return this.first
  }

  /** LSN the next accepted record must have. */
  get nextLsn(): number {
    return this.first + (this.tail.length - this.head)
  }

  get records(): number {
    return this.tail.length - this.head
  }

  get bytes(): number {
    return this.bytesValue
  }

  get pendingKeys(): number {
    return this.overlay.size
  }

  /** Acknowledgement time of the oldest record with LSN > `lsn`, if any: lag in time. */
  ackedAtAfter(lsn: number): number | undefined {
    return this.at(Math.max(lsn + 1, this.first))?.ackedAtMs
  }

  /** A private copy of a payload, in a slab: what `accept` is given. */
  copy(payload: Uint8Array): Uint8Array {
    if (payload.length > SLAB_BYTES / 4) return Uint8Array.prototype.slice.call(payload)
    if (this.slabUsed + payload.length > this.slab.length) {
      this.slab = Buffer.allocUnsafe(SLAB_BYTES)
      this.slabUsed = 0
    }
    const view = this.slab.subarray(this.slabUsed, this.slabUsed + payload.length)
    view.set(payload)
    this.slabUsed += payload.length
    return view
  }

  /** Takes an acknowledged record; keeps `payload` (from `copy`), which the caller must not reuse. */
  accept(lsn: number, record: WalRecord, payload: Uint8Array, nowMs: number): void {
    // A v1 delete (a log written before identities, replayed into a backend that is behind) has no identity: the backend resolves it.
    const keys = opsOf(record).map((o) => (isLegacyDelete(o) ? null : opIdentity(o)))
    const entry: TailEntry = { lsn, type: record.type, payload, ackedAtMs: nowMs, keys, puts: opsOf(record).map((o) => o.type === 'put'), updatedAt: hlcMs(record.hlc ?? 0) }
    if (lsn !== this.nextLsn) {
      assert(lsn > this.nextLsn, 'an LSN is acknowledged once')
      this.early.set(lsn, entry)
      return
    }
    this.push(entry)
    for (let next = this.early.get(this.nextLsn); next; next = this.early.get(this.nextLsn)) {
      this.early.delete(next.lsn)
      this.push(next)
    }
  }

  /** The pending record at `lsn`, decoded; null for an LSN in a declared gap; undefined if not held. */
  recordAt(lsn: number): AppliedRecord | null | undefined {
    const e = this.at(lsn)
    if (!e) return undefined
    if (e.type === GAP) return null
    let r = this.decoded.get(lsn)
    if (!r) {
      r = { lsn, record: this.codec.decode(e.type, e.payload), bytes: e.payload.length }
      while (this.decoded.size >= DECODED_MAX && this.decodedHead < this.decodedOrder.length) this.decoded.delete(this.decodedOrder[this.decodedHead++] as number)
      // Trims delete from the map without touching this queue: compact it now and then, keeping it bounded.
      if (this.decodedOrder.length - this.decodedHead > 2 * DECODED_MAX || this.decodedHead > DECODED_MAX) {
        this.decodedOrder = this.decodedOrder.slice(this.decodedHead).filter((l) => this.decoded.has(l))
        this.decodedHead = 0
      }
      this.decoded.set(lsn, r)
      this.decodedOrder.push(lsn)
    }
    return r
  }

  /** The pending record at `lsn` as logged (type and payload, not to be modified); null in a declared gap; undefined if not held. */
  frameAt(lsn: number): { readonly type: RecordType; readonly payload: Uint8Array } | null | undefined {
    const e = this.at(lsn)
    if (!e) return undefined
    return e.type === GAP ? null : { type: e.type, payload: e.payload }
  }

  /**
   * Marks LSNs up to `lsn` - 1 as holding no record: recovery dropped or
   * skipped them (point-in-time, skip-corrupt), so sinks pass over them.
   */
  skipTo(lsn: number): void {
    while (this.nextLsn < lsn) this.push({ lsn: this.nextLsn, type: GAP, payload: EMPTY, ackedAtMs: 0, keys: [], puts: [], updatedAt: 0 })
  }

  /** Drops what every sink has applied (LSN <= `lsn`), and the overlay entries it superseded. */
  trimThrough(lsn: number): void {
    while (this.head < this.tail.length && this.first <= lsn) {
      const e = this.tail[this.head] as TailEntry
      this.bytesValue -= e.payload.length
      this.tail[this.head] = undefined as unknown as TailEntry
      this.head++
      this.first++
      this.decoded.delete(e.lsn)
      for (const key of e.keys) if (key !== null) this.forget(key, e)
    }
    if (this.head > 1024 && this.head * 2 > this.tail.length) {
      this.tail.splice(0, this.head)
      this.head = 0
    }
    if (this.records === 0 && this.first <= lsn) this.first = lsn + 1
  }

  /**
   * The latest pending version of identity `id`, or undefined when nothing
   * is pending for it; the caller gets its own objects (a change it makes
   * must not reach the sinks). A record of one op is decoded afresh; from a
   * batch, the op is copied out of the shared decoded record (recordAt):
   * decoding a batch of n ops for each of its identities read would make
   * reading them all cost n x n.
   */
  lookup(id: string): PendingVersion | undefined {
    const o = this.overlay.get(id)
    if (!o) return undefined
    const entry = o.entry
    assert(entry.type !== GAP, 'a gap has no keys')
    const op = entry.keys.length === 1 ? opsOf(this.codec.decode(entry.type, entry.payload))[0] : opsOf((this.recordAt(entry.lsn) as AppliedRecord).record)[o.opIndex]
    assert(op !== undefined && !isLegacyDelete(op) && opIdentity(op) === id, 'overlay entry points at its op')
    if (op.type !== 'put') return { kind: 'del', lsn: entry.lsn }
    return { kind: 'put', lsn: entry.lsn, op: entry.keys.length === 1 ? op : this.codec.copyPut(op), updatedAt: entry.updatedAt, createdAt: o.createdAt, createdFromStore: o.fromStore }
  }

  /** The LSN of the latest pending version of identity `id`, and whether it is a put, without decoding. */
  latest(id: string): { readonly lsn: number; readonly live: boolean } | undefined {
    const o = this.overlay.get(id)
    return o ? { lsn: o.entry.lsn, live: this.isPut(o) } : undefined
  }

  /**
   * The latest pending op of identity `id` and its LSN, from the decoded
   * record the appliers share (recordAt's cache: a record is decoded once
   * however many of its identities are asked about). Read only: the caller
   * must not modify it (lookup gives a private copy). `updatedAt`: ms of
   * its record's clock stamp.
   */
  latestOp(id: string): { readonly lsn: number; readonly op: Op; readonly updatedAt: number } | undefined {
    const o = this.overlay.get(id)
    const r = o && this.recordAt(o.entry.lsn)
    if (!o || !r) return undefined
    const op = opsOf(r.record)[o.opIndex]
    assert(op !== undefined && !isLegacyDelete(op) && opIdentity(op) === id, 'overlay entry points at its op')
    return { lsn: o.entry.lsn, op, updatedAt: o.entry.updatedAt }
  }

  /** Every identity with a pending version. */
  keys(): IterableIterator<string> {
    return this.overlay.keys()
  }

  private forget(key: string, e: TailEntry): void {
    const o = this.overlay.get(key)
    if (o && o.entry === e) this.overlay.delete(key)
  }

  private isPut(o: OverlayEntry): boolean {
    return o.createdAt >= 0
  }

  private at(lsn: number): TailEntry | undefined {
    if (lsn < this.first || lsn >= this.nextLsn) return undefined
    return this.tail[this.head + (lsn - this.first)]
  }

  private push(e: TailEntry): void {
    this.tail.push(e)
    this.bytesValue += e.payload.length
    e.keys.forEach((key, i) => {
      if (key === null) return
      const prev = this.overlay.get(key)
      const put = e.puts[i] === true
      // createdAt: carried from an earlier pending put; a pending delete before starts again; nothing pending asks the backend's row.
      const created = !put ? { createdAt: -1, fromStore: false } : prev === undefined ? { createdAt: e.updatedAt, fromStore: true } : this.isPut(prev) ? { createdAt: prev.createdAt, fromStore: prev.fromStore } : { createdAt: e.updatedAt, fromStore: false }
      this.overlay.set(key, { entry: e, opIndex: i, ...created })
    })
  }
}

const EMPTY = new Uint8Array(0)
