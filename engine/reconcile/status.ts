import { posix as path } from 'node:path'
import { lockHolder } from '../io/dir-lock.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { limits } from '../limits.js'
import { checkDataDir, describeLooseDir, looseDirs } from '../log/data-dir.js'
import { checkClosedDir, type ClosedDirCheck } from './reconciler.js'
import { deadLetterView, logFindings, scanWholeLog, type LogSource } from './verify.js'
import { InvalidOptionsError } from '../errors.js'
import { checkFields } from '../option-fields.js'
import { checkBackendRecord, describeBackend, readBackendRecord, type BackendKind } from '../log/backend-record.js'
import { BackendSink } from '../sinks/sink.js'
import { describeFinding } from '../log/recovery/findings.js'
import { openGaps, readGaps, type DeclaredGap } from '../log/recovery/gap-record.js'
import { storeExists } from '../sinks/store-dir.js'
import { openStoreView } from '../sinks/store-view.js'
import { createChecksums } from '../format/checksum.js'
import { listWal } from '../log/segment-list.js'
import { framesOf, segmentsOf } from '../log/segment-cursor.js'

export interface DataDirStatus {
  readonly dir: string
  /** The backend the directory records (its BACKEND file); null for a directory from before records, looked at as LevelDB-backed. */
  readonly backend: BackendKind | null
  /** Who holds the lock, if a process does. */
  readonly lockedBy?: string
  readonly segments: { readonly count: number; readonly bytes: number; readonly firstLsn: number; readonly active?: string }
  readonly lastLsn: number
  /**
   * Sink checkpoints, each where it is known. The index's is in the local
   * store, read when no process holds the directory; so is a LevelDB
   * backend's. A backend whose rows are elsewhere (PgBackend) holds its
   * own: read from it, read-only, when it is given (InspectOptions.backend),
   * else absent. Absent altogether when neither is known.
   */
  readonly checkpoints?: { readonly backend?: number; readonly index?: number }
  /** Records not yet applied by the slowest durable sink: only when both checkpoints are known. */
  readonly backlogRecords?: number
  readonly deadLetterBytes: Readonly<Record<string, number>>
  /** Dead letters neither retried nor dropped (`memwal deadletter <dir> list`). */
  readonly openDeadLetters: number
  readonly quarantined: readonly string[]
  /** Gaps memwal declared in the log that no operator has acknowledged (`gaps.json`), and how many were acknowledged. */
  readonly gaps: { readonly open: readonly DeclaredGap[]; readonly acknowledged: number }
  /**
   * A dry-run fsck of the whole directory (log, checkpoints, backend, index),
   * when it is LevelDB-backed, no process holds it and its segments hold at
   * most `limits.statusVerifyBytesMax` bytes; otherwise why it was not run.
   */
  readonly verified: StatusVerification
  /**
   * For a directory whose backend is elsewhere (fsck checks LevelDB-backed
   * stores only): the log's frames checked, under the same conditions as
   * `verified`; no sink is compared with them. A finding's `alreadyApplied`
   * is judged by the backend's checkpoint, and left out when it is not known.
   */
  readonly logVerified?: StatusVerification
  /** What an operator should look at that fsck does not report: directories others may write, a checkpoint past the log's end. */
  readonly warnings: readonly string[]
}

export type StatusVerification =
  | { readonly clean: boolean; readonly counts: Readonly<Record<string, number>>; readonly findings: readonly string[] }
  | { readonly skipped: string }

export interface InspectOptions {
  /**
   * The backend the directory records, when its rows are not in it (a
   * PgBackend, not opened): its checkpoint is read from it without writing
   * (BackendSink.storedCheckpoint), so that the checkpoints and the backlog
   * are the store's. Another backend than the recorded one is
   * BACKEND_MISMATCH; one that cannot read its checkpoint so is
   * INVALID_OPTIONS (field `backend`).
   */
  readonly backend?: BackendSink
  /** The filesystem (tests); the real one by default. */
  readonly fs?: FileSystem
}

/**
 * A look at a data directory (`memwal status`): the recorded backend, the
 * segment list, the last segment, the checkpoints, dead letters, quarantine
 * and declared gaps; and, when the directory is small and free, a dry-run
 * fsck (a LevelDB-backed one) or a check of its log (one whose backend is
 * elsewhere), so that damage is reported (a large log is left to
 * `memwal fsck`: status stays fast). It writes nothing, here or in the
 * backend.
 */
export async function inspectDataDir(dir: string, options?: InspectOptions): Promise<DataDirStatus> {
  const o = checkFields<InspectOptions>('inspectDataDir options', options, { backend: 'object', fs: 'object' })
  const fs = o.fs ?? new NodeFileSystem()
  const root = path.resolve(dir)
  await checkDataDir(root, fs)
  const recorded = await readBackendRecord(fs, root)
  if (o.backend !== undefined) checkGivenBackend(root, recorded, o.backend)
  // A directory from before records is what the backend given says (on purpose, as an open takes it), else LevelDB-backed.
  const kind = recorded ?? o.backend?.backendKind()
  const walDir = path.join(root, 'wal')
  const listing = await listWal(fs, walDir)
  const { segments } = listing
  let bytes = 0
  for (const s of segments) bytes += (await fs.stat(s.path))?.size ?? 0
  const last = segments[segments.length - 1]
  let lastLsn = last ? last.baseLsn - 1 : 0
  // Made once, for the look at the last segment and for the dry-run fsck after it.
  const sums = await createChecksums()
  const cursor = { fs, sums, walDir, recordBytesMax: limits.recordBytesHardMax }
  // Headers only: status must answer fast on a large log; fsck is the one that verifies payloads.
  for await (const seg of segmentsOf({ ...cursor, listing, lastOnly: true })) for (const ev of framesOf(seg, cursor, 'headers-only')) if (ev.kind === 'frame') lastLsn = ev.lsn
  const holder = fs instanceof NodeFileSystem ? lockHolder(root) : undefined
  // Read once, for the count and for the check. A look takes no lock (a process starting meanwhile must not
  // be refused for it) and opens the store once, for as short as it can.
  const dead = await deadLetterView(cursor, root)
  const { checkpoints, verified, logVerified } = await checkpointsAndChecks({ fs, sums, walDir, dir: root, dead, bytes, kind, ...(holder ? { holder } : {}), ...(o.backend ? { backend: o.backend } : {}) })
  const deadLetterBytes: Record<string, number> = {}
  const dl = path.join(root, 'deadletter')
  if (await fs.stat(dl)) for (const f of await fs.readdir(dl)) if (f.endsWith('.log')) deadLetterBytes[f] = (await fs.stat(path.join(dl, f)))?.size ?? 0
  const openDeadLetters = dead.notices.length
  const q = path.join(root, 'quarantine')
  const quarantined = (await fs.stat(q)) ? await fs.readdir(q) : []
  const gapFile = await readGaps(fs, root)
  const open = openGaps(gapFile)
  const { backend: backendLsn, index: indexLsn } = checkpoints ?? {}
  return {
    dir: root,
    backend: recorded ?? null,
    ...(holder ? { lockedBy: holder } : {}),
    segments: { count: segments.length, bytes, firstLsn: segments[0]?.baseLsn ?? 0, ...(last ? { active: last.name } : {}) },
    lastLsn,
    ...(checkpoints ? { checkpoints } : {}),
    ...(backendLsn !== undefined && indexLsn !== undefined ? { backlogRecords: Math.max(0, lastLsn - Math.min(backendLsn, indexLsn)) } : {}),
    deadLetterBytes,
    openDeadLetters,
    quarantined,
    gaps: { open, acknowledged: gapFile.gaps.length - open.length },
    verified,
    ...(logVerified ? { logVerified } : {}),
    warnings: [...(await looseDirs(fs, root)).map(describeLooseDir), ...(holder ? [] : checkpointsAhead(checkpoints, lastLsn))],
  }
}

/**
 * A sink's checkpoint beyond the log's last record: the sink holds records
 * this log does not (the directory was restored from an older copy, its log
 * cut, or another process wrote with the same PostgreSQL writer id). The
 * backlog then reads 0, which hides it. Only judged with no process holding
 * the directory: one writing meanwhile may have advanced a checkpoint past
 * the last LSN read a moment before.
 */
function checkpointsAhead(checkpoints: { readonly backend?: number; readonly index?: number } | undefined, lastLsn: number): string[] {
  const out: string[] = []
  for (const [sink, lsn] of Object.entries(checkpoints ?? {})) {
    if (lsn !== undefined && lsn > lastLsn) out.push(`the ${sink}'s checkpoint (${lsn}) is past the log's last record (${lastLsn}): it holds records this log does not (a directory restored from an older copy, a log cut short, or another process writing with the same writer id); the next open decides by the corruption policy`)
  }
  return out
}

interface Look extends Omit<ClosedDirCheck, 'store' | 'nowMs' | 'startedMs'> {
  readonly bytes: number
  readonly holder?: string
  /** The backend recorded (or given, for a directory from before records); undefined: LevelDB's. */
  readonly kind: BackendKind | undefined
  readonly backend?: BackendSink
}

/**
 * The checkpoints and the checks, as far as the directory and the backend
 * given allow (DataDirStatus): the local store opened once, when no process
 * holds it; a backend elsewhere asked for its own checkpoint, whoever holds
 * the directory (it is read, never written).
 */
async function checkpointsAndChecks(c: Look): Promise<Pick<DataDirStatus, 'checkpoints' | 'verified' | 'logVerified'>> {
  const local = c.kind === undefined || c.kind.kind === 'leveldb'
  const remoteLsn = local ? undefined : await c.backend?.storedCheckpoint?.()
  let checkpoints: DataDirStatus['checkpoints'] = remoteLsn !== undefined ? { backend: remoteLsn } : undefined
  const notLocal = local ? undefined : notChecked(c.kind)
  let verified: StatusVerification
  if (c.holder) verified = { skipped: notLocal ?? `${c.holder} holds the directory: MemWAL.verify() in that process, or memwal fsck once it has closed` }
  else if (!(await storeExists(c.fs, c.dir))) {
    // Opening would make it: a look writes nothing. Its sinks have applied nothing (what the open that makes it replays).
    if (notLocal !== undefined) verified = { skipped: notLocal }
    else {
      checkpoints = { backend: 0, index: 0 }
      const v = await verification({ fs: c.fs, sums: c.sums, walDir: c.walDir, dir: c.dir, dead: c.dead, store: undefined }, c.bytes)
      verified = 'skipped' in v ? { skipped: `the directory has no store/ (never made, or lost): ${v.skipped}` } : v
    }
  } else {
    // Read only, from a private copy: LevelDB's open rewrites its files.
    const { store, close } = await openStoreView(c.fs, c.dir)
    try {
      const index = await store.readCheckpoint('index')
      checkpoints = local ? { backend: await store.readCheckpoint('backend'), index } : { ...checkpoints, index }
      verified = notLocal !== undefined ? { skipped: notLocal } : await verification({ fs: c.fs, sums: c.sums, walDir: c.walDir, dir: c.dir, dead: c.dead, store }, c.bytes)
    } finally {
      await close()
    }
  }
  if (notLocal === undefined) return { ...(checkpoints ? { checkpoints } : {}), verified }
  const logVerified = c.holder ? { skipped: `${c.holder} holds the directory: its log is checked once it has closed` } : await logVerification(c, c.bytes, remoteLsn)
  return { ...(checkpoints ? { checkpoints } : {}), verified, logVerified }
}

/** The backend given must be the one recorded, and able to read its checkpoint without opening. */
function checkGivenBackend(dir: string, recorded: BackendKind | undefined, backend: BackendSink): void {
  if (!(backend instanceof BackendSink)) throw new InvalidOptionsError('inspectDataDir options: backend must be a backend sink (a PgBackend)', 'backend')
  checkBackendRecord(dir, recorded, backend.backendKind())
  if (backend.storedCheckpoint === undefined) throw new InvalidOptionsError(`inspectDataDir options: ${describeBackend(backend.backendKind())} cannot read its checkpoint without being opened: leave it out`, 'backend')
}

/** Why fsck's verdict is not given for a directory whose backend is elsewhere. */
function notChecked(recorded: BackendKind | undefined): string {
  const where = recorded?.kind === 'postgres' ? 'PostgreSQL (PgBackend.verifyLog(dumpLog({ dir })) checks this writer\'s log against them)' : 'the application\'s own backend'
  return `memwal fsck checks LevelDB-backed stores only: this store's rows are in ${where}`
}

/** Damage anywhere in a small directory is worth the time of a full check; a large one is left to `memwal fsck`. */
async function verification(c: Omit<ClosedDirCheck, 'nowMs' | 'startedMs'>, bytes: number): Promise<StatusVerification> {
  if (bytes > limits.statusVerifyBytesMax) return { skipped: `the log's segments hold ${(bytes / 1024 / 1024).toFixed(0)} MiB, more than ${limits.statusVerifyBytesMax / 1024 / 1024} MiB: run memwal fsck` }
  const r = await checkClosedDir({ ...c, nowMs: () => Date.now(), startedMs: Date.now() })
  return { clean: r.clean, counts: r.counts, findings: r.findings.map((f) => describeFinding(f)) }
}

/** The log's frames only, for a directory whose backend is elsewhere; `appliedLsn`, the backend's checkpoint when it is known. */
async function logVerification(src: LogSource, bytes: number, appliedLsn: number | undefined): Promise<StatusVerification> {
  if (bytes > limits.statusVerifyBytesMax) return { skipped: `the log's segments hold ${(bytes / 1024 / 1024).toFixed(0)} MiB, more than ${limits.statusVerifyBytesMax / 1024 / 1024} MiB` }
  const found = logFindings(await scanWholeLog(src), appliedLsn ?? 0)
  // Whether damaged LSNs had reached the backend is not known without its checkpoint: not said either way.
  const findings = appliedLsn !== undefined ? found : found.map(({ alreadyApplied: _, ...f }) => f)
  const counts: Record<string, number> = {}
  for (const f of findings) counts[f.kind] = (counts[f.kind] ?? 0) + 1
  return { clean: findings.length === 0, counts, findings: findings.map((f) => describeFinding(f)) }
}
