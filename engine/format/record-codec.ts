import { MemwalError } from '../errors.js'
import { RecordType } from './format.js'
import { DEFAULT_NAMESPACE } from './identity.js'
import type { Packr } from 'msgpackr'
import { createPackr, packValue, toWireValue } from './value-codec.js'

/**
 * The logical operations a frame carries, and their msgpack payloads.
 * Payloads are arrays, not maps, to stay small.
 *
 * Version 3 (written now): as version 2 below, with the first element 3 and
 * each put's `value` written as msgpack bin holding the value's own msgpack
 * bytes (value-codec.ts), so that the appliers store, size and cache a value
 * as the log holds it instead of encoding it again per sink
 * (`decodeForApply`, `PutOp.packed`). A release before it refuses a version-3
 * record (WAL_INVALID_RECORD: its first element is no key): downgrading is
 * not supported once one is written.
 *
 * Version 2 (written since (namespace, key) identity until version 3): the first element is
 * the number 2, which no version-1 payload has there (a key string, or a
 * batch entry array), so all three decode:
 *   PUT    [2, hlc | null, namespace, key, value, tags | null, expiresAt | null]
 *   DELETE [2, hlc | null, namespace, key]
 *   BATCH  [2, hlc | null, [1, namespace, key, value, tags | null, expiresAt | null] | [2, namespace, key], ...]
 * Every operation names its namespace, deletes too. `expiresAt` (ms since
 * the epoch, resolved at put) is the entry's expiry: readers hide the entry
 * from then on and the expiry sweep deletes it (expiry-sweep.ts).
 * Conditions (ifVersion, ifAbsent) are not in the record: they are decided
 * before the append, in log order (write-path.ts).
 *
 * Version 1 (read only):
 *   PUT    [key, value, namespace | null, tags | null, hlc?]
 *   DELETE [key, hlc?]
 *   BATCH  [[1, key, value, namespace | null, tags | null] | [2, key], ..., hlc?]
 * A v1 PUT decodes with the namespace it was written with (none: `default`).
 * A v1 DELETE named only the key and meant "the key, in whichever namespace
 * holds it" (a key had one namespace at a time): it decodes with no
 * namespace, and its readers (the layout migration, the reconciler, the
 * PostgreSQL backend) delete the key in every namespace.
 *
 * `hlc` (a hybrid logical clock timestamp: ms * 1000 + a counter, assigned by
 * the writer) orders versions in backends shared by several writers and gives
 * an entry's updatedAt. A value is encoded as value-codec.ts specifies (its
 * header comment is the value contract).
 */
export interface PutOp {
  readonly type: 'put'
  readonly key: string
  readonly value: unknown
  /** Always set on decoded records; absent on input means `default`. */
  readonly namespace?: string
  readonly tags?: readonly string[]
  /** ms since the epoch. */
  readonly expiresAt?: number
  /** Set on decoded version-1 puts only: the key left every other namespace (a key had one at a time). */
  readonly legacy?: true
  /**
   * The value's msgpack bytes (value-codec.ts) as the log holds them: set
   * only on puts `decodeForApply` took from a version-3 record, as a view into
   * the payload (a holder that keeps it copies it: the payload's buffer may be
   * large). Read on input too: a put that carries them is logged with them.
   */
  readonly packed?: Uint8Array
}
export interface DeleteOp {
  readonly type: 'del'
  readonly key: string
  /**
   * Always set on records written since version 2 (absent on input means
   * `default`). Absent on a decoded version-1 delete: the key in whichever
   * namespace holds it (see `isLegacyDelete`).
   */
  readonly namespace?: string
  /** Set on decoded version-1 deletes only. */
  readonly legacy?: true
}
export type Op = PutOp | DeleteOp

/** A version-1 delete: the key in every namespace. */
export function isLegacyDelete(op: Op): op is DeleteOp & { readonly legacy: true } {
  return op.type === 'del' && op.legacy === true
}

export type WalRecord = (
  | { readonly type: typeof RecordType.PUT; readonly op: PutOp }
  | { readonly type: typeof RecordType.DELETE; readonly op: DeleteOp }
  | { readonly type: typeof RecordType.BATCH; readonly ops: readonly Op[] }
) & { readonly hlc?: number }

/**
 * Resolves version-1 deletes while reading a log in LSN order: it remembers
 * every namespace each key was put in, and turns a v1 delete (no namespace:
 * "the key wherever it is") into one delete per namespace seen so far. The
 * reconciler and the PostgreSQL backend's log check read logs this way.
 */
export class LegacyDeleteResolver {
  /**
   * The namespaces of each key: one string for the usual one namespace, a
   * Set only for a key seen in several. A Set per key cost fsck about 190
   * bytes per distinct key (37 now) and most of its time (3.8 of 9 s of a
   * 200,000-record fsck's CPU profile, building them).
   */
  private readonly namespacesOf = new Map<string, string | Set<string>>()

  /** What a store holds already: `key` lives in these namespaces (before the records resolved next). */
  seed(key: string, namespaces: Iterable<string>): void {
    const all = new Set(namespaces)
    this.namespacesOf.set(key, all.size === 1 ? (all.values().next().value as string) : all)
  }

  /**
   * The operation as identity-keyed operations: itself; for a v1 delete, one
   * delete per namespace seen; for a v1 put, a delete in every other
   * namespace seen, then itself (the put moved the key).
   */
  resolve(op: Op): Op[] {
    const seen = this.namespacesOf.get(op.key)
    const others = (keep: string | undefined): Op[] => namespacesIn(seen).filter((ns) => ns !== keep).map((namespace) => ({ type: 'del', key: op.key, namespace }))
    if (isLegacyDelete(op)) {
      this.namespacesOf.delete(op.key)
      return others(undefined)
    }
    const namespace = op.namespace ?? DEFAULT_NAMESPACE
    if (op.type === 'put' && op.legacy === true) {
      const out = [...others(namespace), op]
      this.namespacesOf.set(op.key, namespace)
      return out
    }
    if (seen === undefined) this.namespacesOf.set(op.key, namespace)
    else if (typeof seen !== 'string') seen.add(namespace)
    else if (seen !== namespace) this.namespacesOf.set(op.key, new Set([seen, namespace]))
    return [op]
  }
}

const namespacesIn = (seen: string | Set<string> | undefined): string[] => (seen === undefined ? [] : typeof seen === 'string' ? [seen] : [...seen])

/** hlc counter values per millisecond (engine/hlc.ts); more in one millisecond borrow the next one. */
export const HLC_PER_MS = 1000

/**
 * A stand-in stamp to size a record before its real stamp is taken (the
 * write path stamps only after its waits, right before the append): msgpack
 * writes no number longer (a float64, 9 bytes), so the real record's payload
 * is never longer than the one sized with it. Never appended: the write path
 * restamps the payload (`RecordCodec.restamp`) or encodes it again.
 */
export const HLC_SIZING = Number.MAX_SAFE_INTEGER

const MSGPACK_FLOAT64 = 0xcb

/** The length of a msgpack array header starting with `first` (fixarray, array 16, array 32); undefined if not an array. */
function arrayHeaderBytes(first: number | undefined): number | undefined {
  if (first === undefined) return undefined
  if (first >= 0x90 && first <= 0x9f) return 1
  return first === 0xdc ? 3 : first === 0xdd ? 5 : undefined
}

/** The ms of a record's hlc stamp: an entry's updatedAt. */
export function hlcMs(hlc: number): number {
  return Math.floor(hlc / HLC_PER_MS)
}

/**
 * A put's value as msgpack bytes: as logged when the op carries them
 * (`PutOp.packed`), else encoded now with `packr`. Either way a view: of the
 * payload, or of msgpackr's reused buffer, valid until `packr`'s next encode.
 */
export function packedValueOf(packr: Packr, op: PutOp): Uint8Array {
  return op.packed ?? packValue(packr, op.value)
}

/** The bytes of a msgpack array header for `n` elements (fixarray, array 16, array 32). */
function arrayHeaderBytesFor(n: number): number {
  return n < 0x10 ? 1 : n <= 0xffff ? 3 : 5
}

/** The bytes of a msgpack bin header for `n` bytes (bin 8, 16, 32: msgpackr writes a Buffer as the shortest). */
function binHeaderBytes(n: number): number {
  return n <= 0xff ? 2 : n <= 0xffff ? 3 : 5
}

/**
 * The exact payload bytes of version-3 records of puts, stamped HLC_SIZING
 * as the write path sizes them against recordBytesMax, from each put's value
 * bytes (packValue's length) and labels, without encoding the value again:
 * what import fills its records with, up to what put takes and not a byte
 * less. toWire is the layout; test/unit/import-records.test.ts checks these against encode.
 *   PUT    [3, hlc, ns, key, bin, tags, expiresAt]       = op + hlc
 *   BATCH  [3, hlc, [1, ns, key, bin, tags, expiresAt]...] = header(2 + n) + 1 + hlc + sum(op)
 */
export class PutRecordSizer {
  private readonly hlcBytes: number
  constructor(private readonly packr: Packr) {
    this.hlcBytes = packr.encode(HLC_SIZING).length
  }

  /** What one put takes inside a BATCH record: `[1, ns, key, bin, tags, expiresAt]`. */
  opBytes(op: Pick<PutOp, 'namespace' | 'key' | 'tags' | 'expiresAt'>, valueBytes: number): number {
    // The labels as msgpackr writes them, less their 4-element array's header (1 byte).
    const labels = this.packr.encode([op.namespace ?? DEFAULT_NAMESPACE, op.key, op.tags ?? null, op.expiresAt ?? null]).length - 1
    return 2 + labels + binHeaderBytes(valueBytes) + valueBytes
  }

  /** A PUT record of the op whose opBytes is `opBytes` (its array has one element more at the head, the hlc, and no type). */
  putBytes(opBytes: number): number {
    return opBytes + this.hlcBytes
  }

  /** A BATCH record of `count` puts whose opBytes add up to `opsBytes`. */
  batchBytes(count: number, opsBytes: number): number {
    return arrayHeaderBytesFor(2 + count) + 1 + this.hlcBytes + opsBytes
  }
}

/** The operations of a record, in order. */
export function opsOf(r: WalRecord): readonly Op[] {
  return r.type === RecordType.BATCH ? r.ops : [r.op]
}

export class RecordCodec {
  private readonly packr = createPackr()

  /**
   * Encodes a record. The result is a view into msgpackr's shared buffer, valid
   * only until the next encode: the WAL copies it into its group buffer at once.
   */
  encode(r: WalRecord): Uint8Array {
    checkLabels(r)
    return this.packr.encode(toWire(r, (op) => this.packedValue(op)))
  }

  /** A put's value as the bin a version-3 record holds: a copy (packValue's view is of the buffer the record's encode reuses). */
  private packedValue(op: PutOp): Buffer {
    return Buffer.from(packedValueOf(this.packr, op))
  }

  /**
   * Writes `hlc` in place into `payload`, a copy of what `encode` made of a
   * record stamped HLC_SIZING, so that the bytes are those `encode` makes of
   * the record stamped `hlc`, without encoding the value again. False when it
   * cannot: an hlc that fits 32 bits (a clock near the epoch, as in tests)
   * is written shorter than a float64; the caller encodes again then.
   */
  restamp(payload: Uint8Array, hlc: number): boolean {
    // msgpackr writes an integer that fits 32 bits as an int, any larger one as a float64 (0xcb, 8 bytes), as it wrote HLC_SIZING.
    if (!Number.isSafeInteger(hlc) || hlc <= 0xffffffff) return false
    const at = arrayHeaderBytes(payload[0])
    if (at === undefined || (payload[at] !== V2 && payload[at] !== V3) || payload[at + 1] !== MSGPACK_FLOAT64 || payload.length < at + 10) return false
    new DataView(payload.buffer, payload.byteOffset + at + 2, 8).setFloat64(0, hlc)
    return true
  }

  /** Encodes an already-built wire array (encodeVersion1's). */
  encodeWire(wire: unknown): Uint8Array {
    return this.packr.encode(wire)
  }

  /**
   * A private copy of a decoded put (its value through the value codec, its
   * tags array): what a reader gets of one op of a shared decoded record,
   * at the cost of that op, not of the record (a batch may hold thousands).
   */
  copyPut(op: PutOp): PutOp {
    // Built field by field: a spread would carry `packed` (a view of the shared payload) into the reader's copy.
    return {
      type: 'put',
      key: op.key,
      value: this.unpack(packedValueOf(this.packr, op)),
      ...(op.namespace !== undefined ? { namespace: op.namespace } : {}),
      ...(op.tags !== undefined ? { tags: [...op.tags] } : {}),
      ...(op.expiresAt !== undefined ? { expiresAt: op.expiresAt } : {}),
      ...(op.legacy !== undefined ? { legacy: op.legacy } : {}),
    }
  }

  /**
   * Decodes a payload whose checksum verified; a malformed one is a typed
   * error. Values are decoded at once and hold nothing of `payload` but what
   * msgpackr shares with its source (bin inside a value): what a caller that
   * keeps records (fsck's latest versions, a watch) needs.
   */
  decode(type: RecordType, payload: Uint8Array): WalRecord {
    return fromWire(type, this.wire(payload), this.unpack, false)
  }

  /**
   * Decodes a payload as the appliers take it: a version-3 put carries its
   * value's bytes as logged (`packed`, a view into `payload`) beside the
   * value, so that a sink stores and sizes them as they are. For payloads
   * that outlive the record (the pending log's slabs).
   */
  decodeForApply(type: RecordType, payload: Uint8Array): WalRecord {
    return fromWire(type, this.wire(payload), this.unpack, true)
  }

  /**
   * Decodes a payload for a reader that keeps what a record says of its keys
   * but not their values (fsck's latest versions keep a hash of the value's
   * bytes): a version-3 put carries its value's bytes as logged (`packed`, a
   * view into `payload`) and its value undecoded (undefined), which spares
   * decoding it; a version-1 or 2 put carries its value decoded (those
   * records hold it inline) and no `packed`.
   */
  decodeLabels(type: RecordType, payload: Uint8Array): WalRecord {
    return fromWire(type, this.wire(payload), undecoded, true)
  }

  private wire(payload: Uint8Array): unknown {
    try {
      return this.packr.decode(payload)
    } catch (cause) {
      throw new MemwalError('WAL_INVALID_RECORD', 'payload is not valid msgpack', { cause })
    }
  }

  private readonly unpack = (bin: Uint8Array): unknown => {
    try {
      return this.packr.unpack(bin)
    } catch (cause) {
      throw new MemwalError('WAL_INVALID_RECORD', 'a value is not valid msgpack', { cause })
    }
  }
}


/**
 * Refuses keys, namespaces and tags that would not read back: not a string
 * (decode would refuse the record), or not well-formed UTF-16 (a lone
 * surrogate, as in a string cut in the middle of an emoji: UTF-8 cannot hold
 * it, it reads back as U+FFFD). Values are checked by toWireValue, as they are
 * encoded.
 */
function checkLabels(r: WalRecord): void {
  // Anything but a number in the trailing slot would be dropped (PUT, DELETE) or misread as an operation (BATCH).
  if (r.hlc !== undefined && (!Number.isFinite(r.hlc) || Object.is(r.hlc, -0))) throw invalid('hlc is not a finite number (or is -0, which reads back as 0)')
  const ops: readonly Op[] = r.type === RecordType.BATCH ? r.ops : [r.op]
  if (!Array.isArray(ops)) throw invalid('batch operations are not an array')
  for (const op of ops) {
    storableString(op.key, 'key')
    if (op.namespace !== undefined) storableString(op.namespace, 'namespace')
    if (op.type === 'del') {
      if (op.legacy === true) throw invalid('a version-1 delete cannot be written again (it names no namespace)')
      continue
    }
    if (op.type !== 'put') throw invalid('operation type is neither put nor del')
    if (op.expiresAt !== undefined && !Number.isSafeInteger(op.expiresAt)) throw invalid('expiresAt is not an integer (ms since the epoch)')
    if (op.tags !== undefined) {
      if (!Array.isArray(op.tags)) throw invalid('tags are not an array')
      for (const tag of op.tags) storableString(tag, 'tag')
    }
  }
}

function storableString(s: unknown, what: string): void {
  if (typeof s !== 'string') throw invalid(`${what} is not a string`)
  if (!s.isWellFormed()) throw invalid(`${what} is not well-formed UTF-16 (lone surrogate)`)
}

const V2 = 2
const V3 = 3

/** decodeLabels' stand-in for a version-3 value's decode. */
const undecoded = (): undefined => undefined

/** A version-3 record as msgpackr writes it; `bin` gives each put's value as its bytes (a Buffer: msgpackr writes it as bin). */
function toWire(r: WalRecord, bin: (op: PutOp) => Buffer): unknown {
  const head = [V3, r.hlc ?? null]
  const put = (op: PutOp): unknown[] => [op.namespace ?? DEFAULT_NAMESPACE, op.key, bin(op), op.tags ?? null, op.expiresAt ?? null]
  switch (r.type) {
    case RecordType.PUT:
      return [...head, ...put(r.op)]
    case RecordType.DELETE:
      return [...head, r.op.namespace ?? DEFAULT_NAMESPACE, r.op.key]
    case RecordType.BATCH:
      return [...head, ...r.ops.map((op) => (op.type === 'put' ? [1, ...put(op)] : [2, op.namespace ?? DEFAULT_NAMESPACE, op.key]))]
  }
}

/**
 * The version-1 encoding, kept only to make version-1 logs in tests and
 * fixtures (the golden segment of fixtures/format-v1, layout migrations):
 * memwal itself writes version 2.
 */
export function encodeVersion1(codec: RecordCodec, r: WalRecord): Uint8Array {
  const v1 = (op: Op): unknown[] => (op.type === 'put' ? [op.key, toWireValue(op.value), op.namespace ?? null, op.tags ?? null] : [op.key])
  const wire: unknown[] = r.type === RecordType.BATCH ? r.ops.map((op) => [op.type === 'put' ? 1 : 2, ...v1(op)]) : v1(r.op)
  if (r.hlc !== undefined) wire.push(r.hlc)
  return codec.encodeWire(wire)
}

function fromWire(type: RecordType, wire: unknown, unpack: (bin: Uint8Array) => unknown, keepPacked: boolean): WalRecord {
  if (!Array.isArray(wire)) throw invalid('payload is not an array')
  if (wire[0] === V3) return fromWireV2(type, wire, unpack, keepPacked)
  return wire[0] === V2 ? fromWireV2(type, wire, undefined, false) : fromWireV1(type, wire)
}

/** Versions 2 and 3: the same fields; a version-3 value is its bytes, decoded with `unpack` (version 2: undefined, inline). */
function fromWireV2(type: RecordType, wire: unknown[], unpack: ((bin: Uint8Array) => unknown) | undefined, keepPacked: boolean): WalRecord {
  const h: unknown = wire[1]
  if (h !== null && typeof h !== 'number') throw invalid('hlc is not a number')
  const hlc = typeof h === 'number' ? { hlc: h } : {}
  switch (type) {
    case RecordType.PUT:
      return { type, op: putFromV2(wire, 2, unpack, keepPacked), ...hlc }
    case RecordType.DELETE:
      return { type, op: { type: 'del', namespace: labelFrom(wire[2], 'namespace'), key: keyFrom(wire[3]) }, ...hlc }
    case RecordType.BATCH:
      return {
        type,
        ...hlc,
        ops: wire.slice(2).map((w: unknown): Op => {
          if (!Array.isArray(w)) throw invalid('batch entry is not an array')
          if (w[0] === 1) return putFromV2(w, 1, unpack, keepPacked)
          if (w[0] === 2) return { type: 'del', namespace: labelFrom(w[1], 'namespace'), key: keyFrom(w[2]) }
          throw invalid('batch entry has an unknown type')
        }),
      }
  }
}

/**
 * A put of version 2 or 3. Built as one literal: spreading objects of
 * varying shape into it cost about 1.8 us a put (measured), more than the
 * rest of the record's decode.
 */
function putFromV2(w: unknown[], at: number, unpack: ((bin: Uint8Array) => unknown) | undefined, keepPacked: boolean): PutOp {
  const tags: unknown = w[at + 3]
  const expiresAt: unknown = w[at + 4]
  if (tags !== null && tags !== undefined && !(Array.isArray(tags) && tags.every((t) => typeof t === 'string'))) throw invalid('tags are not strings')
  if (expiresAt !== null && expiresAt !== undefined && typeof expiresAt !== 'number') throw invalid('expiresAt is not a number')
  const raw: unknown = w[at + 2]
  if (unpack !== undefined && !(raw instanceof Uint8Array)) throw invalid('a version-3 value is not bytes')
  return {
    type: 'put',
    namespace: labelFrom(w[at], 'namespace'),
    key: keyFrom(w[at + 1]),
    value: unpack === undefined ? raw : unpack(raw as Uint8Array),
    ...(Array.isArray(tags) ? { tags: tags as string[] } : {}),
    ...(typeof expiresAt === 'number' ? { expiresAt } : {}),
    ...(keepPacked ? { packed: raw as Uint8Array } : {}),
  }
}

function fromWireV1(type: RecordType, wire: unknown[]): WalRecord {
  const trailing: unknown = wire[type === RecordType.PUT ? 4 : type === RecordType.DELETE ? 1 : wire.length - 1]
  const hlc = typeof trailing === 'number' ? { hlc: trailing } : {}
  switch (type) {
    case RecordType.PUT:
      return { type, op: putFromV1(wire, 0), ...hlc }
    case RecordType.DELETE:
      return { type, op: { type: 'del', key: keyFrom(wire[0]), legacy: true }, ...hlc }
    case RecordType.BATCH:
      return {
        type,
        ...hlc,
        ops: (typeof trailing === 'number' ? wire.slice(0, -1) : wire).map((w: unknown): Op => {
          if (!Array.isArray(w)) throw invalid('batch entry is not an array')
          if (w[0] === 1) return putFromV1(w, 1)
          if (w[0] === 2) return { type: 'del', key: keyFrom(w[1]), legacy: true }
          throw invalid('batch entry has an unknown type')
        }),
      }
  }
}

function putFromV1(w: unknown[], at: number): PutOp {
  const ns: unknown = w[at + 2]
  const tags: unknown = w[at + 3]
  if (ns !== null && ns !== undefined && typeof ns !== 'string') throw invalid('namespace is not a string')
  if (tags !== null && tags !== undefined && !(Array.isArray(tags) && tags.every((t) => typeof t === 'string'))) throw invalid('tags are not strings')
  return {
    type: 'put',
    key: keyFrom(w[at]),
    value: w[at + 1],
    namespace: typeof ns === 'string' ? ns : DEFAULT_NAMESPACE,
    ...(Array.isArray(tags) ? { tags: tags as string[] } : {}),
    legacy: true,
  }
}

function labelFrom(s: unknown, what: string): string {
  if (typeof s !== 'string') throw invalid(`${what} is not a string`)
  return s
}

function keyFrom(k: unknown): string {
  if (typeof k !== 'string') throw invalid('key is not a string')
  return k
}

function invalid(message: string): MemwalError {
  return new MemwalError('WAL_INVALID_RECORD', message)
}
