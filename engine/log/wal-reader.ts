import type { Checksums } from '../format/checksum.js'
import type { FileSystem } from '../io/fs.js'
import { CorruptionError } from '../errors.js'
import { declaresGap, SEGMENT_HEADER_BYTES, type RecordType } from '../format/format.js'
import { framesOf, segmentsOf, type CursorSegment, type ResumePoint } from './segment-cursor.js'

export interface LogRecord {
  readonly lsn: number
  readonly type: RecordType
  /** A view into a segment buffer: copy it to keep it beyond the next step. */
  readonly payload: Uint8Array
}

export interface ReadOptions {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
  readonly recordBytesMax: number
  readonly fromLsn: number
  /** Highest LSN to read (inclusive); records beyond it may not be written yet. */
  readonly toLsn: number
  /** Skip damaged frames instead of failing (after `skip-corrupt` recovery). */
  readonly skipDamage: boolean
  /** Where an earlier read of `fromLsn` left off (segment-cursor.ts ResumePoint): its segment is read from there. */
  readonly resumeAt?: ResumePoint
}

/** One segment's records, as readLogSegments walks them; `next` is where the frame after the last one taken starts. */
export interface SegmentRecords extends Iterable<LogRecord> {
  readonly segment: string
  /** Offset just after the last record yielded (the header's end before any). */
  readonly next: number
}

/**
 * Reads records back from the segments in LSN order, verifying each frame on
 * the way: how a sink catches up after it fell behind or after a restart.
 * Damage is a CorruptionError naming its place, unless `skipDamage`.
 */
export async function* readLog(o: ReadOptions): AsyncGenerator<LogRecord> {
  for await (const frames of readLogSegments(o)) yield* frames
}

/**
 * readLog a segment at a time: each segment is read (asynchronously) whole,
 * its records then walked synchronously, so a caller that takes many records
 * at once (a watch's chunk) pays no promise per record. Each segment's
 * records must be walked before the next segment is asked for.
 */
export async function* readLogSegments(o: ReadOptions): AsyncGenerator<SegmentRecords> {
  const at = { expected: undefined as number | undefined, ended: false }
  for await (const seg of segmentsOf({ ...o, fromLsn: o.fromLsn, framesFromLsn: o.fromLsn, toLsn: o.toLsn, ...(o.resumeAt?.lsn === o.fromLsn ? { resumeAt: o.resumeAt } : {}) })) {
    const h = seg.header
    if (h.kind !== 'header') {
      if (o.skipDamage) continue
      throw new CorruptionError('WAL_CORRUPT_HEADER', `segment header is invalid (${h.kind})`, { segment: seg.entry.name, offset: 0, lsnFirst: seg.entry.baseLsn })
    }
    if (at.expected !== undefined && declaresGap(h.header, at.expected)) at.expected = h.header.baseLsn
    yield new Records(seg, o, at)
    if (at.ended) return
  }
}

class Records implements SegmentRecords {
  next: number
  readonly segment: string

  constructor(
    private readonly seg: CursorSegment,
    private readonly o: ReadOptions,
    private readonly at: { expected: number | undefined; ended: boolean },
  ) {
    this.segment = seg.entry.name
    this.next = seg.resumed?.offset ?? SEGMENT_HEADER_BYTES
  }

  *[Symbol.iterator](): Iterator<LogRecord> {
    for (const r of recordsOf(this.seg, this.o, this.at)) {
      this.next = r.next
      yield r
    }
  }
}

function* recordsOf(seg: CursorSegment, o: ReadOptions, at: { expected: number | undefined; ended: boolean }): Generator<LogRecord & { readonly next: number }> {
  for (const ev of framesOf(seg, o, o.skipDamage ? 'salvage' : 'strict')) {
    // A damaged group marker guards no record: the frames after it verified on their own (recovery reported it).
    if (ev.kind === 'damaged-marker') continue
    if (ev.kind === 'damage') {
      if (o.skipDamage) continue
      throw new CorruptionError('WAL_CORRUPT_FRAME', `damaged frame (${ev.fault})`, { segment: seg.entry.name, offset: ev.offset })
    }
    if (ev.lsn < o.fromLsn) continue
    if (ev.lsn > o.toLsn) {
      at.ended = true
      return
    }
    if (at.expected !== undefined && ev.lsn !== at.expected) {
      if (!o.skipDamage) throw new CorruptionError('WAL_LSN_SEQUENCE', `frame has LSN ${ev.lsn} where ${at.expected} was due`, { segment: seg.entry.name, offset: ev.offset, lsnFirst: ev.lsn })
      // A stale duplicate of an LSN already read (recovery skipped it too): never yield LSNs out of order.
      if (ev.lsn < at.expected) continue
    }
    at.expected = ev.lsn + 1
    yield { lsn: ev.lsn, type: ev.type, payload: ev.payload, next: ev.next }
  }
}
