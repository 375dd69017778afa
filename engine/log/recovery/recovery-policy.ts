import { assertNever } from '../../assert.js'
import { SEGMENT_HEADER_BYTES, type SegmentHeader } from '../../format/format.js'
import type { SegmentEntry } from '../segment-list.js'
import { findingOf, type Finding, type FindingAction } from './findings.js'
import type { LogScan, ScannedSegment } from './log-scan.js'
import { NOTHING_TO_REPAIR, type RepairPlan, type SegmentMove } from './repair-executor.js'

/**
 * What is done about what the scan found: decisions only, no I/O. Recovery at
 * open decides by the corruption policy (after RocksDB's WAL recovery modes),
 * `fsck --repair` by `repairPlan` (repair-plan.ts); both return a RepairPlan that
 * repair-executor.ts carries out.
 * - `tolerate-torn-tail` (default): invalid bytes at the very end of the last
 *   segment with nothing valid after them are a write that was never
 *   acknowledged: zeroed. Anything else is an error naming its place; so is a
 *   log that ends before an LSN known to be durable (a hole, not a torn write).
 * - `absolute`: any invalid byte is an error.
 * - `point-in-time`: keep the log up to the first problem, drop the rest
 *   (segments moved to quarantine/, the damaged one copied there first), and
 *   report the LSNs dropped and whether the backend already had them.
 * - `skip-corrupt`: salvage: skip every damaged frame and report each gap.
 * A damaged group marker with whole records after it (`damaged-marker`) loses
 * nothing: every policy but `absolute` reports it and keeps the records.
 */
export type CorruptionPolicy = 'tolerate-torn-tail' | 'absolute' | 'point-in-time' | 'skip-corrupt'

export const CORRUPTION_POLICIES: readonly CorruptionPolicy[] = ['tolerate-torn-tail', 'absolute', 'point-in-time', 'skip-corrupt']

/** Where the writer goes on. */
export type Resume =
  | { readonly kind: 'append'; readonly segment: SegmentEntry; readonly header: SegmentHeader; readonly offset: number; readonly capacity: number; readonly nextLsn: number }
  | { readonly kind: 'new-segment'; readonly baseLsn: number; readonly gapFromLsn: number }

export interface PolicyInput {
  readonly policy: CorruptionPolicy
  /** Highest LSN known durable outside the log (the sinks' durable checkpoints): the log must reach it. */
  readonly durableLsn: number
  /** The backend's checkpoint: dropped LSNs at or below it were not lost. */
  readonly appliedLsn: number
}

export type RecoveryDecision =
  /** Open must fail: `finding` is the first one the policy does not accept. */
  | { readonly kind: 'refuse'; readonly finding: Finding; readonly findings: readonly Finding[] }
  | {
      readonly kind: 'recover'
      readonly plan: RepairPlan
      readonly findings: readonly Finding[]
      /** Last LSN the log holds after recovery (0 if none). */
      readonly keptLast: number
      readonly nextLsn: number
      readonly resume: Resume
    }

/** The corruption policy applied to a scan of the log at open. */
export function decideRecovery(o: PolicyInput, scan: LogScan): RecoveryDecision {
  const findings = scan.problems.map((p) => findingOf(p, scan, o.appliedLsn))
  switch (o.policy) {
    case 'absolute': {
      const first = findings[0]
      if (first) return refuse(first, findings)
      return tolerate(o, scan, findings)
    }
    case 'tolerate-torn-tail': {
      const bad = findings[scan.problems.findIndex((p) => !p.atTail && !harmless(p))]
      if (bad) return refuse(bad, findings)
      return tolerate(o, scan, findings)
    }
    case 'point-in-time':
      return pointInTime(o, scan, findings)
    case 'skip-corrupt':
      return skipCorrupt(o, scan, findings)
    default:
      return assertNever(o.policy, 'corruption policy')
  }
}

/**
 * Only a torn tail (if anything) to zero; the log must still reach every LSN
 * known durable. A log that ends before it is a hole: refused, unless
 * `holeAction` says the policy accepts the loss (point-in-time drops it,
 * skip-corrupt skips it): then it is reported, and its LSNs are never reused.
 */
function tolerate(o: PolicyInput, scan: LogScan, found: readonly Finding[], holeAction?: 'dropped' | 'skipped'): RecoveryDecision {
  const last = scan.segments.length - 1
  const tailProblem = scan.problems.find((p) => p.atTail)
  const seg = scan.segments[last]
  // No segment at all holds nothing: if an LSN is known durable, that is a hole too.
  const keptLast = seg ? dueOf(seg) - 1 : 0
  const findings = withAction(found, () => 'truncated')
  const hole = holeFinding(o, seg, keptLast, holeAction ?? 'refused')
  if (hole) {
    findings.push(hole)
    if (holeAction === undefined) return { kind: 'refuse', finding: hole, findings: withAction(findings, () => 'refused') }
  }
  const nextLsn = Math.max(keptLast, o.durableLsn) + 1
  return {
    kind: 'recover',
    plan: { ...NOTHING_TO_REPAIR, cuts: tailProblem ? [{ index: tailProblem.segmentIndex, offset: tailProblem.offset, keepCopy: false }] : [] },
    findings,
    keptLast,
    nextLsn,
    resume: resumeAfter(seg, undefined, keptLast, nextLsn),
  }
}

/** The LSNs after `reached` up to the durable one, which the log no longer holds: undefined when there are none. */
function holeFinding(o: PolicyInput, seg: ScannedSegment | undefined, reached: number, action: FindingAction): Finding | undefined {
  if (reached >= o.durableLsn) return undefined
  return {
    kind: 'hole', segment: seg?.entry.name ?? '(no segment)', offset: seg?.header ? seg.validEnd : 0, lsnFirst: reached + 1, lsnLast: o.durableLsn,
    alreadyApplied: o.durableLsn <= o.appliedLsn,
    detail: `the log ends at LSN ${reached} but LSN ${o.durableLsn} is known durable: acknowledged records are missing`, action,
  }
}

/** Keep everything before the first problem; drop the rest, keeping the evidence in quarantine/. */
function pointInTime(o: PolicyInput, scan: LogScan, found: readonly Finding[]): RecoveryDecision {
  const first = scan.problems.find((p) => !harmless(p))
  if (!first) return tolerate(o, scan, found, 'dropped')
  const wholeSegment = first.kind === 'corrupt-header' || first.offset < SEGMENT_HEADER_BYTES
  const keepUpTo = wholeSegment ? first.segmentIndex - 1 : first.segmentIndex
  const moves: SegmentMove[] = []
  for (let i = keepUpTo + 1; i < scan.segments.length; i++) moves.push({ index: i, as: (scan.segments[i] as ScannedSegment).entry.name })
  const kept = scan.segments[keepUpTo]
  const keptLast = first.due !== undefined ? first.due - 1 : kept ? dueOf(kept) - 1 : 0
  const nextLsn = Math.max(keptLast, scan.maxLsn, o.durableLsn) + 1
  const findings = withAction(found, () => 'dropped')
  const droppedLast = nextLsn - 1
  if (droppedLast > keptLast) {
    findings.unshift({
      kind: first.kind === 'corrupt-frame' && first.atTail ? 'torn-tail' : first.kind,
      segment: scan.segments[first.segmentIndex]?.entry.name ?? '?', offset: first.offset,
      lsnFirst: keptLast + 1, lsnLast: droppedLast, alreadyApplied: droppedLast <= o.appliedLsn,
      detail: `point-in-time recovery dropped LSNs ${keptLast + 1}-${droppedLast}`, action: 'dropped',
    })
  }
  return {
    kind: 'recover',
    plan: { ...NOTHING_TO_REPAIR, cuts: wholeSegment ? [] : [{ index: first.segmentIndex, offset: first.offset, keepCopy: true }], moves },
    findings,
    keptLast,
    nextLsn,
    resume: resumeAfter(kept, wholeSegment ? undefined : first.offset, keptLast, nextLsn),
  }
}

/** Skip every damaged frame; zero a torn tail; a last segment with a bad header goes to quarantine. */
function skipCorrupt(o: PolicyInput, scan: LogScan, found: readonly Finding[]): RecoveryDecision {
  const findings = withAction(found, (f) => (f.kind === 'torn-tail' ? 'truncated' : 'skipped'))
  let lastIndex = scan.segments.length - 1
  const moves: SegmentMove[] = []
  const lastProblem = scan.problems.find((p) => p.kind === 'corrupt-header' && p.segmentIndex === lastIndex)
  if (lastProblem) {
    moves.push({ index: lastIndex, as: (scan.segments[lastIndex] as ScannedSegment).entry.name })
    lastIndex--
  }
  const tail = scan.problems.find((p) => p.atTail)
  const kept = scan.segments[lastIndex]
  const keptLast = kept ? dueOf(kept) - 1 : 0
  const nextLsn = Math.max(keptLast, scan.maxLsn, o.durableLsn) + 1
  const hole = holeFinding(o, lastProblem ? scan.segments[lastIndex + 1] : kept, Math.max(keptLast, scan.maxLsn), 'skipped')
  if (hole) findings.push(hole)
  return {
    kind: 'recover',
    plan: { ...NOTHING_TO_REPAIR, cuts: tail && tail.segmentIndex === lastIndex ? [{ index: tail.segmentIndex, offset: tail.offset, keepCopy: false }] : [], moves },
    findings,
    keptLast,
    nextLsn,
    resume: resumeAfter(kept, undefined, keptLast, nextLsn),
  }
}

function resumeAfter(seg: ScannedSegment | undefined, cutOffset: number | undefined, keptLast: number, nextLsn: number): Resume {
  if (!seg?.header || nextLsn !== keptLast + 1) return { kind: 'new-segment', baseLsn: nextLsn, gapFromLsn: nextLsn === keptLast + 1 ? 0 : keptLast + 1 }
  return { kind: 'append', segment: seg.entry, header: seg.header, offset: cutOffset ?? seg.validEnd, capacity: seg.size, nextLsn }
}

/** The LSN a segment's next frame would carry. */
function dueOf(seg: ScannedSegment): number {
  return seg.lastLsn !== undefined ? seg.lastLsn + 1 : seg.entry.baseLsn
}

/** A damaged group marker with whole records after it: reported (action `none`), never cut, skipped or dropped. */
function harmless(p: { readonly kind: string }): boolean {
  return p.kind === 'damaged-marker'
}

function withAction(findings: readonly Finding[], action: (f: Finding) => FindingAction): Finding[] {
  return findings.map((f) => ({ ...f, action: harmless(f) ? 'none' : action(f) }))
}

function refuse(f: Finding, findings: readonly Finding[]): RecoveryDecision {
  const marked = findings.map((x): Finding => ({ ...x, action: x.action === 'none' ? 'refused' : x.action }))
  return { kind: 'refuse', finding: marked[findings.indexOf(f)] ?? f, findings: marked }
}
