import { CorruptionError, type ErrorCode } from '../../errors.js'
import type { LogScan, ScannedProblem } from './log-scan.js'

/**
 * The one shape of what memwal reports about its data (G5): recovery at open,
 * the reader, `verify` and `memwal fsck` all report findings, each naming its
 * place (a segment and offset in the log, or a sink and key), its LSN range,
 * whether those LSNs had already reached the backend, and what was done.
 * `K` is the kind: the log's kinds here; the reconciler adds the sinks'.
 */
export type FindingKind =
  /** Invalid bytes at the very end of the last segment, nothing valid after: a write cut short. */
  | 'torn-tail'
  /** A frame that fails its checks in the middle of the log. */
  | 'corrupt-frame'
  /** A segment whose header fails its checks. */
  | 'corrupt-header'
  /** LSNs that no segment holds: a missing segment, or a segment cut short before a later one. */
  | 'missing-lsns'
  /** A valid frame whose LSN is not the previous + 1. */
  | 'lsn-sequence'
  /** The log ends before an LSN known to be durable elsewhere: acknowledged records are gone. */
  | 'hole'
  /**
   * A group marker (format version 2) that fails its checks, with the record
   * frames after it whole: damage that loses nothing (a marker holds no
   * record). Reported; only the `absolute` policy refuses it.
   */
  | 'damaged-marker'

/** What was done about a finding: `none` (reported only), what recovery or a log repair did, or `repaired` (a sink fixed). */
export type FindingAction = 'none' | 'truncated' | 'skipped' | 'dropped' | 'quarantined' | 'refused' | 'repaired'

export interface Finding<K extends string = FindingKind> {
  readonly kind: K
  /** In the log: the segment and the byte offset; `end`, the end of the damaged range when it is one. */
  readonly segment?: string
  readonly offset?: number
  readonly end?: number
  /** In a sink: its name and the key. */
  readonly sink?: string
  readonly key?: string
  /** In a sink: the namespace of `key` (identity is (namespace, key)). */
  readonly namespace?: string
  readonly lsnFirst?: number
  readonly lsnLast?: number
  /** True when every LSN affected was at or below the backend's checkpoint: nothing was lost. */
  readonly alreadyApplied?: boolean
  readonly detail: string
  readonly action: FindingAction
}

/** A problem of the scan as a finding, the one conversion: a problem at the tail is a torn tail. */
export function findingOf(p: ScannedProblem, scan: LogScan, appliedLsn: number): Finding {
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

const CODES: Record<FindingKind, ErrorCode> = {
  'torn-tail': 'WAL_TORN_TAIL',
  'corrupt-frame': 'WAL_CORRUPT_FRAME',
  'corrupt-header': 'WAL_CORRUPT_HEADER',
  'missing-lsns': 'WAL_MISSING_SEGMENT',
  'lsn-sequence': 'WAL_LSN_SEQUENCE',
  hole: 'WAL_HOLE',
  'damaged-marker': 'WAL_CORRUPT_FRAME',
}

export function findingError(f: Finding, findings: readonly Finding[] = [f]): CorruptionError {
  return new CorruptionError(CODES[f.kind], `${f.kind}: ${f.detail}`, {
    segment: f.segment ?? '?',
    offset: f.offset ?? 0,
    ...(f.lsnFirst !== undefined ? { lsnFirst: f.lsnFirst } : {}),
    ...(f.lsnLast !== undefined ? { lsnLast: f.lsnLast } : {}),
  }, { details: { findings } })
}

/**
 * The one line a person reads for a finding (recovery's report, `memwal
 * replay`, `memwal fsck`): kind, place, LSNs, detail, whether the backend had
 * those LSNs, and what was done.
 */
export function describeFinding(f: Finding<string>): string {
  const where = f.segment !== undefined ? `${f.segment}@${f.offset ?? 0}` : f.key !== undefined ? `key ${JSON.stringify(f.key)}${f.namespace !== undefined ? ` in namespace ${JSON.stringify(f.namespace)}` : ''}` : (f.sink ?? '')
  const lsns = f.lsnFirst === undefined ? '' : f.lsnLast === undefined || f.lsnLast === f.lsnFirst ? ` LSN ${f.lsnFirst}` : ` LSNs ${f.lsnFirst}-${f.lsnLast}`
  const had = f.alreadyApplied === undefined ? '' : f.alreadyApplied ? ' (already in the backend: nothing lost)' : ' (NOT in the backend: lost)'
  return `${f.kind}${where === '' ? '' : ` ${where}`}${lsns}: ${f.detail}${had}${f.action === 'none' ? '' : ` [${f.action}]`}`
}
