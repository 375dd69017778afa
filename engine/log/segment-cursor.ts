import type { Checksums } from '../format/checksum.js'
import type { FileSystem } from '../io/fs.js'
import { dataEnd, decodeFrameAt, decodeSegmentHeader, findNextMagic, frameView, type FrameView, GROUP_MARKER_BYTES, type HeaderDecode, SEGMENT_HEADER_BYTES, type FrameFault, type RecordType } from '../format/format.js'
import { listWal, readPrefix, type SegmentEntry, type WalListing } from './segment-list.js'

/**
 * The one way memwal walks its log: the reader, recovery's scan, `dump`,
 * `status` and the reconciler all go through this cursor, which differs for
 * them only in its mode and in which segments it reads.
 *
 * Modes, for the frames of a segment:
 * - `salvage`: every valid frame and every damaged region, in file order;
 *   after damage it resynchronises on the next frame magic that starts a frame
 *   verifying with this segment's salt (recovery, dump, a salvaging reader);
 * - `strict`: the same up to the first damaged region, which is yielded and
 *   ends the walk of the segment (a reader that refuses damage);
 * - `headers-only`: like salvage, but payload checksums are not checked, only
 *   the frame headers' (a quick look such as `memwal status`; never for data
 *   that is returned).
 */
export type CursorMode = 'salvage' | 'strict' | 'headers-only'

/** A frame that verified, in a segment's bytes. */
export interface ScannedFrame {
  readonly kind: 'frame'
  readonly lsn: number
  readonly type: RecordType
  readonly offset: number
  readonly next: number
  /** A view into the segment's bytes. */
  readonly payload: Uint8Array
}

/**
 * Bytes in [offset, end) that hold no valid frame. `resumed` tells whether a
 * valid frame follows in this segment (found by resynchronising on the frame
 * magic): a damaged region with nothing valid after it may be a torn write.
 */
export interface Damage {
  readonly kind: 'damage'
  readonly offset: number
  readonly end: number
  readonly fault: FrameFault | 'garbage-after-end'
  /** LSN the header named, when the header checksum verified. */
  readonly lsn?: number
  readonly resumed: boolean
}

/**
 * Version 2: a group marker's 40 bytes that fail their checks, with a valid
 * record frame right after them carrying the LSN that was due. A marker holds
 * no record and the frames after it carry their own checksums, so the walk
 * goes on (in every mode). Whether it is a marker damaged on disk (reported,
 * no record lost) or the first piece of a torn final write (whose frames were
 * never acknowledged) is for recovery's scan to tell, by the segment's
 * durable-from (log-scan.ts); its own durable-from is unknown and not counted.
 */
export interface DamagedMarker {
  readonly kind: 'damaged-marker'
  readonly offset: number
  readonly end: number
  readonly fault: FrameFault | 'garbage-after-end'
  /** The LSN of the record frame after it. */
  readonly lsn: number
  /** Offset after that record frame. */
  readonly frameEnd: number
}

export type ScanEvent = ScannedFrame | Damage | DamagedMarker

/** Where a segment's frames end: after the last valid one, and after the last non-zero byte. */
export interface FramesEnd {
  readonly validEnd: number
  readonly dataEnd: number
  /**
   * Version 2: the largest durable-from of the segment's valid group markers
   * (the segment header's end if none verified): bytes from here on were not
   * known durable when the last write the segment shows was issued, so damage
   * from here on is a torn final group (format.ts). Undefined for version 1.
   */
  readonly tornFrom?: number
}

export interface SegmentScanInput {
  readonly bytes: Uint8Array
  readonly salt: number
  readonly recordBytesMax: number
  readonly sums: Checksums
  /** Default `salvage`. */
  readonly mode?: CursorMode
  /** The segment's format version (default 1: no group markers). */
  readonly version?: number
  /** The segment's base LSN: the LSN due after a damaged first marker (without it, that damage is damage). */
  readonly baseLsn?: number
  /**
   * Where the walk starts (default just after the header): a frame boundary
   * an earlier walk reached, with `startLsn` the LSN due there; the bytes
   * before it need not be read.
   */
  readonly startAt?: number
  readonly startLsn?: number
}

/**
 * Walks the frames of one segment from just after its header, per `mode`.
 * Always terminates: every step moves forward. LSN continuity is the
 * caller's to check.
 */
export function* scanFrames(s: SegmentScanInput): Generator<ScanEvent, FramesEnd> {
  const mode = s.mode ?? 'salvage'
  const verifyPayloads = mode !== 'headers-only'
  const end = dataEnd(s.bytes, SEGMENT_HEADER_BYTES)
  // The view spans the whole segment: a frame that starts before the end of
  // the data may end in zero bytes past it.
  const view = frameView(s.bytes, s.version)
  let at = s.startAt ?? SEGMENT_HEADER_BYTES
  let validEnd = at
  let tornFrom = at
  // The LSN the next record frame should carry, when known: what tells a damaged marker from a lost record.
  let due = s.startAt !== undefined ? s.startLsn : s.baseLsn
  while (at < end) {
    const d = decodeFrameAt(view, at, s.salt, s.recordBytesMax, s.sums, verifyPayloads)
    if (d.kind === 'group') {
      // Not a record: it only tells where unacknowledged bytes may begin. validEnd stays before it, so a
      // marker whose frames never landed is overwritten by the next write.
      tornFrom = Math.max(tornFrom, d.durableFrom)
      at = d.next
      continue
    }
    if (d.kind === 'frame') {
      yield { kind: 'frame', lsn: d.lsn, type: d.type, offset: at, next: d.next, payload: d.payload }
      at = d.next
      validEnd = at
      due = d.lsn + 1
      continue
    }
    const fault = d.kind === 'end' ? 'garbage-after-end' : d.fault
    const resume = resync(view, s, at + 1, end)
    const after = view.markers && resume === at + GROUP_MARKER_BYTES && due !== undefined ? decodeFrameAt(view, resume, s.salt, s.recordBytesMax, s.sums, verifyPayloads) : undefined
    if (after?.kind === 'frame' && after.lsn === due) {
      yield { kind: 'damaged-marker', offset: at, end: resume as number, fault, lsn: due, frameEnd: after.next }
      at = resume as number
      continue
    }
    yield {
      kind: 'damage',
      offset: at,
      end: resume ?? end,
      fault,
      ...(d.kind === 'invalid' && d.lsn !== undefined ? { lsn: d.lsn } : {}),
      resumed: resume !== undefined,
    }
    if (resume === undefined || mode === 'strict') break
    at = resume
  }
  return { validEnd, dataEnd: end, ...(view.markers ? { tornFrom } : {}) }
}

function resync(view: FrameView, s: SegmentScanInput, from: number, end: number): number | undefined {
  let q = findNextMagic(view.bytes, from)
  while (q !== -1 && q < end) {
    const kind = decodeFrameAt(view, q, s.salt, s.recordBytesMax, s.sums).kind
    if (kind === 'frame' || kind === 'group') return q
    q = findNextMagic(view.bytes, q + 1)
  }
  return undefined
}

/** Which segments of a log the cursor visits, and how much of each it reads. */
export interface LogCursorOptions {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
  readonly recordBytesMax: number
  /** Start at the segment holding this LSN (default: the first segment). */
  readonly fromLsn?: number
  /** Segments before the one holding this LSN are visited with their header only (a prefix read), not their frames. */
  readonly framesFromLsn?: number
  /** Stop before the first segment whose base LSN is above this. */
  readonly toLsn?: number
  /** Only the last segment (`memwal status`). */
  readonly lastOnly?: boolean
  /** Bytes read, per segment: for progress. */
  readonly onProgress?: (bytes: number) => void
  /** The listing, when the caller has it already. */
  readonly listing?: WalListing
  /**
   * A place an earlier walk reached (the frame boundary where `lsn` is due,
   * in segment `segment`): when the first segment visited is that one, only
   * its header and the bytes from `offset` on are read, and its frames are
   * walked from there (a watch reading the log a chunk at a time).
   */
  readonly resumeAt?: ResumePoint
  /**
   * Read the next segment while the caller walks this one, when both are read
   * whole: the read (a page fault per 4 KiB of the fresh buffer, on this
   * kind of VM the larger part of reading) overlaps the walk on another core.
   * Only where nothing writes the log meanwhile (recovery at open): a
   * segment read early could miss what a writer appends to it.
   */
  readonly readAhead?: boolean
  /**
   * Read every segment into one buffer, reused (grown to the largest
   * segment): a segment's bytes, and the views of its frames, are valid only
   * until the next segment is asked for. For a walk that keeps nothing of
   * them (the verifying scan): fresh memory for each segment cost more than
   * reading it (first touch of its pages: 1.5 s of a 400 MB scan here,
   * against 0.1 s reading into memory already touched). It excludes
   * `readAhead`, which needs a second buffer.
   */
  readonly reuseBuffer?: boolean
}

/** Where a walk of the log left off: record `lsn` (or a group marker before it) starts at `offset` of segment `segment`. */
export interface ResumePoint {
  readonly lsn: number
  readonly segment: string
  readonly offset: number
}

/** One segment as the cursor read it: its header decoded once, its frames walked on demand. */
export interface CursorSegment {
  readonly entry: SegmentEntry
  /** Index of the segment in the listing. */
  readonly index: number
  /** The whole file, or only its header when `framesRead` is false. */
  readonly bytes: Uint8Array
  /** File size: the capacity an append may use. */
  readonly size: number
  readonly header: HeaderDecode
  /** False: only the header was read (the segment lies before `framesFromLsn`). */
  readonly framesRead: boolean
  /** Read from a resume point: the bytes before it (past the header) are zeros, and the frames are walked from it. */
  readonly resumed?: ResumePoint
}

/** The segments of a log in LSN order, each read once; walk a segment's frames with `framesOf`. */
export async function* segmentsOf(o: LogCursorOptions): AsyncGenerator<CursorSegment> {
  const { segments } = o.listing ?? (await listWal(o.fs, o.walDir))
  const first = o.lastOnly ? segments.length - 1 : holding(segments, o.fromLsn ?? 0)
  const firstFull = holding(segments, o.framesFromLsn ?? 0)
  // The next segment's whole read, started before this one is walked (readAhead); its error surfaces when the walk reaches it.
  let ahead: { readonly index: number; readonly bytes: Promise<Uint8Array> } | undefined
  const reused = o.reuseBuffer ? { bytes: new Uint8Array(0) } : undefined
  for (let i = Math.max(0, first); i < segments.length; i++) {
    const entry = segments[i] as SegmentEntry
    if (o.toLsn !== undefined && entry.baseLsn > o.toLsn) return
    const framesRead = i >= firstFull
    const resumed = framesRead && i === first && o.resumeAt !== undefined && o.resumeAt.segment === entry.name && o.resumeAt.offset >= SEGMENT_HEADER_BYTES ? o.resumeAt : undefined
    const whole = (): Promise<Uint8Array> => (ahead?.index === i ? ahead.bytes : o.fs.readFile(entry.path))
    const bytes = resumed ? await readFromResume(o.fs, entry.path, resumed.offset) : !framesRead ? await readPrefix(o.fs, entry.path, SEGMENT_HEADER_BYTES) : reused ? await readReusing(o.fs, entry.path, reused) : await whole()
    const next = segments[i + 1]
    ahead = o.readAhead === true && reused === undefined && framesRead && next !== undefined && !(o.toLsn !== undefined && next.baseLsn > o.toLsn) ? { index: i + 1, bytes: o.fs.readFile(next.path) } : undefined
    // Handled when awaited; a walk that stops before it must not leave an unhandled rejection.
    ahead?.bytes.catch(() => undefined)
    o.onProgress?.(bytes.length)
    const size = framesRead ? bytes.length : ((await o.fs.stat(entry.path))?.size ?? 0)
    yield { entry, index: i, bytes, size, header: decodeSegmentHeader(bytes, o.sums), framesRead, ...(resumed ? { resumed } : {}) }
  }
}

/** The frames of a segment the cursor read whole; none when its header is bad or only the header was read. */
export function framesOf(seg: CursorSegment, o: { readonly sums: Checksums; readonly recordBytesMax: number }, mode: CursorMode): Generator<ScanEvent, FramesEnd> {
  if (seg.header.kind !== 'header' || !seg.framesRead) return noFrames(seg.bytes.length)
  const h = seg.header.header
  const from = seg.resumed ? { startAt: seg.resumed.offset, startLsn: seg.resumed.lsn } : {}
  return scanFrames({ bytes: seg.bytes, salt: h.salt, recordBytesMax: o.recordBytesMax, sums: o.sums, mode, version: h.version, baseLsn: h.baseLsn, ...from })
}

/**
 * A segment as its full size with only its header and the bytes from
 * `offset` on read, zeros between (offsets stay the segment's own; the zeros
 * are never walked).
 */
async function readFromResume(fs: FileSystem, file: string, offset: number): Promise<Uint8Array> {
  const handle = await fs.open(file, 'read')
  try {
    const size = await handle.size()
    const bytes = Buffer.alloc(Math.max(size, SEGMENT_HEADER_BYTES))
    const fill = async (from: number, to: number): Promise<void> => {
      for (let at = from; at < to; ) {
        const got = await handle.read(bytes, at, to - at, at)
        if (got === 0) return
        at += got
      }
    }
    await fill(0, Math.min(SEGMENT_HEADER_BYTES, size))
    await fill(Math.min(offset, size), size)
    return bytes.subarray(0, size)
  } finally {
    await handle.close()
  }
}

/** A whole file, read into `reused.bytes` (replaced by a larger buffer when it does not fit): a view of its size. */
async function readReusing(fs: FileSystem, file: string, reused: { bytes: Uint8Array }): Promise<Uint8Array> {
  const handle = await fs.open(file, 'read')
  try {
    const size = await handle.size()
    if (reused.bytes.length < size) reused.bytes = Buffer.allocUnsafeSlow(size)
    let at = 0
    while (at < size) {
      const got = await handle.read(reused.bytes, at, size - at, at)
      if (got === 0) break
      at += got
    }
    return reused.bytes.subarray(0, at)
  } finally {
    await handle.close()
  }
}

function* noFrames(size: number): Generator<ScanEvent, FramesEnd> {
  return { validEnd: SEGMENT_HEADER_BYTES, dataEnd: size }
}

/** Index of the last segment whose base LSN is at or below `lsn` (the one holding it), 0 if none is. */
function holding(segments: readonly SegmentEntry[], lsn: number): number {
  let at = 0
  for (let i = 0; i < segments.length; i++) if ((segments[i] as SegmentEntry).baseLsn <= lsn) at = i
  return at
}
