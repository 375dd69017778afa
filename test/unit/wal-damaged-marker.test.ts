/**
 * A damaged group marker loses no record (format version 2; segment-cursor.ts).
 * A marker holds no operation and every frame after it carries its own
 * checksums, so a bit flipped in a segment's first marker must not make the
 * default open refuse, nor `fsck --repair` cut the segment (which dropped every
 * valid record after it): the records are kept, the damage is reported (by
 * recovery, by verify's pipeline, by dump), `fsck --repair` writes a valid
 * marker in its place, and only `absolute` refuses it.
 */
import t from 'tap'
import { GROUP_MARKER_BYTES, SEGMENT_HEADER_BYTES } from '../../engine/format/format.js'
import { repairPlan } from '../../engine/log/recovery/repair-plan.js'
import { logFindings, scanWholeLog } from '../../engine/reconcile/verify.js'
import { dumpLog } from '../../engine/reconcile/dump.js'
import { carryOut } from '../../engine/log/recovery/repair-executor.js'
import { buildLog, bytesOf, DIR, findingsOf, listDir, openLog, QUARANTINE_DIR, range, readAll, sums, WAL_DIR, type CraftedLog, type SegmentInfo } from '../support/craft.js'

/** Two segments (about 90 records each): the first marker of a rotated segment and of the active one. */
const RECORDS = 120

function flipByte(log: CraftedLog, seg: SegmentInfo, offset: number): void {
  const bytes = Buffer.from(log.sim.peek(seg.path) as Uint8Array)
  bytes[offset] = (bytes[offset] ?? 0) ^ (1 << (offset % 8))
  log.sim.poke(seg.path, bytes)
}

t.test('a bit flipped in any byte of a segment\'s first group marker: every record kept, the damage reported', async (t) => {
  const clean = await buildLog({ records: RECORDS })
  t.equal(clean.segments.length, 2, 'precondition: two segments')
  for (const [si, seg] of clean.segments.entries()) {
    t.equal(seg.frames[0]?.offset, SEGMENT_HEADER_BYTES + GROUP_MARKER_BYTES, `precondition: segment ${si} starts with a marker`)
    for (let i = 0; i < GROUP_MARKER_BYTES; i++) {
      const log = await buildLog({ records: RECORDS })
      const at = SEGMENT_HEADER_BYTES + i
      flipByte(log, seg, at)
      const expected = { kind: 'damaged-marker', segment: seg.name, offset: SEGMENT_HEADER_BYTES, action: 'none' }
      const wal = await openLog(log.sim, {})
      try {
        t.strictSame(findingsOf(wal.recovery), [expected], `segment ${si} byte ${i}: open reports the damaged marker and does nothing about it`)
        t.strictSame((await readAll(wal)).lsns, range(1, RECORDS), `segment ${si} byte ${i}: every record reads back`)
      } finally {
        await wal.close()
      }
      const scan = await scanWholeLog({ fs: log.sim, sums: await sums(), walDir: WAL_DIR })
      t.match(logFindings(scan, 0), [{ kind: 'damaged-marker', segment: seg.name, offset: SEGMENT_HEADER_BYTES }], `segment ${si} byte ${i}: verify reports it`)
      if (i % 13 === 0) {
        const dumped = []
        for await (const e of dumpLog({ dir: DIR, fs: log.sim })) dumped.push(e.kind === 'record' ? e.lsn : e.kind)
        t.strictSame(dumped, [...range(1, seg.frames[0]?.lsn as number - 1), 'damage', ...range(seg.frames[0]?.lsn as number, RECORDS)], `segment ${si} byte ${i}: dump shows the damage in its place and every record`)
      }
      const { plan, actions } = repairPlan(scan)
      t.strictSame([plan.cuts, plan.moves, plan.splits, plan.gaps, plan.markers.length], [[], [], [], [], 1], `segment ${si} byte ${i}: fsck --repair cuts nothing, rewrites the marker`)
      t.match(actions, [{ action: 'rewritten' }])
      await carryOut({ fs: log.sim, sums: await sums(), walDir: WAL_DIR, quarantineDir: QUARANTINE_DIR }, scan, plan, { dataDir: DIR, gaps: [] })
      t.strictSame(bytesOf(log.sim, seg.path), bytesOf(clean.sim, seg.path), `segment ${si} byte ${i}: the repaired segment is the segment as written`)
      t.strictSame(await listDir(log.sim, QUARANTINE_DIR), [`${seg.name}@${SEGMENT_HEADER_BYTES}.marker.broken`], `segment ${si} byte ${i}: the damaged bytes are kept`)
    }
  }
})

t.test('absolute refuses a damaged marker; a damaged marker whose next frame is damaged too is damage as before', async (t) => {
  const log = await buildLog({ records: RECORDS })
  const seg = log.segments[0] as SegmentInfo
  flipByte(log, seg, SEGMENT_HEADER_BYTES + 5)
  await t.rejects(openLog(log.sim, { policy: 'absolute' }), { code: 'WAL_CORRUPT_FRAME' })
  // The first record frame's header too: LSN 1 is lost, which a marker alone never means.
  flipByte(log, seg, SEGMENT_HEADER_BYTES + GROUP_MARKER_BYTES + 9)
  await t.rejects(openLog(log.sim, {}), { code: 'WAL_CORRUPT_FRAME' }, 'the default policy refuses, as for any damage in durable bytes')
})

t.test('the marker of the last write, damaged, with nothing after it vouching for its bytes: a torn final write, truncated as before', async (t) => {
  // A power cut can lose the sector of a write that holds its marker and keep later ones: none of it was acknowledged.
  const log = await buildLog({ records: RECORDS })
  const seg = log.segments[1] as SegmentInfo
  const last = seg.frames[seg.frames.length - 1]
  if (!last) throw new Error('no frame')
  flipByte(log, seg, last.groupStart + 3)
  const wal = await openLog(log.sim, {})
  try {
    t.strictSame(findingsOf(wal.recovery), [{ kind: 'torn-tail', segment: seg.name, offset: last.groupStart, lsnFirst: RECORDS, lsnLast: RECORDS, alreadyApplied: false, action: 'truncated' }])
    t.strictSame((await readAll(wal)).lsns, range(1, RECORDS - 1))
  } finally {
    await wal.close()
  }
})
