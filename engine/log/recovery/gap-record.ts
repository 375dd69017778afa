import { posix as path } from 'node:path'
import { readJsonList, replaceFile } from '../../io/file-ops.js'
import type { FileSystem } from '../../io/fs.js'
import { limits } from '../../limits.js'
import type { Finding } from './findings.js'

/**
 * `<dir>/gaps.json`: every gap memwal declared in the log (LSNs that recovery
 * with `skip-corrupt` or `point-in-time`, or `fsck --repair`, had to drop),
 * kept so that the loss stays visible (in `health()`, `memwal status` and as
 * a notice of `memwal fsck`) until an operator acknowledges it
 * (`MemWAL.acknowledgeGaps()`, `memwal fsck --ack-gaps`). Replaced atomically
 * and synced; bounded by `limits.gapRecordsMax` (the oldest acknowledged
 * gaps are forgotten first, unacknowledged ones never).
 */
export const GAPS_FILE = 'gaps.json'

export interface DeclaredGap {
  readonly lsnFirst: number
  /** Absent when the end is not known (damage at the end of the log). */
  readonly lsnLast?: number
  /** Who dropped them: `fsck --repair`, or the corruption policy at open. */
  readonly by: string
  readonly atMs: number
  /** Every LSN was at or below the backend's checkpoint: the data was not lost, only the log's copy. */
  readonly alreadyApplied: boolean
  /** What happened, as the finding said it. */
  readonly detail: string
  readonly acknowledgedAtMs?: number
}

export interface GapFile {
  readonly gaps: readonly DeclaredGap[]
}

/** The gaps in the findings of a repair or a recovery: LSNs that were dropped or skipped. */
export function gapsOf(findings: readonly Finding<string>[], by: string, atMs: number): DeclaredGap[] {
  const out: DeclaredGap[] = []
  for (const f of findings) {
    if (f.lsnFirst === undefined || !(f.action === 'skipped' || f.action === 'dropped' || f.action === 'quarantined' || (f.action === 'truncated' && f.kind !== 'torn-tail') || (f.action === 'repaired' && f.kind === 'missing-lsns'))) continue
    out.push({ lsnFirst: f.lsnFirst, ...(f.lsnLast !== undefined ? { lsnLast: f.lsnLast } : {}), by, atMs, alreadyApplied: f.alreadyApplied === true, detail: `${f.kind}${f.segment !== undefined ? ` ${f.segment}@${f.offset ?? 0}` : ''}: ${f.detail}` })
  }
  return out
}

export async function readGaps(fs: FileSystem, dir: string): Promise<GapFile> {
  return { gaps: await readJsonList(fs, path.join(dir, GAPS_FILE), 'gaps', isGap, 'gaps') }
}

/**
 * Adds the gaps not recorded yet. The same LSN range is one gap, acknowledged
 * or not: skip-corrupt meets the same damage at every open.
 */
export async function recordGaps(fs: FileSystem, dir: string, found: readonly DeclaredGap[]): Promise<GapFile> {
  const current = await readGaps(fs, dir)
  if (found.length === 0) return current
  const fresh = found.filter((g) => !current.gaps.some((c) => c.lsnFirst === g.lsnFirst && c.lsnLast === g.lsnLast))
  if (fresh.length === 0) return current
  return write(fs, dir, [...current.gaps, ...fresh])
}

/** Marks every unacknowledged gap acknowledged; resolves how many were. */
export async function acknowledgeGaps(fs: FileSystem, dir: string, atMs: number): Promise<{ readonly acknowledged: number; readonly file: GapFile }> {
  const current = await readGaps(fs, dir)
  const open = current.gaps.filter((g) => g.acknowledgedAtMs === undefined).length
  if (open === 0) return { acknowledged: 0, file: current }
  return { acknowledged: open, file: await write(fs, dir, current.gaps.map((g) => (g.acknowledgedAtMs === undefined ? { ...g, acknowledgedAtMs: atMs } : g))) }
}

export function openGaps(f: GapFile): DeclaredGap[] {
  return f.gaps.filter((g) => g.acknowledgedAtMs === undefined)
}

async function write(fs: FileSystem, dir: string, gaps: readonly DeclaredGap[]): Promise<GapFile> {
  let kept = [...gaps]
  // Forget the oldest acknowledged gaps first; an unacknowledged one stays whatever the count.
  while (kept.length > limits.gapRecordsMax) {
    const i = kept.findIndex((g) => g.acknowledgedAtMs !== undefined)
    if (i === -1) break
    kept.splice(i, 1)
  }
  const file: GapFile = { gaps: kept }
  await replaceFile(fs, path.join(dir, GAPS_FILE), Buffer.from(`${JSON.stringify(file, null, 2)}\n`))
  return file
}

function isGap(g: unknown): g is DeclaredGap {
  const o = g as Partial<DeclaredGap> | null
  return !!o && Number.isSafeInteger(o.lsnFirst) && (o.lsnLast === undefined || Number.isSafeInteger(o.lsnLast)) && typeof o.by === 'string' && typeof o.atMs === 'number' && typeof o.alreadyApplied === 'boolean' && typeof o.detail === 'string'
}
