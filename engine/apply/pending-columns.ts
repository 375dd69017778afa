import { assert } from '../assert.js'

/**
 * The identities of a record's ops: one string for a record of one op (the
 * common case, no array), an array for a batch; null for a gap or an op
 * without identity (a v1 delete).
 */
export type RecordKeys = string | readonly (string | null)[] | null

/** Records per chunk (2^CHUNK_SHIFT): a chunk is dropped whole once every record in it was trimmed. */
const CHUNK_SHIFT = 12
const CHUNK_RECORDS = 1 << CHUNK_SHIFT

/** One column per field, CHUNK_RECORDS rows: typed arrays where the field is a number. */
interface Chunk {
  readonly types: Uint8Array
  readonly offsets: Uint32Array
  readonly lengths: Uint32Array
  readonly ackedAtMs: Float64Array
  readonly updatedAt: Float64Array
  /** The earliest expiresAt of the record's puts; Infinity when none has one. */
  readonly expiresMin: Float64Array
  /** The ArrayBuffer (a slab, shared by many records) each payload lies in. */
  readonly buffers: (ArrayBufferLike | undefined)[]
  readonly keys: RecordKeys[]
}

const newChunk = (): Chunk => ({
  types: new Uint8Array(CHUNK_RECORDS),
  offsets: new Uint32Array(CHUNK_RECORDS),
  lengths: new Uint32Array(CHUNK_RECORDS),
  ackedAtMs: new Float64Array(CHUNK_RECORDS),
  updatedAt: new Float64Array(CHUNK_RECORDS),
  expiresMin: new Float64Array(CHUNK_RECORDS),
  buffers: [],
  keys: [],
})

/**
 * The pending log's records, oldest first, stored by column. An object per
 * record (with its payload view, its arrays of keys and flags, its boxed
 * numbers) cost about 650 bytes of heap beside a 358-byte payload, so a
 * backlog read back at open took several times its bytes; here a record
 * costs about 49 bytes beside its payload (which stays in a shared slab),
 * and its key string, shared with the overlay.
 */
export class PendingColumns {
  private chunks: Chunk[] = []
  /** Index in `chunks` of the chunk holding the oldest record. */
  private chunkHead = 0
  /** Position of the oldest record in chunks[chunkHead]. */
  private start = 0
  private count = 0

  get length(): number {
    return this.count
  }

  push(type: number, payload: Uint8Array, ackedAtMs: number, updatedAt: number, keys: RecordKeys, expiresMin = Infinity): void {
    assert(payload.byteOffset <= 0xffff_ffff && payload.length <= 0xffff_ffff, 'a payload lies within 4 GiB of its buffer start')
    const at = this.start + this.count
    let c = this.chunks[this.chunkHead + (at >>> CHUNK_SHIFT)]
    if (!c) {
      c = newChunk()
      this.chunks.push(c)
    }
    const i = at & (CHUNK_RECORDS - 1)
    c.types[i] = type
    c.offsets[i] = payload.byteOffset
    c.lengths[i] = payload.length
    c.ackedAtMs[i] = ackedAtMs
    c.updatedAt[i] = updatedAt
    c.expiresMin[i] = expiresMin
    c.buffers[i] = payload.buffer
    c.keys[i] = keys
    this.count++
  }

  type(n: number): number {
    return this.chunk(n).types[this.slot(n)] as number
  }

  /** The payload of the n-th record, a fresh view of its slab. */
  payload(n: number): Uint8Array {
    const c = this.chunk(n)
    const i = this.slot(n)
    const buffer = c.buffers[i]
    assert(buffer !== undefined, 'a held record has its payload')
    return new Uint8Array(buffer, c.offsets[i], c.lengths[i])
  }

  payloadBytes(n: number): number {
    return this.chunk(n).lengths[this.slot(n)] as number
  }

  ackedAtMs(n: number): number {
    return this.chunk(n).ackedAtMs[this.slot(n)] as number
  }

  updatedAt(n: number): number {
    return this.chunk(n).updatedAt[this.slot(n)] as number
  }

  expiresMin(n: number): number {
    return this.chunk(n).expiresMin[this.slot(n)] as number
  }

  keys(n: number): RecordKeys {
    return this.chunk(n).keys[this.slot(n)] as RecordKeys
  }

  /** Drops the oldest record (its slab is freed once no record points into it). */
  shift(): void {
    assert(this.count > 0, 'shift takes a held record')
    const c = this.chunks[this.chunkHead] as Chunk
    c.buffers[this.start] = undefined
    c.keys[this.start] = null
    this.count--
    if (++this.start < CHUNK_RECORDS) return
    this.chunks[this.chunkHead++] = undefined as unknown as Chunk
    this.start = 0
    if (this.chunkHead > 64 && this.chunkHead * 2 > this.chunks.length) {
      this.chunks.splice(0, this.chunkHead)
      this.chunkHead = 0
    }
  }

  private chunk(n: number): Chunk {
    assert(n >= 0 && n < this.count, 'a held record')
    return this.chunks[this.chunkHead + ((this.start + n) >>> CHUNK_SHIFT)] as Chunk
  }

  private slot(n: number): number {
    return (this.start + n) & (CHUNK_RECORDS - 1)
  }
}
