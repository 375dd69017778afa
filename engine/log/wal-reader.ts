import type { Checksums } from '../format/checksum.js'
import type { FileSystem } from '../io/fs.js'
import { CorruptionError } from '../errors.js'
import { declaresGap, type RecordType } from '../format/format.js'
import { framesOf, segmentsOf } from './segment-cursor.js'

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
}

/**
 * Reads records back from the segments in LSN order, verifying each frame on
 * the way: how a sink catches up after it fell behind or after a restart.
 * Damage is a CorruptionError naming its place, unless `skipDamage`.
 */
export async function* readLog(o: ReadOptions): AsyncGenerator<LogRecord> {
  let expected: number | undefined
  for await (const seg of segmentsOf({ ...o, fromLsn: o.fromLsn, framesFromLsn: o.fromLsn, toLsn: o.toLsn })) {
    const h = seg.header
    if (h.kind !== 'header') {
      if (o.skipDamage) continue
      throw new CorruptionError('WAL_CORRUPT_HEADER', `segment header is invalid (${h.kind})`, { segment: seg.entry.name, offset: 0, lsnFirst: seg.entry.baseLsn })
    }
    if (expected !== undefined && declaresGap(h.header, expected)) expected = h.header.baseLsn
    for (const ev of framesOf(seg, o, o.skipDamage ? 'salvage' : 'strict')) {
      // A damaged group marker guards no record: the frames after it verified on their own (recovery reported it).
      if (ev.kind === 'damaged-marker') continue
      if (ev.kind === 'damage') {
        if (o.skipDamage) continue
        throw new CorruptionError('WAL_CORRUPT_FRAME', `damaged frame (${ev.fault})`, { segment: seg.entry.name, offset: ev.offset })
      }
      if (ev.lsn < o.fromLsn) continue
      if (ev.lsn > o.toLsn) return
      if (expected !== undefined && ev.lsn !== expected) {
        if (!o.skipDamage) throw new CorruptionError('WAL_LSN_SEQUENCE', `frame has LSN ${ev.lsn} where ${expected} was due`, { segment: seg.entry.name, offset: ev.offset, lsnFirst: ev.lsn })
        // A stale duplicate of an LSN already read (recovery skipped it too): never yield LSNs out of order.
        if (ev.lsn < expected) continue
      }
      expected = ev.lsn + 1
      yield { lsn: ev.lsn, type: ev.type, payload: ev.payload }
    }
  }
}
