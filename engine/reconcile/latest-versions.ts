import { assert } from '../assert.js'
import type { Checksums } from '../format/checksum.js'
import type { RecordType } from '../format/format.js'
import { DEFAULT_NAMESPACE, identityOf, splitIdentity } from '../format/identity.js'
import { hlcMs, LegacyDeleteResolver, opsOf, RecordCodec, type Op } from '../format/record-codec.js'
import { createPackr, packValue } from '../format/value-codec.js'

/** First and last LSN, inclusive. */
export type LsnRange = readonly [number, number]

/**
 * What the comparison with the sinks needs of a key's latest version in the
 * log (sink-check.ts): never its value, which would hold the whole log's
 * live data in memory (fsck kept every value decoded: 1 GB of RSS for a
 * 1,000,000-record log), only a hash of its packed bytes. What a repair
 * writes is read back from the log for the keys it repairs.
 */
export interface LatestVersion {
  readonly lsn: number
  readonly type: 'put' | 'del'
  /** ms of the record's hlc stamp: the entry's updatedAt. */
  readonly updatedAt: number
  readonly tags: readonly string[] | undefined
  readonly expiresAt: number | undefined
  /**
   * A put's value as the xxh64 of its packed bytes (value-codec.ts): as the
   * log holds them (record version 3), or packed from the decoded value
   * (versions 1 and 2 hold it inline). Only for versions at or below the
   * `hashThroughLsn` the builder was given (the backend's checkpoint: the
   * only versions compared with a stored value); undefined otherwise, and for
   * deletes.
   */
  readonly valueHash: bigint | undefined
}

/**
 * The latest version of each identity in the log, built from the records of
 * one pass over it (the scan that verifies the frames feeds `addFrame`), in
 * memory that grows with the number of distinct identities, not records.
 *
 * Version-1 records (a delete without a namespace meant "the key wherever it
 * is"; a put moved the key out of every other namespace) need every key's
 * namespaces so far (LegacyDeleteResolver). That view is built only when the
 * first version-1 operation arrives, from the identities seen until then
 * (exactly what the resolver would have remembered: before a version-1
 * operation it only adds namespaces), and kept from there on; a log without
 * one never pays for it.
 */
export class LatestVersions {
  /**
   * Namespace, then key, to the slot of the identity's version in the
   * columns below. Not one map of identity strings and version objects: a
   * concatenated identity and an object per key were most of the scan's time
   * (building them, then the collector moving them as they survived).
   */
  private readonly slots = new Map<string, Map<string, number>>()
  private size = 0
  private lsns = new Float64Array(SLOTS_MIN)
  private updatedAts = new Float64Array(SLOTS_MIN)
  /** NaN: no expiry. */
  private expiresAts = new Float64Array(SLOTS_MIN)
  private hashes = new BigUint64Array(SLOTS_MIN)
  private kinds = new Uint8Array(SLOTS_MIN)
  /** Tags of the slots that have them (few do). */
  private readonly tagsOf = new Map<number, readonly string[]>()
  private readonly codec = new RecordCodec()
  private readonly packr = createPackr()
  private legacy: LegacyDeleteResolver | undefined
  private last = 0
  private readonly gaps: LsnRange[] = []

  /**
   * `keepThroughLsn`: versions above it are not kept (their frames only move
   * `lastLsn` and the gaps): `get` and `entries` then answer each identity's
   * latest version at or below it. A closed directory's check passes its
   * sinks' highest checkpoint: no sink holds anything above it, so a version
   * there is compared with nothing, and a key whose later versions no sink
   * applied yet is compared at the version the sinks must hold. After a
   * crash that is most of the log (the whole backlog of a store whose sinks
   * were down): its frames are verified by the scan and not decoded again.
   * A running engine's verify keeps every version (its sinks move meanwhile).
   */
  constructor(
    private readonly sums: Checksums,
    private readonly hashThroughLsn: number,
    private readonly keepThroughLsn = Number.MAX_SAFE_INTEGER,
  ) {
    assert(keepThroughLsn >= hashThroughLsn, 'the versions hashed are kept')
  }

  /**
   * A frame that verified, in the log's order. A frame at or below the last
   * LSN taken (a stale duplicate the scan reports) is skipped, as the reader
   * skips it. `payload` is only read during the call.
   */
  addFrame(lsn: number, type: RecordType, payload: Uint8Array): void {
    if (lsn <= this.last) return
    if (this.last !== 0 && lsn > this.last + 1) this.gaps.push([this.last + 1, lsn - 1])
    this.last = lsn
    if (lsn > this.keepThroughLsn) return
    const r = this.codec.decodeLabels(type, payload)
    const updatedAt = hlcMs(r.hlc ?? 0)
    for (const op of opsOf(r)) {
      if (this.legacy === undefined && op.legacy !== true) this.set(lsn, op, updatedAt)
      else for (const resolved of (this.legacy ??= this.resolverOfSeen()).resolve(op)) this.set(lsn, resolved, updatedAt)
    }
  }

  /** The last LSN taken, 0 before any. */
  get lastLsn(): number {
    return this.last
  }

  get(id: string): LatestVersion | undefined {
    const { namespace, key } = splitIdentity(id)
    const slot = this.slots.get(namespace)?.get(key)
    return slot === undefined ? undefined : this.versionAt(slot)
  }

  /** Every identity and its latest version, namespace by namespace; with `atMostLsn`, only versions at or below it (the others cost nothing). */
  *entries(atMostLsn = Number.MAX_SAFE_INTEGER): Generator<[string, LatestVersion]> {
    for (const [namespace, keys] of this.slots) {
      for (const [key, slot] of keys) if ((this.lsns[slot] as number) <= atMostLsn) yield [identityOf(namespace, key), this.versionAt(slot)]
    }
  }

  /**
   * The LSN ranges up to `throughLsn` the log did not hold after its first
   * record (damage skipped, a missing segment, a declared gap, a cut tail):
   * what the sinks applied there only they know.
   */
  lost(throughLsn: number): LsnRange[] {
    return this.last < throughLsn ? [...this.gaps, [this.last + 1, throughLsn]] : [...this.gaps]
  }

  private set(lsn: number, op: Op, updatedAt: number): void {
    const namespace = op.namespace ?? DEFAULT_NAMESPACE
    let keys = this.slots.get(namespace)
    if (keys === undefined) this.slots.set(namespace, (keys = new Map()))
    let slot = keys.get(op.key)
    if (slot === undefined) keys.set(op.key, (slot = this.newSlot()))
    this.lsns[slot] = lsn
    this.updatedAts[slot] = updatedAt
    if (op.type === 'del') {
      this.kinds[slot] = Kind.DEL
      this.expiresAts[slot] = Number.NaN
      this.tagsOf.delete(slot)
      return
    }
    this.expiresAts[slot] = op.expiresAt ?? Number.NaN
    if (op.tags !== undefined) this.tagsOf.set(slot, op.tags)
    else this.tagsOf.delete(slot)
    // Version 3 logs the value's bytes (`packed`, a view into the payload); versions 1 and 2 decoded it inline.
    if (lsn > this.hashThroughLsn) this.kinds[slot] = Kind.PUT
    else {
      this.kinds[slot] = Kind.PUT_HASHED
      this.hashes[slot] = this.sums.h64(op.packed ?? packValue(this.packr, op.value))
    }
  }

  private newSlot(): number {
    if (this.size === this.lsns.length) {
      const grown = this.size * 2
      this.lsns = grownTo(this.lsns, new Float64Array(grown))
      this.updatedAts = grownTo(this.updatedAts, new Float64Array(grown))
      this.expiresAts = grownTo(this.expiresAts, new Float64Array(grown))
      this.hashes = grownTo(this.hashes, new BigUint64Array(grown))
      this.kinds = grownTo(this.kinds, new Uint8Array(grown))
    }
    return this.size++
  }

  private versionAt(slot: number): LatestVersion {
    const kind = this.kinds[slot]
    const expiresAt = this.expiresAts[slot] as number
    return {
      lsn: this.lsns[slot] as number,
      type: kind === Kind.DEL ? 'del' : 'put',
      updatedAt: this.updatedAts[slot] as number,
      tags: this.tagsOf.get(slot),
      expiresAt: Number.isNaN(expiresAt) ? undefined : expiresAt,
      valueHash: kind === Kind.PUT_HASHED ? this.hashes[slot] : undefined,
    }
  }

  /** A resolver that knows every identity seen so far. */
  private resolverOfSeen(): LegacyDeleteResolver {
    const namespacesOf = new Map<string, string[]>()
    for (const [namespace, keys] of this.slots) {
      for (const key of keys.keys()) {
        const seen = namespacesOf.get(key)
        if (seen) seen.push(namespace)
        else namespacesOf.set(key, [namespace])
      }
    }
    const resolver = new LegacyDeleteResolver()
    for (const [key, namespaces] of namespacesOf) resolver.seed(key, namespaces)
    return resolver
  }
}

/** Slots the columns start with; they double when full. */
const SLOTS_MIN = 1024

const Kind = { PUT: 1, PUT_HASHED: 2, DEL: 3 } as const

function grownTo<T extends Float64Array | BigUint64Array | Uint8Array>(from: T, to: T): T {
  to.set(from as never)
  return to
}
