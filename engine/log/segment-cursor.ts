import type { Checksums } from '../format/checksum.js'
import { dataEnd, decodeFrameAt, decodeSegmentHeader, findNextMagic, frameView, type FrameView, SEGMENT_HEADER_BYTES, type FrameFault, type RecordType, type SegmentHeader } from '../format/format.js'

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

export type ScanEvent = ScannedFrame | Damage

export type HeaderResult =
  | { readonly kind: 'header'; readonly header: SegmentHeader }
  | { readonly kind: 'corrupt'; readonly reason: string }
  | { readonly kind: 'unknown-version'; readonly version: number }

export interface SegmentScanInput {
  readonly bytes: Uint8Array
  readonly salt: number
  readonly recordBytesMax: number
  readonly sums: Checksums
  /** False: frame headers only (a quick look; see decodeFrameAt). */
  readonly verifyPayloads?: boolean
}

/**
 * Walks the frames of one segment from just after its header, yielding every
 * valid frame and every damaged region in file order. After damage it
 * resynchronises on the next frame magic that starts a frame verifying with
 * this segment's salt. Always terminates: every step moves forward.
 * LSN continuity is the caller's to check.
 */
export function* scanFrames(s: SegmentScanInput): Generator<ScanEvent, { readonly validEnd: number; readonly dataEnd: number }> {
  const end = dataEnd(s.bytes, SEGMENT_HEADER_BYTES)
  // The view spans the whole segment: a frame that starts before the end of
  // the data may end in zero bytes past it.
  const view = frameView(s.bytes)
  let at = SEGMENT_HEADER_BYTES
  let validEnd = SEGMENT_HEADER_BYTES
  while (at < end) {
    const d = decodeFrameAt(view, at, s.salt, s.recordBytesMax, s.sums, s.verifyPayloads !== false)
    if (d.kind === 'frame') {
      yield { kind: 'frame', lsn: d.lsn, type: d.type, offset: at, next: d.next, payload: d.payload }
      at = d.next
      validEnd = at
      continue
    }
    const fault = d.kind === 'end' ? 'garbage-after-end' : d.fault
    const resume = resync(view, s, at + 1, end)
    yield {
      kind: 'damage',
      offset: at,
      end: resume ?? end,
      fault,
      ...(d.kind === 'invalid' && d.lsn !== undefined ? { lsn: d.lsn } : {}),
      resumed: resume !== undefined,
    }
    if (resume === undefined) break
    at = resume
  }
  return { validEnd, dataEnd: end }
}

function resync(view: FrameView, s: SegmentScanInput, from: number, end: number): number | undefined {
  let q = findNextMagic(view.bytes, from)
  while (q !== -1 && q < end) {
    if (decodeFrameAt(view, q, s.salt, s.recordBytesMax, s.sums).kind === 'frame') return q
    q = findNextMagic(view.bytes, q + 1)
  }
  return undefined
}

export function readHeader(bytes: Uint8Array, sums: Checksums): HeaderResult {
  return decodeSegmentHeader(bytes, sums)
}
