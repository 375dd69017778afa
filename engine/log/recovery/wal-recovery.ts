import { posix as path } from 'node:path'
import { assert, assertNever } from '../../assert.js'
import type { FileSystem } from '../../io/fs.js'
import type { Checksums } from '../../format/checksum.js'
import { SEGMENT_HEADER_BYTES, type SegmentHeader } from '../../format/format.js'
import type { SegmentEntry } from '../segment-list.js'
import { copyFile, freeName, zeroRange } from '../../io/file-ops.js'
import { findingError, type Finding } from './findings.js'
import { scanLog, type LogScan, type ScannedProblem, type ScannedSegment } from './log-scan.js'

/**
 * What recovery does with what the scan found, after RocksDB's WAL recovery modes:
 * - `tolerate-torn-tail` (default): invalid bytes at the very end of the last
 *   segment with nothing valid after them are a write that was never
 *   acknowledged: zeroed. Anything else is an error naming its place; so is a
 *   log that ends before an LSN known to be durable (a hole, not a torn write).
 * - `absolute`: any invalid byte is an error.
 * - `point-in-time`: keep the log up to the first problem, drop the rest
 *   (segments moved to quarantine/, the damaged one copied there first), and
 *   report the LSNs dropped and whether the backend already had them.
 * - `skip-corrupt`: salvage: skip every damaged frame and report each gap.
 */
export type CorruptionPolicy = 'tolerate-torn-tail' | 'absolute' | 'point-in-time' | 'skip-corrupt'

export const CORRUPTION_POLICIES: readonly CorruptionPolicy[] = ['tolerate-torn-tail', 'absolute', 'point-in-time', 'skip-corrupt']

export interface RecoverOptions {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
  readonly quarantineDir: string
  readonly recordBytesMax: number
  readonly policy: CorruptionPolicy
  /** Highest LSN known durable outside the log (the sinks' durable checkpoints): the log must reach it. */
  readonly durableLsn: number
  /** The backend's checkpoint: dropped LSNs at or below it were not lost. */
  readonly appliedLsn: number
  /** Frames below this LSN are not verified (their segments' headers are). */
  readonly verifyFromLsn: number
  readonly onProgress?: (bytes: number) => void
}

/** Where the writer goes on. */
export type Resume =
  | { readonly kind: 'append'; readonly segment: SegmentEntry; readonly header: SegmentHeader; readonly offset: number; readonly capacity: number; readonly nextLsn: number }
  | { readonly kind: 'new-segment'; readonly baseLsn: number; readonly gapFromLsn: number }

export interface RecoveryReport {
  readonly policy: CorruptionPolicy
  readonly segments: number
  readonly records: number
  /** Last LSN the log holds after recovery (0 if none). */
  readonly lastLsn: number
  readonly nextLsn: number
  readonly bytesScanned: number
  readonly findings: readonly Finding[]
  readonly removedTemps: readonly string[]
}

export interface RecoveryResult {
  readonly report: RecoveryReport
  readonly resume: Resume
}

export async function recoverWal(o: RecoverOptions): Promise<RecoveryResult> {
  const scan = await scanLog(o)
  for (const t of scan.temps) await o.fs.unlink(path.join(o.walDir, t))
  if (scan.temps.length > 0) await o.fs.syncDir(o.walDir)
  const findings = scan.problems.map((p) => toFinding(p, scan, o.appliedLsn))
  const plan = decide(o, scan, findings)
  await carryOut(o, scan, plan)
  return {
    report: {
      policy: o.policy,
      segments: scan.segments.length - plan.quarantine.length,
      records: scan.records,
      lastLsn: plan.keptLast,
      nextLsn: plan.nextLsn,
      bytesScanned: scan.bytesScanned,
      findings,
      removedTemps: scan.temps,
    },
    resume: plan.resume,
  }
}

interface Plan {
  /** Segment index and offset from which bytes are zeroed (the torn or dropped part). */
  readonly zeroFrom?: { readonly index: number; readonly offset: number; readonly keepCopy: boolean }
  /** Segment indexes moved to quarantine/. */
  readonly quarantine: readonly number[]
  readonly keptLast: number
  readonly nextLsn: number
  readonly resume: Resume
}

function decide(o: RecoverOptions, scan: LogScan, findings: Finding[]): Plan {
  const problems = scan.problems
  switch (o.policy) {
    case 'absolute': {
      const first = findings[0]
      if (first) throw refuse(first, findings)
      return tolerate(o, scan, findings)
    }
    case 'tolerate-torn-tail': {
      const k = problems.findIndex((p) => !p.atTail)
      const bad = findings[k]
      if (bad) throw refuse(bad, findings)
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
function tolerate(o: RecoverOptions, scan: LogScan, findings: Finding[], holeAction?: 'dropped' | 'skipped'): Plan {
  const last = scan.segments.length - 1
  const tail = scan.problems.findIndex((p) => p.atTail)
  const tailProblem = scan.problems[tail]
  const seg = scan.segments[last]
  // No segment at all holds nothing: if an LSN is known durable, that is a hole too.
  const keptLast = seg ? dueOf(seg) - 1 : 0
  for (const f of findings) f.action = 'truncated'
  const hole = holeFinding(o, seg, keptLast, holeAction ?? 'refused')
  if (hole) {
    findings.push(hole)
    if (holeAction === undefined) {
      for (const f of findings) f.action = 'refused'
      throw findingError(hole, findings)
    }
  }
  const nextLsn = Math.max(keptLast, o.durableLsn) + 1
  return {
    ...(tailProblem ? { zeroFrom: { index: tailProblem.segmentIndex, offset: tailProblem.offset, keepCopy: false } } : {}),
    quarantine: [],
    keptLast,
    nextLsn,
    resume: resumeAfter(seg, undefined, keptLast, nextLsn),
  }
}

/** The LSNs after `reached` up to the durable one, which the log no longer holds: undefined when there are none. */
function holeFinding(o: RecoverOptions, seg: ScannedSegment | undefined, reached: number, action: Finding['action']): Finding | undefined {
  if (reached >= o.durableLsn) return undefined
  return {
    kind: 'hole', segment: seg?.entry.name ?? '(no segment)', offset: seg?.header ? seg.validEnd : 0, lsnFirst: reached + 1, lsnLast: o.durableLsn,
    alreadyApplied: o.durableLsn <= o.appliedLsn,
    detail: `the log ends at LSN ${reached} but LSN ${o.durableLsn} is known durable: acknowledged records are missing`, action,
  }
}

/** Keep everything before the first problem; drop the rest, keeping the evidence in quarantine/. */
function pointInTime(o: RecoverOptions, scan: LogScan, findings: Finding[]): Plan {
  const first = scan.problems[0]
  if (!first) return tolerate(o, scan, findings, 'dropped')
  const wholeSegment = first.kind === 'corrupt-header' || first.offset < SEGMENT_HEADER_BYTES
  const keepUpTo = wholeSegment ? first.segmentIndex - 1 : first.segmentIndex
  const quarantine: number[] = []
  for (let i = keepUpTo + 1; i < scan.segments.length; i++) quarantine.push(i)
  const kept = scan.segments[keepUpTo]
  const keptLast = first.due !== undefined ? first.due - 1 : kept ? dueOf(kept) - 1 : 0
  const nextLsn = Math.max(keptLast, scan.maxLsn, o.durableLsn) + 1
  for (const f of findings) f.action = 'dropped'
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
    ...(wholeSegment ? {} : { zeroFrom: { index: first.segmentIndex, offset: first.offset, keepCopy: true } }),
    quarantine,
    keptLast,
    nextLsn,
    resume: resumeAfter(kept, wholeSegment ? undefined : first.offset, keptLast, nextLsn),
  }
}

/** Skip every damaged frame; zero a torn tail; a last segment with a bad header goes to quarantine. */
function skipCorrupt(o: RecoverOptions, scan: LogScan, findings: Finding[]): Plan {
  for (const f of findings) f.action = f.kind === 'torn-tail' ? 'truncated' : 'skipped'
  let lastIndex = scan.segments.length - 1
  const quarantine: number[] = []
  const lastProblem = scan.problems.find((p) => p.kind === 'corrupt-header' && p.segmentIndex === lastIndex)
  if (lastProblem) {
    quarantine.push(lastIndex)
    lastIndex--
  }
  const tail = scan.problems.find((p) => p.atTail)
  const kept = scan.segments[lastIndex]
  const keptLast = kept ? dueOf(kept) - 1 : 0
  const nextLsn = Math.max(keptLast, scan.maxLsn, o.durableLsn) + 1
  const hole = holeFinding(o, lastProblem ? scan.segments[lastIndex + 1] : kept, Math.max(keptLast, scan.maxLsn), 'skipped')
  if (hole) findings.push(hole)
  return {
    ...(tail && tail.segmentIndex === lastIndex ? { zeroFrom: { index: tail.segmentIndex, offset: tail.offset, keepCopy: false } } : {}),
    quarantine,
    keptLast,
    nextLsn,
    resume: resumeAfter(kept, undefined, keptLast, nextLsn),
  }
}

function resumeAfter(seg: ScannedSegment | undefined, cutOffset: number | undefined, keptLast: number, nextLsn: number): Resume {
  if (!seg?.header || nextLsn !== keptLast + 1) return { kind: 'new-segment', baseLsn: nextLsn, gapFromLsn: nextLsn === keptLast + 1 ? 0 : keptLast + 1 }
  const r = appendTo(seg, nextLsn)
  return cutOffset !== undefined && r.kind === 'append' ? { ...r, offset: cutOffset } : r
}

function appendTo(seg: ScannedSegment, nextLsn: number): Resume {
  if (!seg.header) return { kind: 'new-segment', baseLsn: nextLsn, gapFromLsn: 0 }
  return { kind: 'append', segment: seg.entry, header: seg.header, offset: seg.validEnd, capacity: seg.size, nextLsn }
}

/** The LSN a segment's next frame would carry. */
function dueOf(seg: ScannedSegment): number {
  return seg.lastLsn !== undefined ? seg.lastLsn + 1 : seg.entry.baseLsn
}

function toFinding(p: ScannedProblem, scan: LogScan, appliedLsn: number): Finding {
  return {
    kind: p.atTail ? 'torn-tail' : p.kind,
    segment: scan.segments[p.segmentIndex]?.entry.name ?? '?',
    offset: p.offset,
    ...(p.end !== undefined ? { end: p.end } : {}),
    ...(p.lsnFirst !== undefined ? { lsnFirst: p.lsnFirst } : {}),
    ...(p.lsnLast !== undefined ? { lsnLast: p.lsnLast, alreadyApplied: p.lsnLast <= appliedLsn } : {}),
    detail: p.detail,
    action: 'none',
  }
}

function refuse(f: Finding, findings: readonly Finding[]): Error {
  for (const x of findings) if (x.action === 'none') x.action = 'refused'
  return findingError(f, findings)
}

async function carryOut(o: RecoverOptions, scan: LogScan, plan: Plan): Promise<void> {
  if (plan.quarantine.length > 0 || plan.zeroFrom?.keepCopy === true) await o.fs.mkdirp(o.quarantineDir)
  if (plan.zeroFrom) {
    const seg = scan.segments[plan.zeroFrom.index]
    assert(seg !== undefined, 'segment to truncate exists')
    if (plan.zeroFrom.keepCopy) await copyFile(o.fs, seg.entry.path, await freeName(o.fs, o.quarantineDir, `${seg.entry.name}.broken`))
    await zeroRange(o.fs, seg.entry.path, plan.zeroFrom.offset, seg.dataEnd)
  }
  for (const i of plan.quarantine) {
    const seg = scan.segments[i]
    assert(seg !== undefined, 'segment to quarantine exists')
    await o.fs.rename(seg.entry.path, await freeName(o.fs, o.quarantineDir, seg.entry.name))
  }
  if (plan.quarantine.length > 0) {
    await o.fs.syncDir(o.quarantineDir)
    await o.fs.syncDir(o.walDir)
  }
}
