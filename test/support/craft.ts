/**
 * Helpers for tests that damage a write-ahead log on purpose: build a log of
 * N records over several small segments on a SimulatedFileSystem, locate its
 * frames with the format's own decoder, and edit bytes in place (sim.peek /
 * sim.poke: a poke is durable at once, like a bit flip on the platter).
 *
 * Everything is deterministic: seeded filesystem and salts, manual clock,
 * payloads derived from the LSN.
 */
import { posix as path } from 'node:path'
import { type CorruptionPolicy, type FileHandle, type FileSystem, type OpenMode, type OpenOptions, type RecoveryReport } from '../../engine/index.js'
import { ManualClock, RecordType, SeededRandom, SimulatedFileSystem, Wal, type WalOptions, type WalRecord } from '../../engine/testing.js'
import { createChecksums, type Checksums } from '../../engine/format/checksum.js'
import {
  decodeSegmentHeader, encodeFrameInto, encodeSegmentHeader, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, type SegmentHeader,
} from '../../engine/format/format.js'
import { RecordCodec } from '../../engine/format/record-codec.js'
import { scanFrames } from '../../engine/log/segment-cursor.js'
import { ForwardingFileHandle, ForwardingFileSystem } from './forwarding-fs.js'
import { parseSegmentName, segmentName } from '../../engine/format/segment-name.js'

export const DIR = '/data'
export const WAL_DIR = `${DIR}/wal`
export const QUARANTINE_DIR = `${DIR}/quarantine`
/** The smallest segment the engine accepts: a few dozen records each. */
export const SEGMENT_BYTES = 64 * 1024

let checksums: Checksums | undefined
/** The format's checksums (one instance per test process is enough: it holds no log state). */
export async function sums(): Promise<Checksums> {
  checksums ??= await createChecksums()
  return checksums
}

const codec = new RecordCodec()

/** The record a crafted log holds at `lsn`: a PUT whose key and value say which LSN it is. */
export function recordFor(lsn: number, valueBytes: number): WalRecord {
  const fill = `value-of-${lsn}-`.repeat(Math.ceil(valueBytes / 12)).slice(0, valueBytes)
  return { type: RecordType.PUT, op: { type: 'put', key: `key-${lsn}`, value: { lsn, fill } } }
}

/** The key a record carries, after decoding (PUT and DELETE; BATCH gives its first key). */
export function keyOf(r: WalRecord): string {
  if (r.type === RecordType.BATCH) return r.ops[0]?.key ?? ''
  return r.op.key
}

export interface FrameInfo {
  readonly lsn: number
  readonly offset: number
  /** Where the write that holds it starts: its group marker (version 2), or the frame itself (version 1). */
  readonly groupStart: number
  /** Offset after the frame. */
  readonly next: number
}

export interface SegmentInfo {
  readonly name: string
  readonly path: string
  readonly header: SegmentHeader
  readonly frames: readonly FrameInfo[]
  /** Offset after the last valid frame. */
  readonly validEnd: number
  readonly size: number
}

export interface CraftedLog {
  readonly sim: SimulatedFileSystem
  /** Last LSN written. */
  readonly lastLsn: number
  readonly segments: readonly SegmentInfo[]
}

export interface BuildOptions {
  readonly records: number
  /** Value size of each record; 600 bytes gives about 90 records per 64 KiB segment. */
  readonly valueBytes?: number
  readonly seed?: number
}

export const VALUE_BYTES = 600

/** Writes `records` records (sync durability) and closes the log: everything on the sim is durable. */
export async function buildLog(o: BuildOptions): Promise<CraftedLog> {
  const sim = new SimulatedFileSystem(new SeededRandom(o.seed ?? 1))
  const wal = await openLog(sim, {})
  for (let lsn = 1; lsn <= o.records; lsn++) {
    const got = await wal.appendRecord(recordFor(lsn, o.valueBytes ?? VALUE_BYTES))
    if (got !== lsn) throw new Error(`append ${lsn} was given LSN ${got}`)
  }
  await wal.close()
  return { sim, lastLsn: o.records, segments: await describeSegments(sim) }
}

/** Opens the log on `sim` with the test defaults (small segments, seeded salts, manual clock). */
export function openLog(fs: FileSystem, o: Partial<WalOptions> & { policy?: CorruptionPolicy; seed?: number }): Promise<Wal> {
  const { policy, seed, ...rest } = o
  return Wal.open({
    dir: DIR,
    fs,
    segmentBytes: SEGMENT_BYTES,
    clock: new ManualClock(),
    random: new SeededRandom(seed ?? 7),
    ...(policy ? { corruptionPolicy: policy } : {}),
    ...rest,
  })
}

/** Segment files in LSN order (temp files excluded), each with its frames as the decoder sees them. */
export async function describeSegments(sim: SimulatedFileSystem): Promise<SegmentInfo[]> {
  const s = await sums()
  const out: SegmentInfo[] = []
  for (const name of await sim.readdir(WAL_DIR)) {
    if (parseSegmentName(name) === undefined) continue
    const p = `${WAL_DIR}/${name}`
    out.push(describeSegment(name, p, bytesOf(sim, p), s))
  }
  return out
}

export function describeSegment(name: string, p: string, bytes: Uint8Array, s: Checksums): SegmentInfo {
  const h = decodeSegmentHeader(bytes, s)
  if (h.kind !== 'header') throw new Error(`${name}: header does not decode (${h.kind})`)
  const frames: FrameInfo[] = []
  let validEnd = SEGMENT_HEADER_BYTES
  for (const ev of scanFrames({ bytes, salt: h.header.salt, recordBytesMax: SEGMENT_BYTES, sums: s, version: h.header.version })) {
    if (ev.kind !== 'frame') throw new Error(`${name}: damage at ${ev.offset} in a log that should be clean`)
    // Frames of a crafted log are back to back but for group markers: a gap before a frame is its marker.
    frames.push({ lsn: ev.lsn, offset: ev.offset, groupStart: validEnd, next: ev.next })
    validEnd = ev.next
  }
  return { name, path: p, header: h.header, frames, validEnd, size: bytes.length }
}

export function bytesOf(sim: SimulatedFileSystem, p: string): Buffer {
  const b = sim.peek(p)
  if (!b) throw new Error(`no file ${p}`)
  return Buffer.from(b)
}

/** The frame holding `lsn`, and its segment. */
export function locate(log: CraftedLog, lsn: number): { segment: SegmentInfo; frame: FrameInfo; index: number } {
  for (let index = 0; index < log.segments.length; index++) {
    const segment = log.segments[index] as SegmentInfo
    const frame = segment.frames.find((f) => f.lsn === lsn)
    if (frame) return { segment, frame, index }
  }
  throw new Error(`no frame holds LSN ${lsn}`)
}

export function segmentAt(log: CraftedLog, index: number): SegmentInfo {
  const s = log.segments[index < 0 ? log.segments.length + index : index]
  if (!s) throw new Error(`no segment ${index}`)
  return s
}

/** Flips one bit of a file, durably. */
export function flipBit(sim: SimulatedFileSystem, p: string, offset: number, bit = 0): void {
  const b = bytesOf(sim, p)
  const v = b[offset]
  if (v === undefined) throw new Error(`offset ${offset} is past the end of ${p}`)
  b[offset] = v ^ (1 << bit)
  sim.poke(p, b)
}

/** Overwrites [from, to) of a file with zeros, durably. */
export function zeroRange(sim: SimulatedFileSystem, p: string, from: number, to: number): void {
  const b = bytesOf(sim, p)
  b.fill(0, from, to)
  sim.poke(p, b)
}

/** Writes `bytes` into a file at `offset`, durably. */
export function pokeAt(sim: SimulatedFileSystem, p: string, offset: number, bytes: Uint8Array): void {
  const b = bytesOf(sim, p)
  b.set(bytes, offset)
  sim.poke(p, b)
}

/** Encodes a frame with valid checksums for a segment with `salt`: what the writer would have written. */
export async function craftFrame(lsn: number, record: WalRecord, salt: number): Promise<Buffer> {
  const payload = Buffer.from(codec.encode(record))
  const out = Buffer.alloc(FRAME_HEADER_BYTES + payload.length)
  encodeFrameInto(out, 0, { lsn, type: record.type, payload }, salt, await sums())
  return out
}

/** Rewrites a segment header with new fields and a valid checksum. */
export async function rewriteHeader(sim: SimulatedFileSystem, seg: SegmentInfo, change: Partial<SegmentHeader>): Promise<void> {
  const header = encodeSegmentHeader({ ...seg.header, ...change }, await sums())
  pokeAt(sim, seg.path, 0, header)
}

export interface ReadBack {
  readonly lsns: number[]
  readonly keys: string[]
}

/** Every record the log returns from LSN 1, decoded. */
export async function readAll(wal: Wal): Promise<ReadBack> {
  const lsns: number[] = []
  const keys: string[] = []
  for await (const r of wal.read(1)) {
    lsns.push(r.lsn)
    keys.push(keyOf(wal.decode(r)))
  }
  return { lsns, keys }
}

/** [from, to] inclusive. */
export function range(from: number, to: number): number[] {
  const out: number[] = []
  for (let i = from; i <= to; i++) out.push(i)
  return out
}

export async function listDir(sim: SimulatedFileSystem, dir: string): Promise<string[]> {
  return (await sim.stat(dir)) ? sim.readdir(dir) : []
}

/** The findings of a report, reduced to what a test compares. */
export function findingsOf(report: Pick<RecoveryReport, 'findings'>): Record<string, unknown>[] {
  return report.findings.map((f) => definedOnly({
    kind: f.kind, segment: f.segment, offset: f.offset, lsnFirst: f.lsnFirst, lsnLast: f.lsnLast, alreadyApplied: f.alreadyApplied, action: f.action,
  }))
}

/** The object without its undefined properties: an absent field and an undefined one compare equal. */
export function definedOnly(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
}

/** A copy of every file in the WAL and quarantine directories, to show what recovery changed. */
export async function snapshotFiles(sim: SimulatedFileSystem): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  for (const dir of [WAL_DIR, QUARANTINE_DIR]) for (const name of await listDir(sim, dir)) out.set(`${dir}/${name}`, bytesOf(sim, `${dir}/${name}`))
  return out
}

export { path, segmentName }

/** One mutating filesystem call, in the order the simulated filesystem counts them. */
export interface TracedOp {
  readonly op: 'create' | 'write' | 'datasync' | 'truncate' | 'rename' | 'unlink' | 'syncDir'
  /** File name (basename); for a rename, the target's. */
  readonly file: string
  readonly position?: number
  readonly length?: number
}

/**
 * A FileSystem that passes every call to the simulated one and records each
 * mutating call (the ones SimulatedFileSystem counts for cutPowerAtOp), so a
 * test can name the step it cuts the power at: trace[k - 1] is op k.
 */
export class TracingFileSystem extends ForwardingFileSystem {
  readonly trace: TracedOp[] = []
  constructor(readonly sim: SimulatedFileSystem) {
    super(sim)
  }

  override async open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    const file = path.basename(p)
    if (mode === 'create') this.trace.push({ op: 'create', file })
    return new TracingHandle(await this.sim.open(p, mode, options), file, this.trace)
  }

  override rename(from: string, to: string): Promise<void> {
    this.trace.push({ op: 'rename', file: path.basename(to) })
    return this.sim.rename(from, to)
  }

  override unlink(p: string): Promise<void> {
    this.trace.push({ op: 'unlink', file: path.basename(p) })
    return this.sim.unlink(p)
  }

  override syncDir(p: string): Promise<void> {
    this.trace.push({ op: 'syncDir', file: path.basename(p) })
    return this.sim.syncDir(p)
  }
}

class TracingHandle extends ForwardingFileHandle {
  constructor(
    inner: FileHandle,
    private readonly file: string,
    private readonly trace: TracedOp[],
  ) {
    super(inner)
  }

  override write(data: Uint8Array, position: number): Promise<void> {
    this.trace.push({ op: 'write', file: this.file, position, length: data.length })
    return this.inner.write(data, position)
  }

  override datasync(): Promise<void> {
    this.trace.push({ op: 'datasync', file: this.file })
    return this.inner.datasync()
  }

  override truncate(length: number): Promise<void> {
    this.trace.push({ op: 'truncate', file: this.file, length })
    return this.inner.truncate(length)
  }
}
