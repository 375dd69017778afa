/**
 * Torn final groups (issue 14 item 9b; format.ts, group markers). A group
 * write split by the kernel can persist a later piece and not an earlier one:
 * the segment reads valid frames, zeros or garbage, valid frames. None of the
 * torn group's LSNs was acknowledged (its write never completed), so the
 * default open truncates it with a finding; damage before the start of the
 * last write that was not yet durable stays a refusal, and version 1
 * segments are judged exactly as before.
 */
import t from 'tap'
import { CorruptionError, isMemwalError } from '../../engine/index.js'
import { SeededRandom, SimulatedFileSystem, type Wal } from '../../engine/testing.js'
import { FORMAT_VERSION_UNMARKED } from '../../engine/format/format.js'
import { SECTOR_BYTES } from '../../engine/io/sim-fs.js'
import { bytesOf, describeSegments, findingsOf, openLog, pokeAt, range, readAll, recordFor, rewriteHeader, VALUE_BYTES, zeroRange, type SegmentInfo } from '../support/craft.js'

/** The unit the simulated disk persists on its own (sector tearing). */
const SECTOR = SECTOR_BYTES

/** A log of `solo` records appended one at a time, then one group of `group` records appended together; closed. */
async function logWithFinalGroup(solo: number, group: number): Promise<{ sim: SimulatedFileSystem; seg: SegmentInfo; groupStart: number; groupEnd: number }> {
  const sim = new SimulatedFileSystem(new SeededRandom(11))
  const wal = await openLog(sim, {})
  for (let lsn = 1; lsn <= solo; lsn++) await wal.appendRecord(recordFor(lsn, VALUE_BYTES))
  const lsns = await Promise.all(range(solo + 1, solo + group).map((lsn) => wal.appendRecord(recordFor(lsn, VALUE_BYTES))))
  if (lsns.join() !== range(solo + 1, solo + group).join()) throw new Error('the group got other LSNs')
  await wal.close()
  const [seg] = await describeSegments(sim)
  if (!seg) throw new Error('no segment')
  const first = seg.frames.find((f) => f.lsn === solo + 1)
  if (!first || first.groupStart === first.offset) throw new Error('the final group has no marker')
  return { sim, seg, groupStart: first.groupStart, groupEnd: seg.validEnd }
}

async function refusal(p: Promise<Wal>): Promise<CorruptionError> {
  try {
    const wal = await p
    await wal.close()
  } catch (err) {
    if (err instanceof CorruptionError) return err
    throw err
  }
  throw new Error('open should have refused')
}

t.test('a final group whose first sector was lost and whose later sectors persisted: truncated, with a finding, by the default open', async (t) => {
  const { sim, seg, groupStart, groupEnd } = await logWithFinalGroup(5, 6)
  t.ok(groupEnd - groupStart > 3 * SECTOR, `precondition: the final group spans several sectors (${groupEnd - groupStart} bytes)`)
  // The first piece of the write: up to the next sector boundary after its start (a partial first page).
  const firstPieceEnd = (Math.floor(groupStart / SECTOR) + 1) * SECTOR
  zeroRange(sim, seg.path, groupStart, firstPieceEnd)
  const wal = await openLog(sim, {})
  t.strictSame((await readAll(wal)).lsns, range(1, 5), 'every record before the torn group reads back, none of the group')
  t.strictSame(findingsOf(wal.recovery), [{ kind: 'torn-tail', segment: seg.name, offset: groupStart, lsnFirst: 6, lsnLast: 11, alreadyApplied: false, action: 'truncated' }],
    'one finding: the torn tail from the group start, truncated, naming every LSN of the group (6-11)')
  t.match(wal.recovery.findings[0]?.detail, /final group write that never completed/, 'the finding says why it is a torn tail')
  t.equal(await wal.appendRecord(recordFor(6, 10)), 6, 'the log goes on at the torn group\'s first LSN')
  await wal.close()
  const again = await openLog(sim, {})
  t.strictSame(findingsOf(again.recovery), [], 'the torn bytes were zeroed: the next open finds nothing')
  t.strictSame((await readAll(again)).lsns, range(1, 6))
  await again.close()
})

t.test('a final group with a middle sector lost: truncated from the damage, the group\'s earlier frames too', async (t) => {
  const { sim, seg, groupStart, groupEnd } = await logWithFinalGroup(5, 6)
  const middle = (Math.floor((groupStart + groupEnd) / 2 / SECTOR)) * SECTOR
  zeroRange(sim, seg.path, middle, middle + SECTOR)
  const damaged = seg.frames.find((f) => f.offset <= middle && middle < f.next)
  if (!damaged) throw new Error('no frame at the middle sector')
  const wal = await openLog(sim, {})
  const lsns = (await readAll(wal)).lsns
  t.strictSame(lsns, range(1, damaged.lsn - 1), 'the frames before the damaged one stay (the marker and they verify); from it on the group is gone')
  t.equal(wal.recovery.findings[0]?.kind, 'torn-tail')
  t.equal(wal.recovery.findings[0]?.action, 'truncated')
  await wal.close()
})

t.test('damage before the last write\'s durable-from stays a refusal, even with the last group intact', async (t) => {
  const { sim, seg, groupStart } = await logWithFinalGroup(5, 6)
  // LSN 4 was written, acknowledged and durable before the final group was issued.
  const fourth = seg.frames.find((f) => f.lsn === 4)
  if (!fourth) throw new Error('no LSN 4')
  t.ok(fourth.next <= groupStart, 'precondition: LSN 4 lies before the final group')
  zeroRange(sim, seg.path, fourth.offset, fourth.offset + 40)
  for (const policy of ['tolerate-torn-tail', 'absolute'] as const) {
    const err = await refusal(openLog(sim, { policy }))
    t.equal(err.code, 'WAL_CORRUPT_FRAME', `${policy}: refused as a corrupt frame`)
    t.match(err.place, { segment: seg.name, offset: fourth.offset, lsnFirst: 4 }, `${policy}: naming the place`)
  }
})

t.test('the same torn group in the last segment of a log that rotated, and garbage (not zeros) in the lost sector', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(12))
  const wal = await openLog(sim, {})
  let lsn = 0
  while ((await wal.segments()).length < 2) await wal.appendRecord(recordFor(++lsn, VALUE_BYTES))
  const group = await Promise.all(range(lsn + 1, lsn + 5).map((n) => wal.appendRecord(recordFor(n, VALUE_BYTES))))
  await wal.close()
  const segs = await describeSegments(sim)
  const last = segs[segs.length - 1] as SegmentInfo
  const first = last.frames.find((f) => f.lsn === group[0])
  if (!first) throw new Error('no group frame')
  pokeAt(sim, last.path, first.groupStart, Buffer.alloc(100, 0xa5))
  const again = await openLog(sim, {})
  t.strictSame((await readAll(again)).lsns, range(1, lsn), 'everything before the group reads back')
  t.strictSame(again.recovery.findings.map((f) => [f.kind, f.action]), [['torn-tail', 'truncated']])
  await again.close()
})

t.test('version 1 segments are judged exactly as before: valid frames after damage are a refusal', async (t) => {
  const { sim, seg, groupStart } = await logWithFinalGroup(5, 6)
  // A version 1 segment as the old writer left it: the same frames without markers (each marker's 40 bytes cut out).
  const bytes = bytesOf(sim, seg.path)
  const v1 = Buffer.alloc(bytes.length)
  bytes.copy(v1, 0, 0, 64)
  let at = 64
  for (const f of seg.frames) {
    bytes.copy(v1, at, f.offset, f.next)
    at += f.next - f.offset
  }
  sim.poke(seg.path, v1)
  await rewriteHeader(sim, seg, { version: FORMAT_VERSION_UNMARKED })
  const clean = await openLog(sim, { policy: 'absolute' })
  t.strictSame((await readAll(clean)).lsns, range(1, 11), 'precondition: a clean version 1 log of 11 records')
  await clean.close()
  // Its last group (LSNs 6-11) with its first 100 bytes lost: in version 1 nothing says where the group began.
  const sixth = 64 + (groupStart - 64) - 5 * 40
  zeroRange(sim, seg.path, sixth, sixth + 100)
  const err = await refusal(openLog(sim, {}))
  t.ok(isMemwalError(err), 'refused')
  t.equal(err.code, 'WAL_CORRUPT_FRAME', 'damage with valid frames after it, as before version 2')
  t.match(err.place, { offset: sixth, lsnFirst: 6 })
})
