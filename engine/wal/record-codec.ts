import { Packr } from 'msgpackr'
import { MemwalError } from '../errors.js'
import { RecordType } from './format.js'

/**
 * The logical operations a frame carries, and their msgpack payloads.
 * Payloads are arrays, not maps, to stay small:
 *   PUT    [key, value, namespace | null, tags | null]
 *   DELETE [key]
 *   BATCH  [[1, key, value, namespace | null, tags | null] | [2, key], ...]
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

export type WalRecord =
  | { readonly type: typeof RecordType.PUT; readonly op: PutOp }
  | { readonly type: typeof RecordType.DELETE; readonly op: DeleteOp }
  | { readonly type: typeof RecordType.BATCH; readonly ops: readonly Op[] }

export class RecordCodec {
  // Records extension off: a fresh process must decode what an earlier one wrote.
  private readonly packr = new Packr({ useRecords: false, useToJSON: false, mapsAsObjects: true, moreTypes: false })

  /**
   * Encodes a record. The result is a view into msgpackr's shared buffer, valid
   * only until the next encode: the WAL copies it into its group buffer at once.
   */
  encode(r: WalRecord): Uint8Array {
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

function toWire(r: WalRecord): unknown {
  switch (r.type) {
    case RecordType.PUT:
      return [r.op.key, r.op.value, r.op.namespace ?? null, r.op.tags ?? null]
    case RecordType.DELETE:
      return [r.op.key]
    case RecordType.BATCH:
      return r.ops.map((op) => (op.type === 'put' ? [1, op.key, op.value, op.namespace ?? null, op.tags ?? null] : [2, op.key]))
  }
}

function fromWire(type: RecordType, wire: unknown): WalRecord {
  if (!Array.isArray(wire)) throw invalid('payload is not an array')
  switch (type) {
    case RecordType.PUT:
      return { type, op: putFrom(wire, 0) }
    case RecordType.DELETE:
      return { type, op: { type: 'del', key: keyFrom(wire[0]) } }
    case RecordType.BATCH:
      return {
        type,
        ops: wire.map((w: unknown): Op => {
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
