import { inspectDataDir } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import { table, type Output } from '../output.js'

/** `memwal status <dir>`: segments, last LSN, checkpoints, backlog; reads no more than the last segment. */
export async function status(dir: string, out: Output): Promise<number> {
  const started = performance.now()
  const s = await inspectDataDir(dir)
  const ms = Math.round(performance.now() - started)
  if (out.json) {
    out.document({ ...s, elapsedMs: ms })
    return ExitCode.CLEAN
  }
  const rows: string[][] = [
    ['directory', s.dir],
    ['lock', s.lockedBy ? `held by ${s.lockedBy}` : 'free'],
    ['segments', `${s.segments.count} (${(s.segments.bytes / 1024 / 1024).toFixed(1)} MiB), first LSN ${s.segments.firstLsn}, active ${s.segments.active ?? '-'}`],
    ['last LSN', String(s.lastLsn)],
    ['checkpoints', s.checkpoints ? `backend ${s.checkpoints.backend}, index ${s.checkpoints.index}` : 'unavailable while a process holds the store'],
    ['backlog', s.backlogRecords !== undefined ? `${s.backlogRecords} records not yet applied everywhere` : '-'],
    ['dead letters', Object.keys(s.deadLetterBytes).length === 0 ? 'none' : `${s.openDeadLetters} open (memwal deadletter list); ${Object.entries(s.deadLetterBytes).map(([f, b]) => `${f} ${b} bytes`).join(', ')}`],
    ['quarantine', s.quarantined.length === 0 ? 'empty' : s.quarantined.join(', ')],
    ['declared gaps', s.gaps.open.length === 0 ? `none open${s.gaps.acknowledged > 0 ? ` (${s.gaps.acknowledged} acknowledged)` : ''}` : `${s.gaps.open.length} not acknowledged (memwal fsck --ack-gaps)`],
    ['verified', 'skipped' in s.verified ? `not run: ${s.verified.skipped}` : s.verified.clean ? 'clean (a dry-run fsck)' : `DAMAGED: ${Object.entries(s.verified.counts).map(([k, n]) => `${k} ${n}`).join(', ')} (memwal fsck for details)`],
    ['warnings', s.warnings.length === 0 ? 'none' : s.warnings.join('; ')],
  ]
  out.line(table(rows))
  for (const g of s.gaps.open) out.line(`  gap LSNs ${g.lsnFirst}-${g.lsnLast ?? '?'}${g.alreadyApplied ? ' (already in the backend)' : ' (NOT in the backend: lost)'}: dropped by ${g.by}`)
  if (!('skipped' in s.verified)) for (const f of s.verified.findings.slice(0, 20)) out.line(`  ${f}`)
  out.note(`(${ms} ms)`)
  return ExitCode.CLEAN
}
