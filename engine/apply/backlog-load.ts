import { dataEnd, type RecordType } from '../format/format.js'
import type { RecordCodec } from '../format/record-codec.js'
import type { ScannedFrame } from '../log/segment-cursor.js'
import type { FrameConsumer } from '../log/recovery/log-scan.js'
import type { RecoveryReport } from '../log/recovery/wal-recovery.js'
import { PendingLog } from './pending-log.js'

/**
 * The backlog (records some sink has not applied) loaded into a PendingLog
 * from recovery's own scan of the log at open (ScanOptions.frames), so that
 * each frame is read and verified once: a second read of the log after
 * recovery cost a 1,000,000-record open about a third of its time (the
 * segments read again, every payload checksummed again).
 *
 * What the scan hands over is only taken as the backlog when recovery ended
 * as a clean log does, a torn tail at most (`result`): the scan's frames are
 * then exactly the records the log holds from `fromLsn` on. Anything else
 * (damage a policy salvaged or cut, a frame that does not decode, a layout
 * migration that moved the checkpoints) gives undefined, and the caller
 * reads the backlog from the recovered log as before (open.ts loadBacklog),
 * with the errors that read raises.
 *
 * Payloads are kept as views of the segment's bytes (read whole, fresh for
 * this scan, never written again) when the backlog fills at least half of
 * them: copying 358 MB of payloads into new slabs cost more than reading
 * them. A segment mostly applied, or mostly the zeros of its preallocation
 * (the active one), has its payloads copied, so that a small backlog never
 * holds a large segment.
 */
export class BacklogLoad implements FrameConsumer {
  /** Payloads are kept as views of the segment's bytes (below): the scan must not reuse them. */
  readonly keepsBytes = true
  private readonly pending: PendingLog
  private failed = false
  private segment: Uint8Array | undefined
  private keepViews = false
  /** The last record loaded, and its clock stamp: the engine's clock resumes from it (open.ts lastHlc). */
  private lastLsn = 0
  private lastHlc = 0

  constructor(
    private readonly codec: RecordCodec,
    private readonly fromLsn: number,
    private readonly nowMs: number,
  ) {
    this.pending = new PendingLog(codec, fromLsn)
  }

  /** For the scan: one verified frame, in file order, with the bytes of the segment it lies in; only the log's own (`inLog`) are the backlog. */
  readonly onFrame = (f: ScannedFrame, segmentBytes: Uint8Array, inLog: boolean): void => {
    if (!inLog || this.failed || f.lsn < this.pending.nextLsn) return
    try {
      if (segmentBytes !== this.segment) {
        this.segment = segmentBytes
        this.keepViews = 2 * (dataEnd(segmentBytes, f.offset) - f.offset) >= segmentBytes.length
      }
      // LSNs a segment header declares as a gap: the scan passed over them without a finding.
      if (f.lsn > this.pending.nextLsn) this.pending.skipTo(f.lsn)
      const record = this.codec.decode(f.type as RecordType, f.payload)
      this.pending.accept(f.lsn, record, this.keepViews ? f.payload : this.pending.copy(f.payload), this.nowMs)
      this.lastLsn = f.lsn
      this.lastHlc = record.hlc ?? 0
    } catch {
      // The read after recovery meets the same frame and raises its error where open always raised it.
      this.failed = true
    }
  }

  /**
   * The pending log, when what the scan handed over is what the log holds
   * after recovery (`report`), through `lastLsn` (the log's last LSN, which
   * may lie past its last record: those LSNs hold none).
   */
  result(report: RecoveryReport, lastLsn: number): PendingLog | undefined {
    if (this.failed || !report.findings.every((f) => f.kind === 'torn-tail')) return undefined
    if (this.pending.nextLsn !== Math.max(this.fromLsn, report.lastLsn + 1)) return undefined
    if (this.pending.nextLsn <= lastLsn) this.pending.skipTo(lastLsn + 1)
    return this.pending
  }

  /** The clock stamp of record `lsn` when it is the last one loaded (0 when it had none). */
  hlcOf(lsn: number): number | undefined {
    return lsn === this.lastLsn && lsn !== 0 ? this.lastHlc : undefined
  }
}
