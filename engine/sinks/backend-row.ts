import type { Packr } from 'msgpackr'
import { splitIdentity } from '../format/identity.js'
import { toWireValue } from '../format/value-codec.js'
import { assert } from '../assert.js'
import type { StoredEntry } from './sink.js'

/**
 * The LevelDB backend's row (store layout 2 and on), the one place that knows
 * it. A row is keyed by the entry's identity (namespace NUL key) and holds one
 * msgpack array of six:
 *
 *   [value, tags | null, lsn, createdAt, updatedAt, expiresAt | null]
 *
 * times in ms; the value as the value codec packs it (value-codec.ts). A
 * msgpack array is its header (fixarray: 0x90 | length, one byte for up to 15
 * elements) and then its elements one after the other, so the value's bytes
 * lie in the row as they are: a row can be spliced from a value already
 * packed (spliceRow, the apply path) and a value's bytes read out of a row
 * without decoding them again (rowFieldsAndValueBytes, export).
 */

/** A row's fields, in order. */
export type RowFields = readonly [value: unknown, tags: string[] | null, lsn: number, createdAt: number, updatedAt: number, expiresAt: number | null]

/** What a row holds besides the value. */
export type RowMeta = Omit<StoredEntry, 'namespace' | 'key' | 'value'>

const ROW_FIELDS = 6
/** msgpack's header of an array of six: every row starts with it. */
const MSGPACK_FIXARRAY_6 = 0x96
/** msgpack's header of an array of five: the fields after the value, encoded on their own. */
const MSGPACK_FIXARRAY_5 = 0x95

/** A row of an entry, its value encoded here. */
export function encodeRow(packr: Packr, e: Omit<StoredEntry, 'namespace' | 'key'>): Uint8Array {
  return packr.encode([toWireValue(e.value), e.tags ?? null, e.lsn, e.createdAt, e.updatedAt, e.expiresAt ?? null])
}

/**
 * The same row as encodeRow makes, byte for byte, of a value already packed
 * (as the log holds it: PutOp.packed): the header of six, the value's bytes,
 * and the other five fields' encoding without its own header. No value is
 * encoded again.
 */
export function spliceRow(packr: Packr, packedValue: Uint8Array, meta: RowMeta): Uint8Array {
  const rest = packr.encode([meta.tags ?? null, meta.lsn, meta.createdAt, meta.updatedAt, meta.expiresAt ?? null])
  assert(rest[0] === MSGPACK_FIXARRAY_5, 'five fields encode as a fixarray')
  const out = new Uint8Array(packedValue.length + rest.length)
  out[0] = MSGPACK_FIXARRAY_6
  out.set(packedValue, 1)
  out.set(rest.subarray(1), 1 + packedValue.length)
  return out
}

/** A row's fields, decoded. */
export function rowFields(packr: Packr, row: Uint8Array): RowFields {
  const fields = packr.decode(row) as RowFields
  assert(Array.isArray(fields) && fields.length === ROW_FIELDS, 'a backend row has six fields')
  return fields
}

/**
 * A row's fields and its value's msgpack bytes as they lie in the row (a
 * view): the bytes from after the header to where the tags begin. They are
 * the value codec's bytes of the value, as the log held them.
 */
export function rowFieldsAndValueBytes(packr: Packr, row: Uint8Array): { fields: RowFields; valueBytes: Uint8Array } {
  assert(row[0] === MSGPACK_FIXARRAY_6, 'a backend row is a msgpack array of six')
  const body = row.subarray(1)
  const fields: unknown[] = []
  let valueEnd = -1
  packr.unpackMultiple(body, (v: unknown, _start?: number, end?: number) => {
    if (fields.length === 0) valueEnd = end ?? -1
    fields.push(v)
  })
  assert(fields.length === ROW_FIELDS && valueEnd > 0, 'a backend row has six fields')
  return { fields: fields as unknown as RowFields, valueBytes: body.subarray(0, valueEnd) }
}

/** A row as the entry it stores, `id` its key. */
export function decodeRow(packr: Packr, id: string, row: Uint8Array): StoredEntry {
  const [value, tags, lsn, createdAt, updatedAt, expiresAt] = rowFields(packr, row)
  return { value, ...splitIdentity(id), lsn, createdAt, updatedAt, ...(tags !== null ? { tags } : {}), ...(expiresAt !== null ? { expiresAt } : {}) }
}
