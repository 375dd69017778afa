import type { Checksums } from '../format/checksum.js'
import { isLegacyDelete, opsOf, RecordCodec, type PutOp } from '../format/record-codec.js'
import { DEFAULT_NAMESPACE, identityOf, opIdentity } from '../format/identity.js'
import { CorruptionError, isMemwalError, MemwalError } from '../errors.js'
import type { Clock } from '../io/clock.js'
import type { FileSystem } from '../io/fs.js'
import { limits } from '../limits.js'
import { findingOf, type Finding, type FindingKind } from '../log/recovery/findings.js'
import type { DeclaredGap } from '../log/recovery/gap-record.js'
import { scanLog, type FrameConsumer, type LogScan } from '../log/recovery/log-scan.js'
import { readDeadLetters, type DeadLetter } from '../log/dead-letter-file.js'
import { readLog, type LogRecord } from '../log/wal-reader.js'
import type { CacheSink } from '../sinks/cache-sink.js'
import type { IndexSink } from '../sinks/index-sink.js'
import type { BackendSink } from '../sinks/sink.js'
import { checkSinks, type SinkFindingKind } from './sink-check.js'
import { LatestVersions } from './latest-versions.js'

/**
 * The one verify pipeline, for `MemWAL.verify` on an open engine and for
 * `memwal fsck` on a closed directory (DESIGN.md §8): scan the log (every
 * segment and frame) and, in the same pass, build the log's latest version of
 * each key (latest-versions.ts); turn what the scan found into findings,
 * compare the sinks with the latest versions (repairing them when asked), and
 * report. What differs between the two is only what the caller
 * passes: a running writer (`live`) or a repair of the log first (fsck).
 */

/**
 * Known states an operator should see but that are not damage: a gap memwal
 * declared and nobody acknowledged yet (`declared-gap`), a record a sink
 * rejected for good (`dead-letter`), a store of layout 1 that a dry run left
 * unmigrated (`needs-migration`). They never make a report unclean.
 */
export type NoticeKind = 'declared-gap' | 'dead-letter' | 'needs-migration'

export const NOTICE_KINDS: readonly string[] = ['declared-gap', 'dead-letter', 'needs-migration'] satisfies readonly NoticeKind[]

/** A closed directory whose store/ is missing (never made, or lost): `memwal fsck` reports it; `--repair` makes it again from the log. */
export type StoreFindingKind = 'missing-store'

/** What `verify` and `memwal fsck` report about the log and the sinks. */
export type ReconcileFindingKind = FindingKind | SinkFindingKind | NoticeKind | StoreFindingKind

export function isNotice(f: Finding<string>): boolean {
  return NOTICE_KINDS.includes(f.kind)
}

/**
 * The dead letters of a data directory as the checks see them: the keys of
 * every one not retried (open or dropped) whose latest version in the log is
 * the rejected record are not compared (the sink that rejected it does not
 * hold it, by decision), and each open one is a notice.
 */
export async function deadLetterView(src: LogSource, dataDir: string): Promise<{ readonly excluded: readonly DeadLetter[]; readonly notices: Finding<NoticeKind>[] }> {
  const { open, resolved } = await readDeadLetters(src.fs, src.sums, dataDir)
  const notices = open.map((d): Finding<NoticeKind> => ({
    kind: 'dead-letter', sink: d.sink, ...(d.keys.length === 1 ? { key: d.keys[0] as string } : {}), lsnFirst: d.lsn,
    detail: `rejected for good by ${d.sink} (keys ${d.keys.map((k) => JSON.stringify(k)).join(', ')}): memwal deadletter <dir> retry|drop --lsn ${d.lsn}`, action: 'none',
  }))
  return { excluded: [...open, ...resolved.filter((d) => d.resolution.how === 'dropped')], notices }
}

/** The open declared gaps as notices. */
export function gapNotices(gaps: readonly DeclaredGap[]): Finding<NoticeKind>[] {
  return gaps.map((g) => ({
    kind: 'declared-gap', lsnFirst: g.lsnFirst, ...(g.lsnLast !== undefined ? { lsnLast: g.lsnLast } : {}), alreadyApplied: g.alreadyApplied,
    detail: `dropped by ${g.by} at ${new Date(g.atMs).toISOString()} (${g.detail}); acknowledge with memwal fsck --ack-gaps or MemWAL.acknowledgeGaps()`, action: 'none',
  }))
}

/** A finding as the report shows it: `repaired` says whether something was done about it. */
export type ReconcileFinding = Finding<ReconcileFindingKind> & { readonly repaired: boolean }

export interface VerifyReport {
  /** No findings but notices. */
  readonly clean: boolean
  readonly repaired: number
  /** Findings left as they are, notices not counted. */
  readonly unrepaired: number
  /** Notices (declared gaps not acknowledged, dead letters): reported, never damage. */
  readonly notices: number
  readonly counts: Readonly<Record<string, number>>
  readonly findings: readonly ReconcileFinding[]
  readonly segments: number
  readonly records: number
  readonly bytesScanned: number
  readonly lastLsn: number
  readonly checkpoints: { readonly backend: number; readonly index: number }
  readonly elapsedMs: number
}

/** Where the log is read from. */
export interface LogSource {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
}

/** A writer appending while verify runs (`MemWAL.verify`): its own unfinished tail and keys in flux are not findings. */
export interface LiveLog {
  /** The segment the writer appends to. */
  readonly activeSegment: string
  /** The log's last LSN when verify started. */
  readonly lastLsn: number
  /** The log's last LSN now: the appliers may have gone past `lastLsn` meanwhile. */
  lastLsnNow(): number
  /** Keys written but not yet applied everywhere. */
  pendingKeys(): Iterable<string>
  /** Records written after an LSN, as the writer reads them back. */
  readAfter(lsn: number): AsyncIterable<LogRecord>
  /** Stops the appliers while sinks are repaired; resolves a function that starts them again. */
  pause(): Promise<() => void>
}

/**
 * Scans the whole log: every header, every frame; each verified frame also
 * feeds `latest`, when given (one pass). `heldFromLsn`: the lowest sink
 * checkpoint + 1, which the log must reach back to (ScanOptions.heldFromLsn).
 */
export function scanWholeLog(src: LogSource, onProgress?: (bytes: number) => void, latest?: LatestVersions, heldFromLsn?: number): Promise<LogScan> {
  // LatestVersions reads a payload during the call only, and skips the stale frames itself, as the salvaging reader does.
  const frames: FrameConsumer | undefined = latest ? { keepsBytes: false, onFrame: (f) => latest.addFrame(f.lsn, f.type, f.payload) } : undefined
  return scanLog({ fs: src.fs, sums: src.sums, walDir: src.walDir, recordBytesMax: limits.recordBytesHardMax, verifyFromLsn: 0, ...(heldFromLsn !== undefined ? { heldFromLsn } : {}), ...(onProgress ? { onProgress } : {}), ...(frames ? { frames } : {}) })
}

/**
 * The scan's problems as findings. With a live writer, damage past the last
 * LSN written at the end of the active segment is the writer's own append in
 * progress, not a finding; damage where an LSN already written was due is
 * corruption wherever it is.
 */
export function logFindings(scan: LogScan, backendLsn: number, live?: LiveLog): Finding[] {
  const out: Finding[] = []
  for (const p of scan.problems) {
    const written = live !== undefined && p.due !== undefined && p.due <= live.lastLsn
    if (live && p.atTail && scan.segments[p.segmentIndex]?.entry.name === live.activeSegment && !written) continue
    const f = findingOf(p, scan, backendLsn)
    // A live log's damage is repaired by `memwal fsck --repair` on the closed directory, never under the writer.
    out.push(live ? { ...f, kind: p.atTail && !written ? 'torn-tail' : p.kind, detail: `${f.detail} (repair with memwal fsck --repair on the closed directory)` } : f)
  }
  return out
}

export interface ReplicaCheck extends LogSource {
  /** The log's latest versions, built by the scan (scanWholeLog) with the backend's checkpoint as it was then. */
  readonly latest: LatestVersions
  readonly backend: BackendSink
  readonly index: IndexSink
  readonly cache?: CacheSink
  readonly repair: boolean
  readonly live?: LiveLog
  /** The log's last LSN as scanned. */
  readonly lastLsn: number
  /** Dead letters whose keys are not compared (deadLetterView). */
  readonly deadLettered?: readonly DeadLetter[]
}

/**
 * Compares the sinks with the log's latest version of each key, and repairs
 * them when asked. Keys in flux (pending, touched above the lowest checkpoint,
 * written while the check ran) are not compared.
 */
export async function checkReplicas(c: ReplicaCheck): Promise<Finding<SinkFindingKind>[]> {
  const resume = c.repair && c.live ? await c.live.pause() : undefined
  try {
    const latest = c.latest
    // A writer appended after the scan, until the appliers paused: the sinks may hold those records, and a repair must not undo them.
    // (Without repair, the keys written since verify began are left out of the findings instead: keysWrittenAfter.)
    if (c.live && c.repair) for await (const r of readLog({ ...c, recordBytesMax: limits.recordBytesHardMax, fromLsn: latest.lastLsn + 1, toLsn: Number.MAX_SAFE_INTEGER, skipDamage: true })) latest.addFrame(r.lsn, r.type, r.payload)
    // Under a running writer the log goes on past what was read, and the backend may have applied it: that tail is not lost.
    const lost = latest.lost(c.live ? Math.min(c.backend.checkpoint, latest.lastLsn) : c.backend.checkpoint)
    const inFlux = new Set<string>(c.live?.pendingKeys() ?? [])
    // A sink rejected the latest version of these for good: its absence there is the dead letter's, not damage (and never re-applied).
    for (const d of c.deadLettered ?? []) for (const e of d.entries) if (latest.get(identityOf(e.namespace, e.key))?.lsn === d.lsn) inFlux.add(identityOf(e.namespace, e.key))
    const low = Math.min(c.backend.checkpoint, c.index.checkpoint, c.lastLsn)
    // A predicate, not a set of every key above the checkpoints: after a crash that is every key of the backlog.
    const unstable = (key: string): boolean => inFlux.has(key) || (latest.get(key)?.lsn ?? 0) > low
    const lastLsn = c.live ? c.live.lastLsnNow() : c.lastLsn
    const readBack = (wanted: ReadonlyMap<string, number>): Promise<Map<string, PutOp>> => putsAt(c, wanted)
    const found = await checkSinks({ backend: c.backend, index: c.index, ...(c.cache ? { cache: c.cache } : {}), unstable, lastLsn, lost, sums: c.sums, readBack }, latest, c.repair)
    // Keys written since the check began were in flux while the sinks were read, not wrong (with repair, the appliers were paused).
    if (!c.live || c.repair) return found
    const moved = await keysWrittenAfter(c.live, c.lastLsn)
    // `moved` holds identities; a finding names its namespace and key apart (every sink finding has both).
    return found.filter((f) => f.key === undefined || !moved.has(identityOf(f.namespace ?? DEFAULT_NAMESPACE, f.key)))
  } catch (cause) {
    // On an open engine, a sink that cannot answer (a backend outage) is a typed refusal, not its raw error (G4).
    if (!c.live || isMemwalError(cause)) throw cause
    throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `verify cannot read the sinks: ${(cause as Error)?.message ?? String(cause)}`, { cause, transient: true })
  } finally {
    resume?.()
  }
}

async function keysWrittenAfter(live: LiveLog, lsn: number): Promise<Set<string>> {
  const codec = new RecordCodec()
  const keys = new Set<string>()
  try {
    for await (const r of live.readAfter(lsn)) {
      // Identities: a version-1 delete is not written while an engine runs (it writes version 2).
      for (const op of opsOf(codec.decode(r.type, r.payload))) if (!isLegacyDelete(op)) keys.add(opIdentity(op))
    }
  } catch (err) {
    // Damage on the way to those records is in the report already (the scan found it): report, never throw.
    if (!(err instanceof CorruptionError)) throw err
  }
  return keys
}

/**
 * The puts the log holds for these identities, each at the LSN given (its
 * latest version): what a repair writes, and what a value whose hash
 * differs is compared with, read back from the log for those keys only.
 * One that the log no longer holds (retention under a running writer) is
 * left out.
 */
async function putsAt(src: LogSource, wanted: ReadonlyMap<string, number>): Promise<Map<string, PutOp>> {
  const out = new Map<string, PutOp>()
  if (wanted.size === 0) return out
  const byLsn = new Map<number, Set<string>>()
  for (const [id, lsn] of wanted) byLsn.set(lsn, (byLsn.get(lsn) ?? new Set()).add(id))
  let fromLsn = Number.MAX_SAFE_INTEGER
  let toLsn = 0
  for (const lsn of byLsn.keys()) [fromLsn, toLsn] = [Math.min(fromLsn, lsn), Math.max(toLsn, lsn)]
  const codec = new RecordCodec()
  const read = readLog({ ...src, recordBytesMax: limits.recordBytesHardMax, fromLsn, toLsn, skipDamage: true })
  for await (const r of read) {
    const ids = byLsn.get(r.lsn)
    if (!ids) continue
    // A version-1 put is keyed by its own namespace, as the latest versions keyed it (LegacyDeleteResolver keeps puts as they are).
    for (const op of opsOf(codec.decode(r.type, r.payload))) if (op.type === 'put' && ids.has(opIdentity(op))) out.set(opIdentity(op), op)
  }
  return out
}

/** The last LSN the scanned log holds. */
export function lastLsnOf(scan: LogScan): number {
  for (let i = scan.segments.length - 1; i >= 0; i--) {
    const s = scan.segments[i]
    if (s?.lastLsn !== undefined) return s.lastLsn
    if (s?.header) return s.header.baseLsn - 1
  }
  return 0
}

export interface OpenLogVerify extends LogSource {
  readonly backend: BackendSink
  readonly index: IndexSink
  readonly cache: CacheSink
  readonly repair: boolean
  readonly live: LiveLog
  readonly clock: Clock
  /** Notices the engine knows of (open declared gaps). */
  readonly notices?: readonly Finding<NoticeKind>[]
  /** Sinks the engine knows halted (`sink-halted`): the report is not clean while one is. */
  readonly halted?: readonly Finding<SinkFindingKind>[]
  /** The data directory, for its dead letters. */
  readonly dataDir: string
}

/**
 * `MemWAL.verify`: the log and the sinks of an open engine, while it runs.
 * Damage in the log itself is reported; repairing it takes `memwal fsck
 * --repair` on the closed directory. With `repair`, the sinks are repaired
 * (the appliers pause meanwhile).
 */
export async function verifyOpenLog(v: OpenLogVerify): Promise<VerifyReport> {
  const started = v.clock.nowMs()
  const latest = new LatestVersions(v.sums, v.backend.checkpoint)
  const scan = await scanWholeLog(v, undefined, latest)
  const findings: Finding<ReconcileFindingKind>[] = logFindings(scan, v.backend.checkpoint, v.live)
  const dead = await deadLetterView(v, v.dataDir)
  findings.push(...(await checkReplicas({ ...v, latest, lastLsn: v.live.lastLsn, deadLettered: dead.excluded })), ...(v.halted ?? []), ...(v.notices ?? []), ...dead.notices)
  return report(findings, scan, v.live.lastLsn, { backend: v.backend.checkpoint, index: v.index.checkpoint }, v.clock.nowMs() - started)
}

/** Whether something was done about a finding. */
export function wasRepaired(f: Finding<string>): boolean {
  return f.action !== 'none' && f.action !== 'refused'
}

export function report(findings: readonly Finding<ReconcileFindingKind>[], scan: LogScan, lastLsn: number, checkpoints: VerifyReport['checkpoints'], elapsedMs: number): VerifyReport {
  const counts: Record<string, number> = {}
  for (const f of findings) counts[f.kind] = (counts[f.kind] ?? 0) + 1
  const shown = findings.map((f) => ({ ...f, repaired: wasRepaired(f) }))
  const repaired = shown.filter((f) => f.repaired).length
  const notices = findings.filter(isNotice).length
  return {
    clean: findings.length === notices,
    repaired,
    unrepaired: findings.length - repaired - notices,
    notices,
    counts,
    findings: shown,
    segments: scan.segments.length,
    records: scan.records,
    bytesScanned: scan.bytesScanned,
    lastLsn,
    checkpoints,
    elapsedMs,
  }
}
