import { posix as path } from 'node:path'
import type { FileHandle, FileSystem } from '../io/fs.js'
import type { Checksums } from '../wal/checksum.js'
import { encodeFrame, encodeSegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_BYTES, type RecordType } from '../wal/format.js'

/**
 * `deadletter/<sink>.log`: the records a sink rejected for good, framed as in
 * a WAL segment (same header and frames, so the same tools read it; LSNs are
 * the records' own and need not be contiguous). Appends are O_DSYNC: a record
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
    await fs.mkdirp(dir)
    const file = path.join(dir, `${sink}.log`)
    const stat = await fs.stat(file)
    if (!stat) {
      const h = await fs.open(file, 'create', { dsync: true })
      await h.write(encodeSegmentHeader({ version: FORMAT_VERSION, salt, baseLsn: 1, createdAtMs: nowMs, gapFromLsn: 0 }, sums), 0)
      await fs.syncDir(dir)
      return new DeadLetterLog(h, SEGMENT_HEADER_BYTES, salt, sums)
    }
    const bytes = await fs.readFile(file)
    const existingSalt = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).readUInt32LE(12)
    return new DeadLetterLog(await fs.open(file, 'readwrite', { dsync: true }), bytes.length, existingSalt, sums)
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
