import { posix as path } from 'node:path'
import type { FileHandle, FileSystem } from '../io/fs.js'
import type { Checksums } from '../format/checksum.js'
import { decodeSegmentHeader, encodeFrame, encodeSegmentHeader, FORMAT_VERSION_UNMARKED, SEGMENT_HEADER_BYTES, type RecordType } from '../format/format.js'
import { MemwalError } from '../errors.js'
import { freeName, makeDirDurable } from '../io/file-ops.js'

/**
 * `deadletter/<sink>.log`: the records a sink rejected for good, framed as in
 * a WAL segment of format version 1 (same header and frames, no group
 * markers: one frame per write, so the same tools read it; LSNs are the
 * records' own and need not be contiguous). Appends are O_DSYNC: a record
 * is in the dead-letter log before the sink's checkpoint moves past it.
 */
export class DeadLetterLog {
  private constructor(
    private readonly handle: FileHandle,
    private offset: number,
    private readonly salt: number,
    private readonly sums: Checksums,
  ) {}

  static async open(fs: FileSystem, dir: string, sink: string, sums: Checksums, salt: number, nowMs: number): Promise<DeadLetterLog> {
    await makeDirDurable(fs, dir)
    const file = path.join(dir, `${sink}.log`)
    const stat = await fs.stat(file)
    if (!stat) {
      const h = await fs.open(file, 'create', { dsync: true })
      await h.write(encodeSegmentHeader({ version: FORMAT_VERSION_UNMARKED, salt, baseLsn: 1, createdAtMs: nowMs, gapFromLsn: 0 }, sums), 0)
      await fs.syncDir(dir)
      return new DeadLetterLog(h, SEGMENT_HEADER_BYTES, salt, sums)
    }
    const bytes = await fs.readFile(file)
    const h = decodeSegmentHeader(bytes, sums)
    if (h.kind === 'unknown-version') throw new MemwalError('WAL_UNKNOWN_VERSION', `${file} has format version ${h.version}`, { details: { file, version: h.version } })
    if (h.kind === 'corrupt') {
      // A header cut short (a crash, or a full disk, while the log was being created) or damaged: it would fail
      // every open, and the poison record would block its sink for good. Set aside (never overwritten), start afresh.
      await fs.rename(file, await freeName(fs, dir, `${sink}.log.damaged`))
      await fs.syncDir(dir)
      return DeadLetterLog.open(fs, dir, sink, sums, salt, nowMs)
    }
    return new DeadLetterLog(await fs.open(file, 'readwrite', { dsync: true }), bytes.length, h.header.salt, sums)
  }

  async append(lsn: number, type: RecordType, payload: Uint8Array): Promise<void> {
    const frame = encodeFrame({ lsn, type, payload }, this.salt, this.sums)
    await this.handle.write(frame, this.offset)
    this.offset += frame.length
  }

  close(): Promise<void> {
    return this.handle.close()
  }
}
