import { EventEmitter } from 'node:events'
import { posix as path } from 'node:path'
import { assert } from './assert.js'
import { CorruptionError, MemwalError, WalFailedError, isMemwalError } from './errors.js'
import { Applier } from './apply/applier.js'
import { DeadLetterLog } from './apply/dead-letter.js'
import { PendingLog } from './apply/pending-log.js'
import { createChecksums, type Checksums } from './format/checksum.js'
import { noDirLocker, ProcessDirLocker, type DirLock } from './io/dir-lock.js'
import { holdProcess } from './io/clock.js'
import { NodeFileSystem } from './io/node-fs.js'
import type { FileSystem } from './io/fs.js'
import { resolveOptions, type MemwalOptions, type ResolvedOptions } from './options.js'
import { createSinkPolicy } from './resilience/policy.js'
import { CacheSink } from './sinks/cache-sink.js'
import { IndexSink, matches, type IndexQuery } from './sinks/index-sink.js'
import { LevelBackend } from './sinks/level-backend.js'
import { LevelStore } from './sinks/level-store.js'
import type { AppliedRecord, BackendSink, Sink, StoredEntry } from './sinks/sink.js'
import { RecordType } from './format/format.js'
import { RecordCodec, type Op, type WalRecord } from './format/record-codec.js'
import { Wal } from './log/wal.js'
import { checkBatch, checkKey, checkPutOptions, checkValue, invalidValue, type BatchOp, type PutOptions } from './validate.js'
import { EngineMetrics } from './metrics.js'
import type { RecoveryReport } from './log/recovery/wal-recovery.js'
import type { EngineHealth, EngineState, SinkHealth } from './health.js'
import { scanLog } from './log/recovery/log-scan.js'
import { latestVersions, report, toReconcile, type ReconcileFinding, type VerifyReport } from './reconcile/reconciler.js'
import { checkSinks } from './reconcile/sink-check.js'
import { limits } from './limits.js'
import { HybridClock } from './hlc.js'

export interface QueryOptions extends IndexQuery {
  /** At most this many results (default 1,000; at most 100,000). */
  readonly limit?: number
}

export interface QueryResult {
  readonly key: string
  readonly value: unknown
  readonly namespace?: string
  readonly tags?: readonly string[]
}

const QUERY_LIMIT_DEFAULT = 1000
const QUERY_LIMIT_MAX = 100_000
/** Backlog share above which `backlog-high` fires. */
const BACKLOG_HIGH_RATIO = 0.8
/** Retention looks for segments to delete at most this often. */
const PURGE_INTERVAL_MS = 1000

type Lifecycle = 'open' | 'closing' | 'closed' | 'failed'

/**
 * memwal: an embeddable storage engine whose write-ahead log is the truth.
 * A write is acknowledged once it is durable in the log (G1); appliers then
 * replicate it to the cache, the index and the backend (G3), and reads merge
 * what is still pending so that a reader sees its own writes even while the
 * backend is down (G4).
 *
 * Events: `sink-down`, `sink-recovered`, `backlog-high`, `dead-letter`,
 * `wal-failed`, `state`.
 */
export class MemWAL extends EventEmitter {
  private lifecycle: Lifecycle = 'open'
  private failure: WalFailedError | undefined
  private readonly appliers: Applier[]
  private readonly sinks: Sink[]
  private readonly codec = new RecordCodec()
  private flushWaiters: { lsn: number; resolve: () => void; fail: (err: Error) => void }[] = []
  private backlogWaiters: (() => void)[] = []
  private backlogHigh = false
  /** Size of the last record the backlog had no room for: health stays read-only while such a record still would not fit. */
  private refusedBytes = 0
  private purgeAt = 0
  private purgeNextMs = 0
  private purging = false
  /** The purge in progress, if any; and how many verify() calls are reading the whole log (retention waits for them). */
  private purgeInFlight: Promise<unknown> = Promise.resolve()
  private verifying = 0
  private readonly deadLetters = new Map<string, Promise<DeadLetterLog>>()
  private readonly metrics: EngineMetrics | undefined
  private readonly hlc: HybridClock
  /**
   * Checksums for the dead-letter logs and verify(), made once at open: compiling
   * xxhash's WebAssembly is asynchronous off the event loop, and doing it in the
   * background would let a seeded simulation's interleaving vary from run to run.
   */
  private sums: Checksums | undefined

  private constructor(
    private readonly o: ResolvedOptions,
    private readonly wal: Wal,
    private readonly lock: DirLock,
    private readonly store: LevelStore,
    private readonly backend: BackendSink,
    private readonly index: IndexSink,
    private readonly cache: CacheSink,
    private readonly pending: PendingLog,
    private readonly dirPath: string,
  ) {
    super()
    this.sinks = [backend, index, cache]
    const limits = { batchRecordsMax: o.applyBatchRecordsMax, batchBytesMax: o.applyBatchBytesMax }
    // The cache follows the backend (see Applier): one cursor, one decode, and it never holds what the backend lost.
    this.appliers = [
      new Applier(backend, createSinkPolicy(o.resilience, o.random), this.applierHost(), limits, [cache]),
      new Applier(index, createSinkPolicy(o.resilience, o.random), this.applierHost(), limits),
    ]
    this.metrics = o.metrics ? new EngineMetrics(o.metrics, this) : undefined
    this.hlc = new HybridClock(o.clock)
  }

  /**
   * Opens (or creates) a data directory: lock, read each sink's checkpoint,
   * recover the log (verifying it from the lowest checkpoint), rebuild the
   * pending overlay, start the appliers. Resolves when writes are accepted.
   */
  static async open(options: MemwalOptions): Promise<MemWAL> {
    const o = resolveOptions(options)
    const dir = path.resolve(o.dir)
    // Before anything runs in the background (the writer prepares a spare segment as soon as it exists).
    const sums = await createChecksums()
    await makeDataDir(o.fs, dir)
    const locker = o.locker ?? (o.fs instanceof NodeFileSystem ? new ProcessDirLocker() : noDirLocker)
    let engine: MemWAL | undefined
    const lock = await locker.acquire(dir, (err) => engine?.failClosed(new WalFailedError('the data directory lock was compromised', err)))
    const undo: (() => Promise<unknown>)[] = [() => lock.release()]
    try {
      // Made here (0700) rather than by LevelDB (0755): DESIGN.md §2.
      if (!o.level) await o.fs.mkdirp(path.join(dir, 'store'))
      const store = await LevelStore.open(path.join(dir, 'store'), o.level)
      undo.push(() => store.close())
      const wrap = o.wrapSink ?? (<S,>(s: S) => s)
      const backend = wrap(o.backend ?? new LevelBackend(store))
      const index = wrap(new IndexSink(store))
      const backendLsn = await backend.open()
      // A backend with its own connections (PostgreSQL) must not outlive a failed open.
      undo.push(() => backend.close())
      const indexLsn = await index.open()
      const durable = Math.max(backendLsn, indexLsn)
      const wal = await Wal.open({
        dir,
        durability: o.durability,
        ...(o.syncIntervalMs !== undefined ? { syncIntervalMs: o.syncIntervalMs } : {}),
        ...(o.segmentBytes !== undefined ? { segmentBytes: o.segmentBytes } : {}),
        ...(o.recordBytesMax !== undefined ? { recordBytesMax: o.recordBytesMax } : {}),
        ...(o.corruptionPolicy !== undefined ? { corruptionPolicy: o.corruptionPolicy } : {}),
        ...(o.inlineWriteBytesMax !== undefined ? { inlineWriteBytesMax: o.inlineWriteBytesMax } : {}),
        // In sync mode a checkpoint can only cover acknowledged, hence durable, records: a log that ends before it has a hole.
        durableLsn: o.durability === 'sync' ? durable : 0,
        appliedLsn: backendLsn,
        verifyFromLsn: Math.min(backendLsn, indexLsn) + 1,
        // Otherwise a sink may be ahead of a log that lost its tail: new records must not reuse those LSNs.
        nextLsnAtLeast: durable + 1,
        fs: o.fs,
        clock: o.clock,
        random: o.random,
        locker: noDirLocker,
        onFailed: (err) => engine?.failClosed(err),
      })
      undo.push(() => wal.close())
      const codec = new RecordCodec()
      const pending = new PendingLog(codec, Math.min(backendLsn, indexLsn) + 1)
      await loadBacklog(wal, pending, o.clock.nowMs())
      const cache = wrap(new CacheSink(o.cacheBytes, () => wal.lastLsn))
      await cache.open()
      engine = new MemWAL(o, wal, lock, store, backend, index, cache, pending, dir)
      engine.hlc.observe(await lastHlc(wal))
      engine.sums = sums
      for (const a of engine.appliers) a.start()
      o.logger.info({ dir, recovery: summarise(wal.recovery) }, 'memwal open')
      return engine
    } catch (err) {
      for (const u of undo.reverse()) await u().catch(() => undefined)
      throw err
    }
  }

  /** The data directory. */
  get dir(): string {
    return this.dirPath
  }

  /** What recovery found and did at open. */
  get recovery(): RecoveryReport {
    return this.wal.recovery
  }

  // ---- writes ----

  async put(key: string, value: unknown, options?: PutOptions): Promise<{ lsn: number }> {
    const k = checkKey(key, this.o)
    const op: Op = { type: 'put', key: k, value: checkValue(value), ...checkPutOptions(options, this.o) }
    return this.write({ type: RecordType.PUT, op })
  }

  async delete(key: string): Promise<{ lsn: number }> {
    return this.write({ type: RecordType.DELETE, op: { type: 'del', key: checkKey(key, this.o) } })
  }

  /** Atomic: after any crash either every operation is visible or none (one record, one frame). */
  async batch(ops: readonly BatchOp[]): Promise<{ lsn: number }> {
    return this.write({ type: RecordType.BATCH, ops: checkBatch(ops, this.o) })
  }

  private async write(unstamped: WalRecord): Promise<{ lsn: number }> {
    this.throwIfNotWritable()
    const record: WalRecord = { ...unstamped, hlc: this.hlc.next() }
    let payload: Uint8Array
    try {
      // Copied at once: msgpackr reuses its buffer, and the pending log keeps this one.
      payload = this.pending.copy(this.codec.encode(record))
    } catch (cause) {
      throw invalidValue(`value cannot be serialised: ${(cause as Error).message}`, cause)
    }
    try {
      await this.admit(payload.length)
    } catch (err) {
      this.metrics?.writeFailed(err) // a backpressure refusal is what memwal_write_errors_total must show
      throw err
    }
    const started = this.o.clock.nowMs()
    let lsn: number
    try {
      lsn = await this.wal.append(record.type, payload)
    } catch (err) {
      this.metrics?.writeFailed(err)
      throw this.translate(err)
    }
    this.pending.accept(lsn, record, payload, this.o.clock.nowMs())
    this.metrics?.written(record, this.o.clock.nowMs() - started)
    this.checkBacklogHigh()
    for (const a of this.appliers) a.notify()
    return { lsn }
  }

  /** Backpressure (G6): the backlog stays under maxBacklogBytes. */
  private async admit(bytes: number): Promise<void> {
    if (bytes > this.o.maxBacklogBytes) throw new MemwalError('ENGINE_BACKLOG_FULL', `a record of ${bytes} bytes can never fit maxBacklogBytes ${this.o.maxBacklogBytes}`)
    if (this.pending.bytes + bytes <= this.o.maxBacklogBytes) return
    this.refusedBytes = bytes
    if (this.o.backlogPolicy === 'reject') throw this.backlogFull()
    const deadline = this.o.clock.nowMs() + this.o.backlogWaitMsMax
    const release = holdProcess() // the caller awaits this write: its wait must not rest on unref'd timers alone
    try {
      while (this.pending.bytes + bytes > this.o.maxBacklogBytes) {
        const left = deadline - this.o.clock.nowMs()
        if (left <= 0) throw this.backlogFull()
        await new Promise<void>((resolve) => {
          const cancel = this.o.clock.setTimer(left, resolve)
          this.backlogWaiters.push(() => {
            cancel()
            resolve()
          })
        })
        this.throwIfNotWritable()
      }
    } finally {
      release()
    }
  }

  private backlogFull(): MemwalError {
    return new MemwalError('ENGINE_BACKLOG_FULL', `backlog of ${this.pending.bytes} bytes is at maxBacklogBytes ${this.o.maxBacklogBytes}: a sink is behind`, {
      transient: true,
      details: { backlogBytes: this.pending.bytes, maxBacklogBytes: this.o.maxBacklogBytes },
    })
  }

  // ---- reads ----

  /**
   * The value stored under `key`, or undefined. Pending writes first (G4),
   * then the cache, then the backend. When the backend cannot answer and the
   * key is neither pending nor cached, rejects with ENGINE_BACKEND_UNAVAILABLE:
   * it never guesses "not found".
   */
  async get(key: string): Promise<unknown> {
    return (await this.getEntry(key))?.value
  }

  /** Like get, with namespace, tags and the LSN that wrote it. */
  async getEntry(key: string): Promise<StoredEntry | undefined> {
    const k = checkKey(key, this.o)
    this.throwIfClosed()
    const p = this.pending.lookup(k)
    if (p) return p.kind === 'del' ? undefined : entryOf(p.op, p.lsn)
    const cached = this.cache.get(k)
    if (cached) return cached
    const lastBefore = this.wal.lastLsn
    const e = await this.readBackend(() => this.backend.get(k))
    // Fill the cache only if nothing was written meanwhile (a later write could be older than what we read).
    if (e && this.wal.lastLsn === lastBefore && !this.pending.lookup(k)) this.cache.fill(k, e)
    const again = this.pending.lookup(k)
    if (again) return again.kind === 'del' ? undefined : entryOf(again.op, again.lsn)
    return e
  }

  /**
   * Entries matching every criterion given, in key order: the index, merged
   * with pending puts and deletes so that those show at once.
   */
  async *query(q: QueryOptions = {}): AsyncGenerator<QueryResult> {
    this.throwIfClosed()
    const query = checkQuery(q, this.o)
    const limit = q.limit ?? QUERY_LIMIT_DEFAULT
    if (!Number.isInteger(limit) || limit < 1 || limit > QUERY_LIMIT_MAX) throw invalidValue(`limit must be an integer in [1, ${QUERY_LIMIT_MAX}]`)
    // Pending versions override the index for their keys.
    const overridden = new Set<string>()
    const pendingHits: QueryResult[] = []
    for (const key of this.pending.keys()) {
      if (query.prefix !== undefined && !key.startsWith(query.prefix)) continue
      const v = this.pending.lookup(key)
      if (!v) continue
      overridden.add(key)
      if (v.kind === 'put' && matches(v.op, query)) pendingHits.push(resultOf(key, entryOf(v.op, v.lsn)))
    }
    pendingHits.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    let n = 0
    let i = 0
    const it = this.index.keys(query)[Symbol.asyncIterator]()
    for (;;) {
      // The index is not the backend: a down backend must not stop a query whose values are pending or cached (G4 refuses per value, in getEntry).
      let next: IteratorResult<[string, unknown]>
      try {
        next = await it.next()
      } catch (cause) {
        throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `the index cannot answer: ${(cause as Error).message}`, { cause, transient: true })
      }
      if (next.done) break
      const [key] = next.value
      if (overridden.has(key)) continue
      while (i < pendingHits.length && (pendingHits[i] as QueryResult).key < key) {
        yield pendingHits[i++] as QueryResult
        if (++n >= limit) return
      }
      const e = await this.getEntry(key)
      if (!e || !matches(e, query)) continue
      yield resultOf(key, e)
      if (++n >= limit) return
    }
    while (i < pendingHits.length) {
      yield pendingHits[i++] as QueryResult
      if (++n >= limit) return
    }
  }

  private async readBackend<T>(read: () => Promise<T>): Promise<T> {
    const backendApplier = this.appliers[0]
    assert(backendApplier !== undefined, 'backend applier exists')
    if (backendApplier.policy.breakerState() === 'open') {
      throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', 'the backend is down (circuit breaker open) and the value is neither pending nor cached', { transient: true })
    }
    // A read that never returns must not hang the caller: it fails, typed, after applyTimeoutMs (the call itself cannot be cancelled).
    const ms = this.o.resilience.applyTimeoutMs
    let cancel: (() => void) | undefined
    const release = holdProcess() // the caller awaits this; the timer alone is unref'd
    try {
      return await Promise.race([
        read(),
        new Promise<never>((_, reject) => {
          cancel = this.o.clock.setTimer(ms, () => reject(new MemwalError('SINK_TIMEOUT', `no answer in ${ms} ms`, { transient: true })))
        }),
      ])
    } catch (cause) {
      throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `the backend cannot answer: ${(cause as Error).message}`, { cause, transient: true })
    } finally {
      cancel?.()
      release()
    }
  }

  // ---- verify ----

  /**
   * The reconciler on the open engine (DESIGN.md §8): verifies every segment
   * and frame, and that the backend, the index and the cache agree with the
   * log where their checkpoints say they should. With `repair`, wrong backend
   * keys are re-applied from the log, the index is rebuilt from the backend
   * and stale cache entries are dropped (the appliers pause meanwhile). Damage
   * in the log itself is reported; repairing it takes `memwal fsck --repair`
   * on a closed directory.
   */
  async verify(options: { readonly repair?: boolean } = {}): Promise<VerifyReport> {
    this.throwIfClosed()
    // Retention must not delete a segment under the scan: no purge starts meanwhile, and one in progress is waited for.
    this.verifying++
    try {
      await this.purgeInFlight
      return await this.verifyLog(options)
    } finally {
      this.verifying--
    }
  }

  private async verifyLog(options: { readonly repair?: boolean }): Promise<VerifyReport> {
    const started = this.o.clock.nowMs()
    const sums = this.sums ?? (await createChecksums())
    const walDir = path.join(this.dirPath, 'wal')
    const active = this.wal.activeSegment
    const lastLsn = this.wal.lastLsn
    const scan = await scanLog({ fs: this.o.fs, sums, walDir, recordBytesMax: limits.recordBytesHardMax, verifyFromLsn: 0 })
    const findings: ReconcileFinding[] = []
    for (const p of scan.problems) {
      const segment = scan.segments[p.segmentIndex]?.entry.name ?? '?'
      // Damage where an LSN already written was due is corruption, wherever it is; past it, the writer's own tail, mid-append.
      const written = p.due !== undefined && p.due <= lastLsn
      if (p.atTail && segment === active && !written) continue
      findings.push({
        kind: p.atTail && !written ? 'torn-tail' : p.kind, segment, offset: p.offset,
        ...(p.lsnFirst !== undefined ? { lsnFirst: p.lsnFirst } : {}),
        ...(p.lsnLast !== undefined ? { lsnLast: p.lsnLast, alreadyApplied: p.lsnLast <= this.backend.checkpoint } : {}),
        detail: `${p.detail} (repair with memwal fsck --repair on the closed directory)`, repaired: false,
      })
    }
    const repair = options.repair === true
    const paused = repair ? this.appliers : []
    await Promise.all(paused.map((a) => a.pause()))
    try {
      const lost: [number, number][] = []
      const latest = await latestVersions(this.o.fs, sums, walDir, lost, this.backend.checkpoint)
      const unstable = new Set<string>(this.pending.keys())
      const low = Math.min(this.backend.checkpoint, this.index.checkpoint)
      for (const [key, v] of latest) if (v.lsn > low || v.lsn > lastLsn) unstable.add(key)
      // The log's end now, not at the start: the appliers may have gone past that meanwhile (checkpoint-ahead compares the two).
      const sinkFindings = await checkSinks({ backend: this.backend, index: this.index, cache: this.cache, unstable, lastLsn: this.wal.lastLsn, lost }, latest, repair)
      // Keys written since the check began were in flux while the sinks were read, not wrong (with repair, the appliers were paused).
      const moved = repair ? new Set<string>() : await this.keysWrittenAfter(lastLsn)
      findings.push(...sinkFindings.filter((f) => f.key === undefined || !moved.has(f.key)).map(toReconcile))
    } catch (cause) {
      // A sink that cannot answer (a backend outage) is a typed refusal, not its raw error (G4).
      if (isMemwalError(cause)) throw cause
      throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `verify cannot read the sinks: ${(cause as Error)?.message ?? String(cause)}`, { cause, transient: true })
    } finally {
      for (const a of paused) a.resume()
    }
    return report(findings, scan, lastLsn, { backend: this.backend.checkpoint, index: this.index.checkpoint }, this.o.clock.nowMs() - started)
  }

  private async keysWrittenAfter(lsn: number): Promise<Set<string>> {
    const keys = new Set<string>()
    try {
      for await (const r of this.wal.read(lsn + 1)) {
        const record = this.wal.decode(r)
        for (const op of record.type === RecordType.BATCH ? record.ops : [record.op]) keys.add(op.key)
      }
    } catch (err) {
      // Damage on the way to those records is in the report already (the scan found it): report, never throw.
      if (!(err instanceof CorruptionError)) throw err
    }
    return keys
  }

  // ---- flush, health, close ----

  /** Resolves when every sink has applied everything acknowledged before the call. */
  async flush(options: { readonly timeoutMs?: number } = {}): Promise<void> {
    this.throwIfClosed()
    const target = this.wal.lastLsn
    if (this.minCheckpoint() >= target) {
      // A sink's checkpoint moves a few promise hops before its applier reports it (advanced): trim now, so the backlog reads empty.
      this.pending.trimThrough(this.minCheckpoint())
      return
    }
    // The caller awaits this: hold the process until it settles (the appliers' timers are unref'd).
    const release = holdProcess()
    await new Promise<void>((resolve, reject) => {
      const cancel = options.timeoutMs === undefined ? undefined : this.o.clock.setTimer(options.timeoutMs, () => {
        this.flushWaiters = this.flushWaiters.filter((w) => w.resolve !== done)
        fail(new MemwalError('ENGINE_FLUSH_TIMEOUT', `flush did not complete in ${options.timeoutMs} ms`, { transient: true, details: this.health() as unknown as Record<string, unknown> }))
      })
      const done = (): void => {
        cancel?.()
        release()
        resolve()
      }
      const fail = (err: Error): void => {
        cancel?.()
        release()
        reject(err)
      }
      this.flushWaiters.push({ lsn: target, resolve: done, fail })
    })
  }

  health(): EngineHealth {
    const acked = this.wal.lastLsn
    const now = this.o.clock.nowMs()
    const sinks: Record<string, SinkHealth> = {}
    for (const sink of this.sinks) {
      const a = this.applierOf(sink)
      const s = a.status()
      const lagRecords = Math.max(0, acked - sink.checkpoint)
      const oldest = this.pending.ackedAtAfter(sink.checkpoint)
      sinks[sink.name] = {
        durable: sink.durable,
        breaker: a.policy.breakerState(),
        checkpoint: sink.checkpoint,
        lag: {
          records: lagRecords,
          bytes: this.pending.records === 0 ? 0 : Math.round((this.pending.bytes * Math.min(lagRecords, this.pending.records)) / this.pending.records),
          ms: lagRecords === 0 || oldest === undefined ? 0 : Math.max(0, now - oldest),
        },
        consecutiveFailures: s.consecutiveFailures,
        applied: s.applied,
        deadLetters: s.deadLetters,
        ...(s.lastError ? { lastError: s.lastError } : {}),
      }
    }
    const state = this.state()
    return {
      state,
      ...(state === 'read-only' ? { reason: `backlog ${this.pending.bytes} bytes at maxBacklogBytes ${this.o.maxBacklogBytes}` } : {}),
      ...(state === 'degraded' ? { reason: `sink down: ${this.appliers.filter((a) => a.status().down || a.policy.breakerState() !== 'closed').map((a) => a.sink.name).join(', ')}` } : {}),
      ...(state === 'failed' && this.failure ? { reason: this.failure.message } : {}),
      wal: { lastLsn: acked, durableLsn: this.wal.durableLsn, activeSegment: this.wal.activeSegment },
      backlog: { records: this.pending.records, bytes: this.pending.bytes, maxBytes: this.o.maxBacklogBytes, pendingKeys: this.pending.pendingKeys },
      cache: { entries: this.cache.size, bytes: this.cache.bytes, maxBytes: this.o.cacheBytes },
      sinks,
    }
  }

  private state(): EngineState {
    if (this.lifecycle === 'closed' || this.lifecycle === 'closing') return 'closed'
    if (this.lifecycle === 'failed') return 'failed'
    if (this.pending.bytes >= this.o.maxBacklogBytes || this.pending.bytes + this.refusedBytes > this.o.maxBacklogBytes) return 'read-only'
    if (this.appliers.some((a) => a.status().down || a.policy.breakerState() !== 'closed')) return 'degraded'
    return 'open'
  }

  /**
   * Stops the appliers (waiting up to closeGraceMs for a call in progress),
   * closes the sinks and the log, releases the lock. Unapplied records stay in
   * the log and are applied after the next open.
   */
  async close(): Promise<void> {
    if (this.lifecycle === 'closed' || this.lifecycle === 'closing') return
    const was = this.lifecycle
    this.lifecycle = 'closing'
    for (const w of this.backlogWaiters.splice(0)) w()
    // What they wait for stays in the log and is applied after the next open; they must not wait for ever.
    for (const w of this.flushWaiters.splice(0)) w.fail(new MemwalError('ENGINE_CLOSED', 'the engine closed before flush completed; the records stay in the log'))
    // A purge deleting segments must end before the lock is released: the next opener's recovery scan must not see a segment vanish.
    await this.purgeInFlight
    await this.wal.close().catch((err: unknown) => this.o.logger.error({ err }, 'closing the log failed'))
    await Promise.all(this.appliers.map((a) => a.stop(this.o.closeGraceMs)))
    for (const s of this.sinks) await s.close().catch((err: unknown) => this.o.logger.error({ err, sink: s.name }, 'closing a sink failed'))
    for (const d of this.deadLetters.values()) await d.then((l) => l.close()).catch(() => undefined)
    await this.store.close().catch((err: unknown) => this.o.logger.error({ err }, 'closing the store failed'))
    this.metrics?.unregister()
    await this.lock.release().catch(() => undefined)
    this.lifecycle = 'closed'
    this.emit('state', { from: was, to: 'closed' })
  }

  // ---- internals ----

  private applierHost(): ConstructorParameters<typeof Applier>[2] {
    return {
      clock: this.o.clock,
      ackedLsn: () => this.pending.nextLsn - 1,
      pending: (lsn) => this.pending.recordAt(lsn),
      advanced: (sink) => this.advanced(sink),
      deadLetter: (sink, record, error) => this.writeDeadLetter(sink, record, error),
      sinkHealth: (sink, down, error) => {
        this.o.logger.warn({ sink: sink.name, err: error }, down ? 'sink down' : 'sink recovered')
        this.emit(down ? 'sink-down' : 'sink-recovered', { sink: sink.name, ...(error !== undefined ? { error } : {}) })
      },
    }
  }

  private applierOf(sink: Sink): Applier {
    const a = this.appliers.find((x) => x.sink === sink || x.followers.includes(sink))
    assert(a !== undefined, 'every sink has an applier')
    return a
  }

  private minCheckpoint(): number {
    return Math.min(...this.sinks.map((s) => s.checkpoint))
  }

  private advanced(sink: Sink): void {
    const min = this.minCheckpoint()
    this.pending.trimThrough(min)
    if (this.flushWaiters.length > 0) {
      const ready = this.flushWaiters.filter((w) => w.lsn <= min)
      this.flushWaiters = this.flushWaiters.filter((w) => w.lsn > min)
      for (const w of ready) w.resolve()
    }
    if (this.backlogWaiters.length > 0 && this.pending.bytes < this.o.maxBacklogBytes) for (const w of this.backlogWaiters.splice(0)) w()
    this.checkBacklogHigh()
    this.metrics?.applied(sink)
    if (sink.durable) this.maybePurge()
  }

  /** WAL retention: segments every durable sink has durably applied go (their applies are synced batches). */
  private maybePurge(): void {
    const durableMin = Math.min(...this.sinks.filter((s) => s.durable).map((s) => s.checkpoint))
    const now = this.o.clock.nowMs()
    if (this.purging || this.verifying > 0 || durableMin < this.purgeAt || now < this.purgeNextMs || this.lifecycle !== 'open') return
    this.purging = true
    this.purgeNextMs = now + PURGE_INTERVAL_MS
    this.purgeInFlight = this.wal
      .purgeThrough(durableMin)
      .then((next) => (this.purgeAt = next))
      .catch((err: unknown) => this.o.logger.warn({ err }, 'segment purge failed; will retry'))
      .finally(() => (this.purging = false))
  }

  private async writeDeadLetter(sink: Sink, record: AppliedRecord, error: unknown): Promise<void> {
    let log = this.deadLetters.get(sink.name)
    if (!log) {
      const opening = (this.sums ? Promise.resolve(this.sums) : createChecksums()).then((sums) => DeadLetterLog.open(this.o.fs, path.join(this.dirPath, 'deadletter'), sink.name, sums, this.o.random.nextU32(), this.o.clock.nowMs()))
      // A log that failed to open (disk full, I/O error) is opened afresh on the next attempt, not failed for ever.
      opening.catch(() => this.deadLetters.get(sink.name) === opening && this.deadLetters.delete(sink.name))
      this.deadLetters.set(sink.name, opening)
      log = opening
    }
    await (await log).append(record.lsn, record.record.type, this.codec.encode(record.record))
    this.o.logger.error({ sink: sink.name, lsn: record.lsn, err: error }, 'record dead-lettered')
    this.metrics?.deadLettered(sink)
    this.emit('dead-letter', { sink: sink.name, lsn: record.lsn, error })
  }

  private checkBacklogHigh(): void {
    const high = this.pending.bytes >= this.o.maxBacklogBytes * BACKLOG_HIGH_RATIO
    if (high && !this.backlogHigh) this.emit('backlog-high', { bytes: this.pending.bytes, maxBytes: this.o.maxBacklogBytes })
    this.backlogHigh = high
  }

  /** G2: after the log failed, nothing more is acknowledged; reopening is the way out. */
  private failClosed(err: WalFailedError): void {
    if (this.lifecycle !== 'open') return
    this.failure = err
    this.lifecycle = 'failed'
    this.wal.poison(err.message, err)
    this.o.logger.error({ err }, 'write-ahead log failed: no more writes are accepted until reopened')
    for (const w of this.backlogWaiters.splice(0)) w()
    this.emit('wal-failed', { error: err })
    this.emit('state', { from: 'open', to: 'failed' })
  }

  private translate(err: unknown): Error {
    if (err instanceof WalFailedError) return new MemwalError('ENGINE_FAILED', err.message, { cause: err })
    if (isMemwalError(err) && err.code === 'WAL_CLOSED') return new MemwalError('ENGINE_CLOSED', 'the engine is closed', { cause: err })
    return err as Error
  }

  private throwIfNotWritable(): void {
    this.throwIfClosed()
    if (this.lifecycle === 'failed') throw new MemwalError('ENGINE_FAILED', `the engine failed and accepts no writes: ${this.failure?.message ?? ''}`, { cause: this.failure })
  }

  private throwIfClosed(): void {
    if (this.lifecycle === 'closed' || this.lifecycle === 'closing') throw new MemwalError('ENGINE_CLOSED', 'the engine is closed')
  }
}

/** The timestamp of the last record in the log, so the clock never goes back across a restart. */
async function lastHlc(wal: Wal): Promise<number> {
  if (wal.lastLsn === 0) return 0
  try {
    for await (const r of wal.read(wal.lastLsn)) return wal.decode(r).hlc ?? 0
  } catch {
    // An unreadable last record was already reported by recovery; the wall clock will do.
  }
  return 0
}

/** Reads what some sink has not applied back from the segments into the pending log. */
async function loadBacklog(wal: Wal, pending: PendingLog, nowMs: number): Promise<void> {
  if (pending.nextLsn > wal.lastLsn) return
  for await (const r of wal.read(pending.nextLsn)) {
    if (r.lsn > pending.nextLsn) pending.skipTo(r.lsn)
    pending.accept(r.lsn, wal.decode(r), pending.copy(r.payload), nowMs)
  }
  if (pending.nextLsn <= wal.lastLsn) pending.skipTo(wal.lastLsn + 1)
}

function checkQuery(q: QueryOptions, l: ResolvedOptions): IndexQuery {
  if (typeof q !== 'object' || q === null) throw invalidValue('query takes an options object')
  const opts = checkPutOptions({ ...(q.namespace !== undefined ? { namespace: q.namespace } : {}), ...(q.tag !== undefined ? { tags: [q.tag] } : {}) }, l)
  if (q.prefix !== undefined && typeof q.prefix !== 'string') throw invalidValue('prefix must be a string')
  return { ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}), ...(opts.tags?.[0] !== undefined ? { tag: opts.tags[0] } : {}), ...(q.prefix !== undefined ? { prefix: q.prefix } : {}) }
}

function entryOf(op: Extract<Op, { type: 'put' }>, lsn: number): StoredEntry {
  return { value: op.value, lsn, ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) }
}

function resultOf(key: string, e: StoredEntry): QueryResult {
  return { key, value: e.value, ...(e.namespace !== undefined ? { namespace: e.namespace } : {}), ...(e.tags ? { tags: e.tags } : {}) }
}


/** Creates the data directory (0700), or says, typed, why it cannot be one: a file in the way, no permission. */
async function makeDataDir(fs: FileSystem, dir: string): Promise<void> {
  for (const d of [dir, path.join(dir, 'wal')]) {
    const st = await fs.stat(d).catch(() => undefined)
    if (st && !st.isDirectory) throw new MemwalError('DIR_NOT_MEMWAL', `${d} exists and is not a directory`, { details: { path: d } })
  }
  try {
    await fs.mkdirp(dir)
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw new MemwalError('PERMISSION_DENIED', `cannot create the data directory ${dir} (${code})`, { cause, details: { path: dir } })
    if (code === 'EEXIST' || code === 'ENOTDIR') throw new MemwalError('DIR_NOT_MEMWAL', `cannot create the data directory ${dir}: a file is in the way (${code})`, { cause, details: { path: dir } })
    throw new MemwalError('IO_ERROR', `cannot create the data directory ${dir}: ${(cause as Error).message}`, { cause, details: { path: dir } })
  }
}

function summarise(r: RecoveryReport): object {
  return { records: r.records, lastLsn: r.lastLsn, findings: r.findings.length }
}

