import { posix as path } from 'node:path'
import { assert } from '../../assert.js'
import type { Checksums } from '../../format/checksum.js'
import { decodeSegmentHeader, encodeSegmentHeader } from '../../format/format.js'
import { copyFile, freeName, makeDirDurable, writeNewFile, zeroRange } from '../../io/file-ops.js'
import type { FileSystem } from '../../io/fs.js'
import type { LogScan } from './log-scan.js'

/**
 * What to do to the log's files, decided from a scan by a policy that does no
 * I/O (recovery-policy.ts: the corruption policy at open, the repair of
 * `fsck --repair`), and carried out by `carryOut`, the one executor for both.
 * Evidence is never destroyed: what is cut is copied to quarantine/ first
 * when `keepCopy`, and what is removed is moved there.
 */
export interface RepairPlan {
  /** Segments zeroed from `offset` to the end of their data (the segment keeps its size: it is preallocated). */
  readonly cuts: readonly SegmentCut[]
  /** Segments moved whole to quarantine/, under the name `as` (made unique there). */
  readonly moves: readonly SegmentMove[]
  /** Segments whose header is rewritten to declare the LSNs from `fromLsn` to its base - 1 as a gap (see format.ts). */
  readonly gaps: readonly DeclaredGap[]
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

export const NOTHING_TO_REPAIR: RepairPlan = Object.freeze({ cuts: [], moves: [], gaps: [] })

export interface RepairTarget {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
  readonly quarantineDir: string
}

/** Carries out a plan over the segments of `scan`: cuts, then moves, then gap declarations, each made durable. */
export async function carryOut(t: RepairTarget, scan: LogScan, plan: RepairPlan): Promise<void> {
  const segment = (index: number) => {
    const seg = scan.segments[index]
    assert(seg !== undefined, 'the plan names a scanned segment')
    return seg
  }
  if (plan.moves.length > 0 || plan.cuts.some((c) => c.keepCopy)) await makeDirDurable(t.fs, t.quarantineDir)
  for (const cut of plan.cuts) {
    const seg = segment(cut.index)
    if (cut.keepCopy) await copyFile(t.fs, seg.entry.path, await freeName(t.fs, t.quarantineDir, `${seg.entry.name}.broken`))
    await zeroRange(t.fs, seg.entry.path, cut.offset, seg.dataEnd)
  }
  for (const move of plan.moves) await t.fs.rename(segment(move.index).entry.path, await freeName(t.fs, t.quarantineDir, move.as))
  if (plan.moves.length > 0) {
    await t.fs.syncDir(t.quarantineDir)
    await t.fs.syncDir(t.walDir)
  }
  for (const gap of plan.gaps) await declareGap(t, segment(gap.index).entry.path, gap.fromLsn)
}

/** Rewrites a segment's header with `gapFromLsn`: a synced copy renamed over the original. */
async function declareGap(t: RepairTarget, file: string, gapFromLsn: number): Promise<void> {
  const bytes = Buffer.from(await t.fs.readFile(file))
  const h = decodeSegmentHeader(bytes, t.sums)
  assert(h.kind === 'header', 'gap is declared in a valid segment')
  const existing = h.header.gapFromLsn
  const header = encodeSegmentHeader({ ...h.header, gapFromLsn: existing !== 0 ? Math.min(existing, gapFromLsn) : gapFromLsn }, t.sums)
  header.copy(bytes, 0)
  const temp = `${file}.repair.tmp`
  await writeNewFile(t.fs, temp, bytes)
  await t.fs.rename(temp, file)
  await t.fs.syncDir(path.dirname(file))
}
