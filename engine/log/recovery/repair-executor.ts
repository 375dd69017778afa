import { posix as path } from 'node:path'
import { assert } from '../../assert.js'
import type { Checksums } from '../../format/checksum.js'
import { encodeGroupMarkerInto, FORMAT_VERSION, GROUP_MARKER_BYTES, type GroupMarker } from '../../format/format.js'
import { copyFile, freeName, makeDirDurable, writeNewFile, writeRange } from '../../io/file-ops.js'
import type { FileSystem } from '../../io/fs.js'
import { recordGaps, type DeclaredGap as RecordedGap, type GapFile } from './gap-record.js'
import { readRange } from '../segment-list.js'
import type { LogScan, ScannedSegment } from './log-scan.js'
import { commitIntent, finishIntent, type RepairIntent } from './repair-intent.js'
import { salvagedSegment } from './salvage.js'

/**
 * What to do to the log's files, decided from a scan by a policy that does no
 * I/O (recovery-policy.ts: the corruption policy at open; repair-plan.ts: the
 * repair of `fsck --repair`), and carried out by `carryOut`, the one executor
 * for both. Evidence is never destroyed: what is cut is copied to quarantine/
 * first when `keepCopy`, and what is removed is moved there.
 */
export interface RepairPlan {
  /** Segments zeroed from `offset` to the end of their data (the segment keeps its size: it is preallocated). */
  readonly cuts: readonly SegmentCut[]
  /** Segments moved whole to quarantine/, under the name `as` (made unique there). */
  readonly moves: readonly SegmentMove[]
  /** Segments whose header is rewritten to declare the LSNs from `fromLsn` to its base - 1 as a gap (see format.ts). */
  readonly gaps: readonly DeclaredGap[]
  /**
   * Verified frames after damage, copied into new segments of their own (the
   * damaged segment itself is cut at the damage): a repair keeps every frame
   * that verifies.
   */
  readonly splits: readonly SegmentSplit[]
  /** Damaged group markers overwritten with valid ones (the damaged bytes kept in quarantine/ first). */
  readonly markers: readonly MarkerRewrite[]
}

export interface SegmentCut {
  readonly index: number
  readonly offset: number
  /** A copy of the segment as it was goes to quarantine/ (`<name>.broken`) before the cut. */
  readonly keepCopy: boolean
}

export interface SegmentMove {
  readonly index: number
  readonly as: string
}

export interface DeclaredGap {
  readonly index: number
  readonly fromLsn: number
}

/**
 * The frames of segment `index` in [from, to), LSNs `baseLsn`..`lastLsn`,
 * become a new segment named by `baseLsn` (same capacity as the original),
 * whose header declares the gap from `gapFromLsn` (0: none) to `baseLsn` - 1.
 */
export interface SegmentSplit {
  readonly index: number
  readonly from: number
  readonly to: number
  readonly baseLsn: number
  readonly lastLsn: number
  readonly gapFromLsn: number
}

/** A group marker written at `offset` of segment `index`, over one that fails its checks. */
export interface MarkerRewrite {
  readonly index: number
  readonly offset: number
  readonly marker: GroupMarker
}

export const NOTHING_TO_REPAIR: RepairPlan = Object.freeze({ cuts: [], moves: [], gaps: [], splits: [], markers: [] })

export interface RepairTarget {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
  readonly quarantineDir: string
}

/** The LSNs a plan takes out of the log, as `<dataDir>/gaps.json` records them (gap-record.ts). */
export interface GapRecording {
  readonly dataDir: string
  readonly gaps: readonly RecordedGap[]
}

/**
 * Carries out a plan over the segments of `scan`, crash-safe at every step.
 * First the gaps it makes are recorded, durably (gaps.json, synced): were
 * they recorded after the cut, a crash between the two would leave a log
 * that simply ends earlier or reads across a gap, and nothing would tell the
 * cut from data loss. Recorded first, a crash leaves at worst a recorded gap
 * whose cut is made again by the next open or repair (the same range is one
 * gap). Resolves the gap file as recorded. Then, without splits: cuts (each after its evidence copy), then moves, then gap
 * declarations; each step is idempotent and made durable before the next,
 * so a crash leaves a log that the next scan reads and the plan can be made
 * again. With splits the new segments must exist before any cut removes
 * their frames from the original: evidence copies and new segments are
 * written first under temporary names (removed by the next open if the
 * repair goes no further), then an intent naming every remaining step is
 * committed (repair-intent.ts), and the steps are rolled forward from it,
 * here or by whichever open or fsck comes next.
 */
export async function carryOut(t: RepairTarget, scan: LogScan, plan: RepairPlan, record: GapRecording): Promise<GapFile> {
  const recorded = await recordGaps(t.fs, record.dataDir, record.gaps)
  const segment = (index: number) => {
    const seg = scan.segments[index]
    assert(seg !== undefined, 'the plan names a scanned segment')
    return seg
  }
  if (plan.moves.length > 0 || plan.markers.length > 0 || plan.cuts.some((c) => c.keepCopy)) await makeDirDurable(t.fs, t.quarantineDir)
  // Markers first: each rewrite stands alone (the log reads the same with or without it) and a cut after it may zero it.
  for (const m of plan.markers) await rewriteMarker(t, segment(m.index), m)
  const copies: string[] = []
  for (const cut of plan.cuts) {
    if (!cut.keepCopy) continue
    const seg = segment(cut.index)
    const copy = await freeName(t.fs, t.quarantineDir, `${seg.entry.name}.broken`)
    await copyFile(t.fs, seg.entry.path, copy)
    copies.push(copy)
  }
  const renames: [string, string][] = []
  // A segment with several damaged ranges gives several splits: it is read once for all of them.
  const original = new Map<number, Buffer>()
  for (const split of plan.splits) {
    const seg = segment(split.index)
    let whole = original.get(split.index)
    if (!whole) original.set(split.index, (whole = Buffer.from(await t.fs.readFile(seg.entry.path))))
    const bytes = salvagedSegment(whole, seg.size, split, t.sums)
    const name = path.basename(bytes.name)
    assert(!scan.segments.some((s) => s.entry.name === name), 'a split never replaces a segment')
    const temp = `${name}.salvage.tmp`
    await t.fs.unlink(path.join(t.walDir, temp)).catch(() => undefined)
    await writeNewFile(t.fs, path.join(t.walDir, temp), bytes.bytes)
    renames.push([temp, name])
  }
  const intent: RepairIntent = {
    renames,
    cuts: plan.cuts.map((c) => ({ segment: segment(c.index).entry.name, offset: c.offset, end: segment(c.index).dataEnd })),
    moves: plan.moves.map((m) => ({ segment: segment(m.index).entry.name, as: m.as })),
    gaps: plan.gaps.map((g) => ({ segment: segment(g.index).entry.name, fromLsn: g.fromLsn })),
  }
  const committed = renames.length > 0
  if (committed) await commitIntent(t, intent)
  await finishIntent(t, intent, committed)
  return recorded
}

/** Writes a valid group marker over a damaged one; the damaged bytes go to quarantine/ first. */
async function rewriteMarker(t: RepairTarget, seg: ScannedSegment, m: MarkerRewrite): Promise<void> {
  assert(seg.header !== undefined && seg.header.version >= FORMAT_VERSION, 'a marker is rewritten in a version 2 segment with a valid header')
  const old = await readRange(t.fs, seg.entry.path, m.offset, GROUP_MARKER_BYTES)
  await writeNewFile(t.fs, await freeName(t.fs, t.quarantineDir, `${seg.entry.name}@${m.offset}.marker.broken`), old)
  const bytes = Buffer.alloc(GROUP_MARKER_BYTES)
  encodeGroupMarkerInto(bytes, 0, m.marker, seg.header.salt, t.sums)
  await writeRange(t.fs, seg.entry.path, m.offset, bytes)
}
