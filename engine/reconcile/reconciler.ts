import { posix as path } from 'node:path'
import { MemwalError, osError } from '../errors.js'
import { defaultDirLocker, type DirLocker } from '../io/dir-lock.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import type { Finding } from '../log/recovery/findings.js'
import { scanLog, type LogScan } from '../log/recovery/log-scan.js'
import { IndexSink } from '../sinks/index-sink.js'
import { LevelBackend } from '../sinks/level-backend.js'
import { LevelStore } from '../sinks/level-store.js'
import { createChecksums, type Checksums } from '../format/checksum.js'
import { RecordCodec } from '../format/record-codec.js'
import { readLog } from '../log/wal-reader.js'
import { limits } from '../limits.js'
import { repairLog, type LogRepairAction } from '../log/recovery/log-repair.js'
import { addToLatest, checkSinks, type LatestVersions, type LsnRange, type SinkFinding, type SinkFindingKind } from './sink-check.js'

/**
 * What `verify` and `memwal fsck` report: every finding with its place, a count
 * per kind, and whether each was repaired.
 */
export interface ReconcileFinding {
  readonly kind: Finding['kind'] | SinkFindingKind
  readonly sink?: string
  readonly segment?: string
  readonly offset?: number
  readonly key?: string
  readonly lsnFirst?: number
  readonly lsnLast?: number
  /** For log damage: whether the LSNs affected had reached the backend (then nothing was lost). */
  readonly alreadyApplied?: boolean
  readonly detail: string
  readonly repaired: boolean
}

export interface VerifyReport {
  readonly clean: boolean
  readonly repaired: number
  readonly unrepaired: number
  readonly counts: Readonly<Record<string, number>>
  readonly findings: readonly ReconcileFinding[]
  readonly segments: number
  readonly records: number
  readonly bytesScanned: number
  readonly lastLsn: number
  readonly checkpoints: { readonly backend: number; readonly index: number }
  readonly elapsedMs: number
}

export interface FsckOptions {
  readonly dir: string
  readonly repair: boolean
  readonly fs?: FileSystem
  readonly locker?: DirLocker
  /** Bytes of log verified so far, and the total: for a progress bar. */
  readonly onProgress?: (done: number, total: number) => void
  /**
   * For `--repair`: re-apply what the sinks have not applied, by opening the
   * engine (recovery + replay) once the log is sound. Supplied by the caller
   * (the engine sits above the reconciler); undefined skips it.
   */
  readonly replay?: (dir: string) => Promise<void>
  readonly nowMs?: () => number
}

/**
 * The offline reconciler (`memwal fsck`): takes the lock, verifies every
 * segment and frame, then compares the backend and the index with the log.
 * With `repair`: cuts damaged segments (evidence to quarantine/), declares the
 * resulting gaps, replays into the sinks, re-applies wrong backend keys from
 * the log and rebuilds a wrong index from the backend.
 */
export async function fsck(o: FsckOptions): Promise<VerifyReport> {
  const fs = o.fs ?? new NodeFileSystem()
  const now = o.nowMs ?? (() => Date.now())
  const started = now()
  const dir = path.resolve(o.dir)
  await checkDataDir(fs, dir)
  const walDir = path.join(dir, 'wal')
  const sums = await createChecksums()
  const locker = o.locker ?? defaultDirLocker(fs)
  const findings: ReconcileFinding[] = []
  let lock = await locker.acquire(dir, () => undefined)
  let scan: LogScan
  let store: LevelStore | undefined
  try {
    scan = await scanWithProgress(fs, sums, walDir, o.onProgress)
    store = await LevelStore.open(path.join(dir, 'store'))
    const backendLsn = await store.readCheckpoint('backend')
    const logFindings = scan.problems.map((p) => ({
      kind: p.atTail ? ('torn-tail' as const) : p.kind,
      segment: scan.segments[p.segmentIndex]?.entry.name ?? '?',
      offset: p.offset,
      ...(p.lsnFirst !== undefined ? { lsnFirst: p.lsnFirst } : {}),
      ...(p.lsnLast !== undefined ? { lsnLast: p.lsnLast, alreadyApplied: p.lsnLast <= backendLsn } : {}),
      detail: p.detail,
      repaired: false,
    }))
    if (o.repair && scan.problems.length > 0) {
      const actions = await repairLog(fs, sums, path.join(dir, 'quarantine'), scan)
      findings.push(...logFindings.map((f, i) => withRepair(f, actions.filter((a) => a.problem === scan.problems[i] && a.action !== 'gap-declared'), backendLsn)))
    } else {
      findings.push(...logFindings)
    }
    if (o.repair && o.replay) {
      // The engine takes the lock and the store itself.
      await store.close()
      store = undefined
      await lock.release()
      await o.replay(dir)
      lock = await locker.acquire(dir, () => undefined)
      scan = await scanLog({ fs, sums, walDir, recordBytesMax: limits.recordBytesHardMax, verifyFromLsn: 0 })
    }
    store ??= await LevelStore.open(path.join(dir, 'store'))
    const backend = new LevelBackend(store)
    const index = new IndexSink(store)
    await backend.open()
    await index.open()
    const lastLsn = lastLsnOf(scan)
    const lost: LsnRange[] = []
    const latest = await latestVersions(fs, sums, walDir, lost, backend.checkpoint)
    const unstable = new Set<string>()
    const low = Math.min(backend.checkpoint, index.checkpoint)
    for (const [key, v] of latest) if (v.lsn > low) unstable.add(key)
    const sinkFindings = await checkSinks({ backend, index, unstable, lastLsn, lost }, latest, o.repair)
    findings.push(...sinkFindings.map(toReconcile))
    return report(findings, scan, lastLsn, { backend: backend.checkpoint, index: index.checkpoint }, now() - started)
  } finally {
    await store?.close().catch(() => undefined)
    await lock.release().catch(() => undefined)
  }
}

/**
 * A log finding once repaired: it names every LSN the repair took out of the
 * log (a cut removes the damaged frame and the rest of its segment), and
 * whether the backend had them all (then nothing was lost).
 */
function withRepair(f: ReconcileFinding, actions: readonly LogRepairAction[], backendLsn: number): ReconcileFinding {
  let out: ReconcileFinding = { ...f, repaired: true }
  for (const a of actions) {
    if (a.lsnFirst === undefined || a.lsnLast === undefined || a.lsnLast < a.lsnFirst) continue
    const last = Math.max(out.lsnLast ?? a.lsnLast, a.lsnLast)
    out = { ...out, lsnFirst: Math.min(out.lsnFirst ?? a.lsnFirst, a.lsnFirst), lsnLast: last, alreadyApplied: last <= backendLsn, detail: `${out.detail}; ${a.action} ${a.segment}: LSNs ${a.lsnFirst}-${a.lsnLast} are no longer in the log` }
  }
  return out
}

/** Missing directory, not a directory, or not a memwal one: a clear typed error before anything is touched. */
export async function checkDataDir(fs: FileSystem, dir: string): Promise<void> {
  const st = await fs.stat(dir).catch((cause: unknown) => {
    throw osError(cause, `read the data directory ${dir}`, dir)
  })
  if (!st) throw new MemwalError('DIR_NOT_FOUND', `no such directory: ${dir}`)
  if (!st.isDirectory) throw new MemwalError('DIR_NOT_MEMWAL', `${dir} is not a directory`)
  const wal = await fs.stat(path.join(dir, 'wal')).catch((cause: unknown) => {
    throw osError(cause, `read the data directory ${dir}`, path.join(dir, 'wal'))
  })
  if (!wal?.isDirectory) throw new MemwalError('DIR_NOT_MEMWAL', `${dir} is not a memwal data directory (no wal/ inside)`)
}

/**
 * The latest version of each key in the log. With `lost`, also the LSN ranges
 * up to `throughLsn` the log does not hold after its first record (damage
 * skipped, a missing segment, a declared gap, a cut tail): what the sinks
 * applied there only they know.
 */
export async function latestVersions(fs: FileSystem, sums: Checksums, walDir: string, lost?: LsnRange[], throughLsn = 0): Promise<LatestVersions> {
  const codec = new RecordCodec()
  const latest: LatestVersions = new Map()
  let prev = 0
  for await (const r of readLog({ fs, sums, walDir, recordBytesMax: limits.recordBytesHardMax, fromLsn: 1, toLsn: Number.MAX_SAFE_INTEGER, skipDamage: true })) {
    if (prev !== 0 && r.lsn > prev + 1) lost?.push([prev + 1, r.lsn - 1])
    prev = r.lsn
    addToLatest(latest, r.lsn, codec.decode(r.type, r.payload))
  }
  if (prev < throughLsn) lost?.push([prev + 1, throughLsn])
  return latest
}

async function scanWithProgress(fs: FileSystem, sums: Checksums, walDir: string, onProgress: FsckOptions['onProgress']): Promise<LogScan> {
  let total = 0
  if (onProgress) for (const name of await fs.readdir(walDir)) total += (await fs.stat(path.join(walDir, name)))?.size ?? 0
  let done = 0
  return scanLog({
    fs, sums, walDir, recordBytesMax: limits.recordBytesHardMax, verifyFromLsn: 0,
    ...(onProgress ? { onProgress: (bytes: number) => onProgress((done += bytes), total) } : {}),
  })
}

export function lastLsnOf(scan: LogScan): number {
  for (let i = scan.segments.length - 1; i >= 0; i--) {
    const s = scan.segments[i]
    if (s?.lastLsn !== undefined) return s.lastLsn
    if (s?.header) return s.header.baseLsn - 1
  }
  return 0
}

export function toReconcile(f: SinkFinding): ReconcileFinding {
  return { kind: f.kind, sink: f.sink, ...(f.key !== undefined ? { key: f.key } : {}), ...(f.lsnFirst !== undefined ? { lsnFirst: f.lsnFirst } : {}), detail: f.detail, repaired: f.repaired }
}

export function report(findings: ReconcileFinding[], scan: LogScan, lastLsn: number, checkpoints: VerifyReport['checkpoints'], elapsedMs: number): VerifyReport {
  const counts: Record<string, number> = {}
  for (const f of findings) counts[f.kind] = (counts[f.kind] ?? 0) + 1
  const repaired = findings.filter((f) => f.repaired).length
  return {
    clean: findings.length === 0,
    repaired,
    unrepaired: findings.length - repaired,
    counts,
    findings,
    segments: scan.segments.length,
    records: scan.records,
    bytesScanned: scan.bytesScanned,
    lastLsn,
    checkpoints,
    elapsedMs,
  }
}
