import { posix as path } from 'node:path'
import { lockHolder } from '../io/dir-lock.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { limits } from '../limits.js'
import { checkDataDir } from '../log/data-dir.js'
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
  readonly quarantined: readonly string[]
}

/**
 * A quick look at a data directory (`memwal status`): reads only the segment
 * list, the last segment, and the checkpoints; never the whole log.
 */
export async function inspectDataDir(dir: string, fs: FileSystem = new NodeFileSystem()): Promise<DataDirStatus> {
  const root = path.resolve(dir)
  await checkDataDir(fs, root)
  const walDir = path.join(root, 'wal')
  const listing = await listWal(fs, walDir)
  const { segments } = listing
  let bytes = 0
  for (const s of segments) bytes += (await fs.stat(s.path))?.size ?? 0
  const last = segments[segments.length - 1]
  let lastLsn = last ? last.baseLsn - 1 : 0
  const cursor = { fs, sums: await createChecksums(), walDir, recordBytesMax: limits.recordBytesHardMax }
  // Headers only: status must answer fast on a large log; fsck is the one that verifies payloads.
  for await (const seg of segmentsOf({ ...cursor, listing, lastOnly: true })) for (const ev of framesOf(seg, cursor, 'headers-only')) if (ev.kind === 'frame') lastLsn = ev.lsn
  const holder = fs instanceof NodeFileSystem ? lockHolder(root) : undefined
  let checkpoints: DataDirStatus['checkpoints']
  if (!holder && (await fs.stat(path.join(root, 'store')))) {
    const store = await openStore(fs, root)
    try {
      checkpoints = { backend: await store.readCheckpoint('backend'), index: await store.readCheckpoint('index') }
    } finally {
      await store.close()
    }
  }
  const deadLetterBytes: Record<string, number> = {}
  const dl = path.join(root, 'deadletter')
  if (await fs.stat(dl)) for (const f of await fs.readdir(dl)) deadLetterBytes[f] = (await fs.stat(path.join(dl, f)))?.size ?? 0
  const q = path.join(root, 'quarantine')
  const quarantined = (await fs.stat(q)) ? await fs.readdir(q) : []
  return {
    dir: root,
    ...(holder ? { lockedBy: holder } : {}),
    segments: { count: segments.length, bytes, firstLsn: segments[0]?.baseLsn ?? 0, ...(last ? { active: last.name } : {}) },
    lastLsn,
    ...(checkpoints ? { checkpoints, backlogRecords: Math.max(0, lastLsn - Math.min(checkpoints.backend, checkpoints.index)) } : {}),
    deadLetterBytes,
    quarantined,
  }
}
