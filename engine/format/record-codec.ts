import { MemwalError } from '../errors.js'
import { RecordType } from './format.js'
import { createPackr, toWireValue } from './value-codec.js'

/**
 * The logical operations a frame carries, and their msgpack payloads.
 * Payloads are arrays, not maps, to stay small:
 *   PUT    [key, value, namespace | null, tags | null, hlc?]
 *   DELETE [key, hlc?]
 *   BATCH  [[1, key, value, namespace | null, tags | null] | [2, key], ..., hlc?]
 * `hlc` (a hybrid logical clock timestamp: ms * 1000 + a counter, assigned by
 * the writer) is optional and trails the array, so records written without one
 * read the same. Backends shared by several writers order versions by it.
 * A value is encoded as value-codec.ts specifies (its header comment is the
 * value contract); the codec version is unchanged, since every record written
 * before the value tags existed decodes exactly as it did.
 */
export interface PutOp {
  readonly type: 'put'
  readonly key: string
  readonly value: unknown
  readonly namespace?: string
  readonly tags?: readonly string[]
}
export interface DeleteOp {
  readonly type: 'del'
  readonly key: string
}
export type Op = PutOp | DeleteOp

export type WalRecord = (
  | { readonly type: typeof RecordType.PUT; readonly op: PutOp }
  | { readonly type: typeof RecordType.DELETE; readonly op: DeleteOp }
  | { readonly type: typeof RecordType.BATCH; readonly ops: readonly Op[] }
) & { readonly hlc?: number }

export class RecordCodec {
  private readonly packr = createPackr()

  /**
   * Encodes a record. The result is a view into msgpackr's shared buffer, valid
   * only until the next encode: the WAL copies it into its group buffer at once.
   */
  encode(r: WalRecord): Uint8Array {
    checkLabels(r)
    return this.packr.encode(toWire(r))
  }

  /** Decodes a payload whose checksum verified; a malformed one is a typed error. */
  decode(type: RecordType, payload: Uint8Array): WalRecord {
    let wire: unknown
    try {
      wire = this.packr.decode(payload)
    } catch (cause) {
      throw new MemwalError('WAL_INVALID_RECORD', 'payload is not valid msgpack', { cause })
    }
    return fromWire(type, wire)
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
    if (op.type === 'del') continue
    if (op.type !== 'put') throw invalid('operation type is neither put nor del')
    if (op.namespace !== undefined) storableString(op.namespace, 'namespace')
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

function toWire(r: WalRecord): unknown {
  const wire = ((): unknown[] => {
    switch (r.type) {
      case RecordType.PUT:
        return [r.op.key, toWireValue(r.op.value), r.op.namespace ?? null, r.op.tags ?? null]
      case RecordType.DELETE:
        return [r.op.key]
      case RecordType.BATCH:
        return r.ops.map((op) => (op.type === 'put' ? [1, op.key, toWireValue(op.value), op.namespace ?? null, op.tags ?? null] : [2, op.key]))
    }
  })()
  if (r.hlc !== undefined) wire.push(r.hlc)
  return wire
}

function fromWire(type: RecordType, wire: unknown): WalRecord {
  if (!Array.isArray(wire)) throw invalid('payload is not an array')
  const trailing: unknown = wire[type === RecordType.PUT ? 4 : type === RecordType.DELETE ? 1 : wire.length - 1]
  const hlc = typeof trailing === 'number' ? { hlc: trailing } : {}
  switch (type) {
    case RecordType.PUT:
      return { type, op: putFrom(wire, 0), ...hlc }
    case RecordType.DELETE:
      return { type, op: { type: 'del', key: keyFrom(wire[0]) }, ...hlc }
    case RecordType.BATCH:
      return {
        type,
        ...hlc,
        ops: (typeof trailing === 'number' ? wire.slice(0, -1) : wire).map((w: unknown): Op => {
          if (!Array.isArray(w)) throw invalid('batch entry is not an array')
          if (w[0] === 1) return putFrom(w, 1)
          if (w[0] === 2) return { type: 'del', key: keyFrom(w[1]) }
          throw invalid('batch entry has an unknown type')
        }),
      }
  }
}

function putFrom(w: unknown[], at: number): PutOp {
  const ns: unknown = w[at + 2]
  const tags: unknown = w[at + 3]
  if (ns !== null && ns !== undefined && typeof ns !== 'string') throw invalid('namespace is not a string')
  if (tags !== null && tags !== undefined && !(Array.isArray(tags) && tags.every((t) => typeof t === 'string'))) throw invalid('tags are not strings')
  return {
    type: 'put',
    key: keyFrom(w[at]),
    value: w[at + 1],
    ...(typeof ns === 'string' ? { namespace: ns } : {}),
    ...(Array.isArray(tags) ? { tags: tags as string[] } : {}),
  }
}

function keyFrom(k: unknown): string {
  if (typeof k !== 'string') throw invalid('key is not a string')
  return k
}

function invalid(message: string): MemwalError {
  return new MemwalError('WAL_INVALID_RECORD', message)
}
