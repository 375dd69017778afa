import { inspectDataDir, type BackendKind, type DataDirStatus, type StatusVerification } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import { table, type Output } from '../output.js'
import { pgBackendOf, pgFlagsFor, type PgFlags } from '../pg-options.js'

/**
 * `memwal status <dir> [--pg URL --writer-id ID [--schema S]]`: the recorded
 * backend, segments, last LSN, checkpoints, backlog; reads no more than the
 * last segment (but for the check of a small directory). A PostgreSQL-backed
 * store's backend checkpoint is in PostgreSQL: read there (never written)
 * with the flags; without them it is not shown, nor the backlog, rather than
 * the local store's (which that backend never writes).
 */
export async function status(dir: string, flags: PgFlags, out: Output): Promise<number> {
  const started = performance.now()
  const backend = pgBackendOf(flags)
  const s = await inspectDataDir(dir, backend !== undefined ? { backend } : {})
  const ms = Math.round(performance.now() - started)
  const needs = s.backend?.kind === 'postgres' && s.checkpoints?.backend === undefined ? pgFlagsFor(s.backend) : undefined
  if (out.json) {
    // `needs`: what to add for the backend's checkpoint and the backlog, when they are in PostgreSQL and were not read.
    out.document({ ...s, ...(needs !== undefined ? { needs } : {}), elapsedMs: ms })
    return ExitCode.CLEAN
  }
  const rows: string[][] = [
    ['directory', s.dir],
    ['backend', describeBackendKind(s.backend)],
    ['lock', s.lockedBy ? `held by ${s.lockedBy}` : 'free'],
    ['segments', `${s.segments.count} (${(s.segments.bytes / 1024 / 1024).toFixed(1)} MiB), first LSN ${s.segments.firstLsn}, active ${s.segments.active ?? '-'}`],
    ['last LSN', String(s.lastLsn)],
    ['checkpoints', checkpointsRow(s, needs)],
    ['backlog', s.backlogRecords !== undefined ? `${s.backlogRecords} records not yet applied everywhere` : needs !== undefined ? `not known without the backend's checkpoint: add ${needs}` : '-'],
    ['dead letters', Object.keys(s.deadLetterBytes).length === 0 ? 'none' : `${s.openDeadLetters} open (memwal deadletter list); ${Object.entries(s.deadLetterBytes).map(([f, b]) => `${f} ${b} bytes`).join(', ')}`],
    ['quarantine', s.quarantined.length === 0 ? 'empty' : s.quarantined.join(', ')],
    ['declared gaps', s.gaps.open.length === 0 ? `none open${s.gaps.acknowledged > 0 ? ` (${s.gaps.acknowledged} acknowledged)` : ''}` : `${s.gaps.open.length} not acknowledged (memwal fsck --ack-gaps)`],
    ...(s.logVerified !== undefined ? [['log', verdict(s.logVerified, 'clean (its frames checked; no sink compared)', 'memwal dump to read it')]] : []),
    ['verified', verdict(s.verified, 'clean (a dry-run fsck)', 'memwal fsck for details')],
    ['warnings', s.warnings.length === 0 ? 'none' : s.warnings.join('; ')],
  ]
  out.line(table(rows))
  for (const g of s.gaps.open) out.line(`  gap LSNs ${g.lsnFirst}-${g.lsnLast ?? '?'}${g.alreadyApplied ? ' (already in the backend)' : ' (NOT in the backend: lost)'}: dropped by ${g.by}`)
  for (const v of [s.logVerified, s.verified]) if (v !== undefined && !('skipped' in v)) for (const f of v.findings.slice(0, 20)) out.line(`  ${f}`)
  out.note(`(${ms} ms)`)
  return ExitCode.CLEAN
}

function describeBackendKind(k: BackendKind | null): string {
  if (k === null) return 'leveldb (not recorded: a directory from before records)'
  switch (k.kind) {
    case 'leveldb':
      return 'leveldb (the local store)'
    case 'postgres':
      return `postgres (writer id ${k.writerId}, schema ${k.schema})`
    case 'custom':
      return `the application's own (${JSON.stringify(k.name)})`
    default: {
      const never: never = k
      return never
    }
  }
}

/** Each checkpoint where it is known; a PostgreSQL backend's, as PostgreSQL holds it, or what reads it. */
function checkpointsRow(s: DataDirStatus, needs: string | undefined): string {
  const remote = s.backend !== null && s.backend.kind !== 'leveldb'
  if (s.checkpoints === undefined && !remote) return 'unavailable while a process holds the store'
  const { backend, index } = s.checkpoints ?? {}
  const b = backend !== undefined ? `backend ${backend}${remote ? ' (as PostgreSQL holds it)' : ''}` : needs !== undefined ? `backend: in PostgreSQL (add ${needs})` : 'backend: in the application\'s own backend'
  return `${b}, ${index !== undefined ? `index ${index}` : 'index unavailable while a process holds the store'}`
}

function verdict(v: StatusVerification, clean: string, details: string): string {
  if ('skipped' in v) return `not run: ${v.skipped}`
  return v.clean ? clean : `DAMAGED: ${Object.entries(v.counts).map(([k, n]) => `${k} ${n}`).join(', ')} (${details})`
}
