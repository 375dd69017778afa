import { assert } from '../assert.js'
import { RecordType } from '../wal/format.js'
import type { Op, RecordCodec, WalRecord } from '../wal/record-codec.js'
import type { AppliedRecord } from '../sinks/sink.js'

/** The type of a placeholder for an LSN that holds no record. */
const GAP = 0

/** One acknowledged record not yet applied by every sink. */
interface TailEntry {
  readonly lsn: number
  readonly type: RecordType | typeof GAP
  /** The record's msgpack payload (a private copy): decoded on demand, so the caller's objects are never shared. */
  readonly payload: Uint8Array
  readonly ackedAtMs: number
  readonly keys: readonly string[]
}

/** The latest pending version of a key. */
interface OverlayEntry {
  readonly lsn: number
  readonly entry: TailEntry
  /** Position of the op within a BATCH record; 0 otherwise. */
  readonly opIndex: number
}

export type PendingVersion =
  | { readonly kind: 'put'; readonly lsn: number; readonly op: Extract<Op, { type: 'put' }> }
  | { readonly kind: 'del'; readonly lsn: number }

/**
 * The records acknowledged but not yet applied by every sink, in LSN order
 * (the in-memory tail the appliers read while they keep up), and per key the
 * latest of them (the overlay that reads consult first, G4). Its size is the
 * backlog that `maxBacklogBytes` bounds (G6).
 */
export class PendingLog {
  private readonly tail: TailEntry[] = []
  private head = 0
  private first: number
  private readonly overlay = new Map<string, OverlayEntry>()
  private bytesValue = 0
  /** Acknowledgements can resolve out of order; they are held here until the gap closes. */
  private readonly early = new Map<number, TailEntry>()

  constructor(private readonly codec: RecordCodec, nextLsn: number) {
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

  /** Takes an acknowledged record; keeps `payload`, which the caller must not reuse. */
  accept(lsn: number, record: WalRecord, payload: Uint8Array, nowMs: number): void {
    const keys = record.type === RecordType.BATCH ? record.ops.map((o) => o.key) : [record.op.key]
    const entry = { lsn, type: record.type, payload, ackedAtMs: nowMs, keys }
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
    return { lsn, record: this.codec.decode(e.type, e.payload), bytes: e.payload.length }
  }

  /**
   * Marks LSNs up to `lsn` - 1 as holding no record: recovery dropped or
   * skipped them (point-in-time, skip-corrupt), so sinks pass over them.
   */
  skipTo(lsn: number): void {
    while (this.nextLsn < lsn) this.push({ lsn: this.nextLsn, type: GAP, payload: new Uint8Array(0), ackedAtMs: 0, keys: [] })
  }

  /** Drops what every sink has applied (LSN <= `lsn`), and the overlay entries it superseded. */
  trimThrough(lsn: number): void {
    while (this.head < this.tail.length && this.first <= lsn) {
      const e = this.tail[this.head] as TailEntry
      this.bytesValue -= e.payload.length
      this.tail[this.head] = undefined as unknown as TailEntry
      this.head++
      this.first++
      for (const key of e.keys) {
        const o = this.overlay.get(key)
        if (o && o.lsn <= lsn) this.overlay.delete(key)
      }
    }
    if (this.head > 1024 && this.head * 2 > this.tail.length) {
      this.tail.splice(0, this.head)
      this.head = 0
    }
    if (this.records === 0 && this.first <= lsn) this.first = lsn + 1
  }

  /** The latest pending version of `key`, or undefined when nothing is pending for it. */
  lookup(key: string): PendingVersion | undefined {
    const o = this.overlay.get(key)
    if (!o) return undefined
    assert(o.entry.type !== GAP, 'a gap has no keys')
    const r = this.codec.decode(o.entry.type, o.entry.payload)
    const op = r.type === RecordType.BATCH ? r.ops[o.opIndex] : r.op
    assert(op !== undefined && op.key === key, 'overlay entry points at its op')
    return op.type === 'put' ? { kind: 'put', lsn: o.lsn, op } : { kind: 'del', lsn: o.lsn }
  }

  /** Every key with a pending version. */
  keys(): IterableIterator<string> {
    return this.overlay.keys()
  }

  private at(lsn: number): TailEntry | undefined {
    if (lsn < this.first || lsn >= this.nextLsn) return undefined
    return this.tail[this.head + (lsn - this.first)]
  }

  private push(e: TailEntry): void {
    this.tail.push(e)
    this.bytesValue += e.payload.length
    e.keys.forEach((key, i) => this.overlay.set(key, { lsn: e.lsn, entry: e, opIndex: e.type === RecordType.BATCH ? i : 0 }))
  }
}
