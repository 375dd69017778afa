/**
 * memwal on-disk format, version 2 (version 1 is still read, see below).
 * Pure functions: no I/O, no clock. All integers little-endian.
 *
 * Segment file `wal/<base LSN, 20 digits>.seg`. The file is preallocated to
 * the segment size and filled with zeros, so that appends overwrite blocks that
 * already exist and an O_DSYNC write costs no journal commit for the size.
 *
 * Segment header, 64 bytes:
 *   0   8  magic "MEMWALSG"
 *   8   2  format version (2; 1 for segments written before group markers)
 *  10   2  header length (64)
 *  12   4  salt: random per segment, seeds every frame header checksum, so a
 *          stale frame copied from another segment never verifies here
 *  16   8  base LSN: the LSN of the first frame in this segment
 *  24   8  created-at, ms since the epoch
 *  32   8  gap-from LSN: 0, or the first of the LSNs [gap-from, base - 1]
 *          that recovery dropped (point-in-time / skip-corrupt) and that no
 *          segment holds: the reader accepts exactly that gap before this segment
 *  40  20  reserved, zero
 *  60   4  xxh32 (seed 0) of bytes 0..59
 *
 * Frame, 32-byte header then payload, frames packed back to back from offset 64:
 *   0   4  frame magic 0x5246574d ("MWFR"): lets a salvage scan resynchronise
 *   4   4  header checksum: xxh32 of bytes 8..31, seeded with the segment salt
 *   8   8  LSN: previous + 1, contiguous across segments
 *  16   4  payload length: trusted only after the header checksum verified,
 *          and only if within the max record size and the bytes left
 *  20   1  type: 1 PUT, 2 DELETE, 3 BATCH; 4 GROUP (a group marker, version 2 only)
 *  21   1  flags (0)
 *  22   2  reserved, zero
 *  24   8  payload checksum: xxh64 (seed 0) of the payload
 *  32   n  payload: the operation(s), msgpack (see record-codec.ts)
 *
 * After the last frame the segment holds zeros to its end: a frame header of
 * 32 zero bytes marks the end of the log in that segment.
 *
 * Group markers (version 2). Every write call of the log's writer (one group
 * commit, or the part of one that fits in a segment) starts with a marker: a
 * frame of type 4 whose LSN is that of the record frame after it, with an
 * 8-byte payload:
 *   0   4  group bytes: the length of this write, marker included. Reserved
 *          for tools: no reader relies on it (a marker that `fsck --repair`
 *          writes over a damaged one states only the bytes known to be in its
 *          write, itself and the record frame after it)
 *   4   4  durable-from: the segment offset below which every byte was durable
 *          when this write was issued (the end of the last write known durable;
 *          64 for the first write of a segment)
 * A marker is not a record: it holds no operation and the cursor does not
 * return it. It tells recovery where unacknowledged bytes can begin: a write
 * that never completed (a power cut; the kernel may persist its sectors in any
 * order, a later one without an earlier one) lies wholly at or after the
 * largest durable-from of the segment's valid markers, so damage there, even
 * with valid frames after it, is a torn final group and is truncated, while
 * damage before it lies in bytes that were durable and stays a refusal.
 * A marker holds no record: a damaged one followed by a valid record frame
 * with the LSN that was due loses nothing, and is reported and read past
 * (segment-cursor.ts), unless it lies where a torn final write can be.
 * Version 1 segments have no markers and are read exactly as before.
 */
import { assert } from '../assert.js'
import type { Checksums } from './checksum.js'

/** The version new segments are written in. */
export const FORMAT_VERSION = 2
/**
 * Segments without group markers: still read; written by `fsck --repair` for
 * the verified frames it keeps in a segment of their own (salvage.ts: never
 * one write, so no marker), and by the dead-letter log. The writer never
 * appends to a new segment in this version.
 */
export const FORMAT_VERSION_UNMARKED = 1
export const SEGMENT_MAGIC = Buffer.from('MEMWALSG', 'latin1')
export const SEGMENT_HEADER_BYTES = 64
export const FRAME_HEADER_BYTES = 32
export const FRAME_MAGIC = 0x5246574d
/** The frame magic as it appears on disk, for resynchronising scans. */
export const FRAME_MAGIC_BYTES = Buffer.from([0x4d, 0x57, 0x46, 0x52])

/** Frame type of a group marker (version 2 segments). */
export const GROUP_MARKER_TYPE = 4
export const GROUP_MARKER_PAYLOAD_BYTES = 8
/** A marker frame: header and payload. */
export const GROUP_MARKER_BYTES = FRAME_HEADER_BYTES + GROUP_MARKER_PAYLOAD_BYTES

export const RecordType = { PUT: 1, DELETE: 2, BATCH: 3 } as const
export type RecordType = (typeof RecordType)[keyof typeof RecordType]

export function isRecordType(n: number): n is RecordType {
  return n === 1 || n === 2 || n === 3
}

export interface SegmentHeader {
  readonly version: number
  readonly salt: number
  readonly baseLsn: number
  readonly createdAtMs: number
  /** 0, or the first LSN of a gap that recovery declared before this segment. */
  readonly gapFromLsn: number
}

/**
 * Whether a segment's header declares the LSNs from `due` to its base - 1 as
 * a gap (gap-from above): the one test the scan, the reader and dump apply
 * where a segment starts after the LSN that was due.
 */
export function declaresGap(h: SegmentHeader, due: number): boolean {
  return h.gapFromLsn !== 0 && h.gapFromLsn <= due && h.baseLsn > due
}

export type HeaderDecode =
  | { readonly kind: 'header'; readonly header: SegmentHeader }
  | { readonly kind: 'corrupt'; readonly reason: string }
  | { readonly kind: 'unknown-version'; readonly version: number }

export function encodeSegmentHeader(h: SegmentHeader, sums: Checksums): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES)
  SEGMENT_MAGIC.copy(b, 0)
  b.writeUInt16LE(h.version, 8)
  b.writeUInt16LE(SEGMENT_HEADER_BYTES, 10)
  b.writeUInt32LE(h.salt >>> 0, 12)
  b.writeBigUInt64LE(BigInt(h.baseLsn), 16)
  b.writeBigUInt64LE(BigInt(h.createdAtMs), 24)
  b.writeBigUInt64LE(BigInt(h.gapFromLsn), 32)
  b.writeUInt32LE(sums.h32(b.subarray(0, 60), 0), 60)
  return b
}

export function decodeSegmentHeader(bytes: Uint8Array, sums: Checksums): HeaderDecode {
  if (bytes.length < SEGMENT_HEADER_BYTES) return { kind: 'corrupt', reason: `file shorter than the ${SEGMENT_HEADER_BYTES}-byte header` }
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, SEGMENT_HEADER_BYTES)
  if (!b.subarray(0, 8).equals(SEGMENT_MAGIC)) return { kind: 'corrupt', reason: 'bad segment magic' }
  if (b.readUInt32LE(60) !== sums.h32(b.subarray(0, 60), 0)) return { kind: 'corrupt', reason: 'segment header checksum mismatch' }
  const version = b.readUInt16LE(8)
  if (version !== FORMAT_VERSION && version !== FORMAT_VERSION_UNMARKED) return { kind: 'unknown-version', version }
  if (b.readUInt16LE(10) !== SEGMENT_HEADER_BYTES) return { kind: 'corrupt', reason: 'bad segment header length' }
  const baseLsn = readSafeU64(b, 16)
  const createdAtMs = readSafeU64(b, 24)
  const gapFromLsn = readSafeU64(b, 32)
  if (baseLsn === undefined || baseLsn < 1 || createdAtMs === undefined || gapFromLsn === undefined || gapFromLsn >= baseLsn) {
    return { kind: 'corrupt', reason: 'segment header field out of range' }
  }
  return { kind: 'header', header: { version, salt: b.readUInt32LE(12), baseLsn, createdAtMs, gapFromLsn } }
}

export interface FrameInput {
  readonly lsn: number
  readonly type: RecordType
  readonly payload: Uint8Array
}

export function frameBytes(payloadLength: number): number {
  return FRAME_HEADER_BYTES + payloadLength
}

/**
 * Writes a frame's body into `out` at `offset`: magic, length, type, payload
 * checksum and payload. The LSN and header checksum are left for `sealFrame`,
 * so the costly payload hash is taken when a record is appended, and the LSN
 * and salt are bound when its group goes out. Returns the offset after it.
 */
export function encodeFrameBodyInto(out: Buffer, offset: number, type: RecordType, payload: Uint8Array, sums: Checksums): number {
  out.writeUInt32LE(FRAME_MAGIC, offset)
  out.writeUInt32LE(payload.length, offset + 16)
  out[offset + 20] = type
  out[offset + 21] = 0
  out.writeUInt16LE(0, offset + 22)
  out.writeBigUInt64LE(sums.h64(payload), offset + 24)
  out.set(payload, offset + FRAME_HEADER_BYTES)
  return offset + FRAME_HEADER_BYTES + payload.length
}

/** Binds a frame body at `offset` to its LSN and to the salt of the segment it goes into. */
export function sealFrame(out: Buffer, offset: number, lsn: number, salt: number, sums: Checksums): void {
  writeLsn(out, offset + 8, lsn)
  out.writeUInt32LE(sums.h32of24(new DataView(out.buffer, out.byteOffset, out.byteLength), offset + 8, salt), offset + 4)
}

/** Writes one complete frame into `out` at `offset`; returns the offset after it. */
export function encodeFrameInto(out: Buffer, offset: number, f: FrameInput, salt: number, sums: Checksums): number {
  const end = encodeFrameBodyInto(out, offset, f.type, f.payload, sums)
  sealFrame(out, offset, f.lsn, salt, sums)
  return end
}

/**
 * An LSN as a u64 written as two u32 (no BigInt on the hot path). The writer
 * keeps LSNs below 2^53 (limits.lsnMax, asserted there), so the high word
 * never exceeds 2^21 - 1. (Tests craft LSN 0 on purpose: not checked here.)
 */
function writeLsn(out: Buffer, at: number, lsn: number): void {
  out.writeUInt32LE(lsn % 2 ** 32, at)
  out.writeUInt32LE(Math.floor(lsn / 2 ** 32), at + 4)
}

/**
 * Writes a group marker (see the header comment) at `offset` of `out`: `lsn`
 * is the LSN of the record frame after it, `groupBytes` the length of the
 * write it starts, `durableFrom` the offset below which the segment was durable.
 */
export function encodeGroupMarkerInto(out: Buffer, offset: number, m: GroupMarker, salt: number, sums: Checksums): number {
  assert(m.durableFrom >= SEGMENT_HEADER_BYTES && m.groupBytes > GROUP_MARKER_BYTES, 'a group marker describes a write after the segment header')
  out.writeUInt32LE(FRAME_MAGIC, offset)
  out.writeUInt32LE(GROUP_MARKER_PAYLOAD_BYTES, offset + 16)
  out[offset + 20] = GROUP_MARKER_TYPE
  out[offset + 21] = 0
  out.writeUInt16LE(0, offset + 22)
  out.writeUInt32LE(m.groupBytes, offset + FRAME_HEADER_BYTES)
  out.writeUInt32LE(m.durableFrom, offset + FRAME_HEADER_BYTES + 4)
  out.writeBigUInt64LE(sums.h64(out.subarray(offset + FRAME_HEADER_BYTES, offset + GROUP_MARKER_BYTES)), offset + 24)
  sealFrame(out, offset, m.lsn, salt, sums)
  return offset + GROUP_MARKER_BYTES
}

export interface GroupMarker {
  readonly lsn: number
  readonly groupBytes: number
  readonly durableFrom: number
}

export function encodeFrame(f: FrameInput, salt: number, sums: Checksums): Buffer {
  const out = Buffer.allocUnsafe(frameBytes(f.payload.length))
  encodeFrameInto(out, 0, f, salt, sums)
  return out
}

export interface DecodedFrame {
  readonly kind: 'frame'
  readonly lsn: number
  readonly type: RecordType
  readonly flags: number
  /** A view into the input: copy it if the input buffer is reused. */
  readonly payload: Uint8Array
  /** Offset of the byte after this frame. */
  readonly next: number
}

/** Why bytes at an offset are not a frame. */
export type FrameFault =
  /** Fewer bytes than a header or than the payload length claims: a write cut short, or a bad length. */
  | 'truncated'
  | 'bad-magic'
  | 'bad-header-checksum'
  | 'bad-payload-checksum'
  | 'bad-length'
  | 'bad-type'
  | 'bad-lsn'

/** A group marker that verified (version 2 segments). */
export interface DecodedMarker extends GroupMarker {
  readonly kind: 'group'
  readonly next: number
}

export type FrameDecode =
  | DecodedFrame
  | DecodedMarker
  /** 32 zero bytes (or only zeros left): no frame was ever written here. */
  | { readonly kind: 'end' }
  | { readonly kind: 'invalid'; readonly fault: FrameFault; readonly lsn?: number }

/**
 * Decodes the frame at `offset` of `bytes` (which ends where the segment's
 * data ends), read as version 1: a group marker is an invalid frame here. Never throws on hostile bytes, never reads past `bytes`, and
 * trusts the length only after the header checksum: a flipped length bit
 * cannot cause a huge read.
 */
export function decodeFrame(bytes: Uint8Array, offset: number, salt: number, recordBytesMax: number, sums: Checksums): RecordFrameDecode {
  const d = decodeFrameAt(frameView(bytes), offset, salt, recordBytesMax, sums)
  assert(d.kind !== 'group', 'a version 1 view has no group markers')
  return d
}

/** What a decode gives where group markers are not frames (version 1, and decodeFrame). */
export type RecordFrameDecode = Exclude<FrameDecode, DecodedMarker>

/** The bytes of a segment with a DataView over them: made once per segment, not per frame (the scan's hot path). */
export interface FrameView {
  readonly bytes: Uint8Array
  readonly dv: DataView
  /** Group markers are frames here (a version 2 segment); in version 1 a type-4 frame is invalid ('bad-type'). */
  readonly markers: boolean
}

export function frameView(bytes: Uint8Array, version: number = FORMAT_VERSION_UNMARKED): FrameView {
  return { bytes, dv: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), markers: version >= FORMAT_VERSION }
}

/**
 * decodeFrame over a prepared view. `verifyPayload` false skips the payload
 * checksum (the header's is still checked): only for a quick look such as
 * `memwal status`, never for data that is returned.
 */
export function decodeFrameAt(v: FrameView, offset: number, salt: number, recordBytesMax: number, sums: Checksums, verifyPayload = true): FrameDecode {
  const { bytes, dv } = v
  const left = bytes.length - offset
  if (left <= 0) return END
  if (left < FRAME_HEADER_BYTES) return allZero(bytes, offset, bytes.length) ? END : { kind: 'invalid', fault: 'truncated' }
  if (dv.getUint32(offset, true) !== FRAME_MAGIC) {
    return allZero(bytes, offset, offset + FRAME_HEADER_BYTES) ? END : { kind: 'invalid', fault: 'bad-magic' }
  }
  if (dv.getUint32(offset + 4, true) !== sums.h32of24(dv, offset + 8, salt)) {
    return { kind: 'invalid', fault: 'bad-header-checksum' }
  }
  const lsnHigh = dv.getUint32(offset + 12, true)
  const lsn = lsnHigh * 2 ** 32 + dv.getUint32(offset + 8, true)
  if (lsnHigh >= 2 ** 21 || lsn < 1) return { kind: 'invalid', fault: 'bad-lsn' }
  const length = dv.getUint32(offset + 16, true)
  const type = bytes[offset + 20] ?? 0
  if (type === GROUP_MARKER_TYPE && v.markers) return decodeMarkerAt(v, offset, lsn, length, sums)
  if (!isRecordType(type)) return { kind: 'invalid', fault: 'bad-type', lsn }
  if (length > recordBytesMax) return { kind: 'invalid', fault: 'bad-length', lsn }
  const end = offset + FRAME_HEADER_BYTES + length
  if (end > bytes.length) return { kind: 'invalid', fault: 'truncated', lsn }
  const payload = bytes.subarray(offset + FRAME_HEADER_BYTES, end)
  if (verifyPayload && dv.getBigUint64(offset + 24, true) !== sums.h64(payload)) return { kind: 'invalid', fault: 'bad-payload-checksum', lsn }
  return { kind: 'frame', lsn, type, flags: bytes[offset + 21] ?? 0, payload, next: end }
}

/** The rest of a marker whose header verified: its fixed length, its payload checksum, a durable-from inside the segment before it. */
function decodeMarkerAt(v: FrameView, offset: number, lsn: number, length: number, sums: Checksums): FrameDecode {
  if (length !== GROUP_MARKER_PAYLOAD_BYTES) return { kind: 'invalid', fault: 'bad-length', lsn }
  const end = offset + GROUP_MARKER_BYTES
  if (end > v.bytes.length) return { kind: 'invalid', fault: 'truncated', lsn }
  if (v.dv.getBigUint64(offset + 24, true) !== sums.h64(v.bytes.subarray(offset + FRAME_HEADER_BYTES, end))) return { kind: 'invalid', fault: 'bad-payload-checksum', lsn }
  const groupBytes = v.dv.getUint32(offset + FRAME_HEADER_BYTES, true)
  const durableFrom = v.dv.getUint32(offset + FRAME_HEADER_BYTES + 4, true)
  if (groupBytes <= GROUP_MARKER_BYTES || durableFrom < SEGMENT_HEADER_BYTES || durableFrom > offset) return { kind: 'invalid', fault: 'bad-length', lsn }
  return { kind: 'group', lsn, groupBytes, durableFrom, next: end }
}

const END: FrameDecode = Object.freeze({ kind: 'end' })

/** Offset of the next frame magic at or after `from`, or -1: where a salvage scan resumes. */
export function findNextMagic(bytes: Uint8Array, from: number): number {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).indexOf(FRAME_MAGIC_BYTES, from)
}

export function allZero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false
  return true
}

const ZEROS = Buffer.alloc(64 * 1024)

/** Offset just past the last non-zero byte in [from, bytes.length). Compares 64 KiB at a time: segments are mostly zeros. */
export function dataEnd(bytes: Uint8Array, from: number): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  let i = b.length
  while (i - from >= ZEROS.length && b.compare(ZEROS, 0, ZEROS.length, i - ZEROS.length, i) === 0) i -= ZEROS.length
  while (i > from && b[i - 1] === 0) i--
  return i
}

function readSafeU64(b: Buffer, offset: number): number | undefined {
  const v = b.readBigUInt64LE(offset)
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(v)
}
