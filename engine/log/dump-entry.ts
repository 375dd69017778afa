import type { WalRecord } from '../format/record-codec.js'

/**
 * One entry of a walk of the log as an operator or a reconciler reads it
 * (`dumpLog` yields them): a record with its place, or damaged bytes, or
 * LSNs no segment holds. Defined with the log, below the sinks and the
 * reconciler, so that a sink can check a log handed to it
 * (PgBackend.verifyLog) without importing who walks it.
 */
export type DumpEntry =
  | { readonly kind: 'record'; readonly lsn: number; readonly segment: string; readonly offset: number; readonly record: WalRecord }
  | { readonly kind: 'damage'; readonly segment: string; readonly offset: number; readonly end: number; readonly detail: string }
  /**
   * LSNs that no segment holds, noticed at `segment` (whose base LSN they
   * precede): a missing segment, or, when `declared`, a gap that recovery or
   * `fsck --repair` declared in that segment's header.
   */
  | { readonly kind: 'missing'; readonly segment: string; readonly lsnFirst: number; readonly lsnLast: number; readonly declared: boolean; readonly detail: string }
