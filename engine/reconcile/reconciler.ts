import { posix as path } from 'node:path'
import { defaultDirLocker, type DirLocker } from '../io/dir-lock.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { checkDataDir, writeMarker } from '../log/data-dir.js'
import { listWal } from '../log/segment-list.js'
import type { Finding } from '../log/recovery/findings.js'
import { acknowledgeGaps, gapsOf, openGaps, readGaps } from '../log/recovery/gap-record.js'
import type { LogScan } from '../log/recovery/log-scan.js'
import { repairPlan, type LogRepairAction } from '../log/recovery/repair-plan.js'
import { carryOut } from '../log/recovery/repair-executor.js'
import { resumeRepair } from '../log/recovery/repair-intent.js'
import { IndexSink } from '../sinks/index-sink.js'
import { LevelBackend } from '../sinks/level-backend.js'
import type { LevelStore } from '../sinks/level-store.js'
import { openStore } from '../sinks/store-dir.js'
import { createChecksums, type Checksums } from '../format/checksum.js'
import { migrateLayout, type MigrationLog } from '../sinks/level-layout.js'
import { RecordCodec } from '../format/record-codec.js'
import { readLog } from '../log/wal-reader.js'
import { limits } from '../limits.js'
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
 * the log and rebuilds a wrong index from the backend.
 */
export async function fsck(o: FsckOptions): Promise<VerifyReport> {
  const fs = o.fs ?? new NodeFileSystem()
  const now = o.nowMs ?? (() => Date.now())
  const started = now()
  const dir = path.resolve(o.dir)
  const kind = await checkDataDir(dir, fs)
  const walDir = path.join(dir, 'wal')
  const sums = o.sums ?? (await createChecksums())
  const locker = o.locker ?? defaultDirLocker(fs)
  const src = { fs, sums, walDir }
  const findings: Finding<ReconcileFindingKind>[] = []
  let lock = await locker.acquire(dir, () => undefined)
  let scan: LogScan
  let store: LevelStore | undefined
  try {
    // A directory from before the marker gets it from a repair (which holds the lock); a dry run changes nothing.
    if (o.repair && kind === 'unmarked') await writeMarker(fs, dir)
    // A log repair that a crash interrupted after its commit point is finished before the log is read.
    await resumeRepair({ ...src, quarantineDir: path.join(dir, 'quarantine') })
    scan = await scanWithProgress(src, o.onProgress)
    store = await openStore(fs, dir)
    const backendLsn = await store.readCheckpoint('backend')
    const found = logFindings(scan, backendLsn)
    // The dry run reports exactly what --repair does: the same plan, made from the same scan.
    const { plan, actions } = repairPlan(scan)
    const repairing = o.repair && scan.problems.length > 0
    const logFound = found.map((f, i) => withPlan(f, actions.find((a) => a.problem === scan.problems[i]), backendLsn, repairing))
    // What the repair drops is recorded (before it is dropped) and stays visible until an operator acknowledges it.
    if (repairing) await carryOut({ ...src, quarantineDir: path.join(dir, 'quarantine') }, scan, plan, { dataDir: dir, gaps: gapsOf(logFound, 'fsck --repair', now()) })
    findings.push(...logFound)
    if (o.repair && o.replay) {
      // The engine takes the lock and the store itself.
      await store.close()
      store = undefined
      await lock.release()
      await o.replay(dir)
      lock = await locker.acquire(dir, () => undefined)
      scan = await scanWholeLog(src)
    }
    store ??= await openStore(fs, dir)
    const lastLsn = lastLsnOf(scan)
    // A store written before (namespace, key) identity is migrated first, as an open would (engine/sinks/level-layout.ts).
    await migrateLayout(store, logFrom(src, lastLsn), { ownBackend: true, nowMs: now() })
    const backend = new LevelBackend(store)
    const index = new IndexSink(store)
    await backend.open()
    await index.open()
    const dead = await deadLetterView(src, dir)
    findings.push(...(await checkReplicas({ ...src, backend, index, repair: o.repair, lastLsn, deadLettered: dead.excluded })), ...dead.notices)
    if (o.ackGaps) await acknowledgeGaps(fs, dir, now())
    findings.push(...gapNotices(openGaps(await readGaps(fs, dir))))
    return report(findings, scan, lastLsn, { backend: backend.checkpoint, index: index.checkpoint }, now() - started)
  } finally {
    await store?.close().catch(() => undefined)
    await lock.release().catch(() => undefined)
  }
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

async function scanWithProgress(src: LogSource, onProgress: FsckOptions['onProgress']): Promise<LogScan> {
  if (!onProgress) return scanWholeLog(src)
  // The segments only: the scan reads nothing else (counting the 64 MiB spare left the bar at 0% after a replay had made one).
  let total = 0
  for (const s of (await listWal(src.fs, src.walDir)).segments) total += (await src.fs.stat(s.path))?.size ?? 0
  let done = 0
  return scanWholeLog(src, (bytes) => onProgress((done += bytes), total))
}
