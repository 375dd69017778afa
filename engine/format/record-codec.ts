import { Packr } from 'msgpackr'
import { MemwalError } from '../errors.js'
import { RecordType } from './format.js'

/**
 * The logical operations a frame carries, and their msgpack payloads.
 * Payloads are arrays, not maps, to stay small:
 *   PUT    [key, value, namespace | null, tags | null, hlc?]
 *   DELETE [key, hlc?]
 *   BATCH  [[1, key, value, namespace | null, tags | null] | [2, key], ..., hlc?]
 * `hlc` (a hybrid logical clock timestamp: ms * 1000 + a counter, assigned by
 * the writer) is optional and trails the array, so records written without one
 * read the same. Backends shared by several writers order versions by it.
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
  // Records extension off: a fresh process must decode what an earlier one wrote.
  private readonly packr = new Packr({ useRecords: false, useToJSON: false, mapsAsObjects: true, moreTypes: false })

  /**
   * Encodes a record. The result is a view into msgpackr's shared buffer, valid
   * only until the next encode: the WAL copies it into its group buffer at once.
   */
  encode(r: WalRecord): Uint8Array {
    checkStorable(r)
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
 * Refuses what msgpack cannot carry exactly, rather than writing a record that
 * reads back different from what the caller holds (and serves from memory):
 * - an own `__proto__` key: msgpackr decodes it as `__proto_` (which a second
 *   key may then overwrite), to keep Object.prototype safe;
 * - a string that is not well-formed UTF-16 (a lone surrogate, as in a string
 *   cut in the middle of an emoji): UTF-8 cannot hold it, it reads back as U+FFFD;
 * - a circular value (msgpackr would overflow the stack);
 * - a key, namespace or tag that is not a string: decode would refuse the record.
 */
function checkStorable(r: WalRecord): void {
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
    storableValue(op.value, new Set())
  }
}

function storableString(s: unknown, what: string): void {
  if (typeof s !== 'string') throw invalid(`${what} is not a string`)
  if (!s.isWellFormed()) throw invalid(`${what} is not well-formed UTF-16 (lone surrogate)`)
}

function storableValue(v: unknown, path: Set<object>): void {
  if (typeof v === 'string') return storableString(v, 'a string in the value')
  // msgpackr would write a nested function as nil: the value would read back without it.
  if (typeof v === 'function') throw invalid('the value holds a function')
  if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v) || v instanceof Date) return
  if (path.has(v)) throw invalid('the value is circular')
  path.add(v)
  if (v instanceof Map) {
    for (const [k, x] of v) {
      if (k === '__proto__') throw invalid('the value has a __proto__ key')
      storableValue(k, path)
      storableValue(x, path)
    }
  } else if (Array.isArray(v) || v instanceof Set) {
    for (const x of v) storableValue(x, path)
  } else {
    for (const k of Object.keys(v)) {
      if (k === '__proto__') throw invalid('the value has a __proto__ key')
      storableString(k, 'a key in the value')
      storableValue((v as Record<string, unknown>)[k], path)
    }
  }
  path.delete(v)
}

function toWire(r: WalRecord): unknown {
  const wire = ((): unknown[] => {
    switch (r.type) {
      case RecordType.PUT:
        return [r.op.key, r.op.value, r.op.namespace ?? null, r.op.tags ?? null]
      case RecordType.DELETE:
        return [r.op.key]
      case RecordType.BATCH:
        return r.ops.map((op) => (op.type === 'put' ? [1, op.key, op.value, op.namespace ?? null, op.tags ?? null] : [2, op.key]))
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
