import { posix as path } from 'node:path'
import type { FileSystem } from '../../io/fs.js'
import type { Checksums } from '../../format/checksum.js'
import { findingError, type Finding } from './findings.js'
import { gapsOf, type GapFile } from './gap-record.js'
import { scanLog, type FrameConsumer } from './log-scan.js'
import { decideRecovery, type CorruptionPolicy, type Resume } from './recovery-policy.js'
import { carryOut } from './repair-executor.js'
import { resumeRepair } from './repair-intent.js'

export { CORRUPTION_POLICIES, type CorruptionPolicy, type Resume } from './recovery-policy.js'

/**
 * Recovery at open: scan the log (scanLog), decide by the corruption policy
 * what to do (recovery-policy.ts: no I/O), carry the plan out
 * (repair-executor.ts), and report.
 */
export interface RecoverOptions {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
  readonly quarantineDir: string
  /** The data directory: what recovery drops is recorded in its gaps.json before it is dropped. */
  readonly dataDir: string
  /** When (ms since the epoch) the gaps recovery declares are recorded as declared. */
  readonly nowMs: number
  readonly recordBytesMax: number
  readonly policy: CorruptionPolicy
  /** Highest LSN known durable outside the log (the sinks' durable checkpoints): the log must reach it. */
  readonly durableLsn: number
  /** The backend's checkpoint: dropped LSNs at or below it were not lost. */
  readonly appliedLsn: number
  /** Frames below this LSN are not verified (their segments' headers are). */
  readonly verifyFromLsn: number
  readonly onProgress?: (bytes: number) => void
  /** Reads each frame as the scan verifies it (ScanOptions.frames): whoever keeps them checks the report's findings before it trusts them. */
  readonly frames?: FrameConsumer
}

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
  /** Every gap on record (gaps.json), with the ones this recovery declared. */
  readonly gaps: GapFile
}

export async function recoverWal(o: RecoverOptions): Promise<RecoveryResult> {
  // A log repair that a crash interrupted after its commit point is finished before the log is read.
  await resumeRepair(o)
  const scan = await scanLog(o)
  for (const t of scan.temps) await o.fs.unlink(path.join(o.walDir, t))
  if (scan.temps.length > 0) await o.fs.syncDir(o.walDir)
  const decision = decideRecovery(o, scan)
  if (decision.kind === 'refuse') throw findingError(decision.finding, decision.findings)
  // What the policy drops (skip-corrupt, point-in-time) is on record before it is dropped.
  const gaps = await carryOut(o, scan, decision.plan, { dataDir: o.dataDir, gaps: gapsOf(decision.findings, `open (corruptionPolicy ${o.policy})`, o.nowMs) })
  return {
    report: {
      policy: o.policy,
      segments: scan.segments.length - decision.plan.moves.length,
      records: scan.records,
      lastLsn: decision.keptLast,
      nextLsn: decision.nextLsn,
      bytesScanned: scan.bytesScanned,
      findings: decision.findings,
      removedTemps: scan.temps,
    },
    resume: decision.resume,
    gaps,
  }
}
