/**
 * memwal's workloads (bench/harness.ts runs them): the memwal trials (the
 * Wal alone, MemWAL puts, MemWAL batches, and MemWAL end to end: acknowledged
 * put -> applied in the LevelDB backend), and the one-shot engine workloads:
 * a backlog left by a crash, its replay, fsck, status, opening a log of a
 * given size, and the disk footprint of a small store.
 *
 * Uses only the public API; memwal is observed from outside (wrapSink is the
 * documented instrumentation hook, the segment files are counted on disk).
 * Every function here runs in the process that calls it; the harness decides
 * which run in a child process of their own (a crash must be a real SIGKILL,
 * and peak RSS means something only for a process that did one thing).
 */
import fs from 'node:fs'
import { posix as path } from 'node:path'
import { fsck, inspectDataDir, MemWAL, type BatchOp, type MemwalOptions, type Sink } from '../engine/index.js'
import { limits, Wal } from '../engine/testing.js'
import { issueBounded, timedTrial, type Load, type Timing } from './drive.js'
import { FRAME_HEADER_BYTES, walPut, type RecordShape } from './records.js'
import type { TrialResult } from './stats.js'

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ---- memory ----

/** The highest RSS seen by polling every 20 ms while started (a synchronous loop is seen only at its ends). */
export class RssSampler {
  private peak = process.memoryUsage.rss()
  private timer: NodeJS.Timeout | undefined

  start(): this {
    this.peak = process.memoryUsage.rss()
    this.timer = setInterval(() => this.sample(), 20)
    this.timer.unref()
    return this
  }

  sample(): number {
    const rss = process.memoryUsage.rss()
    if (rss > this.peak) this.peak = rss
    return rss
  }

  /** Stops polling; the peak in bytes. */
  stop(): number {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    this.sample()
    return this.peak
  }
}

/** The process's peak RSS so far (bytes), as the kernel counts it. */
export const processPeakRss = (): number => process.resourceUsage().maxRSS * 1024

/** RSS after a full collection when `--expose-gc` is on (else as is). */
function settledRss(): number {
  globalThis.gc?.()
  return process.memoryUsage.rss()
}

// ---- memwal trials ----

/**
 * Waits until the spare segment that the log prepares in the background (at
 * open and at every rotation) is fully written, then flushes it, so that its
 * zeros are not being written and synced while the clock runs. Observed from
 * outside: a file in wal/ that is not a `.seg` is a segment being prepared;
 * it is ready when it has the full segment size on two looks in a row.
 */
export async function settleSpare(walDir: string, segmentBytes: number): Promise<void> {
  const temps = (): { file: string; size: number }[] =>
    fs.readdirSync(walDir).filter((n) => !n.endsWith('.seg')).map((n) => {
      const file = path.join(walDir, n)
      return { file, size: fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0 }
    })
  const giveUpAt = performance.now() + 10_000
  let readyLooks = 0
  while (readyLooks < 2 && performance.now() < giveUpAt) {
    const t = temps()
    readyLooks = t.length > 0 && t.every((f) => f.size >= segmentBytes) ? readyLooks + 1 : 0
    await sleep(10)
  }
  for (const { file } of temps()) {
    try {
      const fd = fs.openSync(file, 'r')
      try {
        fs.fdatasyncSync(fd)
      } finally {
        fs.closeSync(fd)
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  await sleep(50)
}

const segmentCount = (walDir: string): number => fs.readdirSync(walDir).filter((n) => n.endsWith('.seg')).length

/**
 * - `wal`: `Wal.appendRecord` of a PUT record (the log alone, no sinks).
 * - `engine`: `MemWAL.put` with the defaults (sync durability, LevelDB backend
 *   and index applying in the background), acknowledged when durable; at the
 *   backlog limit a put waits (`backlogPolicy: 'wait'`) rather than fail.
 * - `batch`: `MemWAL.batch` of `perBatch` puts, one atomic record each.
 * - `e2e`: the same puts, each counted only when the LevelDB backend has
 *   applied it (its checkpoint passed the put's LSN): acknowledged -> applied.
 */
export type MemwalKind = 'wal' | 'engine' | 'batch' | 'e2e'

export interface MemwalTrialOptions {
  readonly kind: MemwalKind
  /** Puts per MemWAL.batch (kind `batch`). */
  readonly perBatch: number
  readonly segmentBytes: number
  /** Wait for the spare segment after the warm-up (see settleSpare). */
  readonly settle: boolean
}

export interface MemwalTrial {
  readonly result: TrialResult
  /** Segments opened while the clock ran. */
  readonly rotations: number
}

/** Resolves each waiter once the backend's checkpoint reaches its LSN. */
class AppliedWaiters {
  private waiters: { lsn: number; resolve: () => void }[] = []
  private checkpoint = 0

  wait(lsn: number): Promise<void> {
    if (lsn <= this.checkpoint) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push({ lsn, resolve }))
  }

  advanced(checkpoint: number): void {
    this.checkpoint = Math.max(this.checkpoint, checkpoint)
    let kept = 0
    for (const w of this.waiters) {
      if (w.lsn <= this.checkpoint) w.resolve()
      else this.waiters[kept++] = w
    }
    this.waiters.length = kept
  }
}

/** Wraps the backend sink so that each completed apply reports its checkpoint. */
function reportApplied(onApplied: (checkpoint: number) => void): NonNullable<MemwalOptions['wrapSink']> {
  return <S extends Sink>(sink: S): S => {
    if (sink.name === 'backend') {
      const apply = sink.apply.bind(sink)
      sink.apply = async (batch, signal) => {
        await apply(batch, signal)
        onApplied(sink.checkpoint)
      }
    }
    return sink
  }
}

/** The put options (namespace, tags) of record n, if it has any. */
function putOptions(shape: RecordShape, n: number): { namespace: string; tags: readonly string[] } | undefined {
  const labels = shape.labels(n)
  return labels ? { namespace: labels.namespace, tags: labels.tags } : undefined
}

function batchOps(shape: RecordShape, first: number, count: number): BatchOp[] {
  const ops: BatchOp[] = []
  for (let n = first; n < first + count; n++) ops.push({ type: 'put', key: shape.key(n), value: shape.value(n), ...putOptions(shape, n) })
  return ops
}

/** One trial of a memwal system on a fresh directory: warm-up, settle, measured run, close. */
export async function memwalTrial(dir: string, shape: RecordShape, o: MemwalTrialOptions, load: Load, timing: Timing): Promise<MemwalTrial> {
  const walDir = path.join(dir, 'wal')
  let op: () => Promise<unknown>
  let close: () => Promise<void>
  let n = 0
  if (o.kind === 'wal') {
    const wal = await Wal.open({ dir, durability: 'sync', segmentBytes: o.segmentBytes })
    op = () => wal.appendRecord(walPut(shape, n++))
    close = () => wal.close()
  } else {
    const applied = new AppliedWaiters()
    const db = await MemWAL.open({
      dir, durability: 'sync', segmentBytes: o.segmentBytes, backlogPolicy: 'wait',
      ...(o.kind === 'e2e' ? { wrapSink: reportApplied((c) => applied.advanced(c)) } : {}),
    })
    const put = (): Promise<{ lsn: number }> => {
      const i = n++
      return db.put(shape.key(i), shape.value(i), putOptions(shape, i))
    }
    op = o.kind === 'e2e' ? () => put().then(({ lsn }) => applied.wait(lsn))
      : o.kind === 'batch' ? () => {
        const first = n
        n += o.perBatch
        return db.batch(batchOps(shape, first, o.perBatch))
      }
      : put
    close = () => db.close()
  }
  try {
    let before = 0
    const result = await timedTrial(op, { ...load, perOp: o.kind === 'batch' ? o.perBatch : 1 }, timing, async () => {
      if (o.settle) await settleSpare(walDir, o.segmentBytes)
      before = segmentCount(walDir)
    })
    return { result, rotations: segmentCount(walDir) - before }
  } finally {
    await close()
  }
}

// ---- one-shot engine workloads ----

/** Generous enough for a backlog of `records` records of this shape (MemWAL payloads run a little above the Wal's). */
export const backlogBytesMax = (records: number): number => Math.max(2 ** 30, records * 1024)

/** Makes every durable sink fail while `o.down`: acknowledged records pile up as a backlog. */
function outage(o: { down: boolean }): NonNullable<MemwalOptions['wrapSink']> {
  return <S extends Sink>(sink: S): S => {
    if (sink.durable) {
      const apply = sink.apply.bind(sink)
      sink.apply = (b, signal) => (o.down ? Promise.reject(new Error('down (benchmark outage)')) : apply(b, signal))
    }
    return sink
  }
}

export interface BacklogResult {
  readonly records: number
  /** The engine's own count of backlog bytes (payloads held, not yet applied). */
  readonly backlogBytes: number
  readonly walBytes: number
  readonly ms: number
  /** RSS after open, before the first put; with the backlog held (after a full GC when exposed); and the peak. */
  readonly baselineRssBytes: number
  readonly backlogRssBytes: number
  readonly peakRssBytes: number
}

/**
 * `records` puts (durability none: what is held in memory does not depend on
 * it, and the harness kills this process afterwards: the written bytes are in
 * the page cache, which SIGKILL keeps) while both durable sinks are down, so
 * that every record stays in the backlog. The caller kills the process once
 * this resolved: that is the crash.
 */
export async function buildBacklog(dir: string, shape: RecordShape, records: number): Promise<BacklogResult> {
  const db = await MemWAL.open({ dir, durability: 'none', maxBacklogBytes: backlogBytesMax(records), wrapSink: outage({ down: true }), resilience: { retryDelayMsMin: 50, retryDelayMsMax: 1000 } })
  const baselineRssBytes = settledRss()
  const sampler = new RssSampler().start()
  const t = performance.now()
  await issueBounded(records, 1024, (i) => db.put(shape.key(i), shape.value(i), putOptions(shape, i)))
  const ms = performance.now() - t
  sampler.stop()
  const h = db.health()
  if (h.backlog.records !== records) throw new Error(`backlog holds ${h.backlog.records} records, not ${records}`)
  return { records, backlogBytes: h.backlog.bytes, walBytes: walBytes(dir), ms, baselineRssBytes, backlogRssBytes: settledRss(), peakRssBytes: processPeakRss() }
}

/** Bytes of segment files (preallocated: a segment counts whole from its creation). */
export function walBytes(dir: string): number {
  const walDir = path.join(dir, 'wal')
  return fs.readdirSync(walDir).filter((n) => n.endsWith('.seg')).reduce((sum, n) => sum + fs.statSync(path.join(walDir, n)).size, 0)
}

export interface ReplayResult {
  readonly records: number
  /** MemWAL.open: lock, checkpoints, recovery scan, the backlog read back into memory. */
  readonly openMs: number
  /** flush(): until the backend and the index applied everything. */
  readonly drainMs: number
  readonly totalMs: number
  readonly peakRssBytes: number
}

/** Opens a directory a crash left with `records` unapplied records and waits until every sink has applied them. */
export async function replay(dir: string, records: number): Promise<ReplayResult> {
  const t0 = performance.now()
  const db = await MemWAL.open({ dir, maxBacklogBytes: backlogBytesMax(records) })
  const t1 = performance.now()
  try {
    const backlog = db.health().backlog.records
    if (backlog !== records) throw new Error(`recovery found ${backlog} unapplied records, not ${records}`)
    await db.flush()
    const t2 = performance.now()
    const h = db.health()
    if (h.backlog.records !== 0 || h.sinks['backend']?.checkpoint !== h.wal.lastLsn) throw new Error('flush resolved before the backend applied everything')
    return { records, openMs: t1 - t0, drainMs: t2 - t1, totalMs: t2 - t0, peakRssBytes: processPeakRss() }
  } finally {
    await db.close()
  }
}

export interface FsckResult {
  readonly ms: number
  readonly bytesScanned: number
  readonly records: number
}

/** `memwal fsck` without repair: every frame verified, backend and index compared with the log. */
export async function fsckRun(dir: string): Promise<FsckResult> {
  const t = performance.now()
  const r = await fsck({ dir, repair: false })
  const ms = performance.now() - t
  if (!r.clean) throw new Error(`fsck found problems in a benchmark directory: ${JSON.stringify(r.counts)}`)
  return { ms, bytesScanned: r.bytesScanned, records: r.records }
}

/** `memwal status`: segment list, last segment, checkpoints. */
export async function statusRun(dir: string): Promise<{ ms: number; segmentBytes: number }> {
  const t = performance.now()
  const s = await inspectDataDir(dir)
  return { ms: performance.now() - t, segmentBytes: s.segments.bytes }
}

export interface BuiltWal {
  readonly records: number
  /** Bytes of frames written (headers and payloads). */
  readonly frameBytes: number
  readonly walBytes: number
  readonly lastLsn: number
}

/** A log of the Wal's PUT records (durability none) holding at least `bytes` bytes of frames. */
export async function buildWal(dir: string, shape: RecordShape, bytes: number): Promise<BuiltWal> {
  const frame = shape.payloadBytes + FRAME_HEADER_BYTES
  const records = Math.ceil(bytes / frame)
  const wal = await Wal.open({ dir, durability: 'none' })
  try {
    await issueBounded(records, 4096, (i) => wal.appendRecord(walPut(shape, i)))
    return { records, frameBytes: records * frame, walBytes: walBytes(dir), lastLsn: wal.lastLsn }
  } finally {
    await wal.close()
  }
}

/**
 * `Wal.open` on a log: recovery verifies every frame (`tail` false), or only
 * from the last LSN on (`tail` true: what MemWAL asks for when its sinks have
 * applied everything, the common restart). The time to open; closing is not
 * counted.
 */
export async function walOpen(dir: string, lastLsn: number, tail: boolean): Promise<{ ms: number }> {
  const t = performance.now()
  const wal = await Wal.open({ dir, durability: 'sync', ...(tail ? { verifyFromLsn: lastLsn } : {}) })
  const ms = performance.now() - t
  try {
    if (wal.lastLsn !== lastLsn) throw new Error(`opened at LSN ${wal.lastLsn}, not ${lastLsn}`)
  } finally {
    await wal.close()
  }
  return { ms }
}

export const defaultSegmentBytes = limits.segmentBytesDefault

/** What a fresh store with a few records takes on disk. */
export interface FootprintResult {
  readonly records: number
  /** Blocks allocated (what `du` counts), in bytes. */
  readonly diskBytes: number
  /** The sum of the files' sizes. */
  readonly apparentBytes: number
  readonly files: number
}

/** Blocks and sizes of every file under `dir`. */
export function diskUsage(dir: string): Omit<FootprintResult, 'records'> {
  let diskBytes = 0
  let apparentBytes = 0
  let files = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const st = fs.lstatSync(path.join(entry.parentPath, entry.name))
    diskBytes += st.blocks * 512
    if (st.isFile()) {
      apparentBytes += st.size
      files++
    }
  }
  return { diskBytes, apparentBytes, files }
}

/** `records` MemWAL puts of `shape` on a fresh store with the defaults, applied and closed; then its footprint. */
export async function memwalFootprint(dir: string, shape: RecordShape, records: number): Promise<FootprintResult> {
  const db = await MemWAL.open({ dir })
  try {
    for (let i = 0; i < records; i++) await db.put(shape.key(i), shape.value(i), putOptions(shape, i))
    await db.flush()
  } finally {
    await db.close()
  }
  return { records, ...diskUsage(dir) }
}
