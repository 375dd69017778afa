import { posix as path } from 'node:path'
import { assert } from '../../assert.js'
import type { FileSystem } from '../../io/fs.js'
import type { Checksums } from '../../format/checksum.js'
import { decodeSegmentHeader, encodeSegmentHeader, SEGMENT_HEADER_BYTES } from '../../format/format.js'
import { copyFile, freeName, writeNewFile, zeroRange } from '../../io/file-ops.js'
import type { LogScan, ScannedProblem } from './log-scan.js'

/**
 * `fsck --repair` for the log itself. Evidence is never destroyed: a damaged
 * segment is copied to quarantine/ before anything in it changes.
 * - damage inside a segment (a bad frame, an LSN out of sequence): the segment
 *   is cut at the damage (zeroed from there);
 * - a segment whose header is bad: moved to quarantine/ whole;
 * - then the segment after each cut or removed one declares the LSNs that are
 *   now missing as a gap in its header (rewritten through a synced copy and a
 *   rename), so the log reads cleanly and the loss stays on record.
 * Returns, per problem, the LSN range lost.
 */
export interface LogRepairAction {
  readonly problem: ScannedProblem
  readonly segment: string
  readonly action: 'truncated' | 'quarantined' | 'gap-declared'
  /** LSNs no longer in the log, when known. */
  readonly lsnFirst?: number
  readonly lsnLast?: number
}

export async function repairLog(fs: FileSystem, sums: Checksums, quarantineDir: string, scan: LogScan): Promise<LogRepairAction[]> {
  const actions: LogRepairAction[] = []
  // One action per segment: the first problem in it decides (what follows it is cut anyway).
  const firstPerSegment = new Map<number, ScannedProblem>()
  for (const p of scan.problems) if (!firstPerSegment.has(p.segmentIndex)) firstPerSegment.set(p.segmentIndex, p)
  const gapBefore = new Map<number, number>() // segment index -> first missing LSN before it
  await fs.mkdirp(quarantineDir)
  for (const [i, p] of [...firstPerSegment.entries()].sort((a, b) => a[0] - b[0])) {
    const seg = scan.segments[i]
    assert(seg !== undefined, 'problem names a scanned segment')
    const due = p.due ?? p.lsnFirst ?? seg.entry.baseLsn
    if (p.kind === 'missing-lsns' || (p.kind === 'lsn-sequence' && p.offset < SEGMENT_HEADER_BYTES)) {
      gapBefore.set(i, Math.min(gapBefore.get(i) ?? Infinity, due))
      continue
    }
    await copyFile(fs, seg.entry.path, await freeName(fs, quarantineDir, `${seg.entry.name}.broken`))
    if (p.kind === 'corrupt-header' || p.offset < SEGMENT_HEADER_BYTES) {
      await fs.unlink(seg.entry.path)
      await fs.syncDir(path.dirname(seg.entry.path))
      actions.push({ problem: p, segment: seg.entry.name, action: 'quarantined', lsnFirst: seg.entry.baseLsn, ...(p.lsnLast !== undefined ? { lsnLast: p.lsnLast } : {}) })
      gapBefore.set(i + 1, Math.min(gapBefore.get(i + 1) ?? Infinity, p.due ?? seg.entry.baseLsn))
      continue
    }
    await zeroRange(fs, seg.entry.path, p.offset, seg.dataEnd)
    const lostLast = seg.lastLsn !== undefined && seg.lastLsn >= due ? seg.lastLsn : p.lsnLast
    actions.push({ problem: p, segment: seg.entry.name, action: 'truncated', lsnFirst: due, ...(lostLast !== undefined ? { lsnLast: lostLast } : {}) })
    gapBefore.set(i + 1, Math.min(gapBefore.get(i + 1) ?? Infinity, due))
  }
  for (const [i, from] of gapBefore) {
    const seg = scan.segments[i]
    if (!seg?.header) continue // no next segment (the writer goes on after the cut) or it is gone itself
    if (from >= seg.header.baseLsn) continue
    await declareGap(fs, sums, seg.entry.path, from)
    actions.push({ problem: firstPerSegment.get(i) ?? (scan.problems[0] as ScannedProblem), segment: seg.entry.name, action: 'gap-declared', lsnFirst: from, lsnLast: seg.header.baseLsn - 1 })
  }
  return actions
}

/** Rewrites a segment's header with `gapFromLsn`: a synced copy renamed over the original. */
async function declareGap(fs: FileSystem, sums: Checksums, file: string, gapFromLsn: number): Promise<void> {
  const bytes = Buffer.from(await fs.readFile(file))
  const h = decodeSegmentHeader(bytes, sums)
  assert(h.kind === 'header', 'gap is declared in a valid segment')
  const existing = h.header.gapFromLsn
  const header = encodeSegmentHeader({ ...h.header, gapFromLsn: existing !== 0 ? Math.min(existing, gapFromLsn) : gapFromLsn }, sums)
  header.copy(bytes, 0)
  const temp = `${file}.repair.tmp`
  await writeNewFile(fs, temp, bytes)
  await fs.rename(temp, file)
  await fs.syncDir(path.dirname(file))
}
