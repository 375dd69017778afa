import { posix as path } from 'node:path'
import { lockHolder } from '../io/dir-lock.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { limits } from '../limits.js'
import { checkDataDir, describeLooseDir, looseDirs } from '../log/data-dir.js'
import { checkClosedDir, type ClosedDirCheck } from './reconciler.js'
import { deadLetterView } from './verify.js'
import { describeFinding } from '../log/recovery/findings.js'
import { openGaps, readGaps, type DeclaredGap } from '../log/recovery/gap-record.js'
import { openStore } from '../sinks/store-dir.js'
import { createChecksums } from '../format/checksum.js'
import { listWal } from '../log/segment-list.js'
import { framesOf, segmentsOf } from '../log/segment-cursor.js'

export interface DataDirStatus {
  readonly dir: string
  /** Who holds the lock, if a process does. */
  readonly lockedBy?: string
  readonly segments: { readonly count: number; readonly bytes: number; readonly firstLsn: number; readonly active?: string }
  readonly lastLsn: number
  /** Sink checkpoints; absent when a running process holds the store. */
  readonly checkpoints?: { readonly backend: number; readonly index: number }
  /** Records not yet applied by the slowest durable sink. */
  readonly backlogRecords?: number
  readonly deadLetterBytes: Readonly<Record<string, number>>
  /** Dead letters neither retried nor dropped (`memwal deadletter <dir> list`). */
  readonly openDeadLetters: number
  readonly quarantined: readonly string[]
  /** Gaps memwal declared in the log that no operator has acknowledged (`gaps.json`), and how many were acknowledged. */
  readonly gaps: { readonly open: readonly DeclaredGap[]; readonly acknowledged: number }
  /**
   * A dry-run fsck of the whole directory (log, checkpoints, backend, index),
   * when no process holds it and its segments hold at most
   * `limits.statusVerifyBytesMax` bytes; otherwise why it was not run.
   */
  readonly verified: StatusVerification
  /** What an operator should fix that is not damage: directories others may write. */
  readonly warnings: readonly string[]
}

export type StatusVerification =
  | { readonly clean: boolean; readonly counts: Readonly<Record<string, number>>; readonly findings: readonly string[] }
  | { readonly skipped: string }

/**
 * A look at a data directory (`memwal status`): the segment list, the last
 * segment, the checkpoints, dead letters, quarantine and declared gaps; and,
 * when the directory is small and free, a dry-run fsck, so that damage is
 * reported (a large log is left to `memwal fsck`: status stays fast).
 */
export async function inspectDataDir(dir: string, fs: FileSystem = new NodeFileSystem()): Promise<DataDirStatus> {
  const root = path.resolve(dir)
  await checkDataDir(root, fs)
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
  let checkpoints: DataDirStatus['checkpoints']
  let verified: StatusVerification
  if (holder) verified = { skipped: `${holder} holds the directory: MemWAL.verify() in that process, or memwal fsck once it has closed` }
  else if (!(await fs.stat(path.join(root, 'store')))) verified = { skipped: 'the directory has no store yet: run memwal fsck' }
  else {
    const store = await openStore(fs, root)
    try {
      checkpoints = { backend: await store.readCheckpoint('backend'), index: await store.readCheckpoint('index') }
      verified = await verification({ fs, sums, walDir, dir: root, store, dead }, bytes)
    } finally {
      await store.close()
    }
  }
  const deadLetterBytes: Record<string, number> = {}
  const dl = path.join(root, 'deadletter')
  if (await fs.stat(dl)) for (const f of await fs.readdir(dl)) if (f.endsWith('.log')) deadLetterBytes[f] = (await fs.stat(path.join(dl, f)))?.size ?? 0
  const openDeadLetters = dead.notices.length
  const q = path.join(root, 'quarantine')
  const quarantined = (await fs.stat(q)) ? await fs.readdir(q) : []
  const gapFile = await readGaps(fs, root)
  const open = openGaps(gapFile)
  return {
    dir: root,
    ...(holder ? { lockedBy: holder } : {}),
    segments: { count: segments.length, bytes, firstLsn: segments[0]?.baseLsn ?? 0, ...(last ? { active: last.name } : {}) },
    lastLsn,
    ...(checkpoints ? { checkpoints, backlogRecords: Math.max(0, lastLsn - Math.min(checkpoints.backend, checkpoints.index)) } : {}),
    deadLetterBytes,
    openDeadLetters,
    quarantined,
    gaps: { open, acknowledged: gapFile.gaps.length - open.length },
    verified,
    warnings: (await looseDirs(fs, root)).map(describeLooseDir),
  }
}

/** Damage anywhere in a small directory is worth the time of a full check; a large one is left to `memwal fsck`. */
async function verification(c: Omit<ClosedDirCheck, 'nowMs' | 'startedMs'>, bytes: number): Promise<StatusVerification> {
  if (bytes > limits.statusVerifyBytesMax) return { skipped: `the log's segments hold ${(bytes / 1024 / 1024).toFixed(0)} MiB, more than ${limits.statusVerifyBytesMax / 1024 / 1024} MiB: run memwal fsck` }
  const r = await checkClosedDir({ ...c, nowMs: () => Date.now(), startedMs: Date.now() })
  return { clean: r.clean, counts: r.counts, findings: r.findings.map((f) => describeFinding(f)) }
}
