/**
 * The log repair of `fsck --repair` (engine/log/recovery/repair-plan.ts,
 * repair-executor.ts, repair-intent.ts) on the simulated filesystem: it keeps
 * every frame that verifies and drops only the damaged one, and a power cut at
 * any step of it leaves a log from which the next open (or a second repair)
 * reaches the same end, never a lost or repeated LSN.
 */
import t from 'tap'
import { ManualClock, RecordType, SeededRandom, SimulatedFileSystem, Wal } from '../../engine/testing.js'
import { createChecksums } from '../../engine/format/checksum.js'
import { scanLog } from '../../engine/log/recovery/log-scan.js'
import { repairPlan } from '../../engine/log/recovery/repair-plan.js'
import { carryOut } from '../../engine/log/recovery/repair-executor.js'
import { readGaps } from '../../engine/log/recovery/gap-record.js'
import { INTENT_FILE } from '../../engine/log/recovery/repair-intent.js'
import { limits } from '../../engine/limits.js'
import { GROUP_MARKER_BYTES } from '../../engine/format/format.js'

const DIR = '/data'
const WAL_DIR = `${DIR}/wal`
const SEGMENT_BYTES = 64 * 1024
/** 16 frames of 4,000 bytes fill a 64 KiB segment: 40 records make three segments. */
const RECORDS = 40
const DAMAGED_LSN = 22

function openWal(fs: SimulatedFileSystem, corruptionPolicy: 'tolerate-torn-tail' | 'point-in-time' = 'tolerate-torn-tail'): Promise<Wal> {
  return Wal.open({ dir: DIR, fs, clock: new ManualClock(), random: new SeededRandom(7), segmentBytes: SEGMENT_BYTES, durability: 'sync', corruptionPolicy })
}

const payload = (lsn: number): Buffer => Buffer.alloc(4000, lsn & 0xff)

/** A log of RECORDS records with the LSN field of DAMAGED_LSN's frame (in the middle segment) flipped. */
async function damagedLog(): Promise<SimulatedFileSystem> {
  const fs = new SimulatedFileSystem(new SeededRandom(1))
  const wal = await openWal(fs)
  for (let i = 1; i <= RECORDS; i++) await wal.append(RecordType.PUT, payload(i))
  await wal.close()
  fs.snapshotDurable()
  const sums = await createChecksums()
  const scan = await scanLog({ fs, sums, walDir: WAL_DIR, recordBytesMax: limits.recordBytesHardMax, verifyFromLsn: 0 })
  const seg = scan.segments.find((s) => s.firstLsn !== undefined && s.firstLsn <= DAMAGED_LSN && (s.lastLsn ?? 0) >= DAMAGED_LSN)
  if (!seg) throw new Error('no segment holds the damaged LSN')
  // Walk the segment's frames to the damaged one: each record was its own write, a group marker then
  // 32 bytes of frame header and its payload.
  const offset = 64 + (DAMAGED_LSN - (seg.firstLsn as number)) * (GROUP_MARKER_BYTES + 32 + 4000) + GROUP_MARKER_BYTES
  const bytes = Buffer.from(fs.peek(seg.entry.path) as Uint8Array)
  bytes[offset + 9] = (bytes[offset + 9] ?? 0) ^ 0xff
  fs.poke(seg.entry.path, bytes)
  return fs
}

async function repair(fs: SimulatedFileSystem): Promise<{ dropped: number[] }> {
  const sums = await createChecksums()
  const scan = await scanLog({ fs, sums, walDir: WAL_DIR, recordBytesMax: limits.recordBytesHardMax, verifyFromLsn: 0 })
  const { plan, actions } = repairPlan(scan)
  // The gaps the repair makes, recorded as fsck records them (by the executor, before it cuts).
  const gaps = actions.flatMap((a) => (a.lsnFirst === undefined ? [] : [{ lsnFirst: a.lsnFirst, ...(a.lsnLast !== undefined ? { lsnLast: a.lsnLast } : {}), by: 'fsck --repair', atMs: 0, alreadyApplied: false, detail: a.detail }]))
  await carryOut({ fs, sums, walDir: WAL_DIR, quarantineDir: `${DIR}/quarantine` }, scan, plan, { dataDir: DIR, gaps })
  const dropped: number[] = []
  for (const a of actions) if (a.lsnFirst !== undefined && a.action !== 'gap-declared') for (let l = a.lsnFirst; l <= (a.lsnLast ?? a.lsnFirst); l++) dropped.push(l)
  return { dropped }
}

async function readable(fs: SimulatedFileSystem): Promise<number[]> {
  const wal = await openWal(fs)
  try {
    const lsns: number[] = []
    for await (const r of wal.read(1)) {
      if (!Buffer.from(r.payload).equals(payload(r.lsn))) throw new Error(`LSN ${r.lsn} reads back other bytes`)
      lsns.push(r.lsn)
    }
    return lsns
  } finally {
    await wal.close()
  }
}

const allBut = (lsn: number): number[] => Array.from({ length: RECORDS }, (_, i) => i + 1).filter((l) => l !== lsn)

t.test('repair keeps every verified frame: only the damaged LSN leaves the log, and the log then opens with the default policy', async (t) => {
  const fs = await damagedLog()
  await t.rejects(openWal(fs), { code: 'WAL_CORRUPT_FRAME' }, 'the default policy refuses mid-log damage')
  const { dropped } = await repair(fs)
  t.strictSame(dropped, [DAMAGED_LSN], 'the plan declares exactly the damaged LSN as dropped')
  t.strictSame(await readable(fs), allBut(DAMAGED_LSN), `${RECORDS - 1} of ${RECORDS} records read back, in order`)
  t.strictSame((await fs.readdir(`${DIR}/quarantine`)).length, 1, 'the damaged segment as it was is in quarantine/')
  t.notOk((await fs.readdir(WAL_DIR)).includes(INTENT_FILE), 'no intent left behind')
  const again = await repair(fs)
  t.strictSame(again.dropped, [], 'a second repair finds nothing to do')
})

t.test('a power cut at every mutating step of the repair: the next open or repair ends with the same log', async (t) => {
  let steps = 0
  for (let n = 1; ; n++) {
    const fs = await damagedLog()
    fs.cutPowerAtOp(n)
    let finished = true
    try {
      await repair(fs)
    } catch (err) {
      if (!fs.isCrashed) throw err
      finished = false
    }
    if (finished) {
      steps = n - 1
      break
    }
    const after = fs.restart(n)
    // The operator (or the next open) finds either the damage still there, or a repair committed and rolled forward.
    let lsns: number[]
    try {
      lsns = await readable(after)
      // The damaged LSN is gone from the log: the record of it survived the cut (it was made before it).
      t.match((await readGaps(after, DIR)).gaps, [{ lsnFirst: DAMAGED_LSN, lsnLast: DAMAGED_LSN, by: 'fsck --repair' }], `cut at step ${n}: the dropped LSN is on record`)
    } catch (err) {
      t.equal((err as { code?: string }).code, 'WAL_CORRUPT_FRAME', `cut at step ${n}: refused only for the damage itself`)
      await repair(after)
      lsns = await readable(after)
    }
    t.strictSame(lsns, allBut(DAMAGED_LSN), `cut at step ${n}: every record but the damaged one, once, in order`)
    if (n > 200) throw new Error('the repair never finished')
  }
  t.ok(steps > 5, `the repair took ${steps} mutating steps, each cut once`)
})

t.test('point-in-time recovery, power cut at every step: once LSNs are cut from the log they are on record in gaps.json, and never reused', async (t) => {
  let steps = 0
  for (let n = 1; ; n++) {
    const fs = await damagedLog()
    fs.cutPowerAtOp(n)
    try {
      await (await openWal(fs, 'point-in-time')).close()
      steps = n - 1
      break
    } catch (err) {
      if (!fs.isCrashed) throw err
    }
    const after = fs.restart(n)
    let wal: Wal
    try {
      wal = await openWal(after)
    } catch (err) {
      // Refused: the damage is still there, or a later segment is not moved yet (the cut is made: then it is on record).
      const code = (err as { code?: string }).code
      t.ok(code === 'WAL_CORRUPT_FRAME' || code === 'WAL_MISSING_SEGMENT', `cut at step ${n}: refused only for the damage or the unfinished recovery (${code})`)
      if (code === 'WAL_MISSING_SEGMENT') t.match((await readGaps(after, DIR)).gaps, [{ lsnFirst: DAMAGED_LSN, lsnLast: RECORDS }], `cut at step ${n}: the cut is on record`)
      // The operator opens with point-in-time again: it finishes the recovery.
      wal = await openWal(after, 'point-in-time')
    }
    try {
      const lsns: number[] = []
      for await (const r of wal.read(1)) lsns.push(r.lsn)
      t.strictSame(lsns, Array.from({ length: DAMAGED_LSN - 1 }, (_, i) => i + 1), `cut at step ${n}: the log keeps LSNs 1-${DAMAGED_LSN - 1}`)
      t.match((await readGaps(after, DIR)).gaps, [{ lsnFirst: DAMAGED_LSN, lsnLast: RECORDS, by: 'open (corruptionPolicy point-in-time)' }], `cut at step ${n}: LSNs ${DAMAGED_LSN}-${RECORDS} are on record as dropped`)
      t.equal(await wal.append(RecordType.PUT, payload(RECORDS + 1)), RECORDS + 1, `cut at step ${n}: the next record takes a new LSN, not a dropped one`)
    } finally {
      await wal.close()
    }
    if (n > 200) throw new Error('the recovery never finished')
  }
  t.ok(steps > 3, `point-in-time recovery took ${steps} mutating steps, each cut once`)
})

t.test('two damaged ranges in one segment: two splits, every other record kept, the segment read once for both', async (t) => {
  const fs = await damagedLog()
  const sums = await createChecksums()
  // A second damaged frame, two records after the first, in the same segment.
  let scan = await scanLog({ fs, sums, walDir: WAL_DIR, recordBytesMax: limits.recordBytesHardMax, verifyFromLsn: 0 })
  const seg = scan.segments.find((s) => s.firstLsn !== undefined && s.firstLsn <= DAMAGED_LSN && (s.lastLsn ?? 0) >= DAMAGED_LSN + 2)
  if (!seg?.firstLsn) throw new Error('no segment holds both damaged LSNs')
  const offset = 64 + (DAMAGED_LSN + 2 - seg.firstLsn) * (GROUP_MARKER_BYTES + 32 + 4000) + GROUP_MARKER_BYTES
  const bytes = Buffer.from(fs.peek(seg.entry.path) as Uint8Array)
  bytes[offset + 9] = (bytes[offset + 9] ?? 0) ^ 0xff
  fs.poke(seg.entry.path, bytes)
  scan = await scanLog({ fs, sums, walDir: WAL_DIR, recordBytesMax: limits.recordBytesHardMax, verifyFromLsn: 0 })
  const { plan } = repairPlan(scan)
  t.equal(plan.splits.length, 2, 'one new segment for the frames after each damaged range')
  let reads = 0
  const readFile = fs.readFile.bind(fs)
  fs.readFile = async (p: string) => {
    if (p === seg.entry.path) reads++
    return readFile(p)
  }
  // The evidence copy reads through a handle (file-ops.ts copyFileData): one open for reading is one read of the file.
  const open = fs.open.bind(fs)
  fs.open = async (p, mode, o) => {
    if (p === seg.entry.path && mode === 'read') reads++
    return open(p, mode, o)
  }
  await carryOut({ fs, sums, walDir: WAL_DIR, quarantineDir: `${DIR}/quarantine` }, scan, plan, { dataDir: DIR, gaps: [] })
  t.equal(reads, 2, 'the damaged segment is read for its evidence copy and once for both splits')
  t.strictSame(await readable(fs), allBut(DAMAGED_LSN).filter((l) => l !== DAMAGED_LSN + 2), 'every record but the two damaged ones reads back')
})

t.test('the scan hands every verified frame to one consumer: which the log counts as its own, and views a keeping consumer can keep', async (t) => {
  const fs = await damagedLog()
  const sums = await createChecksums()
  for (const keepsBytes of [true, false]) {
    const seen: { lsn: number; inLog: boolean; view: Uint8Array }[] = []
    let wrongDuringCall = 0
    const scan = await scanLog({
      fs, sums, walDir: WAL_DIR, recordBytesMax: limits.recordBytesHardMax, verifyFromLsn: 0,
      frames: {
        keepsBytes,
        onFrame: (f, segmentBytes, inLog) => {
          if (f.payload.buffer !== segmentBytes.buffer || !Buffer.from(f.payload).equals(payload(f.lsn))) wrongDuringCall++
          seen.push({ lsn: f.lsn, inLog, view: f.payload })
        },
      },
    })
    const damagedEnd = scan.segments.find((s) => s.firstLsn !== undefined && s.firstLsn <= DAMAGED_LSN && (s.lastLsn ?? 0) >= DAMAGED_LSN)?.lastLsn as number
    t.strictSame(seen.map((s) => s.lsn), allBut(DAMAGED_LSN), `keepsBytes ${keepsBytes}: every frame that verifies, once, in file order`)
    t.equal(wrongDuringCall, 0, `keepsBytes ${keepsBytes}: each payload is a view of its segment's bytes and holds the record during the call`)
    t.strictSame(seen.filter((s) => !s.inLog).map((s) => s.lsn), Array.from({ length: damagedEnd - DAMAGED_LSN }, (_, i) => DAMAGED_LSN + 1 + i), `keepsBytes ${keepsBytes}: only the frames after the damage in its segment are not the log's own`)
    if (keepsBytes) t.equal(seen.filter((s) => !Buffer.from(s.view).equals(payload(s.lsn))).length, 0, 'a keeping consumer\'s views still hold their records after the scan (no buffer reused under them)')
  }
})
