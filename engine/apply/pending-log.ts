import { assert } from '../assert.js'
import { RecordType } from '../format/format.js'
import { opIdentity } from '../format/identity.js'
import { keepsCreatedAt } from '../format/expiry-key.js'
import { hlcMs, isLegacyDelete, opsOf, type Op, type RecordCodec, type WalRecord } from '../format/record-codec.js'
import type { AppliedRecord } from '../sinks/sink.js'
import { PendingColumns, type RecordKeys } from './pending-columns.js'

/** The type of a placeholder for an LSN that holds no record. */
const GAP = 0
/** Payloads are copied into slabs of this size: one allocation per slab, not per record. */
const SLAB_BYTES = 1024 * 1024
/** Decoded records kept for the appliers, so that three sinks decode a record once. */
const DECODED_MAX = 16_384

/** An acknowledged record that came before the one the log waits for: held apart until the gap closes (rare, few). */
interface EarlyEntry {
  readonly lsn: number
  readonly type: RecordType
  readonly payload: Uint8Array
  readonly ackedAtMs: number
  readonly updatedAt: number
  readonly keys: RecordKeys
  readonly puts: readonly boolean[]
  /** The earliest expiresAt of its puts (Infinity: none), which spares a put over one of them a decode (expiresAtOf). */
  readonly expiresMin: number
}

/**
 * The overlay maps an identity to the record holding its latest version, with
 * the op's position, and what its createdAt is: `createdAt` when an earlier
 * pending version of the identity settles it (a put carries its createdAt
 * forward unless that version had expired by the put's write time,
 * keepsCreatedAt; a delete starts again), or "the backend's row, if it has
 * one and it had not expired at `createdAt`, else `createdAt`" (`fromStore`)
 * when nothing pending came before the run of puts, which began at LSN
 * `fromLsn` at time `createdAt`.
 */
interface OverlayEntry {
  readonly lsn: number
  readonly opIndex: number
  readonly createdAt: number
  readonly fromStore: boolean
  readonly fromLsn: number
}

/**
 * The common overlay entry (the first pending version of an identity, a
 * put, op 0: createdAt is its record's updatedAt, from the store) is held as
 * its bare LSN, with no object: the overlay of a backlog of distinct keys
 * costs its map and its key strings only.
 */
type OverlaySlot = OverlayEntry | number

export type PendingVersion =
  | {
      readonly kind: 'put'
      readonly lsn: number
      readonly op: Extract<Op, { type: 'put' }>
      readonly updatedAt: number
      /** Its createdAt; with createdFromStore, the stored row's instead when that row is older than createdFromLsn and had not expired at this time. */
      readonly createdAt: number
      readonly createdFromStore: boolean
      /** LSN of the first put of the pending run this one carries createdAt from. */
      readonly createdFromLsn: number
    }
  | { readonly kind: 'del'; readonly lsn: number }

/**
 * The records acknowledged but not yet applied by every sink, in LSN order
 * (the tail the appliers read), and per key the latest of them (the overlay
 * that reads consult first, G4). Its size is the backlog that
 * `maxBacklogBytes` bounds (G6). Memory per record is kept near its payload:
 * payloads live in shared slabs, the other fields in columns (PendingColumns),
 * and the overlay holds an LSN per identity.
 */
export class PendingLog {
  private readonly tail = new PendingColumns()
  private first: number
  private readonly overlay = new Map<string, OverlaySlot>()
  private bytesValue = 0
  /** Acknowledgements can resolve out of order; they are held here until the gap closes. */
  private readonly early = new Map<number, EarlyEntry>()
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
    return this.first + this.tail.length
  }

  get records(): number {
    return this.tail.length
  }

  get bytes(): number {
    return this.bytesValue
  }

  get pendingKeys(): number {
    return this.overlay.size
  }

  /** Acknowledgement time of the oldest record with LSN > `lsn`, if any: lag in time. */
  ackedAtAfter(lsn: number): number | undefined {
    const n = this.indexOf(Math.max(lsn + 1, this.first))
    return n === undefined ? undefined : this.tail.ackedAtMs(n)
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

  /**
   * Takes an acknowledged record; keeps `payload`, which nothing may change
   * after: from `copy`, or a view of a buffer its caller leaves alone (open's
   * backlog load keeps views of the segments recovery read, backlog-load.ts).
   */
  accept(lsn: number, record: WalRecord, payload: Uint8Array, nowMs: number): void {
    // A v1 delete (a log written before identities, replayed into a backend that is behind) has no identity: the backend resolves it.
    const ops = opsOf(record)
    const keyOf = (o: Op): string | null => (isLegacyDelete(o) ? null : flatCopy(opIdentity(o)))
    const keys: RecordKeys = ops.length === 1 ? keyOf(ops[0] as Op) : ops.map(keyOf)
    let expiresMin = Infinity
    for (const o of ops) if (o.type === 'put' && o.expiresAt !== undefined && o.expiresAt < expiresMin) expiresMin = o.expiresAt
    const entry: EarlyEntry = { lsn, type: record.type, payload, ackedAtMs: nowMs, keys, puts: ops.map((o) => o.type === 'put'), updatedAt: hlcMs(record.hlc ?? 0), expiresMin }
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
    const n = this.indexOf(lsn)
    if (n === undefined) return undefined
    const type = this.tail.type(n)
    if (type === GAP) return null
    let r = this.decoded.get(lsn)
    if (!r) {
      const payload = this.tail.payload(n)
      // Puts carry their values' bytes as logged (views of the slab, which never changes): sinks store them as they are.
      r = { lsn, record: this.codec.decodeForApply(type as RecordType, payload), bytes: payload.length }
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
    const n = this.indexOf(lsn)
    if (n === undefined) return undefined
    const type = this.tail.type(n)
    return type === GAP ? null : { type: type as RecordType, payload: this.tail.payload(n) }
  }

  /**
   * Marks LSNs up to `lsn` - 1 as holding no record: recovery dropped or
   * skipped them (point-in-time, skip-corrupt), so sinks pass over them.
   */
  skipTo(lsn: number): void {
    while (this.nextLsn < lsn) this.tail.push(GAP, EMPTY, 0, 0, null)
  }

  /** Drops what every sink has applied (LSN <= `lsn`), and the overlay entries it superseded. */
  trimThrough(lsn: number): void {
    while (this.tail.length > 0 && this.first <= lsn) {
      const keys = this.tail.keys(0)
      this.bytesValue -= this.tail.payloadBytes(0)
      if (typeof keys === 'string') this.forget(keys, this.first)
      else if (keys !== null) for (const key of keys) if (key !== null) this.forget(key, this.first)
      this.decoded.delete(this.first)
      this.tail.shift()
      this.first++
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
    const slot = this.overlay.get(id)
    if (slot === undefined) return undefined
    const o = this.entryOf(slot)
    const n = this.indexOf(o.lsn) as number
    const type = this.tail.type(n)
    assert(type !== GAP, 'a gap has no keys')
    const single = !Array.isArray(this.tail.keys(n))
    const op = single ? opsOf(this.codec.decode(type as RecordType, this.tail.payload(n)))[0] : opsOf((this.recordAt(o.lsn) as AppliedRecord).record)[o.opIndex]
    assert(op !== undefined && !isLegacyDelete(op) && opIdentity(op) === id, 'overlay entry points at its op')
    if (op.type !== 'put') return { kind: 'del', lsn: o.lsn }
    return { kind: 'put', lsn: o.lsn, op: single ? op : this.codec.copyPut(op), updatedAt: this.tail.updatedAt(n), createdAt: o.createdAt, createdFromStore: o.fromStore, createdFromLsn: o.fromLsn }
  }

  /** The LSN of the latest pending version of identity `id`, and whether it is a put, without decoding. */
  latest(id: string): { readonly lsn: number; readonly live: boolean } | undefined {
    const o = this.overlay.get(id)
    return o === undefined ? undefined : { lsn: lsnOf(o), live: this.isPut(o) }
  }

  /**
   * The latest pending op of identity `id` and its LSN, from the decoded
   * record the appliers share (recordAt's cache: a record is decoded once
   * however many of its identities are asked about). Read only: the caller
   * must not modify it (lookup gives a private copy). `updatedAt`: ms of
   * its record's clock stamp.
   */
  latestOp(id: string): { readonly lsn: number; readonly op: Op; readonly updatedAt: number } | undefined {
    const slot = this.overlay.get(id)
    if (slot === undefined) return undefined
    const o = this.entryOf(slot)
    const r = this.recordAt(o.lsn)
    if (!r) return undefined
    const op = opsOf(r.record)[o.opIndex]
    assert(op !== undefined && !isLegacyDelete(op) && opIdentity(op) === id, 'overlay entry points at its op')
    return { lsn: o.lsn, op, updatedAt: this.tail.updatedAt(this.indexOf(o.lsn) as number) }
  }

  /** Every identity with a pending version. */
  keys(): IterableIterator<string> {
    return this.overlay.keys()
  }

  private forget(key: string, lsn: number): void {
    const o = this.overlay.get(key)
    if (o !== undefined && lsnOf(o) === lsn) this.overlay.delete(key)
  }

  private isPut(o: OverlaySlot): boolean {
    return typeof o === 'number' || o.createdAt >= 0
  }

  /** The overlay entry a slot stands for (a bare LSN: the first pending version, a put, op 0). */
  private entryOf(o: OverlaySlot): OverlayEntry {
    if (typeof o !== 'number') return o
    return { lsn: o, opIndex: 0, createdAt: this.tail.updatedAt(this.indexOf(o) as number), fromStore: true, fromLsn: o }
  }

  /** The position in the tail of `lsn`'s record, if held. */
  private indexOf(lsn: number): number | undefined {
    if (lsn < this.first || lsn >= this.nextLsn) return undefined
    return lsn - this.first
  }

  private push(e: EarlyEntry): void {
    const lsn = this.nextLsn
    assert(e.lsn === lsn, 'records are held in LSN order')
    this.tail.push(e.type, e.payload, e.ackedAtMs, e.updatedAt, e.keys, e.expiresMin)
    this.bytesValue += e.payload.length
    if (typeof e.keys === 'string') this.supersede(e.keys, lsn, 0, e.puts[0] === true, e.updatedAt)
    else if (e.keys !== null) e.keys.forEach((key, i) => key !== null && this.supersede(key, lsn, i, e.puts[i] === true, e.updatedAt))
  }

  /** Op `opIndex` of record `lsn` is now the latest pending version of `key`. */
  private supersede(key: string, lsn: number, opIndex: number, put: boolean, updatedAt: number): void {
    const prev = this.overlay.get(key)
    if (put && prev === undefined && opIndex === 0) {
      this.overlay.set(key, lsn)
      return
    }
    // createdAt: carried from an earlier pending put unless it had expired by this put's write time; a pending delete before
    // (or that expired put) starts again; nothing pending asks the backend's row.
    const p = prev === undefined ? undefined : this.entryOf(prev)
    const fresh = { createdAt: updatedAt, fromStore: false, fromLsn: lsn }
    const created = !put ? { createdAt: -1, fromStore: false, fromLsn: lsn } : p === undefined ? { createdAt: updatedAt, fromStore: true, fromLsn: lsn } : p.createdAt >= 0 && keepsCreatedAt(this.expiresAtOf(p, updatedAt), updatedAt) ? p : fresh
    this.overlay.set(key, { lsn, opIndex, createdAt: created.createdAt, fromStore: created.fromStore, fromLsn: created.fromLsn })
  }

  /**
   * The expiry of the pending put an overlay entry points at, as far as a put
   * written at `atMs` needs it. The common case reads its record's column
   * only: no put of that record expires by `atMs` (it has no expiry, or a
   * later one), and the answer is then "none by then". Otherwise the record
   * is decoded through recordAt, whose cache the appliers read next. The
   * overlay keeps no expiry per identity.
   */
  private expiresAtOf(o: OverlayEntry, atMs: number): number | undefined {
    const n = this.indexOf(o.lsn) as number
    const min = this.tail.expiresMin(n)
    if (min > atMs) return undefined
    if (typeof this.tail.keys(n) === 'string') return min
    const op = opsOf((this.recordAt(o.lsn) as AppliedRecord).record)[o.opIndex]
    assert(op !== undefined && op.type === 'put', 'an overlay put points at its op')
    return op.expiresAt
  }
}

/**
 * `s` as one flat string. An identity is built as namespace + NUL + key, which
 * V8 keeps as a rope over its parts, and a decoded key is often a slice that
 * keeps a larger decoded string alive: about 125 bytes per key for a 22-character
 * identity, against 40 flat. The overlay and the columns hold one per pending
 * identity, so a backlog of distinct keys pays it per record. The JSON round
 * trip copies any string exactly (a lone surrogate too).
 */
const flatCopy = (s: string): string => JSON.parse(JSON.stringify(s)) as string

const lsnOf = (o: OverlaySlot): number => (typeof o === 'number' ? o : o.lsn)

const EMPTY = new Uint8Array(0)
