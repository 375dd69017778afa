import { MemwalError } from '../../errors.js'
import type { Checksums } from '../../format/checksum.js'
import { decodeFrameAt, decodeSegmentHeader, encodeFrameInto, encodeSegmentHeader, FORMAT_VERSION_UNMARKED, frameView, SEGMENT_HEADER_BYTES } from '../../format/format.js'
import { segmentName } from '../../format/segment-name.js'
import { limits } from '../../limits.js'
import type { SegmentSplit } from './repair-executor.js'

/**
 * The bytes of the new segment a split makes (repair-executor.ts): the
 * verified frames of the original in [from, to), LSNs baseLsn..lastLsn in
 * sequence (a stale duplicate of an earlier LSN is left out, as every reader
 * leaves it out), framed again with the new segment's salt, then zeros up to
 * the original's size so that the writer can append to it as to any
 * preallocated segment. Anything else in the range means the plan does not
 * match the file: refused before anything is changed.
 *
 * The salt is derived from the original's and the new base LSN rather than
 * drawn at random: the same plan carried out twice writes the same bytes.
 * The new segment is format version 1 (no group markers; the original's
 * markers are left out): its frames were never one write, and damage in it,
 * should it be the last segment, is judged as in any version 1 segment.
 */
export function salvagedSegment(original: Buffer, size: number, split: SegmentSplit, sums: Checksums): { readonly name: string; readonly bytes: Buffer } {
  const name = segmentName(split.baseLsn)
  const h = decodeSegmentHeader(original, sums)
  if (h.kind !== 'header') throw mismatch(name, 'the original segment has no valid header')
  const salt = (Math.imul(h.header.salt ^ split.baseLsn, 0x9e3779b1) ^ (split.baseLsn / 2 ** 32)) >>> 0
  const out = Buffer.alloc(Math.max(size, SEGMENT_HEADER_BYTES + (split.to - split.from)))
  encodeSegmentHeader({ ...h.header, version: FORMAT_VERSION_UNMARKED, salt, baseLsn: split.baseLsn, gapFromLsn: split.gapFromLsn }, sums).copy(out, 0)
  const view = frameView(original.subarray(0, split.to), h.header.version)
  let at = split.from
  let write = SEGMENT_HEADER_BYTES
  let due = split.baseLsn
  while (at < split.to) {
    const d = decodeFrameAt(view, at, h.header.salt, limits.recordBytesHardMax, sums)
    if (d.kind === 'group') {
      at = d.next
      continue
    }
    if (d.kind !== 'frame') throw mismatch(name, `no valid frame at offset ${at} of the original`)
    at = d.next
    if (d.lsn < due) continue
    if (d.lsn !== due) throw mismatch(name, `frame LSN ${d.lsn} where ${due} was due`)
    write = encodeFrameInto(out, write, { lsn: d.lsn, type: d.type, payload: d.payload }, salt, sums)
    due++
  }
  if (due !== split.lastLsn + 1) throw mismatch(name, `the range holds LSNs ${split.baseLsn}-${due - 1}, not ${split.baseLsn}-${split.lastLsn}`)
  return { name, bytes: out }
}

function mismatch(name: string, why: string): MemwalError {
  return new MemwalError('WAL_CORRUPT_FRAME', `cannot salvage frames into ${name}: ${why}; nothing was changed`, { details: { segment: name } })
}
