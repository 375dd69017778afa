import { assert } from '../../assert.js'
import { SEGMENT_HEADER_BYTES } from '../../format/format.js'
import { segmentName } from '../../format/segment-name.js'
import type { LogScan, ScannedProblem, ScannedSegment } from './log-scan.js'
import type { DeclaredGap, MarkerRewrite, RepairPlan, SegmentCut, SegmentMove, SegmentSplit } from './repair-executor.js'

/** What `fsck --repair` does about one problem of the scan: the dry run reports exactly this, the repair does it. */
export interface LogRepairAction {
  readonly problem: ScannedProblem
  readonly segment: string
  readonly action: 'truncated' | 'skipped' | 'quarantined' | 'gap-declared' | 'rewritten' | 'none'
  /** LSNs the log no longer holds because of the problem, when any (known). */
  readonly lsnFirst?: number
  readonly lsnLast?: number
  /** The verified frames after the problem, kept in a new segment. */
  readonly kept?: { readonly segment: string; readonly lsnFirst: number; readonly lsnLast: number }
  /** What is done, in one clause. */
  readonly detail: string
}

const range = (a: number, b: number | undefined): string => (b === undefined ? `LSNs from ${a}` : a === b ? `LSN ${a}` : `LSNs ${a}-${b}`)

/**
 * `fsck --repair` for the log itself; decisions only, no I/O. It keeps every
 * frame that verifies and drops only what fails:
 * - damage inside a segment with verified frames after it: the segment is cut
 *   at the damage (a copy kept in quarantine/), and the frames after it go to
 *   a new segment of their own, whose header declares the LSNs the damage held
 *   as a gap; so for every damaged range in the segment;
 * - damage with nothing verified after it in its segment: the cut alone;
 * - a segment whose header is bad: moved to quarantine/ whole;
 * - LSNs that no segment holds (a deleted segment, a cut): declared as a gap
 *   in the header of the segment after them, so the log reads cleanly and the
 *   loss stays on record;
 * - a damaged group marker with whole records after it: a valid marker is
 *   written in its place (it held no record: nothing leaves the log).
 * Returns the plan and one action per problem, naming the LSNs it takes out
 * of the log (exactly: every LSN not named stays readable).
 */
export function repairPlan(scan: LogScan): { readonly plan: RepairPlan; readonly actions: readonly LogRepairAction[] } {
  const p = new Planner(scan)
  const bySegment = new Map<number, ScannedProblem[]>()
  for (const x of scan.problems) bySegment.set(x.segmentIndex, [...(bySegment.get(x.segmentIndex) ?? []), x])
  for (const [i, probs] of [...bySegment.entries()].sort((a, b) => a[0] - b[0])) p.segment(i, probs)
  return p.finish()
}

class Planner {
  private readonly actions: LogRepairAction[] = []
  private readonly cuts: SegmentCut[] = []
  private readonly moves: SegmentMove[] = []
  private readonly splits: SegmentSplit[] = []
  private readonly markers: MarkerRewrite[] = []
  /** Segment index -> first missing LSN before it. */
  private readonly gapBefore = new Map<number, number>()

  constructor(private readonly scan: LogScan) {}

  segment(i: number, probs: readonly ScannedProblem[]): void {
    const seg = this.scan.segments[i]
    assert(seg !== undefined, 'problem names a scanned segment')
    const headerLevel = probs.filter((x) => x.kind === 'corrupt-header' || x.offset < SEGMENT_HEADER_BYTES)
    for (const x of headerLevel) {
      if (x.kind === 'corrupt-header') {
        this.moves.push({ index: i, as: `${seg.entry.name}.broken` })
        this.missingFrom(i + 1, x.due ?? seg.entry.baseLsn)
        this.act(x, seg, 'quarantined', seg.entry.baseLsn, x.lsnLast, `moves ${seg.entry.name} to quarantine/: ${range(seg.entry.baseLsn, x.lsnLast)} leave the log`)
        return
      }
      const due = x.due ?? seg.entry.baseLsn
      if (seg.header && due < seg.header.baseLsn) {
        this.missingFrom(i, due)
        this.act(x, seg, 'gap-declared', due, seg.header.baseLsn - 1, `declares ${range(due, seg.header.baseLsn - 1)} (in no segment) as a gap in the header of ${seg.entry.name}`)
      } else {
        this.act(x, seg, 'none', undefined, undefined, `left as it is: ${seg.entry.name} overlaps LSNs an earlier segment holds (repair by hand)`)
      }
    }
    if (!seg.header || !seg.fullyScanned) return
    for (const x of probs) {
      if (x.kind !== 'damaged-marker' || !x.marker) continue
      this.markers.push({ index: i, offset: x.offset, marker: x.marker })
      this.act(x, seg, 'rewritten', undefined, undefined, `writes a valid marker in its place (the damaged bytes kept in quarantine/); no record is touched`)
    }
    this.salvage(i, seg, probs.filter((x) => !headerLevel.includes(x) && x.kind !== 'damaged-marker').sort((a, b) => a.offset - b.offset))
  }

  /** Cuts the segment at its first damage and keeps each run of verified frames after damage in a new segment. */
  private salvage(i: number, seg: ScannedSegment, probs: readonly ScannedProblem[]): void {
    let piece: { from: number; base: number; gapFrom: number; opener: number } | undefined
    const close = (to: number, last: number): void => {
      if (piece && last >= piece.base) {
        const split = { index: i, from: piece.from, to, baseLsn: piece.base, lastLsn: last, gapFromLsn: piece.gapFrom }
        this.splits.push(split)
        const a = this.actions[piece.opener] as LogRepairAction
        const kept = { segment: segmentName(split.baseLsn), lsnFirst: split.baseLsn, lsnLast: last }
        this.actions[piece.opener] = { ...a, kept, detail: `${a.detail}; keeps ${range(kept.lsnFirst, kept.lsnLast)} (verified, after it) in a new segment ${kept.segment}${split.gapFromLsn !== 0 ? ' whose header declares the gap' : ''}` }
      }
      piece = undefined
    }
    for (const [n, x] of probs.entries()) {
      const due = x.due ?? x.lsnFirst ?? seg.entry.baseLsn
      if (n === 0) this.cuts.push({ index: i, offset: x.offset, keepCopy: true })
      close(x.offset, due - 1)
      const resumed = !x.atTail && x.end !== undefined && x.end < seg.validEnd
      if (x.kind === 'lsn-sequence' && x.lsnFirst === due && x.lsnLast !== undefined && x.lsnLast >= due && this.free(i, x.lsnLast + 1)) {
        // A valid frame whose LSN jumps ahead: the LSNs before it were never in this segment.
        piece = { from: x.offset, base: x.lsnLast + 1, gapFrom: due, opener: this.actions.length }
        this.act(x, seg, 'gap-declared', due, x.lsnLast, `declares ${range(due, x.lsnLast)} (in no frame) as a gap`)
        continue
      }
      if (x.kind === 'lsn-sequence' && x.lsnLast !== undefined && x.lsnLast < due && resumed && this.free(i, due)) {
        piece = { from: x.end as number, base: due, gapFrom: 0, opener: this.actions.length }
        this.act(x, seg, 'skipped', undefined, undefined, `drops a stale copy of ${range(x.lsnLast, x.lsnLast)} at offset ${x.offset} (no LSN is lost)`)
        continue
      }
      const lostLast = x.lsnLast ?? due - 1
      if (x.kind === 'corrupt-frame' && resumed && this.free(i, lostLast + 1)) {
        piece = { from: x.end as number, base: lostLast + 1, gapFrom: lostLast >= due ? due : 0, opener: this.actions.length }
        const lost = lostLast >= due
        this.act(x, seg, 'skipped', lost ? due : undefined, lostLast, lost ? `drops ${range(due, lostLast)} (the damaged bytes ${x.offset}-${x.end})` : `drops the damaged bytes ${x.offset}-${x.end} (they held no LSN that is due)`)
        continue
      }
      // Nothing verified after it in this segment (or no room for a new segment): the cut alone.
      const next = this.scan.segments[i + 1]
      const last = seg.lastLsn !== undefined && seg.lastLsn >= due ? seg.lastLsn : next ? next.entry.baseLsn - 1 : x.lsnLast
      this.missingFrom(i + 1, due)
      this.act(x, seg, 'truncated', due, last, `cuts ${seg.entry.name} at offset ${x.offset}: ${range(due, last)} leave the log${next ? '' : ' (the end of the log)'}`)
      return
    }
    close(seg.validEnd, seg.lastLsn ?? 0)
  }

  /** A new segment based at `base` sorts after segment `i` and before the next, and takes no existing name. */
  private free(i: number, base: number): boolean {
    const seg = this.scan.segments[i]
    const next = this.scan.segments[i + 1]
    return seg !== undefined && base > seg.entry.baseLsn && (next === undefined || base < next.entry.baseLsn) && !this.scan.segments.some((s) => s.entry.baseLsn === base)
  }

  private act(problem: ScannedProblem, seg: ScannedSegment, action: LogRepairAction['action'], lsnFirst: number | undefined, lsnLast: number | undefined, detail: string): void {
    this.actions.push({ problem, segment: seg.entry.name, action, ...(lsnFirst !== undefined ? { lsnFirst } : {}), ...(lsnFirst !== undefined && lsnLast !== undefined ? { lsnLast } : {}), detail })
  }

  private missingFrom(i: number, lsn: number): void {
    this.gapBefore.set(i, Math.min(this.gapBefore.get(i) ?? Infinity, lsn))
  }

  finish(): { readonly plan: RepairPlan; readonly actions: readonly LogRepairAction[] } {
    const gaps: DeclaredGap[] = []
    for (const [i, from] of this.gapBefore) {
      const seg = this.scan.segments[i]
      // No next segment (the writer goes on after the cut), or it is gone itself.
      if (!seg?.header || this.moves.some((m) => m.index === i) || from >= seg.header.baseLsn) continue
      gaps.push({ index: i, fromLsn: from })
    }
    return { plan: { cuts: this.cuts, moves: this.moves, gaps, splits: this.splits, markers: this.markers }, actions: this.actions }
  }
}
