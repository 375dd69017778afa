import { posix as path } from 'node:path'
import type { Checksums } from '../format/checksum.js'
import { encodeSegmentHeader, FORMAT_VERSION } from '../format/format.js'
import type { FileHandle, FileSystem } from '../io/fs.js'
import { segmentName, TEMP_SUFFIX } from '../format/segment-name.js'
import { ZERO_CHUNK_BYTES } from '../io/file-ops.js'

/**
 * Segment files are preallocated: a spare file is zero-filled to the full
 * segment size and synced ahead of need (in the background, while the active
 * segment fills), so that rotating costs a header write, a rename and a
 * directory sync, and appends overwrite blocks that already exist.
 */
export const SPARE_NAME = `spare${TEMP_SUFFIX}`

export interface OpenSegment {
  readonly name: string
  readonly handle: FileHandle
  readonly baseLsn: number
  readonly salt: number
  /** Format version of its header: group markers are written only in version 2 (FORMAT_VERSION). */
  readonly version: number
  /** Preallocated size: frames may be written up to here. */
  readonly capacity: number
}

/** Writes a zero-filled, synced spare segment file. A crash leaves a temp file that open removes. */
export async function prepareSpare(fs: FileSystem, walDir: string, segmentBytes: number): Promise<void> {
  const spare = path.join(walDir, SPARE_NAME)
  if (await fs.stat(spare)) await fs.unlink(spare)
  const handle = await fs.open(spare, 'create')
  try {
    const chunk = Buffer.alloc(Math.min(ZERO_CHUNK_BYTES, segmentBytes))
    for (let at = 0; at < segmentBytes; at += chunk.length) {
      await handle.write(at + chunk.length <= segmentBytes ? chunk : chunk.subarray(0, segmentBytes - at), at)
    }
    await handle.datasync()
  } catch (err) {
    await handle.close().catch(() => undefined)
    await fs.unlink(spare).catch(() => undefined)
    throw err
  }
  await handle.close()
}

export interface SegmentInstall {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
  readonly baseLsn: number
  readonly salt: number
  readonly createdAtMs: number
  readonly segmentBytes: number
  readonly dsync: boolean
  /** 0, or the first LSN of a gap recovery declared (see format.ts). */
  readonly gapFromLsn?: number
}

/**
 * Turns the spare into segment `baseLsn`: header written and synced, renamed
 * into place, directory synced, and only then opened for appends. So a record
 * acknowledged in the new segment never depends on a directory entry that a
 * power loss could take away; a crash before the directory sync leaves either
 * no segment or a complete, empty one.
 */
export async function installSegment(c: SegmentInstall): Promise<OpenSegment> {
  const spare = path.join(c.walDir, SPARE_NAME)
  const name = segmentName(c.baseLsn)
  const handle = await c.fs.open(spare, 'readwrite')
  try {
    await handle.write(encodeSegmentHeader({ version: FORMAT_VERSION, salt: c.salt, baseLsn: c.baseLsn, createdAtMs: c.createdAtMs, gapFromLsn: c.gapFromLsn ?? 0 }, c.sums), 0)
    await handle.datasync()
  } finally {
    await handle.close()
  }
  await c.fs.rename(spare, path.join(c.walDir, name))
  await c.fs.syncDir(c.walDir)
  const appender = await c.fs.open(path.join(c.walDir, name), 'readwrite', { dsync: c.dsync, appender: true })
  return { name, handle: appender, baseLsn: c.baseLsn, salt: c.salt, version: FORMAT_VERSION, capacity: c.segmentBytes }
}
