import { posix as path } from 'node:path'
import { assert } from '../assert.js'
import { MemwalError, RecordTooLargeError, WalClosedError, WalFailedError } from '../errors.js'
import type { Clock } from '../io/clock.js'
import { microtask, monotonicMs, setImmediate } from '../io/host-timers.js'
import type { FileSystem } from '../io/fs.js'
import { isSpaceError } from '../io/fs.js'
import type { Random } from '../io/random.js'
import { limits, type WalLimits } from '../limits.js'
import type { Checksums } from '../format/checksum.js'
import { encodeFrameBodyInto, encodeGroupMarkerInto, FORMAT_VERSION, FRAME_HEADER_BYTES, GROUP_MARKER_BYTES, SEGMENT_HEADER_BYTES, sealFrame, type RecordType } from '../format/format.js'
import { installSegment, prepareSpare, SPARE_NAME, type OpenSegment } from './segment-file.js'
import { nextSegmentBytes, segmentBytesFor, type SegmentSizing } from './segment-sizing.js'

/**
 * - `sync`: a write is acknowledged only once durable (segments are opened
 *   O_DSYNC, so one write call is one durable write). G1.
 * - `interval`: acknowledged once written; fdatasync every `syncIntervalMs`.
 *   A power loss can take the last interval's acknowledged writes.
 * - `none`: never synced (tests, benchmarks).
 */
export type Durability = 'sync' | 'interval' | 'none'

export type WriterState =
  | { readonly kind: 'open' }
  | { readonly kind: 'closing' }
  | { readonly kind: 'closed' }
  | { readonly kind: 'failed'; readonly error: WalFailedError }

export interface WriterConfig {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly clock: Clock
  readonly random: Random
  readonly walDir: string
  readonly durability: Durability
  readonly syncIntervalMs: number
  readonly limits: WalLimits
  /** How large each new segment is (the spare is prepared one segment ahead). */
  readonly sizing: SegmentSizing
  /**
   * Groups up to this many bytes are written on the calling thread when the
   * filesystem allows (0: never). A lone awaited writer's group is one frame:
   * its O_DSYNC write blocks the event loop for one device flush (~100-150 us
   * here) but skips two thread-pool hand-offs (~20 us each). Larger groups
   * come from concurrent writers and go through the pool, so that appends
   * keep gathering while the device works.
   */
  readonly inlineWriteBytesMax: number
  /** Called once, when the writer fails closed. */
  readonly onFailed?: (error: WalFailedError) => void
}

export interface WriterPosition {
  /** The active segment, opened for appends. */
  readonly segment: OpenSegment
  /** Where the next frame goes in it. */
  readonly offset: number
  readonly nextLsn: number
}

interface Waiter {
  resolve(lsn: number): void
  reject(err: unknown): void
}

/**
 * Frames gathered for one group commit: bodies encoded, LSNs bound at commit.
 * The buffer starts with room for the group marker (format.ts), written at
 * commit when the write's extent and durable-from are known.
 */
/** See WalWriter.extent. */
export interface LogExtent {
  readonly segment: string
  readonly bytes: number
}

class Group {
  buf: Buffer
  used = GROUP_MARKER_BYTES
  readonly ends: number[] = []
  readonly waiters: Waiter[] = []

  constructor(initialBytes: number) {
    this.buf = Buffer.allocUnsafe(initialBytes)
  }

  get count(): number {
    return this.ends.length
  }

  startOf(i: number): number {
    return i === 0 ? GROUP_MARKER_BYTES : (this.ends[i - 1] ?? 0)
  }

  reset(): void {
    this.used = GROUP_MARKER_BYTES
    this.ends.length = 0
    this.waiters.length = 0
  }
}

interface Overflow {
  readonly type: RecordType
  readonly payload: Uint8Array
  readonly waiter: Waiter
}

const GROUP_INITIAL_BYTES = 64 * 1024

/**
 * The one serial writer of the log. Appends are encoded at once into the open
 * group; a single pump writes each group with one write call (one durable write
 * in `sync` mode) while the next group gathers behind it: group commit.
 *
 * After a failed write the group is rejected: a space error zeroes what may
 * have landed and lets later writes reuse the LSNs; any other error, and any
 * sync error, fails the writer closed for good (G2).
 */
/**
 * Longest a run of inline writes keeps the event loop before it lets timers
 * and I/O run. Any chain of asynchronous steps beside a writer (a query's
 * index reads, an export, the expiry sweep and the appliers) takes at most
 * one step per turn while the writer writes, and a writer waits for all the
 * work pending at each turn. 1 ms was tried: a query of the 20,000-record
 * agent store beside one writer awaiting put after put went from a median
 * 27-31 ms to 16-18 ms, but during the expiry sweep of 100,000 entries
 * (bench:expiry, idle machine) that writer made 1,939 puts instead of
 * 15,128 and its p99 went from 10.7 to 27.6 ms: every turn it waited for an
 * apply batch. Acknowledgements come first, so 5 ms. Measured in real time
 * (monotonicMs: performance.now as the host gave it), not by the injected clock: it budgets how long this
 * thread is held, which a clock a test has frozen (ManualClock, fake timers)
 * must not stretch to forever, and it decides only when other callbacks
 * run, never what is written (simulations, whose files have no writeSync,
 * never take this path).
 */
const INLINE_TURN_MS = 5

export class WalWriter {
  private stateValue: WriterState = { kind: 'open' }
  private segment: OpenSegment
  private offset: number
  private nextLsn: number
  private open: Group = new Group(GROUP_INITIAL_BYTES)
  private idle: Group | undefined = new Group(GROUP_INITIAL_BYTES)
  private readonly overflow: Overflow[] = []
  private overflowBytes = 0
  /** The pump in progress; `running` is set and cleared synchronously inside it, so no append is missed. */
  private pumping: Promise<void> = Promise.resolve()
  private running = false
  private scheduled = false
  /** Since when (monotonicMs) the writer has held the event loop without its turning, as far as it can tell (see schedule). */
  private holdingSince = 0
  /** The event loop has turned since the writer last looked (a setImmediate armed then has run). */
  private turned = true
  /** A setImmediate is armed to notice the loop's next turn. */
  private armed = false
  /** Settles when a pump scheduled for the next macrotask turn has started. */
  private turn: Promise<void> | undefined
  private unsyncedBytes = 0
  private syncRequested = false
  private cancelTimer: (() => void) | undefined
  private spare: Promise<void> | undefined
  private spareError: unknown
  /** The size the spare is (being) prepared at. */
  private spareBytes: number
  /** When the active segment was installed (or the writer started): how fast it fills sets the next size. */
  private segmentStartMs: number
  /** LSN of the last record durable on disk (in sync mode, the last acknowledged). */
  private durableLsnValue: number
  /** Offset in the active segment below which every byte is durable: each group marker records it. */
  private durableFrom: number

  constructor(
    private readonly c: WriterConfig,
    at: WriterPosition,
  ) {
    assert(at.offset >= SEGMENT_HEADER_BYTES && at.offset <= at.segment.capacity, 'writer offset within its segment')
    this.segment = at.segment
    this.offset = at.offset
    this.nextLsn = at.nextLsn
    // What lies before `at.offset` was verified at open and, unless durability is 'none', synced before
    // appending went on (wal.ts). In 'none' nothing was synced, then or before: nothing is claimed durable
    // (a marker claiming those bytes would make their loss at a power cut read as damage in durable bytes).
    const synced = c.durability !== 'none'
    this.durableLsnValue = synced ? at.nextLsn - 1 : 0
    this.durableFrom = synced ? at.offset : SEGMENT_HEADER_BYTES
    this.segmentStartMs = c.clock.nowMs()
    this.spareBytes = c.sizing.initialBytes
    this.startSpare(c.sizing.initialBytes)
    if (c.durability === 'interval') this.armTimer()
  }

  get state(): WriterState {
    return this.stateValue
  }

  /** LSN the next appended record will get, if every write ahead of it succeeds. */
  get lastAssignedLsn(): number {
    return this.nextLsn - 1
  }

  get durableLsn(): number {
    return this.durableLsnValue
  }

  get activeSegment(): string {
    return this.segment.name
  }

  /**
   * Where the written log ends: the active segment, and the offset below
   * which every write completed. Every record acknowledged so far lies below
   * it (a write's waiters are resolved only after the offset moved past it);
   * bytes from it on are zeros or a write still in flight.
   */
  get extent(): LogExtent {
    return { segment: this.segment.name, bytes: this.offset }
  }

  /** Bytes appended but not yet written. */
  get queuedBytes(): number {
    return this.open.used - GROUP_MARKER_BYTES + this.overflowBytes
  }

  /**
   * Appends one record. Resolves with its LSN once it is written (and, in
   * `sync` mode, durable); rejects with a typed error otherwise.
   */
  append(type: RecordType, payload: Uint8Array): Promise<number> {
    const refusal = this.refusal(payload)
    if (refusal) return Promise.reject(refusal)
    return new Promise<number>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject }
      const frameBytes = FRAME_HEADER_BYTES + payload.length
      if (this.overflow.length === 0 && this.fits(this.open, frameBytes)) {
        this.stage(this.open, type, payload, waiter)
      } else if (this.overflowBytes + frameBytes <= this.c.limits.queueBytesMax) {
        // The open group is full: hold a copy until the next group opens.
        this.overflow.push({ type, payload: Uint8Array.prototype.slice.call(payload), waiter })
        this.overflowBytes += frameBytes
      } else {
        reject(new MemwalError('WAL_WRITE_FAILED', `write queue full (${this.c.limits.queueBytesMax} bytes queued)`, { transient: true, details: { reason: 'queue-full' } }))
        return
      }
      this.schedule()
    })
  }

  /** Makes everything written so far durable (a no-op in `sync` mode, where it already is). */
  async sync(): Promise<void> {
    this.throwIfUnusable()
    if (this.c.durability === 'sync') return this.drain()
    this.syncRequested = true
    this.schedule()
    await this.drain()
    this.throwIfUnusable()
  }

  /** Resolves when everything appended so far has been written (or rejected). */
  async drain(): Promise<void> {
    while (this.running || this.scheduled) {
      if (this.running) await this.pumping
      // A pump scheduled for the next macrotask turn: wait for the turn (spinning on microtasks would never let it come).
      else if (this.turn) await this.turn
      else await Promise.resolve()
    }
  }

  /** Writes what is queued, syncs it, and closes the segment. */
  async close(): Promise<void> {
    if (this.stateValue.kind === 'closed' || this.stateValue.kind === 'closing') return
    const failed = this.stateValue.kind === 'failed'
    if (!failed) this.stateValue = { kind: 'closing' }
    await this.drain()
    this.cancelTimer?.()
    if (!failed && this.c.durability === 'interval' && this.unsyncedBytes > 0) {
      try {
        await this.segment.handle.datasync()
        this.unsyncedBytes = 0
        this.durableLsnValue = this.nextLsn - 1
      } catch (err) {
        this.fail('fdatasync failed while closing', err)
      }
    }
    await this.spare?.catch(() => undefined)
    await this.segment.handle.close().catch(() => undefined)
    if (this.stateValue.kind !== 'failed') this.stateValue = { kind: 'closed' }
  }

  // ---- appending ----

  private refusal(payload: Uint8Array): Error | undefined {
    switch (this.stateValue.kind) {
      case 'open':
        break
      case 'failed':
        return this.stateValue.error
      case 'closing':
      case 'closed':
        return new WalClosedError()
    }
    if (payload.length > this.c.limits.recordBytesMax) return new RecordTooLargeError(payload.length, this.c.limits.recordBytesMax)
    return undefined
  }

  private fits(g: Group, frameBytes: number): boolean {
    return g.count === 0 || g.used + frameBytes <= this.c.limits.groupBytesMax
  }

  private stage(g: Group, type: RecordType, payload: Uint8Array, waiter: Waiter): void {
    const need = g.used + FRAME_HEADER_BYTES + payload.length
    if (need > g.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, Math.min(g.buf.length * 2, this.c.limits.groupBytesMax)))
      g.buf.copy(grown, 0, 0, g.used)
      g.buf = grown
    }
    g.used = encodeFrameBodyInto(g.buf, g.used, type, payload, this.c.sums)
    g.ends.push(g.used)
    g.waiters.push(waiter)
  }

  private schedule(): void {
    if (this.scheduled || this.running) return
    this.scheduled = true
    const run = (): void => {
      this.scheduled = false
      if (!this.running) this.pumping = this.pump()
    }
    // Inline writes complete within microtasks: a caller awaiting put after put would hold the
    // event loop for as long as it writes (measured: 2,000 awaited puts, 6.3 s, not one 1 ms timer
    // fired), starving timers and I/O: the health loop, the metrics endpoint, a sink's apply
    // timeout, the host's own server. So at most every INLINE_TURN_MS the next group waits for a
    // macrotask turn (setImmediate: after pending I/O, before timers of the next loop). Only when
    // writes can be inline (the real filesystem): simulations never take this path.
    if (this.turnDue()) {
      this.turn = new Promise((resolve) =>
        setImmediate(() => {
          this.turn = undefined
          run()
          resolve()
        }),
      )
      return
    }
    // A microtask, not now: appends made in the same tick join one group.
    microtask(run)
  }

  /**
   * Whether writes can be inline (the real filesystem) and the writer has
   * held the event loop for INLINE_TURN_MS. The hold is measured from the
   * first schedule after the loop last turned, whoever turned it: a
   * setImmediate armed at each schedule notices the turn. A caller whose
   * writes are spaced by other I/O (a LangGraph step reads between its
   * writes; the appliers' callbacks run) lets the loop turn on its own;
   * counting from the writer's own last turn instead made nearly every such
   * write wait behind the callbacks queued for a turn it did not need
   * (issue 13: a MemwalSaver put at 1 thread). A tight loop of awaited puts
   * runs on microtasks alone: the armed immediate never runs, and the writer
   * takes its turn after INLINE_TURN_MS as before.
   */
  private turnDue(): boolean {
    if (!(this.c.inlineWriteBytesMax > 0 && this.segment.handle.writeSync !== undefined)) return false
    const now = monotonicMs()
    if (this.turned) {
      this.turned = false
      this.holdingSince = now
    }
    if (!this.armed) {
      this.armed = true
      setImmediate(() => {
        this.armed = false
        this.turned = true
      })
    }
    return now - this.holdingSince >= INLINE_TURN_MS
  }

  /**
   * Writes groups until none is waiting. `running` is cleared in the same
   * microtask that finds nothing to do (the loop and the flag live in one
   * function on purpose): an append that comes after sees it clear and schedules.
   */
  private async pump(): Promise<void> {
    this.running = true
    try {
      while (this.stateValue.kind === 'open' || this.stateValue.kind === 'closing') {
        if (this.open.count > 0) {
          const g = this.open
          this.open = this.idle ?? new Group(GROUP_INITIAL_BYTES)
          this.idle = undefined
          this.refill()
          await this.commit(g)
          g.reset()
          this.idle = g
        } else if (this.syncRequested) {
          this.syncRequested = false
          await this.syncNow()
        } else {
          return
        }
      }
    } finally {
      this.running = false
    }
  }

  /** Moves held appends into the newly opened group, in order. */
  private refill(): void {
    let taken = 0
    while (taken < this.overflow.length) {
      const o = this.overflow[taken]
      assert(o !== undefined, 'overflow entry exists')
      if (!this.fits(this.open, FRAME_HEADER_BYTES + o.payload.length)) break
      this.stage(this.open, o.type, o.payload, o.waiter)
      this.overflowBytes -= FRAME_HEADER_BYTES + o.payload.length
      taken++
    }
    this.overflow.splice(0, taken)
  }

  // ---- committing ----

  private async commit(g: Group): Promise<void> {
    let i = 0
    while (i < g.count) {
      if (this.stateValue.kind === 'failed') return this.rejectFrom(g, i, this.stateValue.error)
      const j = this.framesThatFit(g, i)
      if (j === i) {
        const rotated = await this.rotate(GROUP_MARKER_BYTES + (g.ends[i] ?? 0) - g.startOf(i))
        if (rotated !== true) return this.rejectFrom(g, i, rotated)
        continue
      }
      const first = this.nextLsn
      assert(first + (j - i) - 1 <= limits.lsnMax, 'LSNs stay below 2^53: each is written as two u32')
      for (let k = i; k < j; k++) sealFrame(g.buf, g.startOf(k), first + (k - i), this.segment.salt, this.c.sums)
      const bytes = this.writeOf(g, i, j, first)
      const marker = bytes.length - (g.startOf(j) - g.startOf(i))
      try {
        const h = this.segment.handle
        if (h.writeSync && bytes.length <= this.c.inlineWriteBytesMax) h.writeSync(bytes, this.offset)
        else await h.write(bytes, this.offset)
      } catch (err) {
        // The marker is zeroed last, like a frame: it is the first piece of the write.
        const frameEnds: number[] = marker > 0 ? [marker] : []
        for (let k = i; k < j; k++) frameEnds.push(marker + g.startOf(k + 1) - g.startOf(i))
        return this.rejectFrom(g, i, await this.afterWriteError(err, frameEnds))
      }
      this.offset += bytes.length
      this.nextLsn += j - i
      if (this.c.durability === 'sync') {
        this.durableLsnValue = this.nextLsn - 1
        this.durableFrom = this.offset
      } else {
        this.unsyncedBytes += bytes.length
      }
      for (let k = i; k < j; k++) g.waiters[k]?.resolve(first + (k - i))
      i = j
    }
  }

  /** Bytes of a group marker in the active segment: none in a version 1 segment (one resumed from before markers). */
  private get markerBytes(): number {
    return this.segment.version >= FORMAT_VERSION ? GROUP_MARKER_BYTES : 0
  }

  /**
   * The bytes of one write: frames `i` to `j` of the group, after their group
   * marker in a version 2 segment. The marker goes in the room kept before the
   * first frame; a write that starts later in the group (the rest of a group
   * split by a rotation) is copied behind a marker of its own.
   */
  private writeOf(g: Group, i: number, j: number, firstLsn: number): Buffer {
    const start = g.startOf(i)
    const end = g.startOf(j)
    const marker = this.markerBytes
    if (marker === 0) return g.buf.subarray(start, end)
    const groupBytes = marker + end - start
    const m = { lsn: firstLsn, groupBytes, durableFrom: this.durableFrom }
    if (i === 0) {
      encodeGroupMarkerInto(g.buf, 0, m, this.segment.salt, this.c.sums)
      return g.buf.subarray(0, end)
    }
    const out = Buffer.allocUnsafe(groupBytes)
    encodeGroupMarkerInto(out, 0, m, this.segment.salt, this.c.sums)
    g.buf.copy(out, marker, start, end)
    return out
  }

  /** Index past the last frame from `i` that fits in the active segment, after its group marker. */
  private framesThatFit(g: Group, i: number): number {
    const room = this.segment.capacity - this.offset - this.markerBytes
    const base = g.startOf(i)
    let j = i
    while (j < g.count && (g.ends[j] ?? Infinity) - base <= room) j++
    return j
  }

  private rejectFrom(g: Group, i: number, err: unknown): void {
    for (let k = i; k < g.count; k++) g.waiters[k]?.reject(err)
  }

  /**
   * A write failed. For a space error the bytes that may have landed are
   * overwritten with zeros, so that no rejected record can surface after a
   * crash, and the log goes on. Anything else fails the writer (G2).
   *
   * The zeros go frame by frame, from the last frame back (`frameEnds`: each
   * frame's end, relative to the write's start). A zeroing write may fail
   * too (a full disk refuses it just the same), having landed a prefix: the
   * writer then fails closed, and what is left is whole frames, then damage,
   * then zeros, which recovery truncates as a torn tail. One zeroing write
   * over the whole range could leave zeros, then the rest of a frame, then
   * whole frames: damage before a valid frame, which recovery must refuse.
   */
  private async afterWriteError(err: unknown, frameEnds: readonly number[]): Promise<Error> {
    if (!isSpaceError(err)) return this.fail('write failed; the state of the disk is unknown', err)
    try {
      for (let k = frameEnds.length - 1; k >= 0; k--) {
        const from = k === 0 ? 0 : (frameEnds[k - 1] ?? 0)
        await this.segment.handle.write(Buffer.alloc((frameEnds[k] ?? 0) - from), this.offset + from)
      }
      if (this.c.durability !== 'sync') await this.segment.handle.datasync()
    } catch (zeroErr) {
      return this.fail('write failed and could not be undone', zeroErr)
    }
    return new MemwalError('WAL_WRITE_FAILED', `write failed: ${(err as Error).message}`, { cause: err, transient: true })
  }

  private async syncNow(): Promise<void> {
    if (this.unsyncedBytes === 0) return
    const upTo = this.nextLsn - 1
    const at = this.offset
    try {
      await this.segment.handle.datasync()
    } catch (err) {
      this.fail('fdatasync failed', err)
      return
    }
    this.unsyncedBytes = 0
    this.durableLsnValue = upTo
    this.durableFrom = at
  }

  /**
   * Opens the next segment, with room for at least `needBytes` after its
   * header (the write that did not fit). Resolves true, or the error to reject
   * the waiting frames with.
   */
  private async rotate(needBytes: number): Promise<true | Error> {
    try {
      await this.spare
      // A record larger than the planned segment: a larger spare, prepared now (the rare slow path).
      const size = segmentBytesFor(this.c.sizing, this.spareBytes, SEGMENT_HEADER_BYTES + needBytes)
      if (this.spareError !== undefined || size !== this.spareBytes) {
        this.spareError = undefined
        await prepareSpare(this.c.fs, this.c.walDir, size)
        this.spareBytes = size
      }
    } catch (err) {
      this.spareError = err ?? new Error('spare preparation failed') // still no spare: the next rotation prepares one again
      if (isSpaceError(err)) return new MemwalError('WAL_WRITE_FAILED', `no space for a new segment: ${(err as Error).message}`, { cause: err, transient: true })
      return this.fail('could not prepare a new segment', err)
    }
    try {
      // A segment is complete and durable before the next one starts: then a
      // later segment proves every LSN before it was durable (recovery relies on it).
      if (this.c.durability !== 'none') await this.syncNow()
      if (this.stateValue.kind === 'failed') return this.stateValue.error
      const next = await installSegment({
        fs: this.c.fs,
        sums: this.c.sums,
        walDir: this.c.walDir,
        baseLsn: this.nextLsn,
        salt: this.c.random.nextU32(),
        createdAtMs: this.c.clock.nowMs(),
        segmentBytes: this.spareBytes,
        dsync: this.c.durability === 'sync',
      })
      await this.segment.handle.close().catch(() => undefined)
      this.segment = next
      this.offset = SEGMENT_HEADER_BYTES
      this.durableFrom = SEGMENT_HEADER_BYTES
    } catch (err) {
      // No space for the header (or the rename): the spare was not installed and the active
      // segment is intact. Reject these frames; the next rotation prepares a fresh spare.
      if (isSpaceError(err) && (await this.c.fs.stat(path.join(this.c.walDir, SPARE_NAME)).catch(() => undefined))) {
        this.spareError = err
        return new MemwalError('WAL_WRITE_FAILED', `no space for a new segment: ${(err as Error).message}`, { cause: err, transient: true })
      }
      return this.fail('could not install a new segment', err)
    }
    const now = this.c.clock.nowMs()
    this.startSpare(nextSegmentBytes(this.c.sizing, this.segment.capacity, now - this.segmentStartMs))
    this.segmentStartMs = now
    return true
  }

  private startSpare(bytes: number): void {
    this.spareError = undefined
    this.spareBytes = bytes
    this.spare = prepareSpare(this.c.fs, this.c.walDir, bytes).catch((err: unknown) => {
      this.spareError = err ?? new Error('spare preparation failed')
    })
  }

  private armTimer(): void {
    this.cancelTimer = this.c.clock.setTimer(this.c.syncIntervalMs, () => {
      if (this.stateValue.kind !== 'open') return
      if (this.unsyncedBytes > 0) {
        this.syncRequested = true
        this.schedule()
      }
      this.armTimer()
    })
  }

  // ---- failing closed ----

  private fail(message: string, cause: unknown): WalFailedError {
    if (this.stateValue.kind === 'failed') return this.stateValue.error
    const error = new WalFailedError(`${message}: the log accepts no more writes until it is reopened`, cause)
    this.stateValue = { kind: 'failed', error }
    this.cancelTimer?.()
    for (const o of this.overflow) o.waiter.reject(error)
    this.overflow.length = 0
    this.overflowBytes = 0
    this.rejectFrom(this.open, 0, error)
    this.open.reset()
    this.c.onFailed?.(error)
    return error
  }

  /** Fails the writer from outside (a lost lock): nothing more is acknowledged. */
  poison(message: string, cause: unknown): void {
    this.fail(message, cause)
  }

  private throwIfUnusable(): void {
    if (this.stateValue.kind === 'failed') throw this.stateValue.error
    if (this.stateValue.kind === 'closed') throw new WalClosedError()
  }
}
