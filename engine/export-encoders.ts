import type { Packr } from 'msgpackr'
import { assert } from './assert.js'
import type { Checksums } from './format/checksum.js'
import { ID_SEP, identityOf, splitIdentity } from './format/identity.js'
import { encodeStoredJsonValue } from './format/json-values.js'
import { MSGPACK_JSON_EXPANSION, MsgpackJson, putDecimal } from './format/msgpack-json.js'
import { putMsgpackString, putMsgpackUint } from './format/msgpack-write.js'
import { packValue } from './format/value-codec.js'
import { rowFields, type RowBounds } from './sinks/backend-row.js'

/**
 * The export stream's records as bytes (export.ts says the stream; README,
 * "Export and import", the format): the header and end records, and each
 * entry, in ndjson lines or msgpack frames, gathered into chunks. An entry
 * comes either as values (a pending put) or as a snapshot row's bytes,
 * which are written as they are where the format allows (msgpack: the
 * value's, tags' and expiresAt's bytes; ndjson: the value's JSON written
 * from its msgpack, format/msgpack-json.ts), and are the same bytes either way.
 */

/** What ends a checksummed ndjson line: `,"xxh32":"` 8 hex digits `"}` (the bytes before it are hashed). */
export const LINE_SUM_HEAD = Buffer.from(',"xxh32":"')
export const LINE_SUM_BYTES = LINE_SUM_HEAD.length + 8 + 2
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1')
/** The seed of an ndjson line's and a msgpack frame's xxh32 ('mwex'). */
export const EXPORT_SEED = 0x6d776578
/** A msgpack frame's [u32 length][u32 xxh32]. */
export const FRAME_HEADER_BYTES = 8
/** msgpack's nil. */
export const MSGPACK_NIL = 0xc0
/** A chunk's first room; it grows to a step's records (SNAPSHOT_STEP_ROWS of them, level-snapshot.ts). */
const CHUNK_BYTES_MIN = 64 * 1024

/** An entry to write: built as a literal of one shape (no object spreads, which cost per entry). */
export interface ExportEntry {
  readonly namespace: string
  readonly key: string
  readonly value: unknown
  /** The value codec's bytes of `value` as a backend snapshot gives them (PostgreSQL's rows, in msgpack): written as they are. */
  readonly valueBytes: Uint8Array | undefined
  readonly tags: readonly string[]
  readonly expiresAt: number | undefined
}

/** A snapshot row as an entry, decoded (what an encoder writes when it cannot take the row's bytes as they are). */
function decodedRow(packr: Packr, id: string, row: Uint8Array, expiresAt: number | undefined): ExportEntry {
  const [value, tags] = rowFields(packr, row)
  const { namespace, key } = splitIdentity(id)
  return { namespace, key, value, valueBytes: undefined, tags: tags ?? [], expiresAt }
}

/** Writes records into chunks: the export's two encodings. */
export interface RecordEncoder {
  /** The header or the end record, `n` its place. */
  record(chunk: Chunk, record: object, n: number): void
  /** An entry given as values (a pending put). */
  entry(chunk: Chunk, e: ExportEntry, n: number): void
  /** A snapshot row's entry (live: its expiresAt, decoded, is given), from the row's bytes where it can: the same bytes `entry` writes of it decoded. */
  row(chunk: Chunk, id: string, row: Uint8Array, b: RowBounds, expiresAt: number | undefined, n: number): void
}

/** How merged writes entries: each takes the next place in the stream. */
export interface EntryWriter {
  readonly entry: (e: ExportEntry) => void
  readonly row: (id: string, row: Uint8Array, b: RowBounds, expiresAt: number | undefined) => void
}

/**
 * The stream: the header as a chunk of its own (out before the snapshot is
 * read: an interrupted export has written it), one chunk per step of
 * entries, the end record. `out.entries` counts the entries handed out.
 */
export async function* encoded(header: object, encoder: RecordEncoder, out: { entries: number }, steps: (write: EntryWriter) => AsyncIterable<number>): AsyncGenerator<Buffer> {
  const chunk = new Chunk()
  encoder.record(chunk, header, 0)
  yield chunk.take()
  let n = 0
  const write: EntryWriter = {
    entry: (e) => encoder.entry(chunk, e, ++n),
    row: (id, row, b, expiresAt) => encoder.row(chunk, id, row, b, expiresAt, ++n),
  }
  for await (const written of steps(write)) {
    if (written === 0) continue // every row of the step expired, or had a pending write out of it
    out.entries = n
    yield chunk.take()
  }
  encoder.record(chunk, { memwal: 'end', entries: n }, n + 1)
  yield chunk.take()
}

/** Records gathered into one Buffer, grown as they come and handed out whole (a view: the next chunk is a new Buffer). */
class Chunk {
  private buf = Buffer.allocUnsafe(CHUNK_BYTES_MIN)
  private at = 0

  /** Room for `n` more bytes; returns where they go. */
  reserve(n: number): Buffer {
    if (this.at + n > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.at + n))
      this.buf.copy(grown, 0, 0, this.at)
      this.buf = grown
    }
    return this.buf
  }

  /** Where the next record goes: the bytes written so far. */
  get offset(): number {
    return this.at
  }

  advance(n: number): void {
    assert(this.at + n <= this.buf.length, 'a record written within the room reserved for it')
    this.at += n
  }

  take(): Buffer {
    const out = this.buf.subarray(0, this.at)
    // The next chunk starts as large as this one grew: a step's records fit without growing again.
    this.buf = Buffer.allocUnsafe(Math.max(CHUNK_BYTES_MIN, this.buf.length))
    this.at = 0
    return out
  }
}

/** Copies `bytes` into `buf` at `at`; returns the offset after them. */
function put(buf: Buffer, at: number, bytes: Uint8Array): number {
  return putRange(buf, at, bytes, 0, bytes.length)
}

/** A few bytes are copied one by one: cheaper than a call to set (field names, a row's tags). */
const COPY_BY_BYTE_MAX = 64

/** Copies `src[from, to)` into `buf` at `at` (no view made of a few bytes); returns the offset after them. */
function putRange(buf: Buffer, at: number, src: Uint8Array, from: number, to: number): number {
  if (to - from > COPY_BY_BYTE_MAX) {
    buf.set(new Uint8Array(src.buffer, src.byteOffset + from, to - from), at)
    return at + to - from
  }
  for (let i = from; i < to; i++) buf[at++] = src[i] as number
  return at
}

/** A number as JSON.stringify writes it, into `buf` at `at`; returns the offset after it. */
function putJsonNumber(buf: Buffer, at: number, v: number): number {
  if (Number.isSafeInteger(v) && v >= 0) return putDecimal(buf, at, v)
  return at + buf.write(JSON.stringify(v), at, 'latin1')
}

/** Bytes of a ndjson entry line around its value, tags, strings and numbers (its field names, braces, the numbers' digits), generously. */
const LINE_FRAME_BYTES = 128
/**
 * A value of more bytes is written through JSON.stringify (decoded), not
 * from its bytes: the room reserved for its JSON (MSGPACK_JSON_EXPANSION
 * times its bytes, held until the chunk is handed out) stays small.
 */
const JSON_FROM_BYTES_MAX = 64 * 1024
const NDJSON_NAMESPACE = Buffer.from('{"namespace":')
const NDJSON_KEY = Buffer.from(',"key":')
const NDJSON_VALUE = Buffer.from(',"value":')
const NDJSON_TAGS = Buffer.from(',"tags":')
const NDJSON_EXPIRES_AT = Buffer.from(',"expiresAt":')
const NDJSON_N = Buffer.from(',"n":')
const NDJSON_NO_TAGS = Buffer.from('[]')

/**
 * `s[from, to)` as JSON.stringify writes it, into `buf` at `at` (room: 6 bytes a
 * UTF-16 unit, and 2); returns the offset after it. Plain ASCII (most
 * labels) is copied a character a byte, in one pass; anything else (to
 * escape, or beyond ASCII) is JSON.stringify's.
 */
function putJsonString(buf: Buffer, at: number, s: string, from: number, to: number): number {
  let o = at + 1
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c >= 0x80 || c === 0x22 || c === 0x5c) return at + buf.write(JSON.stringify(s.slice(from, to)), at, 'utf8')
    buf[o++] = c
  }
  buf[at] = 0x22
  buf[o++] = 0x22
  return o
}

/**
 * ndjson: each record's JSON with its place last, then the checksum of
 * those bytes (without the closing brace) as its last field. A snapshot
 * row's line is written from its bytes (format/msgpack-json.ts) where its
 * value and tags are JSON as they are, else from them decoded.
 */
export function ndjsonEncoder(packr: Packr, sums: Checksums): RecordEncoder {
  const json = new MsgpackJson()
  /** Ends the line begun at `start`: the checksum of its bytes to `at`, the closing brace, the newline. */
  const sealLine = (chunk: Chunk, buf: Buffer, start: number, at: number): void => {
    const sum = sums.h32(buf.subarray(start, at), EXPORT_SEED)
    // `,"xxh32":"` the sum in 8 hex digits `"}` and the newline, byte by byte (no string made for them).
    at = put(buf, at, LINE_SUM_HEAD)
    for (let shift = 28; shift >= 0; shift -= 4) buf[at++] = HEX_DIGITS[(sum >>> shift) & 0xf] as number
    buf[at++] = 0x22
    buf[at++] = 0x7d
    buf[at++] = 0x0a
    chunk.advance(at - start)
  }
  const line = (chunk: Chunk, text: string): void => {
    // A UTF-16 unit is at most 3 bytes of UTF-8; the JSON's closing brace (1 byte) is written over.
    const buf = chunk.reserve(3 * text.length + LINE_SUM_BYTES + 1)
    const start = chunk.offset
    sealLine(chunk, buf, start, start + buf.write(text, start, 'utf8') - 1)
  }
  const entry = (chunk: Chunk, e: ExportEntry, n: number): void => {
    const value = encodeStoredJsonValue(e.value)
    line(chunk, JSON.stringify(e.expiresAt === undefined ? { namespace: e.namespace, key: e.key, value, tags: e.tags, n } : { namespace: e.namespace, key: e.key, value, tags: e.tags, expiresAt: e.expiresAt, n }))
  }
  /** The row's line from its bytes, as `entry` writes it decoded; false (nothing written) when its value or tags are not JSON as they are. */
  const rowLine = (chunk: Chunk, id: string, row: Uint8Array, b: RowBounds, expiresAt: number | undefined, n: number): boolean => {
    if (b.valueEnd - 1 > JSON_FROM_BYTES_MAX) return false
    const cut = identityCut(id)
    const buf = chunk.reserve(LINE_FRAME_BYTES + 6 * id.length + MSGPACK_JSON_EXPANSION * (b.tagsEnd - 1) + LINE_SUM_BYTES)
    const start = chunk.offset
    let at = put(buf, start, NDJSON_NAMESPACE)
    at = putJsonString(buf, at, id, 0, cut)
    at = put(buf, at, NDJSON_KEY)
    at = putJsonString(buf, at, id, cut + 1, id.length)
    at = put(buf, at, NDJSON_VALUE)
    at = json.write(row, 1, b.valueEnd, buf, at)
    if (at < 0) return false
    at = put(buf, at, NDJSON_TAGS)
    at = row[b.valueEnd] === MSGPACK_NIL ? put(buf, at, NDJSON_NO_TAGS) : json.write(row, b.valueEnd, b.tagsEnd, buf, at)
    if (at < 0) return false
    if (expiresAt !== undefined) at = putJsonNumber(buf, put(buf, at, NDJSON_EXPIRES_AT), expiresAt)
    at = putDecimal(buf, put(buf, at, NDJSON_N), n)
    sealLine(chunk, buf, start, at)
    return true
  }
  return {
    record: (chunk, record, n) => line(chunk, JSON.stringify({ ...record, n })),
    entry,
    row: (chunk, id, row, b, expiresAt, n) => {
      if (!rowLine(chunk, id, row, b, expiresAt, n)) entry(chunk, decodedRow(packr, id, row, expiresAt), n)
    },
  }
}

/** Where an entry's fields' msgpack bytes lie in one buffer: [start, end) each; tags and expiresAt -1 when none. */
interface FieldRanges {
  readonly value: number
  readonly valueEnd: number
  readonly tags: number
  readonly tagsEnd: number
  readonly expiresAt: number
  readonly expiresAtEnd: number
}

/** Where an identity's namespace ends (its key starts one after): as splitIdentity cuts it, without making the two strings. */
function identityCut(id: string): number {
  const cut = id.indexOf(ID_SEP)
  assert(cut >= 0, 'an identity holds a namespace separator')
  return cut
}

const NO_BYTES = new Uint8Array(0)
/** msgpack's header of an empty array (fixarray of 0): no tags. */
const MSGPACK_NO_TAGS = Uint8Array.of(0x90)
/** An entry's map keys, each a fixstr. */
const MSGPACK_NAMESPACE = fixstr('namespace')
const MSGPACK_KEY = fixstr('key')
const MSGPACK_TAGS = fixstr('tags')
const MSGPACK_EXPIRES_AT = fixstr('expiresAt')
const MSGPACK_N = fixstr('n')
const MSGPACK_VALUE = fixstr('value')
/** Bytes of an entry's frame beyond its strings' and fields' bytes (frame header, map header, keys, n), generously. */
const FRAME_FIXED_BYTES = 96

function fixstr(s: string): Uint8Array {
  assert(s.length < 32, 'a fixstr holds fewer than 32 bytes')
  return Buffer.concat([Uint8Array.of(0xa0 | s.length), Buffer.from(s, 'latin1')])
}

/**
 * msgpack: frames of [u32 length][u32 xxh32 of the payload][payload]. An
 * entry's payload is the map msgpackr packs of
 * `{ namespace, key, tags, expiresAt?, n, value }` (a map 16, as msgpackr
 * writes every object), written here field by field: a snapshot row's tags,
 * expiresAt and value are its bytes as they are (rowBounds), a pending
 * put's are packed. Nothing of a row is decoded but its expiresAt.
 */
export function msgpackEncoder(packr: Packr, sums: Checksums): RecordEncoder {
  const frame = (chunk: Chunk, payload: Uint8Array): void => {
    const buf = chunk.reserve(FRAME_HEADER_BYTES + payload.length)
    sealFrame(chunk, buf, chunk.offset, put(buf, chunk.offset + FRAME_HEADER_BYTES, payload))
  }
  /** Ends the frame begun at `start`, its payload written up to `at`: its length and checksum go in its header. */
  const sealFrame = (chunk: Chunk, buf: Buffer, start: number, at: number): void => {
    const payload = start + FRAME_HEADER_BYTES
    buf.writeUInt32BE(at - payload, start)
    buf.writeUInt32BE(sums.h32(buf.subarray(payload, at), EXPORT_SEED), start + 4)
    chunk.advance(at - start)
  }
  /**
   * An entry's frame: its identity `id` (namespace, then key after `cut`),
   * its tags, expiresAt (undefined: none) and value as their msgpack bytes,
   * each the range of `src` the offsets in `f` say.
   */
  const entryFrame = (chunk: Chunk, id: string, cut: number, src: Uint8Array, f: FieldRanges, n: number): void => {
    const buf = chunk.reserve(FRAME_FIXED_BYTES + 3 * id.length + f.tagsEnd - f.tags + (f.expiresAt < 0 ? 0 : f.expiresAtEnd - f.expiresAt) + f.valueEnd - f.value)
    const start = chunk.offset
    let at = start + FRAME_HEADER_BYTES
    buf[at++] = 0xde // map 16
    buf[at++] = 0
    buf[at++] = f.expiresAt < 0 ? 5 : 6
    at = putMsgpackString(buf, put(buf, at, MSGPACK_NAMESPACE), id, 0, cut)
    at = putMsgpackString(buf, put(buf, at, MSGPACK_KEY), id, cut + 1, id.length)
    at = put(buf, at, MSGPACK_TAGS)
    at = f.tags < 0 ? put(buf, at, MSGPACK_NO_TAGS) : putRange(buf, at, src, f.tags, f.tagsEnd)
    if (f.expiresAt >= 0) at = putRange(buf, put(buf, at, MSGPACK_EXPIRES_AT), src, f.expiresAt, f.expiresAtEnd)
    at = putMsgpackUint(buf, put(buf, at, MSGPACK_N), n)
    at = putRange(buf, put(buf, at, MSGPACK_VALUE), src, f.value, f.valueEnd)
    sealFrame(chunk, buf, start, at)
  }
  return {
    record: (chunk, record, n) => frame(chunk, packr.pack({ ...record, n })),
    entry: (chunk, e, n) => {
      // The fields packed one after the other (each pack reuses packr's buffer: copied out first).
      const value = e.valueBytes ?? packValue(packr, e.value).slice()
      const tags = e.tags.length === 0 ? undefined : packr.pack(e.tags).slice()
      const expiresAt = e.expiresAt === undefined ? undefined : packr.pack(e.expiresAt).slice()
      const src = Buffer.concat([value, tags ?? NO_BYTES, expiresAt ?? NO_BYTES])
      const tagsEnd = value.length + (tags?.length ?? 0)
      const f = { value: 0, valueEnd: value.length, tags: tags ? value.length : -1, tagsEnd, expiresAt: expiresAt ? tagsEnd : -1, expiresAtEnd: src.length }
      entryFrame(chunk, identityOf(e.namespace, e.key), e.namespace.length, src, f, n)
    },
    row: (chunk, id, row, b, expiresAt, n) => {
      const tagsNil = row[b.valueEnd] === MSGPACK_NIL
      const f = { value: 1, valueEnd: b.valueEnd, tags: tagsNil ? -1 : b.valueEnd, tagsEnd: b.tagsEnd, expiresAt: expiresAt === undefined ? -1 : b.expiresAtStart, expiresAtEnd: row.length }
      entryFrame(chunk, id, identityCut(id), row, f, n)
    },
  }
}
