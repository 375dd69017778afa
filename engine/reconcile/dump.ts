import { posix as path } from 'node:path'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { limits } from '../limits.js'
import { createChecksums } from '../format/checksum.js'
import { RecordCodec, type WalRecord } from '../format/record-codec.js'
import { framesOf, segmentsOf } from '../log/segment-cursor.js'
import type { DumpEntry } from '../log/dump-entry.js'
import { declaresGap } from '../format/format.js'

export interface DumpOptions {
  readonly dir: string
  readonly fromLsn?: number
  readonly toLsn?: number
  /** Only records touching this key. */
  readonly key?: string
  readonly fs?: FileSystem
}

/**
 * Reads the log of a data directory without locking or changing it (safe
 * beside a running writer: it reads what is there), in LSN order, naming
 * each record's segment and offset and every damaged range.
 */
export async function* dumpLog(o: DumpOptions): AsyncGenerator<DumpEntry> {
  const fs = o.fs ?? new NodeFileSystem()
  const walDir = path.join(path.resolve(o.dir), 'wal')
  const sums = await createChecksums()
  const codec = new RecordCodec()
  const from = o.fromLsn ?? 1
  const to = o.toLsn ?? Number.MAX_SAFE_INTEGER
  const cursor = { fs, sums, walDir, recordBytesMax: limits.recordBytesHardMax }
  // The LSN the log holds next after the segments read so far, when known: LSNs before a segment's base that no segment held are reported.
  let due: number | undefined
  for await (const seg of segmentsOf({ ...cursor, fromLsn: from, framesFromLsn: from, toLsn: to })) {
    const h = seg.header
    if (h.kind !== 'header') {
      yield { kind: 'damage', segment: seg.entry.name, offset: 0, end: seg.bytes.length, detail: h.kind === 'corrupt' ? h.reason : `format version ${h.version}` }
      due = undefined
      continue
    }
    const base = h.header.baseLsn
    if (due !== undefined && base > due && base - 1 >= from && due <= to) {
      const declared = declaresGap(h.header, due)
      yield { kind: 'missing', segment: seg.entry.name, lsnFirst: due, lsnLast: base - 1, declared, detail: declared ? 'a gap declared in this segment\'s header (dropped by recovery or fsck --repair)' : 'in no segment: a segment is missing' }
    }
    due = base
    for (const ev of framesOf(seg, cursor, 'salvage')) {
      if (ev.kind === 'damaged-marker') {
        // Damage, but no record is lost: the LSN due is the frame's after it.
        yield { kind: 'damage', segment: seg.entry.name, offset: ev.offset, end: ev.end, detail: `damaged group marker (${ev.fault}); the records after it verify` }
        continue
      }
      if (ev.kind === 'damage') {
        // What follows the damage is the damage's to explain, not a missing segment's.
        due = undefined
        yield { kind: 'damage', segment: seg.entry.name, offset: ev.offset, end: ev.end, detail: ev.fault }
        continue
      }
      if (due === undefined || ev.lsn >= due) due = ev.lsn + 1
      if (ev.lsn < from) continue
      if (ev.lsn > to) return
      const record = codec.decode(ev.type, ev.payload)
      if (o.key !== undefined && !touches(record, o.key)) continue
      yield { kind: 'record', lsn: ev.lsn, segment: seg.entry.name, offset: ev.offset, record }
    }
  }
}

function touches(r: WalRecord, key: string): boolean {
  return r.type === 3 ? r.ops.some((op) => op.key === key) : r.op.key === key
}
