import { describeFinding, fsck as runFsck, MemWAL } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import { table, type Output } from '../output.js'

/** `memwal fsck <dir> [--repair]`: verify the log and the replicas; repair if asked. */
export async function fsck(dir: string, o: { readonly repair: boolean; readonly ackGaps: boolean }, out: Output): Promise<number> {
  const bar = out.progress(0, 'verify')
  let report
  try {
    report = await runFsck({
      dir,
      repair: o.repair,
      ackGaps: o.ackGaps,
      onProgress: (done, total) => bar.update(done, total),
      replay: async (d) => {
        // The log was just repaired: what can remain is a log that now ends before the sinks'
        // checkpoints (frames cut after the backend applied them). The default policy refuses that
        // hole on every open; point-in-time accepts it (the loss is in this report already) and
        // continues after the checkpoints in a new segment that declares the gap.
        const engine = await MemWAL.open({ dir: d, corruptionPolicy: 'point-in-time' })
        try {
          await engine.flush({ timeoutMs: 600_000 })
        } finally {
          await engine.close()
        }
      },
    })
  } finally {
    bar.stop()
  }
  const code = report.clean ? ExitCode.CLEAN : report.unrepaired === 0 ? ExitCode.CORRECTED : ExitCode.UNCORRECTED
  if (out.json) {
    out.document({ ...report, exitCode: code })
    return code
  }
  const mbps = report.elapsedMs > 0 ? (report.bytesScanned / 1e6 / (report.elapsedMs / 1000)).toFixed(0) : '-'
  out.line(`${report.segments} segments, ${report.records} records, last LSN ${report.lastLsn}; checkpoints backend ${report.checkpoints.backend}, index ${report.checkpoints.index}`)
  out.line(`verified ${(report.bytesScanned / 1e6).toFixed(1)} MB in ${report.elapsedMs} ms (${mbps} MB/s)`)
  if (report.findings.length > 0) {
    out.line(table([['kind', 'count'], ...Object.entries(report.counts).map(([k, n]) => [k, String(n)])]))
    for (const f of report.findings.slice(0, 200)) out.line(`  ${describeFinding(f)}`)
    if (report.findings.length > 200) out.line(`  ... and ${report.findings.length - 200} more (use --json for all)`)
  }
  if (report.clean) {
    out.line(`clean: the log, the backend and the index agree${report.notices > 0 ? ` (${report.notices} notices: known states, not damage)` : ''}`)
    return code
  }
  out.line(report.unrepaired === 0 ? `repaired all ${report.repaired} findings` : `${report.unrepaired} findings left uncorrected${o.repair ? '' : ' (run with --repair)'}`)
  return code
}
