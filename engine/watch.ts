import { InvalidOptionsError, MemwalError } from './errors.js'
import type { RecordType } from './format/format.js'
import { changesOf, type Change, type ChangeFilter } from './format/change.js'
import type { RecordCodec, WalRecord } from './format/record-codec.js'
import type { ResumePoint } from './log/segment-cursor.js'
import { limits } from './limits.js'
import { checkFields } from './option-fields.js'
import { checkNamespace, type Limits } from './validate.js'

/**
 * The change feed (`MemWAL.watch`): committed changes in log order, read by
 * each consumer at its own pace. A watcher holds no copy of what it has not
 * read: it pulls each record, by LSN, from the pending log while the record
 * is there (not yet applied by every sink) and from the log's segments once
 * it is not. So a consumer that falls behind costs memory only for the chunk
 * it is reading, and writers never wait for it; what it asks for after
 * retention deleted it is HISTORY_PURGED, naming the oldest version still
 * readable, never a silent skip.
 */
export type { Change } from './format/change.js'

export interface WatchOptions {
  /** Only changes in this namespace (exactly; not its sub-namespaces). */
  readonly namespace?: string
  /** Only changes to keys that start with this. */
  readonly prefix?: string
  /** Start after this version (the LSN that wrote a change); default: the last version now, i.e. only changes from now on. */
  readonly fromVersion?: number
  /**
   * Every writer's changes, read from a backend several writers share
   * (PgBackend; INVALID_OPTIONS with any other): this process's own once
   * applied there, the others' once they applied them. Not with fromVersion
   * (a version is one writer's LSN): resume with `resumeToken`.
   */
  readonly allWriters?: boolean
  /** With allWriters: continue just after the change that carried this token (default: from now on). */
  readonly resumeToken?: string
}

/** What a watcher reads from: the engine's pending log and log, behind a narrow interface (engine.ts builds it). */
export interface WatchSource {
  readonly codec: RecordCodec
  /** Highest LSN acknowledged with every LSN below it acknowledged too. */
  committedLsn(): number
  /** Lowest LSN the pending log holds; below it, records are read from the segments. */
  pendingFirstLsn(): number
  /** The pending record at `lsn` (type and payload); null for an LSN in a declared gap; undefined if not held. */
  pendingFrame(lsn: number): { readonly type: RecordType; readonly payload: Uint8Array } | null | undefined
  /**
   * Records `from`..`to` (inclusive) from the segments, at least one and then
   * while their payloads stay within `maxBytes`, with no purge meanwhile;
   * HISTORY_PURGED when `from` is no longer there. `resume`: where the
   * previous read left off (LogFrames.resume), when `from` is its LSN: only
   * the segment's bytes from there on are read and verified again.
   */
  readLog(from: number, to: number, maxBytes: number, resume: ResumePoint | undefined): Promise<LogFrames>
}

/**
 * Records read from the segments, still encoded: record i is `types[i]`,
 * LSN `lsns[i]`, payload `bytes[starts[i], ends[i])`. One buffer and columns
 * of numbers rather than an object per record: a watch decodes each record
 * only when its consumer reaches it, so what a chunk holds in the meantime is
 * its bytes, not a heap of decoded records that the garbage collector copies
 * from one generation to the next.
 */
export interface LogFrames {
  readonly lsns: readonly number[]
  readonly types: readonly RecordType[]
  readonly starts: readonly number[]
  readonly ends: readonly number[]
  readonly bytes: Uint8Array
  /**
   * Where the read left off (the segment and offset of the frame after the
   * last record): the next read, from the LSN after it, starts there rather
   * than reading and verifying that segment from its start again.
   */
  readonly resume?: ResumePoint
}

/**
 * Builds LogFrames from records whose payloads are views into segment
 * buffers: each run of records that lie in order in one buffer is copied as
 * one region (frame headers between the payloads included), so a chunk costs
 * a copy per segment, not a view per record; the segments' buffers are not
 * kept.
 */
export class LogFramesBuilder {
  private readonly lsns: number[] = []
  private readonly types: RecordType[] = []
  private readonly starts: number[] = []
  private readonly ends: number[] = []
  private readonly regions: Uint8Array[] = []
  private copied = 0
  private region: { buffer: ArrayBufferLike; from: number; to: number } | undefined
  /** Payload bytes added. */
  payloadBytes = 0

  add(lsn: number, type: RecordType, payload: Uint8Array): void {
    const r = this.region
    if (r === undefined || r.buffer !== payload.buffer || payload.byteOffset < r.to) {
      this.endRegion()
      this.region = { buffer: payload.buffer, from: payload.byteOffset, to: payload.byteOffset }
    }
    const region = this.region as { buffer: ArrayBufferLike; from: number; to: number }
    const start = this.copied + payload.byteOffset - region.from
    this.lsns.push(lsn)
    this.types.push(type)
    this.starts.push(start)
    this.ends.push(start + payload.length)
    region.to = payload.byteOffset + payload.length
    this.payloadBytes += payload.length
  }

  /** The records added so far are all the buffer will hold (a segment read, before the next one): its region is taken now. */
  endRegion(): void {
    const r = this.region
    if (r === undefined) return
    this.regions.push(new Uint8Array(r.buffer, r.from, r.to - r.from))
    this.copied += r.to - r.from
    this.region = undefined
  }

  finish(resume?: ResumePoint): LogFrames {
    this.endRegion()
    const bytes = new Uint8Array(this.copied)
    let at = 0
    for (const r of this.regions) {
      bytes.set(r, at)
      at += r.length
    }
    this.regions.length = 0
    return { lsns: this.lsns, types: this.types, starts: this.starts, ends: this.ends, bytes, ...(resume !== undefined ? { resume } : {}) }
  }
}

/** LogFrames of `records` (a test's, or any list at hand). */
export function logFrames(records: readonly { readonly lsn: number; readonly type: RecordType; readonly payload: Uint8Array }[]): LogFrames {
  const b = new LogFramesBuilder()
  for (const r of records) b.add(r.lsn, r.type, r.payload)
  return b.finish()
}

const WATCH_FIELDS = { namespace: 'string', prefix: 'string', fromVersion: 'integer', allWriters: 'boolean', resumeToken: 'string' } as const

/**
 * A watch of every writer (allWriters), from the backend's feed when it has
 * one; the options checked here, the rest of them by the feed.
 */
export function openAllWriters(options: WatchOptions, feed: ((o: { namespace?: string; prefix?: string; resumeToken?: string }) => AsyncIterableIterator<Change>) | undefined, labels: Limits): AsyncIterableIterator<Change> {
  const o = checkFields<WatchOptions>('watch options', options, WATCH_FIELDS)
  if (o.allWriters !== true) throw new InvalidOptionsError('watch options: resumeToken is for a watch of every writer (allWriters: true)', 'resumeToken')
  if (o.fromVersion !== undefined) throw new InvalidOptionsError('watch options: a version is one writer\'s LSN; resume a watch of every writer with resumeToken, not fromVersion', 'fromVersion')
  if (feed === undefined) throw new InvalidOptionsError('watch options: allWriters needs a backend that several writers share (PgBackend)', 'allWriters')
  return feed({
    ...(o.namespace !== undefined ? { namespace: checkNamespace(o.namespace, labels) } : {}),
    ...(o.prefix !== undefined ? { prefix: o.prefix } : {}),
    ...(o.resumeToken !== undefined ? { resumeToken: o.resumeToken } : {}),
  })
}

/** Wakes waiting watchers when a record is acknowledged or the engine closes. */
export class WatchHub {
  private waiting: (() => void)[] = []
  private closedFlag = false
  private readonly live = new Set<WatchPosition>()

  constructor(
    private readonly source: WatchSource,
    private readonly labels: Limits,
    /** Records retention keeps for watches whatever they have read (the watchHistoryRecords option). */
    private readonly historyRecords: number,
  ) {}

  /**
   * The highest LSN retention may purge through as far as watches go: the
   * history window, and each open watch's unread records unless it is more
   * than limits.watchHoldRecordsMax behind.
   */
  purgeableThrough(): number {
    const last = this.source.committedLsn()
    let through = last - this.historyRecords
    for (const w of this.live) if (last - (w.next - 1) <= limits.watchHoldRecordsMax) through = Math.min(through, w.next - 1)
    return through
  }

  /** A record was acknowledged: every waiting watcher looks again. */
  committed(): void {
    if (this.waiting.length === 0) return
    const w = this.waiting
    this.waiting = []
    for (const wake of w) wake()
  }

  /** Ends every watch: each one's pending next() resolves done. */
  close(): void {
    this.closedFlag = true
    this.committed()
  }

  get closed(): boolean {
    return this.closedFlag
  }

  open(options: WatchOptions | undefined): AsyncIterableIterator<Change> {
    const o = checkFields<WatchOptions>('watch options', options, WATCH_FIELDS)
    const namespace = o.namespace === undefined ? undefined : checkNamespace(o.namespace, this.labels)
    const last = this.source.committedLsn()
    const from = o.fromVersion ?? last
    if (from < 0) throw new InvalidOptionsError(`watch options: fromVersion must be >= 0, not ${from}`, 'fromVersion')
    // A version beyond the last one comes from another store (or a restored older copy): waiting for it would hide that.
    if (from > last) throw new InvalidOptionsError(`watch options: fromVersion ${from} is beyond the last version ${last}`, 'fromVersion')
    if (this.closedFlag) throw new MemwalError('ENGINE_CLOSED', 'the engine is closed')
    if (this.live.size >= limits.watchersMax) throw new MemwalError('INVALID_OPTIONS', `at most ${limits.watchersMax} watches may be open at once`, { details: { field: 'watch' } })
    return new Watcher(this, this.source, { namespace, prefix: o.prefix ?? '', next: from + 1 })
  }

  /** @internal */
  attach(w: WatchPosition): void {
    this.live.add(w)
  }

  /** @internal */
  detach(w: WatchPosition): void {
    this.live.delete(w)
  }

  /** @internal Resolves at the next acknowledgement, or at once if closed. */
  wait(): Promise<void> {
    if (this.closedFlag) return Promise.resolve()
    return new Promise((resolve) => this.waiting.push(resolve))
  }
}

interface WatchPosition extends ChangeFilter {
  /** The LSN to read next. */
  next: number
}

/**
 * One consumer's feed. An iterator class rather than an async generator so
 * that `return()` ends a watch that is waiting for the next change at once
 * (a generator's return() would queue behind that wait), and so that a
 * change already at hand (decoded, or in the pending log) is handed over
 * with one settled promise: only reading the segments and waiting for an
 * acknowledgement go through the queue of pulls.
 */
class Watcher implements AsyncIterableIterator<Change> {
  private ready: Change[] = []
  private readyHead = 0
  /** Records read from the segments, decoded one at a time as the consumer reaches them; the next one is at `frameNext`. */
  private frames: LogFrames | undefined
  private frameNext = 0
  /** Where the last read from the segments left off. */
  private resume: ResumePoint | undefined
  private done = false
  /** Settles when the last queued pull has; undefined when none is queued. */
  private pulling: Promise<void> | undefined

  constructor(
    private readonly hub: WatchHub,
    private readonly source: WatchSource,
    private readonly at: WatchPosition,
  ) {
    hub.attach(at)
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Change> {
    return this
  }

  next(): Promise<IteratorResult<Change>> {
    // Calls made before the last one resolved are served in order, one at a time; with none queued, what is at hand is served now.
    if (this.pulling === undefined) {
      let r: IteratorResult<Change> | undefined
      try {
        r = this.serve()
      } catch (err) {
        return this.failed(err)
      }
      if (r !== undefined) return Promise.resolve(r)
    }
    const p = (this.pulling ?? Promise.resolve()).then(() => this.pull())
    const settled: Promise<void> = p.then(
      () => this.settle(settled),
      () => this.settle(settled),
    )
    this.pulling = settled
    return p
  }

  return(): Promise<IteratorResult<Change>> {
    this.finish()
    this.hub.committed() // a pull waiting for a change looks again and sees the end
    return Promise.resolve({ done: true, value: undefined })
  }

  private settle(p: Promise<void>): void {
    if (this.pulling === p) this.pulling = undefined
  }

  private finish(): void {
    if (this.done) return
    this.done = true
    this.ready = []
    this.frames = undefined
    this.hub.detach(this.at)
  }

  private failed(err: unknown): Promise<IteratorResult<Change>> {
    this.finish()
    // A read cut short by close() is the end of the watch, not a failure of it.
    if (this.hub.closed) return Promise.resolve({ done: true, value: undefined })
    return Promise.reject(err)
  }

  private async pull(): Promise<IteratorResult<Change>> {
    try {
      for (;;) {
        const r = this.serve()
        if (r !== undefined) return r
        await this.fill()
      }
    } catch (err) {
      return this.failed(err)
    }
  }

  /** The next change if it is at hand (synchronously: decoded, read from the segments, or in the pending log); undefined when fill() must read or wait. */
  private serve(): IteratorResult<Change> | undefined {
    for (;;) {
      if (this.done) return { done: true, value: undefined }
      if (this.readyHead < this.ready.length) {
        const c = this.ready[this.readyHead++] as Change
        if (this.readyHead === this.ready.length) {
          this.ready = []
          this.readyHead = 0
        }
        return { done: false, value: c }
      }
      const f = this.frames
      if (f !== undefined) {
        const i = this.frameNext++
        if (this.frameNext >= f.lsns.length) this.frames = undefined
        const lsn = f.lsns[i] as number
        if (lsn >= this.at.next) this.take(lsn, this.source.codec.decode(f.types[i] as RecordType, f.bytes.subarray(f.starts[i], f.ends[i])))
        continue
      }
      if (this.hub.closed) {
        this.finish()
        continue
      }
      const lsn = this.at.next
      if (lsn > this.source.committedLsn() || lsn < this.source.pendingFirstLsn()) return undefined
      const frame = this.source.pendingFrame(lsn)
      // Trimmed meanwhile (every sink applied it): fill() reads it from the segments.
      if (frame === undefined) return undefined
      // A declared gap holds no record (recovery skipped it): nothing to deliver.
      if (frame === null) this.at.next = lsn + 1
      else this.take(lsn, this.source.codec.decode(frame.type, frame.payload))
    }
  }

  /** Reads the next records from the segments into `frames`, or waits for one to be acknowledged. */
  private async fill(): Promise<void> {
    const last = this.source.committedLsn()
    if (this.at.next > last) {
      await this.hub.wait()
      return
    }
    const pendingFirst = this.source.pendingFirstLsn()
    if (this.at.next >= pendingFirst) return // in the pending log: serve() takes it
    const resume = this.resume?.lsn === this.at.next ? this.resume : undefined
    const frames = await this.source.readLog(this.at.next, Math.min(last, pendingFirst - 1), limits.watchLogChunkBytes, resume)
    if (this.done) return
    this.resume = frames.resume
    this.frames = frames
    this.frameNext = 0
  }

  private take(lsn: number, record: WalRecord): void {
    if (lsn < this.at.next) return
    if (lsn !== this.at.next) throw new MemwalError('ASSERTION_FAILED', `watch read LSN ${lsn} where ${this.at.next} was due`)
    this.at.next = lsn + 1
    changesOf(lsn, record, this.at, this.ready)
  }
}
