import { posix as path } from 'node:path'
import { MemwalError, osError } from '../errors.js'
import { defaultDirLocker, type DirLocker } from '../io/dir-lock.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import type { Finding } from '../log/recovery/findings.js'
import type { LogScan } from '../log/recovery/log-scan.js'
import { repairPlan, type LogRepairAction } from '../log/recovery/recovery-policy.js'
import { carryOut } from '../log/recovery/repair-executor.js'
import { IndexSink } from '../sinks/index-sink.js'
import { LevelBackend } from '../sinks/level-backend.js'
import type { LevelStore } from '../sinks/level-store.js'
import { openStore } from '../sinks/store-dir.js'
import { createChecksums } from '../format/checksum.js'
import { checkReplicas, lastLsnOf, logFindings, report, scanWholeLog, type LogSource, type ReconcileFindingKind, type VerifyReport } from './verify.js'

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
  const src = { fs, sums, walDir }
  const findings: Finding<ReconcileFindingKind>[] = []
  let lock = await locker.acquire(dir, () => undefined)
  let scan: LogScan
  let store: LevelStore | undefined
  try {
    scan = await scanWithProgress(src, o.onProgress)
    store = await openStore(fs, dir)
    const backendLsn = await store.readCheckpoint('backend')
    const found = logFindings(scan, backendLsn)
    if (o.repair && scan.problems.length > 0) {
      const { plan, actions } = repairPlan(scan)
      await carryOut({ ...src, quarantineDir: path.join(dir, 'quarantine') }, scan, plan)
      findings.push(...found.map((f, i) => withRepair(f, actions.filter((a) => a.problem === scan.problems[i] && a.action !== 'gap-declared'), backendLsn)))
    } else {
      findings.push(...found)
    }
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
    const backend = new LevelBackend(store)
    const index = new IndexSink(store)
    await backend.open()
    await index.open()
    const lastLsn = lastLsnOf(scan)
    findings.push(...(await checkReplicas({ ...src, backend, index, repair: o.repair, lastLsn })))
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
function withRepair(f: Finding, actions: readonly LogRepairAction[], backendLsn: number): Finding {
  const done = actions[0]?.action
  let out: Finding = { ...f, action: done === 'truncated' || done === 'quarantined' ? done : 'repaired' }
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

async function scanWithProgress(src: LogSource, onProgress: FsckOptions['onProgress']): Promise<LogScan> {
  if (!onProgress) return scanWholeLog(src)
  let total = 0
  for (const name of await src.fs.readdir(src.walDir)) total += (await src.fs.stat(path.join(src.walDir, name)))?.size ?? 0
  let done = 0
  return scanWholeLog(src, (bytes) => onProgress((done += bytes), total))
}
