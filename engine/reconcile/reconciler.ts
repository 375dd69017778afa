import { posix as path } from 'node:path'
import { defaultDirLocker, type DirLocker } from '../io/dir-lock.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { checkDataDir, writeMarker } from '../log/data-dir.js'
import { checkBackendRecord, readBackendRecord } from '../log/backend-record.js'
import { listWal } from '../log/segment-list.js'
import type { Finding } from '../log/recovery/findings.js'
import { acknowledgeGaps, gapsOf, openGaps, readGaps } from '../log/recovery/gap-record.js'
import type { LogScan } from '../log/recovery/log-scan.js'
import { repairPlan, type LogRepairAction } from '../log/recovery/repair-plan.js'
import { carryOut } from '../log/recovery/repair-executor.js'
import { resumeRepair } from '../log/recovery/repair-intent.js'
import { IndexSink } from '../sinks/index-sink.js'
import { LevelBackend } from '../sinks/level-backend.js'
import { LAYOUT, type LevelStore } from '../sinks/level-store.js'
import { openStore, STORE_DIR, storeExists } from '../sinks/store-dir.js'
import { openStoreView } from '../sinks/store-view.js'
import { createChecksums, type Checksums } from '../format/checksum.js'
import { migrateLayout, type MigrationLog } from '../sinks/level-layout.js'
import { RecordCodec } from '../format/record-codec.js'
import { readLog } from '../log/wal-reader.js'
import { limits } from '../limits.js'
import { LatestVersions } from './latest-versions.js'
import { checkReplicas, deadLetterView, gapNotices, lastLsnOf, logFindings, report, scanWholeLog, type LogSource, type ReconcileFindingKind, type VerifyReport } from './verify.js'

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
  /** Checksums the caller has made already (`status` runs fsck after its own look): made here otherwise. */
  readonly sums?: Checksums
  /** Acknowledge every declared gap (`memwal fsck --ack-gaps`): they are no longer reported. */
  readonly ackGaps?: boolean
}

/**
 * The offline reconciler (`memwal fsck`): takes the lock, verifies every
 * segment and frame, then compares the backend and the index with the log.
 * With `repair`: cuts damaged segments (evidence to quarantine/), declares the
 * resulting gaps, replays into the sinks, re-applies wrong backend keys from
 * the log and rebuilds a wrong index from the backend. Without it, a dry run
 * (checkClosedDir): it changes nothing but what `ackGaps` asks.
 */
export async function fsck(o: FsckOptions): Promise<VerifyReport> {
  const fs = o.fs ?? new NodeFileSystem()
  const now = o.nowMs ?? (() => Date.now())
  const started = now()
  const dir = path.resolve(o.dir)
  const kind = await checkDataDir(dir, fs)
  // fsck compares the log with the local store's backend: a directory recorded with another backend is not its to judge.
  checkBackendRecord(dir, await readBackendRecord(fs, dir), { kind: 'leveldb' })
  const walDir = path.join(dir, 'wal')
  const sums = o.sums ?? (await createChecksums())
  const locker = o.locker ?? defaultDirLocker(fs)
  const src = { fs, sums, walDir }
  let lock = await locker.acquire(dir, () => undefined)
  let store: LevelStore | undefined
  try {
    if (!o.repair) {
      // A dry run writes nothing: a missing store is reported (checkClosedDir), not made by opening it; a present
      // one is opened from a private copy (LevelDB's open rewrites its files).
      const view = (await storeExists(fs, dir)) ? await openStoreView(fs, dir) : undefined
      try {
        return await checkClosedDir({ ...src, dir, store: view?.store, dead: await deadLetterView(src, dir), nowMs: now, startedMs: started, ...(o.ackGaps ? { ackGaps: true } : {}), ...(o.onProgress ? { onProgress: o.onProgress } : {}) })
      } finally {
        await view?.close()
      }
    }
    // A directory from before the marker gets it from a repair (which holds the lock).
    if (kind === 'unmarked') await writeMarker(fs, dir)
    // A log repair that a crash interrupted after its commit point is finished before the log is read.
    await resumeRepair({ ...src, quarantineDir: path.join(dir, 'quarantine') })
    const storeFound = await storeExists(fs, dir)
    store = await openStore(fs, dir)
    const backendLsn = await store.readCheckpoint('backend')
    // With a replay to come, the sinks are compared with a later scan: this one builds no latest versions.
    const first = o.replay ? undefined : new LatestVersions(sums, backendLsn, await highestCheckpoint(store))
    let scan = await scanWithProgress(src, o.onProgress, first, await heldFromLsn(store))
    // The dry run reports exactly what --repair does: the same plan, made from the same scan.
    const { plan, actions } = repairPlan(scan)
    const repairing = scan.problems.length > 0
    // A store made just now is filled from the log by the replay (or the next open): the log's `hole` says so if it cannot be.
    const logFound = [...withPlans(scan, backendLsn, actions, repairing), ...(storeFound ? [] : [missingStore(dir, true)])]
    // What the repair drops is recorded (before it is dropped) and stays visible until an operator acknowledges it.
    if (repairing) await carryOut({ ...src, quarantineDir: path.join(dir, 'quarantine') }, scan, plan, { dataDir: dir, gaps: gapsOf(logFound, 'fsck --repair', now()) })
    if (o.replay) {
      // The engine takes the lock and the store itself.
      await store.close()
      store = undefined
      await lock.release()
      await o.replay(dir)
      lock = await locker.acquire(dir, () => undefined)
    }
    store ??= await openStore(fs, dir)
    let latest = first
    if (repairing || latest === undefined) {
      // The log was cut or the backend replayed into since the scan: the sinks are compared with a scan taken now.
      latest = new LatestVersions(sums, await store.readCheckpoint('backend'), await highestCheckpoint(store))
      const rescan = await scanWholeLog(src, undefined, latest, await heldFromLsn(store))
      // The report counts the log as it was found, unless the replay's open changed it (its recovery).
      if (o.replay) scan = rescan
    }
    // A store written before (namespace, key) identity is migrated first, as an open would (engine/sinks/level-layout.ts).
    await migrateLayout(store, logFrom(src, lastLsnOf(scan)), { ownBackend: true, nowMs: now() })
    return await checkSinksAndReport({ ...src, dir, store, dead: await deadLetterView(src, dir), repair: true, nowMs: now, startedMs: started, ...(o.ackGaps ? { ackGaps: true } : {}) }, scan, latest, logFound)
  } finally {
    await store?.close().catch(() => undefined)
    await lock.release().catch(() => undefined)
  }
}

/** A data directory no process writes (its lock held by the caller, or found free by `memwal status`), its store open (undefined: it has none). */
export interface ClosedDirCheck extends LogSource {
  readonly dir: string
  readonly store: LevelStore | undefined
  /** The directory's dead letters, as the checks see them (read once by the caller). */
  readonly dead: Awaited<ReturnType<typeof deadLetterView>>
  readonly nowMs: () => number
  readonly startedMs: number
  readonly ackGaps?: boolean
  readonly onProgress?: FsckOptions['onProgress']
}

/**
 * The dry run of `memwal fsck` (and the check `memwal status` runs): reports
 * what the log, the backend and the index hold, and what `--repair` would do,
 * and changes nothing (but acknowledging gaps, when asked). Damage is
 * reported, never thrown. A store of layout 1 (written before (namespace,
 * key) identity) or 2 (an index without write times) is reported as needing
 * its migration, which only an open or `--repair` carries out; its sinks are
 * not compared until then (layout 1's rows are not where identity reads
 * them, layout 2's postings lack what layout 3 checks).
 */
export async function checkClosedDir(c: ClosedDirCheck): Promise<VerifyReport> {
  const { store } = c
  // No store: its sinks have applied nothing, so the whole log is theirs to hold, as the open that makes the store replays it.
  const backendLsn = store ? await store.readCheckpoint('backend') : 0
  const latest = new LatestVersions(c.sums, backendLsn, store ? await highestCheckpoint(store) : 0)
  const scan = await scanWithProgress(c, c.onProgress, latest, store ? await heldFromLsn(store) : 1)
  const logFound = withPlans(scan, backendLsn, repairPlan(scan).actions, false)
  if (store) return checkSinksAndReport({ ...c, store, repair: false }, scan, latest, logFound)
  // Nothing to compare the log with; the notices are still the directory's.
  const findings = [...logFound, missingStore(c.dir, false), ...c.dead.notices, ...(await gapNoticesAfterAck(c))]
  return report(findings, scan, lastLsnOf(scan), { backend: 0, index: 0 }, c.nowMs() - c.startedMs)
}

/** The data directory's store/ is missing: what `--repair` does about it, or did (`done`). */
function missingStore(dir: string, done: boolean): Finding<ReconcileFindingKind> {
  const what = `${path.join(dir, STORE_DIR)} is missing (never made, or lost): the backend's rows, the index and both checkpoints with it`
  return { kind: 'missing-store', detail: done ? `${what}; repair: made again, the log replayed into it` : `${what}; --repair makes it and replays the log into it`, action: done ? 'repaired' : 'none' }
}

/** The open declared gaps as notices, after acknowledging them when asked. */
async function gapNoticesAfterAck(c: Pick<ClosedDirCheck, 'fs' | 'dir' | 'nowMs' | 'ackGaps'>): Promise<Finding<ReconcileFindingKind>[]> {
  if (c.ackGaps) await acknowledgeGaps(c.fs, c.dir, c.nowMs())
  return gapNotices(openGaps(await readGaps(c.fs, c.dir)))
}

/** The scan's findings, each with what `--repair` does (or did, when `done`) about it. */
function withPlans(scan: LogScan, backendLsn: number, actions: readonly LogRepairAction[], done: boolean): Finding[] {
  return logFindings(scan, backendLsn).map((f, i) => withPlan(f, actions.find((a) => a.problem === scan.problems[i]), backendLsn, done))
}

/** The sinks compared with the log (repaired when `repair`), the notices added, and the report. */
async function checkSinksAndReport(c: Omit<ClosedDirCheck, 'onProgress' | 'store'> & { readonly store: LevelStore; readonly repair: boolean }, scan: LogScan, latest: LatestVersions, logFound: readonly Finding<ReconcileFindingKind>[]): Promise<VerifyReport> {
  const findings: Finding<ReconcileFindingKind>[] = [...logFound]
  const lastLsn = lastLsnOf(scan)
  let checkpoints: VerifyReport['checkpoints']
  const layout = await c.store.layout()
  if (!c.repair && (layout === 1 || layout === 2)) {
    const what = layout === 1 ? 'layout 1 (written before (namespace, key) identity)' : 'layout 2 (its index without write times)'
    findings.push({ kind: 'needs-migration', detail: `the store is ${what}: the next open or memwal fsck --repair migrates it; until then the backend and the index are not compared with the log`, action: 'none' })
    checkpoints = { backend: await c.store.readCheckpoint('backend'), index: await c.store.readCheckpoint('index') }
  } else {
    const backend = new LevelBackend(c.store)
    const index = new IndexSink(c.store)
    await backend.open()
    await index.open()
    findings.push(...(await checkReplicas({ ...c, latest, backend, index, repair: c.repair, lastLsn, deadLettered: c.dead.excluded })))
    checkpoints = { backend: backend.checkpoint, index: index.checkpoint }
  }
  findings.push(...c.dead.notices, ...(await gapNoticesAfterAck(c)))
  return report(findings, scan, lastLsn, checkpoints, c.nowMs() - c.startedMs)
}

/** The log of a closed directory, as the layout migration reads it. */
function logFrom(src: LogSource, lastLsn: number): MigrationLog {
  const codec = new RecordCodec()
  return {
    lastLsn,
    read: async function* (fromLsn) {
      for await (const r of readLog({ ...src, recordBytesMax: limits.recordBytesHardMax, fromLsn, toLsn: lastLsn, skipDamage: false })) yield { lsn: r.lsn, record: codec.decode(r.type, r.payload) }
    },
  }
}

/**
 * A log finding with what `--repair` does (or did, when `done`) about it: the
 * LSNs it takes out of the log, exactly, and whether the backend had them all
 * (then nothing was lost). Where records it drops had not reached the backend
 * and could have been deletes, the finding says that an older value may read
 * back: the key of a damaged record cannot be known.
 */
function withPlan(f: Finding, a: LogRepairAction | undefined, backendLsn: number, done: boolean): Finding {
  if (!a) return f
  const lost = a.lsnFirst !== undefined ? { lsnFirst: a.lsnFirst, ...(a.lsnLast !== undefined ? { lsnLast: a.lsnLast } : {}) } : {}
  const applied = a.lsnFirst === undefined ? f.alreadyApplied : a.lsnLast !== undefined && a.lsnLast <= backendLsn
  const drops = a.lsnFirst !== undefined && (a.action === 'skipped' || a.action === 'truncated' || a.action === 'quarantined')
  const resurrect = drops && applied !== true ? '; if a dropped record deleted a key (the key cannot be read from the damage), its older value reads back' : ''
  const action = !done || a.action === 'none' ? 'none' : a.action === 'gap-declared' || a.action === 'rewritten' ? 'repaired' : a.action
  const { lsnFirst: _f, lsnLast: _l, alreadyApplied: _a, ...rest } = f
  return { ...rest, ...(a.lsnFirst !== undefined ? lost : f.lsnFirst !== undefined ? { lsnFirst: f.lsnFirst, ...(f.lsnLast !== undefined ? { lsnLast: f.lsnLast } : {}) } : {}), ...(applied !== undefined ? { alreadyApplied: applied } : {}), detail: `${f.detail}; ${done ? 'repair' : '--repair'}: ${a.detail}${resurrect}`, action }
}

/**
 * The highest checkpoint of a closed directory's sinks: no sink holds a
 * version above it (LatestVersions' keepThroughLsn). Unbounded for a store
 * of an earlier layout, whose migration (after the scan) moves the
 * checkpoints it is compared at.
 */
async function highestCheckpoint(store: LevelStore): Promise<number> {
  const layout = await store.layout()
  if (layout !== 0 && layout !== LAYOUT) return Number.MAX_SAFE_INTEGER
  return Math.max(await store.readCheckpoint('backend'), await store.readCheckpoint('index'))
}

/** The first LSN a sink of `store` has not applied: the log must hold it (ScanOptions.heldFromLsn). */
async function heldFromLsn(store: LevelStore): Promise<number> {
  return Math.min(await store.readCheckpoint('backend'), await store.readCheckpoint('index')) + 1
}

async function scanWithProgress(src: LogSource, onProgress: FsckOptions['onProgress'], latest: LatestVersions | undefined, held: number): Promise<LogScan> {
  if (!onProgress) return scanWholeLog(src, undefined, latest, held)
  // The segments only: the scan reads nothing else (counting the 64 MiB spare left the bar at 0% after a replay had made one).
  let total = 0
  for (const s of (await listWal(src.fs, src.walDir)).segments) total += (await src.fs.stat(s.path))?.size ?? 0
  let done = 0
  return scanWholeLog(src, (bytes) => onProgress((done += bytes), total), latest, held)
}
