import type { Packr } from 'msgpackr'
import { splitIdentity } from '../format/identity.js'
import { msgpackEnd } from '../format/msgpack-scan.js'
import { toWireValue } from '../format/value-codec.js'
import { assert } from '../assert.js'
import type { EntryMeta, StoredEntry } from './sink.js'

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
 * without decoding anything (rowBounds, export).
 */

/** A row's fields, in order. */
export type RowFields = readonly [value: unknown, tags: string[] | null, lsn: number, createdAt: number, updatedAt: number, expiresAt: number | null]

/** What a row holds besides the value. */
export type RowMeta = EntryMeta

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
 * Where a row's fields lie, as offsets into it: the value from 1 (after the
 * array's header) to valueEnd, the tags from there to tagsEnd (nil when
 * they are none), then lsn, createdAt and updatedAt, and expiresAt from
 * expiresAtStart to the row's end (nil when it has none). An export writes
 * the value's and the tags' bytes as they are: they are the value codec's
 * bytes, as the log held them.
 */
export interface RowBounds {
  readonly valueEnd: number
  readonly tagsEnd: number
  readonly expiresAtStart: number
}

/** A row's fields' bounds, found from their msgpack headers (nothing decoded: format/msgpack-scan.ts). */
export function rowBounds(row: Uint8Array): RowBounds {
  assert(row[0] === MSGPACK_FIXARRAY_6, 'a backend row is a msgpack array of six')
  const valueEnd = msgpackEnd(row, 1)
  const tagsEnd = valueEnd < 0 ? -1 : msgpackEnd(row, valueEnd)
  let at = tagsEnd
  for (let field = 0; field < 3 && at >= 0; field++) at = msgpackEnd(row, at) // lsn, createdAt, updatedAt
  assert(at > 0 && msgpackEnd(row, at) === row.length, 'a backend row has six fields and nothing after them')
  return { valueEnd, tagsEnd, expiresAtStart: at }
}

/** A row as the entry it stores, `id` its key. */
export function decodeRow(packr: Packr, id: string, row: Uint8Array): StoredEntry {
  const [value, tags, lsn, createdAt, updatedAt, expiresAt] = rowFields(packr, row)
  return { value, ...splitIdentity(id), lsn, createdAt, updatedAt, ...(tags !== null ? { tags } : {}), ...(expiresAt !== null ? { expiresAt } : {}) }
}

/**
 * What a row holds besides the value, without decoding the value: its bytes
 * are skipped by their msgpack headers (format/msgpack-scan.ts) and only the
 * five fields after it decoded. The apply path's createdAt and the sweep's
 * judgement need no more; a value is most of a row.
 */
export function rowMeta(packr: Packr, row: Uint8Array): RowMeta {
  assert(row[0] === MSGPACK_FIXARRAY_6, 'a backend row is a msgpack array of six')
  const valueEnd = msgpackEnd(row, 1)
  assert(valueEnd > 0, 'a backend row\'s value is whole')
  const rest = packr.unpackMultiple(row.subarray(valueEnd)) as unknown[]
  assert(rest.length === ROW_FIELDS - 1, 'a backend row has six fields')
  const [tags, lsn, createdAt, updatedAt, expiresAt] = rest as [string[] | null, number, number, number, number | null]
  return { lsn, createdAt, updatedAt, ...(tags !== null ? { tags } : {}), ...(expiresAt !== null ? { expiresAt } : {}) }
}
