import type { Checksums } from '../format/checksum.js'
import type { FileSystem } from '../io/fs.js'
import { CorruptionError } from '../errors.js'
import type { RecordType } from '../format/format.js'
import { listWal, readPrefix } from './segment-list.js'
import { readHeader, scanFrames } from './segment-cursor.js'
import { SEGMENT_HEADER_BYTES } from '../format/format.js'

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
  const { segments } = await listWal(o.fs, o.walDir)
  let start = 0
  for (let i = 0; i < segments.length; i++) if ((segments[i]?.baseLsn ?? Infinity) <= o.fromLsn) start = i
  let expected: number | undefined
  for (let i = start; i < segments.length; i++) {
    const seg = segments[i]
    if (!seg || seg.baseLsn > o.toLsn) return
    const bytes = await o.fs.readFile(seg.path)
    const h = readHeader(bytes.length >= SEGMENT_HEADER_BYTES ? bytes : await readPrefix(o.fs, seg.path, SEGMENT_HEADER_BYTES), o.sums)
    if (h.kind !== 'header') {
      if (o.skipDamage) continue
      throw new CorruptionError('WAL_CORRUPT_HEADER', `segment header is invalid (${h.kind})`, { segment: seg.name, offset: 0, lsnFirst: seg.baseLsn })
    }
    if (expected !== undefined && h.header.gapFromLsn !== 0 && h.header.gapFromLsn <= expected) expected = h.header.baseLsn
    for (const ev of scanFrames({ bytes, salt: h.header.salt, recordBytesMax: o.recordBytesMax, sums: o.sums })) {
      if (ev.kind === 'damage') {
        if (o.skipDamage) continue
        throw new CorruptionError('WAL_CORRUPT_FRAME', `damaged frame (${ev.fault})`, { segment: seg.name, offset: ev.offset })
      }
      if (ev.lsn < o.fromLsn) continue
      if (ev.lsn > o.toLsn) return
      if (expected !== undefined && ev.lsn !== expected) {
        if (!o.skipDamage) throw new CorruptionError('WAL_LSN_SEQUENCE', `frame has LSN ${ev.lsn} where ${expected} was due`, { segment: seg.name, offset: ev.offset, lsnFirst: ev.lsn })
        // A stale duplicate of an LSN already read (recovery skipped it too): never yield LSNs out of order.
        if (ev.lsn < expected) continue
      }
      expected = ev.lsn + 1
      yield { lsn: ev.lsn, type: ev.type, payload: ev.payload }
    }
  }
}
