import { CorruptionError, type ErrorCode } from '../../errors.js'

/**
 * What recovery, the reader and the reconciler report about the log (G5):
 * each finding names its segment, offset and LSN range, whether those LSNs
 * had already reached the backend, and what was done about it.
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

export type FindingAction = 'none' | 'truncated' | 'skipped' | 'dropped' | 'quarantined' | 'refused'

export interface Finding {
  readonly kind: FindingKind
  readonly segment: string
  readonly offset: number
  /** End of the damaged byte range, when it is one. */
  readonly end?: number
  readonly lsnFirst?: number
  readonly lsnLast?: number
  readonly detail: string
  /** True when every LSN affected was at or below the backend's checkpoint: nothing was lost. */
  readonly alreadyApplied?: boolean
  action: FindingAction
}

const CODES: Record<FindingKind, ErrorCode> = {
  'torn-tail': 'WAL_TORN_TAIL',
  'corrupt-frame': 'WAL_CORRUPT_FRAME',
  'corrupt-header': 'WAL_CORRUPT_HEADER',
  'missing-lsns': 'WAL_MISSING_SEGMENT',
  'lsn-sequence': 'WAL_LSN_SEQUENCE',
  hole: 'WAL_HOLE',
}

export function findingError(f: Finding, findings: readonly Finding[] = [f]): CorruptionError {
  return new CorruptionError(CODES[f.kind], `${f.kind}: ${f.detail}`, {
    segment: f.segment,
    offset: f.offset,
    ...(f.lsnFirst !== undefined ? { lsnFirst: f.lsnFirst } : {}),
    ...(f.lsnLast !== undefined ? { lsnLast: f.lsnLast } : {}),
  }, { details: { findings } })
}

/** One line a person can read: kind, place, LSNs, whether the backend had them, action. */
export function describeFinding(f: Finding): string {
  const lsns = f.lsnFirst === undefined ? '' : f.lsnLast === undefined ? ` LSN ${f.lsnFirst}..?` : f.lsnFirst === f.lsnLast ? ` LSN ${f.lsnFirst}` : ` LSNs ${f.lsnFirst}-${f.lsnLast}`
  const had = f.alreadyApplied === undefined ? '' : f.alreadyApplied ? ' (already in the backend: nothing lost)' : ' (not in the backend)'
  return `${f.kind} in ${f.segment} at offset ${f.offset}${f.end !== undefined ? `-${f.end}` : ''}:${lsns} ${f.detail}${had} [${f.action}]`
}
