import { posix as path } from 'node:path'
import { assert } from '../assert.js'
import { InvalidOptionsError, MemwalError, type WalFailedError } from '../errors.js'
import { systemClock, type Clock } from '../io/clock.js'
import { defaultDirLocker, type DirLock, type DirLocker } from '../io/dir-lock.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { systemRandom, type Random } from '../io/random.js'
import { checkWalLimits, limits, type WalLimits } from '../limits.js'
import { recoverWal, CORRUPTION_POLICIES, type CorruptionPolicy, type RecoveryReport, type Resume } from './recovery/wal-recovery.js'
import { createChecksums, type Checksums } from '../format/checksum.js'
import type { GapFile } from './recovery/gap-record.js'
import type { FrameConsumer } from './recovery/log-scan.js'
import { FRAME_HEADER_BYTES, GROUP_MARKER_BYTES, SEGMENT_HEADER_BYTES, type RecordType } from '../format/format.js'
import { RecordCodec, type WalRecord } from '../format/record-codec.js'
import { makeDirDurable } from '../io/file-ops.js'
import { installSegment, prepareSpare, type OpenSegment } from './segment-file.js'
import { checkSizing, type SegmentSizing } from './segment-sizing.js'
import { listWal } from './segment-list.js'
import { readLog, readLogSegments, type LogRecord, type ReadOptions, type SegmentRecords } from './wal-reader.js'
import type { ResumePoint } from './segment-cursor.js'
import { WalWriter, type Durability, type LogExtent, type WriterState } from './wal-writer.js'

export interface WalOptions {
  /** The data directory; segments live in `<dir>/wal`. */
  readonly dir: string
  readonly durability?: Durability
  /** `interval` durability: fdatasync period. */
  readonly syncIntervalMs?: number
  readonly segmentBytes?: number
  readonly recordBytesMax?: number
  readonly groupBytesMax?: number
  readonly queueBytesMax?: number
  /** Groups up to this many bytes are written on the calling thread (0: never); see WriterConfig. */
  readonly inlineWriteBytesMax?: number
  readonly corruptionPolicy?: CorruptionPolicy
  /** Highest LSN known durable outside the log (sinks' durable checkpoints): recovery refuses a log that ends before it. */
  readonly durableLsn?: number
  /** The backend's checkpoint: corruption reports say whether lost LSNs had reached it. */
  readonly appliedLsn?: number
  /** Verify frames from this LSN on at open (default: all of them). */
  readonly verifyFromLsn?: number
  /**
   * The next LSN must be at least this: a sink may hold LSNs the log lost
   * (durability `interval` or `none`), and new records must never reuse them.
   * The skipped LSNs are declared as a gap in a new segment's header.
   */
  readonly nextLsnAtLeast?: number
  readonly fs?: FileSystem
  readonly clock?: Clock
  readonly random?: Random
  /** Single-writer lock; the default takes `<dir>/memwal.lock` on the real filesystem and none on another. */
  readonly locker?: DirLocker
  readonly onFailed?: (error: WalFailedError) => void
}

/** How the log is configured: resolved and checked once (by Wal.open, or by the engine's own options), then frozen. */
export interface WalConfig {
  readonly dir: string
  readonly walDir: string
  readonly durability: Durability
  readonly syncIntervalMs: number
  readonly limits: WalLimits
  /** How large new segments are: from small up to limits.segmentBytes, with the write rate. */
  readonly sizing: SegmentSizing
  readonly policy: CorruptionPolicy
  readonly inlineWriteBytesMax: number
  readonly fs: FileSystem
  readonly clock: Clock
  readonly random: Random
  readonly locker: DirLocker
}

/** What only the opener knows at open: the sinks' checkpoints, and whom to tell when the log fails. */
export interface WalOpenPoint {
  readonly durableLsn: number
  readonly appliedLsn: number
  readonly verifyFromLsn: number
  readonly nextLsnAtLeast: number
  readonly onFailed?: (error: WalFailedError) => void
  /** Reads each frame recovery's scan verifies (ScanOptions.frames): what open loads the backlog from. */
  readonly frames?: FrameConsumer
}

/**
 * The write-ahead log of one data directory: lock, recovery, the serial
 * writer and the reader, put together. The engine above turns records into
 * replicas; this layer only promises that an acknowledged record is on disk
 * and reads back exactly as written.
 */
export class Wal {
  private constructor(
    private readonly o: WalConfig,
    private readonly sums: Checksums,
    private readonly writer: WalWriter,
    private readonly lock: DirLock,
    readonly recovery: RecoveryReport,
    /** Every gap on record in `<dir>/gaps.json`, with any this recovery declared. */
    readonly gaps: GapFile,
    private readonly codec: RecordCodec,
  ) {}

  static async open(options: WalOptions): Promise<Wal> {
    const config = resolveWalConfig(options)
    const point: WalOpenPoint = {
      durableLsn: options.durableLsn ?? 0,
      appliedLsn: options.appliedLsn ?? 0,
      verifyFromLsn: options.verifyFromLsn ?? 0,
      nextLsnAtLeast: options.nextLsnAtLeast ?? 1,
      ...(options.onFailed ? { onFailed: options.onFailed } : {}),
    }
    return Wal.openResolved(config, point, await createChecksums())
  }

  /** Opens with a config already resolved and checksums already built (the engine makes both once, at open). */
  static async openResolved(o: WalConfig, point: WalOpenPoint, sums: Checksums): Promise<Wal> {
    let writerRef: WalWriter | undefined
    await makeDirDurable(o.fs, o.walDir)
    const lock = await o.locker.acquire(o.dir, (err) => {
      // Another process may now write here: stop writing at once (G7, fail closed).
      writerRef?.poison('the data directory lock was compromised', err)
    })
    try {
      const recovered = await recoverWal({
        fs: o.fs, sums, walDir: o.walDir, quarantineDir: path.join(o.dir, 'quarantine'), dataDir: o.dir, nowMs: o.clock.nowMs(),
        recordBytesMax: o.limits.recordBytesMax, policy: o.policy, durableLsn: point.durableLsn,
        appliedLsn: point.appliedLsn, verifyFromLsn: point.verifyFromLsn, ...(point.frames ? { frames: point.frames } : {}),
      })
      // LSNs on record as dropped are never reused, even when a crash came between the record and the cut
      // (or between the cut and the new segment that declares the gap in its header).
      const segment = await openResume(o, sums, raiseNextLsn(recovered.resume, Math.max(point.nextLsnAtLeast, afterGaps(recovered.gaps))))
      const writer = new WalWriter(
        { fs: o.fs, sums, clock: o.clock, random: o.random, walDir: o.walDir, durability: o.durability, syncIntervalMs: o.syncIntervalMs, limits: o.limits, sizing: o.sizing, inlineWriteBytesMax: o.inlineWriteBytesMax, ...(point.onFailed ? { onFailed: point.onFailed } : {}) },
        segment,
      )
      writerRef = writer
      return new Wal(o, sums, writer, lock, recovered.report, recovered.gaps, new RecordCodec())
    } catch (err) {
      await lock.release().catch(() => undefined)
      throw err
    }
  }

  get state(): WriterState {
    return this.writer.state
  }

  /** LSN of the last record written (acknowledged, in sync mode). */
  get lastLsn(): number {
    return this.writer.lastAssignedLsn
  }

  /** LSN of the last record known durable. */
  get durableLsn(): number {
    return this.writer.durableLsn
  }

  get activeSegment(): string {
    return this.writer.activeSegment
  }

  get queuedBytes(): number {
    return this.writer.queuedBytes
  }

  /** The active segment and the offset below which every write completed (WalWriter.extent). */
  get extent(): LogExtent {
    return this.writer.extent
  }

  /** The largest payload one record may have. */
  get recordBytesMax(): number {
    return this.o.limits.recordBytesMax
  }

  /** Appends an encoded payload; resolves its LSN once acknowledged (see Durability). */
  append(type: RecordType, payload: Uint8Array): Promise<number> {
    return this.writer.append(type, payload)
  }

  /** Encodes and appends a record. */
  appendRecord(record: WalRecord): Promise<number> {
    let payload: Uint8Array
    try {
      payload = this.codec.encode(record)
    } catch (cause) {
      return Promise.reject(new MemwalError('WAL_INVALID_RECORD', `record cannot be encoded: ${(cause as Error).message}`, { cause }))
    }
    return this.writer.append(record.type, payload)
  }

  decode(r: LogRecord): WalRecord {
    return this.codec.decode(r.type, r.payload)
  }

  /** Records from `fromLsn` to the last written, verified as they are read. */
  read(fromLsn: number, toLsn = this.lastLsn): AsyncGenerator<LogRecord> {
    return readLog(this.readOptions(fromLsn, toLsn))
  }

  /**
   * What `read` gives, a segment at a time (wal-reader.ts readLogSegments):
   * no promise per record; from `resumeAt` (where an earlier read of
   * `fromLsn` left off), the first segment is read from there on only.
   */
  readSegments(fromLsn: number, toLsn = this.lastLsn, resumeAt?: ResumePoint): AsyncGenerator<SegmentRecords> {
    return readLogSegments({ ...this.readOptions(fromLsn, toLsn), ...(resumeAt !== undefined ? { resumeAt } : {}) })
  }

  private readOptions(fromLsn: number, toLsn: number): ReadOptions {
    return {
      fs: this.o.fs, sums: this.sums, walDir: this.o.walDir, recordBytesMax: this.o.limits.recordBytesMax,
      fromLsn, toLsn, skipDamage: this.o.policy === 'skip-corrupt',
    }
  }

  /** Segments in LSN order, each with its base LSN (the active one last). */
  async segments(): Promise<{ name: string; baseLsn: number }[]> {
    return (await listWal(this.o.fs, this.o.walDir)).segments.map((s) => ({ name: s.name, baseLsn: s.baseLsn }))
  }

  sync(): Promise<void> {
    return this.writer.sync()
  }

  /** Fails the log from outside (a lost lock): nothing more is acknowledged (G2, G7). */
  poison(message: string, cause: unknown): void {
    this.writer.poison(message, cause)
  }

  /**
   * Deletes the segments whose every record is at or below `lsn` (never the
   * active one): WAL retention, called with the lowest durable sink checkpoint.
   * Resolves the LSN up to which the oldest remaining segment reaches, so the
   * caller knows when a purge can next free anything.
   */
  async purgeThrough(lsn: number): Promise<number> {
    const { segments } = await listWal(this.o.fs, this.o.walDir)
    let removed = 0
    for (let i = 0; i + 1 < segments.length; i++) {
      const next = segments[i + 1]
      const seg = segments[i]
      if (!next || !seg || next.baseLsn - 1 > lsn || seg.name === this.writer.activeSegment) break
      await this.o.fs.unlink(seg.path)
      removed++
    }
    if (removed > 0) await this.o.fs.syncDir(this.o.walDir)
    const oldestNext = segments[removed + 1]
    // With one segment left, nothing can go until the next rotation: ask again after more records.
    return oldestNext ? oldestNext.baseLsn - 1 : Math.max(lsn, this.lastLsn) + 1
  }

  async close(): Promise<void> {
    await this.writer.close()
    await this.lock.release().catch(() => undefined)
  }
}

/** What one record costs beyond its payload when it is written alone: its frame header and its group's marker. */
const WRITE_OVERHEAD_BYTES = FRAME_HEADER_BYTES + GROUP_MARKER_BYTES

/** The LSN after every gap on record whose end is known (1 if none). */
function afterGaps(f: GapFile): number {
  let after = 1
  for (const g of f.gaps) if (g.lsnLast !== undefined) after = Math.max(after, g.lsnLast + 1)
  return after
}

function raiseNextLsn(r: Resume, atLeast: number): Resume {
  const next = r.kind === 'append' ? r.nextLsn : r.baseLsn
  if (next >= atLeast) return r
  return { kind: 'new-segment', baseLsn: atLeast, gapFromLsn: r.kind === 'new-segment' && r.gapFromLsn !== 0 ? r.gapFromLsn : next }
}

async function openResume(o: WalConfig, sums: Checksums, r: Resume): Promise<{ segment: OpenSegment; offset: number; nextLsn: number }> {
  const dsync = o.durability === 'sync'
  // What recovery read may sit only in the page cache (written by a process that died, or whose write failed,
  // before a sync): made durable before anything is appended after it, or a power loss could leave a hole
  // in front of records acknowledged later.
  if (r.kind === 'append' && o.durability !== 'none') {
    const tail = await o.fs.open(r.segment.path, 'readwrite')
    try {
      await tail.datasync()
    } finally {
      await tail.close()
    }
    // Likewise its directory entry: a rotation whose directory sync failed leaves a renamed segment
    // that a power loss would take back, with every record appended to it since (found by torture
    // seed 1206549609: EIO on syncDir, reopen with the page cache intact, then power loss).
    await o.fs.syncDir(o.walDir)
  }
  if (r.kind === 'append' && r.offset + FRAME_HEADER_BYTES <= r.capacity) {
    const handle = await o.fs.open(r.segment.path, 'readwrite', { dsync, appender: true })
    return { segment: { name: r.segment.name, handle, baseLsn: r.header.baseLsn, salt: r.header.salt, version: r.header.version, capacity: r.capacity }, offset: r.offset, nextLsn: r.nextLsn }
  }
  const baseLsn = r.kind === 'append' ? r.nextLsn : r.baseLsn
  const gapFromLsn = r.kind === 'append' ? 0 : r.gapFromLsn
  // A new log (or a new segment after recovery) starts small: a store with a few records takes a few MiB.
  await prepareSpare(o.fs, o.walDir, o.sizing.initialBytes)
  const segment = await installSegment({
    fs: o.fs, sums, walDir: o.walDir, baseLsn, salt: o.random.nextU32(), createdAtMs: o.clock.nowMs(),
    segmentBytes: o.sizing.initialBytes, dsync, gapFromLsn,
  })
  assert(segment.capacity > SEGMENT_HEADER_BYTES, 'new segment has room')
  return { segment, offset: SEGMENT_HEADER_BYTES, nextLsn: baseLsn }
}

/** Every WAL default applied and every WAL option checked: a bad option is refused before any I/O. */
export function resolveWalConfig(w: Omit<WalOptions, 'durableLsn' | 'appliedLsn' | 'verifyFromLsn' | 'nextLsnAtLeast' | 'onFailed'>): WalConfig {
  if (typeof w.dir !== 'string' || w.dir.length === 0) throw new InvalidOptionsError('dir is required')
  const fs = w.fs ?? new NodeFileSystem()
  const segmentBytes = w.segmentBytes ?? limits.segmentBytesDefault
  // By default a record may be as large as fits in an empty segment (behind its group marker), up to the default maximum.
  const recordBytesMax = w.recordBytesMax ?? Math.min(limits.recordBytesDefault, segmentBytes - SEGMENT_HEADER_BYTES - WRITE_OVERHEAD_BYTES)
  const l: WalLimits = {
    recordBytesMax,
    segmentBytes,
    groupBytesMax: w.groupBytesMax ?? Math.max(limits.groupBytesDefault, recordBytesMax + WRITE_OVERHEAD_BYTES),
    queueBytesMax: w.queueBytesMax ?? limits.queueBytesDefault,
  }
  checkWalLimits(l, WRITE_OVERHEAD_BYTES, SEGMENT_HEADER_BYTES)
  const durability = w.durability ?? 'sync'
  if (!['sync', 'interval', 'none'].includes(durability)) throw new InvalidOptionsError(`durability must be sync, interval or none, not ${String(durability)}`)
  const policy = w.corruptionPolicy ?? 'tolerate-torn-tail'
  if (!CORRUPTION_POLICIES.includes(policy)) throw new InvalidOptionsError(`corruptionPolicy must be one of ${CORRUPTION_POLICIES.join(', ')}, not ${String(policy)}`)
  const syncIntervalMs = w.syncIntervalMs ?? limits.syncIntervalMsDefault
  if (!(syncIntervalMs > 0 && syncIntervalMs <= limits.syncIntervalMsMax)) throw new InvalidOptionsError(`syncIntervalMs must be in (0, ${limits.syncIntervalMsMax}] ms, not ${String(syncIntervalMs)}`)
  const inline = w.inlineWriteBytesMax
  if (inline !== undefined && !(Number.isInteger(inline) && inline >= 0 && inline <= l.groupBytesMax)) throw new InvalidOptionsError(`inlineWriteBytesMax must be an integer in [0, ${l.groupBytesMax}] bytes, not ${String(inline)}`)
  const dir = path.resolve(w.dir)
  const sizing: SegmentSizing = Object.freeze({ initialBytes: Math.min(limits.segmentBytesInitialDefault, l.segmentBytes), maxBytes: l.segmentBytes, growWithinMs: limits.segmentGrowWithinMsDefault })
  checkSizing(sizing)
  return Object.freeze({
    dir,
    walDir: path.join(dir, 'wal'),
    durability,
    syncIntervalMs,
    limits: Object.freeze(l),
    sizing,
    policy,
    inlineWriteBytesMax: w.inlineWriteBytesMax ?? limits.inlineWriteBytesDefault,
    fs,
    clock: w.clock ?? systemClock,
    random: w.random ?? systemRandom,
    locker: w.locker ?? defaultDirLocker(fs),
  })
}
