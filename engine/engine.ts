import { EventEmitter } from 'node:events'
import { posix as path } from 'node:path'
import { assert } from './assert.js'
import { limits } from './limits.js'
import { isMemwalError, MemwalError, WalFailedError } from './errors.js'
import { Applier } from './apply/applier.js'
import type { PendingLog } from './apply/pending-log.js'
import { Backpressure } from './backpressure.js'
import { DeadLetters, type DeadLetterQueue } from './dead-letters.js'
import { FlushWaiters } from './flush.js'
import type { Checksums } from './format/checksum.js'
import type { MemwalEventMap } from './events.js'
import { engineHealth, serviceOf, serviceSources, type EngineHealth, type ServiceStatus } from './health.js'
import { DiskWatch } from './disk-watch.js'
import { HealthLoop } from './health-loop.js'
import { serveHttp, type HttpEndpoint } from './io/http-endpoint.js'
import { Registry } from 'prom-client'
import { HybridClock } from './hlc.js'
import { Lifecycle } from './lifecycle.js'
import { acknowledgeGaps, openGaps, type GapFile } from './log/recovery/gap-record.js'
import type { RecoveryReport } from './log/recovery/wal-recovery.js'
import type { Wal } from './log/wal.js'
import type { ResumePoint } from './log/segment-cursor.js'
import { EngineMetrics } from './metrics.js'
import { assemble, type EngineParts } from './open.js'
import { resolveOptions, type MemwalOptions, type ResolvedOptions } from './options.js'
import { CursorSigner } from './query/cursor.js'
import { ReadPath, type CountOptions, type Entry, type QueryOptions, type QueryPage, type QueryResult } from './read-path.js'
import { gapNotices, verifyOpenLog, type VerifyReport } from './reconcile/verify.js'
import { createSinkPolicy } from './resilience/policy.js'
import { Retention } from './retention.js'
import type { CacheSink } from './sinks/cache-sink.js'
import type { IndexSink } from './sinks/index-sink.js'
import { countedIndexReads, type IndexReads } from './index-reads.js'
import type { BackendSink, Sink } from './sinks/sink.js'
import type { BatchOp, DeleteOptions, PutOptions, ReadOptions } from './validate.js'
import { WritePath } from './write-path.js'
import { VersionGate } from './version-gate.js'
import { clearNamespace, listNamespaces, namespaceStats, type ClearOptions, type ClearResult, type NamespaceCount, type NamespaceListOptions, type NamespacePorts, type StoreStats } from './namespaces.js'
import { createPackr, packValue } from './format/value-codec.js'
import { isExpired } from './format/expiry-key.js'
import { backupStore, type BackupResult } from './backup.js'
import { LogFramesBuilder, openAllWriters, WatchHub, type Change, type LogFrames, type WatchOptions } from './watch.js'
import { exportEntries, importEntries, type ExportOptions, type ExportStream, type ImportOptions, type ImportResult } from './export.js'
import { LevelBackend } from './sinks/level-backend.js'
import { rowSnapshot } from './sinks/level-snapshot.js'
import { namespaceRange } from './format/identity.js'
import { ExpirySweeper } from './expiry-sweep.js'

export type { CountOptions, Entry, QueryOptions, QueryPage, QueryResult } from './read-path.js'

/**
 * memwal: an embeddable storage engine whose write-ahead log is the truth.
 * A write is acknowledged once it is durable in the log (G1); appliers then
 * replicate it to the cache, the index and the backend (G3), and reads merge
 * what is still pending so that a reader sees its own writes even while the
 * backend is down (G4).
 *
 * This class is a facade: the parts are assembled once at open (open.ts) and
 * each job lives in its own module (write-path, read-path, backpressure,
 * flush, retention, dead-letters, health, lifecycle); here they are wired.
 *
 * Events: typed by MemwalEvents (events.ts): `state`, `sink-down`,
 * `sink-recovered`, `backlog-high`, `dead-letter`, `wal-failed`, `disk-low`.
 */
export class MemWAL extends EventEmitter<MemwalEventMap> {
  private readonly o: ResolvedOptions
  private readonly wal: Wal
  private readonly backend: BackendSink
  private readonly index: IndexSink
  /** The index as queries, listNamespaces, stats, clear and the sweep read it: counted toward its health (index-reads.ts). */
  private readonly indexReads: IndexReads
  private readonly cache: CacheSink
  private readonly pending: PendingLog
  private readonly sums: Checksums
  private readonly dirPath: string
  private readonly sinks: readonly Sink[]
  private readonly appliers: readonly Applier[]
  private readonly lifecycle: Lifecycle
  private readonly backpressure: Backpressure
  private readonly writes: WritePath
  private readonly reads: ReadPath
  private readonly flushes: FlushWaiters
  private readonly retention: Retention
  private readonly dead: DeadLetters
  private readonly watches: WatchHub
  /** Deletes expired entries through the log (expiry-sweep.ts): started at open, stopped first at close. */
  private readonly sweeper: ExpirySweeper
  /** Backups in progress: close() waits for them before it closes the store they read. */
  private readonly backups = new Set<Promise<unknown>>()
  private readonly metrics: EngineMetrics | undefined
  private gapFile: GapFile
  private readonly healthLoop: HealthLoop
  private endpoint: HttpEndpoint | undefined
  private readonly disk: DiskWatch
  /** Log payload bytes acknowledged since open: the disk watch's write rate. */
  private writtenBytes = 0
  /** The first sink that halted, and why: until reopened, what needs that sink to take more is refused (haltedRefusal). */
  private halt: { readonly sink: string; readonly error: unknown } | undefined
  /** The state last announced by a `state` event. */
  private announced: ServiceStatus = { state: 'open', level: 'full' }

  private constructor(private readonly parts: EngineParts) {
    super()
    const { config: o, wal, backend, index, cache, pending } = parts
    this.o = o
    this.wal = wal
    this.backend = backend
    this.index = index
    this.cache = cache
    this.pending = pending
    this.sums = parts.sums
    this.dirPath = o.dir
    this.sinks = [backend, index, cache]
    this.lifecycle = new Lifecycle((cause) => this.stateMayHaveChanged(cause))
    const batch = { batchRecordsMax: o.applyBatchRecordsMax, batchBytesMax: o.applyBatchBytesMax, batchOpsMax: limits.applyBatchOpsMax }
    // The cache follows the backend (see Applier): one cursor, one decode, and it never holds what the backend lost.
    // Served on metricsPort without a registry of the caller's: one of memwal's own (never the global one).
    const registry = o.metrics ?? (o.metricsPort !== undefined ? new Registry() : undefined)
    this.metrics = registry ? new EngineMetrics(registry, this) : undefined
    const policy = (sink: Sink) => createSinkPolicy(o.resilience, o.random, o.clock, (to) => this.metrics?.breakerChanged(sink.name, to))
    this.appliers = [
      new Applier(backend, policy(backend), this.applierHost(), batch, [cache], o.resilience.breakerThreshold),
      new Applier(index, policy(index), this.applierHost(), batch, [], o.resilience.breakerThreshold),
    ]
    const hlc = new HybridClock(o.clock)
    hlc.observe(parts.lastHlc)
    const assertWritable = (): void => this.lifecycle.assertWritable()
    this.backpressure = new Backpressure(o, pending, assertWritable, (e) => this.emit('backlog-high', e), () =>
      this.stateMayHaveChanged(this.backpressure.readOnly ? 'backlog full' : 'backlog has room again'),
    )
    // An expired entry is absent to a condition, as to every reader (ifAbsent holds, ifVersion does not), swept yet or not.
    const gate = new VersionGate({
      pending: (id) => {
        const v = pending.latestOp(id)
        return v === undefined ? undefined : v.op.type === 'put' && !isExpired(v.op.expiresAt, o.clock.nowMs()) ? v.lsn : null
      },
      stored: (id) => this.reads.storedVersion(id),
    })
    this.writes = new WritePath({
      config: o, clock: o.clock, wal, pending, codec: parts.codec, hlc, backpressure: this.backpressure, gate, metrics: this.metrics, assertWritable,
      written: (bytes) => {
        this.writtenBytes += bytes
        for (const a of this.appliers) a.notify()
        this.watches.committed()
      },
    })
    const backendApplier = this.appliers[0] as Applier
    this.indexReads = countedIndexReads(index, this.appliers[1] as Applier, (code) => this.metrics?.readFailed('index', code))
    this.reads = new ReadPath({
      config: o, wal, pending, cache, backend, index: this.indexReads, signer: new CursorSigner(parts.cursorSecret),
      readBackend: (fn) => backendApplier.read(fn),
      assertReadable: () => this.lifecycle.assertReadable(),
      metrics: this.metrics,
    })
    this.sweeper = new ExpirySweeper({
      clock: o.clock,
      config: o.sweep,
      watches: this.writes.watches,
      expired: (nowMs) => this.indexReads.expired(nowMs),
      currentMany: (ids) => this.reads.currentMany(ids),
      deleteUnchanged: (ids, watch) => this.writes.deleteUnchanged(ids, watch),
      // Reported, not raised: the next round tries again (a down backend or index, a read-only or closing engine).
      failed: (err) => {
        // Read-only or closing refuse the sweep's append as they refuse any write: expected, not worth a warning each round.
        const expected = isMemwalError(err) && (err.code === 'ENGINE_READ_ONLY' || err.code === 'ENGINE_CLOSED')
        o.logger[expected ? 'debug' : 'warn']({ err }, 'expiry sweep round failed; the next round tries again')
      },
    })
    this.flushes = new FlushWaiters(o.clock)
    this.retention = new Retention(wal, o.clock, o.logger)
    this.disk = new DiskWatch({ fs: o.fs, dir: o.dir, lowBytes: o.diskLowBytes, lowSeconds: o.diskLowSeconds, readOnlyBytes: o.diskReadOnlyBytes })
    this.healthLoop = new HealthLoop(o.clock, o.healthIntervalMs, (stop) => this.checkHealth(stop))
    this.dead = new DeadLetters(o.dir, o.fs, parts.sums, parts.codec, o.clock, o.random, {
      rewrite: async (record, conditions) => (await this.writes.rewrite(record, conditions)).lsn,
      currentLsn: async (namespace, key) => (await this.reads.getEntry(key, { namespace }))?.version,
      assertWritable,
    })
    this.gapFile = parts.gaps
    this.watches = new WatchHub({
      codec: parts.codec,
      committedLsn: () => pending.nextLsn - 1,
      pendingFirstLsn: () => pending.firstLsn,
      pendingFrame: (lsn) => pending.frameAt(lsn),
      readLog: (from, to, maxBytes, resume) => this.retention.holding(() => readChangesFrom(wal, from, to, maxBytes, resume)),
    }, o, o.watchHistoryRecords)
    // The store's group sync made more of the sinks' applies durable: retention may free what they cover.
    parts.store.onGroupSync({
      synced: () => this.mayPurge(),
      failed: (err) => o.logger.warn({ err }, 'syncing the LevelDB store failed; the next round tries again (log segments are kept until it succeeds)'),
      lost: (err) => this.failClosed(new WalFailedError(err.message, err)),
    })
  }

  /**
   * Opens (or creates) a data directory: lock, read each sink's checkpoint,
   * recover the log (verifying it from the lowest checkpoint), rebuild the
   * pending overlay, start the appliers. Resolves when writes are accepted.
   */
  static async open(options: MemwalOptions): Promise<MemWAL> {
    const config = resolveOptions(options)
    const started = config.clock.nowMs()
    let engine: MemWAL | undefined
    const parts = await assemble(config, (err) => engine?.failClosed(err))
    engine = new MemWAL(parts)
    engine.metrics?.opened((config.clock.nowMs() - started) / 1000, parts.pending.records)
    for (const a of engine.appliers) a.start()
    engine.healthLoop.start()
    engine.sweeper.start()
    if (config.metricsPort !== undefined) {
      try {
        engine.endpoint = await engine.serve(config.metricsHost, config.metricsPort)
      } catch (err) {
        await engine.close()
        throw err
      }
    }
    // The first look at the disk before open resolves, not one interval later: a store opened on a nearly full disk
    // is read-only (ENGINE_READ_ONLY) from its first write on, and health().disk says so at once.
    await engine.checkDisk()
    config.logger.info({ dir: config.dir, recovery: summarise(parts.wal.recovery) }, 'memwal open')
    return engine
  }

  /**
   * The records a sink rejected for good (dead letters): `list()` the open
   * ones, `retry(lsn | 'all')` writes each again through the log (after the
   * sink was fixed), `drop(lsn | 'all')` records that it is not to be applied.
   * Open ones are reported by `verify()` and `memwal fsck` as notices.
   */
  get deadLetters(): DeadLetterQueue {
    return this.dead
  }

  /** The data directory. */
  get dir(): string {
    return this.dirPath
  }

  /** Where GET /metrics and GET /health are served (with `metricsPort`), or undefined. */
  get metricsAddress(): { readonly host: string; readonly port: number } | undefined {
    return this.endpoint ? { host: this.endpoint.host, port: this.endpoint.port } : undefined
  }

  /** What recovery found and did at open. */
  get recovery(): RecoveryReport {
    return this.wal.recovery
  }

  // ---- writes ----

  /**
   * Stores `value` under (namespace, key) (namespace `default` when not given:
   * `put(k, v)` and `put(k, v, { namespace: 'default' })` are the same entry).
   * Resolves with the LSN that wrote it, once durable: the entry's version.
   */
  put(key: string, value: unknown, options?: PutOptions): Promise<{ lsn: number }> {
    return this.writes.put(key, value, options)
  }

  /** Deletes (namespace, key); the namespace is `default` when not given. */
  delete(key: string, options?: DeleteOptions): Promise<{ lsn: number }> {
    return this.writes.delete(key, options)
  }

  /** Atomic: after any crash either every operation is visible or none (one record, one frame). */
  batch(ops: readonly BatchOp[]): Promise<{ lsn: number }> {
    return this.writes.batch(ops)
  }

  /**
   * Deletes every entry of `namespace` (keys with `prefix`, if given) through
   * the log: one record, applied atomically by every sink, when the deletes
   * fit in one; more for a larger namespace (namespaces.ts says how and why
   * every entry written before the call goes).
   */
  async clear(options: ClearOptions): Promise<ClearResult> {
    this.lifecycle.assertWritable()
    return clearNamespace({ index: this.indexReads, pending: this.pending, config: this.o, batch: (ops) => this.writes.batch(ops) }, options)
  }

  // ---- reads ----

  /**
   * The value stored under `key`, or undefined. Pending writes first (G4),
   * then the cache, then the backend. When the backend cannot answer and the
   * key is neither pending nor cached, rejects with ENGINE_BACKEND_UNAVAILABLE:
   * it never guesses "not found".
   */
  get(key: string, options?: ReadOptions): Promise<unknown> {
    return this.reads.get(key, options)
  }

  /** Like get, with namespace, key, tags, version (the LSN that wrote it), createdAt, updatedAt and expiresAt. */
  getEntry(key: string, options?: ReadOptions): Promise<Entry | undefined> {
    return this.reads.getEntry(key, options)
  }

  /**
   * Entries matching every criterion given (README, "Queries"), in identity
   * order (namespace, then key; reversed with `reverse`), at most `limit`
   * (default 1,000), continuing after `cursor`: the index (with PgBackend,
   * PostgreSQL: every writer's entries), merged with pending puts and
   * deletes so that those show at once. An unknown field or a wrong type is
   * INVALID_OPTIONS naming the field.
   */
  query(q: QueryOptions = {}): AsyncGenerator<QueryResult> {
    return this.reads.query(q)
  }

  /** One page of a query and, when more may follow, the cursor that continues it (signed by this store: QUERY_INVALID_CURSOR otherwise). */
  queryPage(q: QueryOptions = {}): Promise<QueryPage> {
    return this.reads.queryPage(q)
  }

  /** How many entries match a query's criteria: from the index (or, with a backend several writers share, the backend) and the pending overlay, without reading values. */
  count(q: CountOptions = {}): Promise<number> {
    return this.reads.count(q)
  }

  /**
   * Committed changes in log order, after `fromVersion` (default: from now
   * on), optionally only one namespace's or keys with a prefix: an async
   * iterator each consumer reads at its own pace (writers never wait for it).
   * History that retention deleted is HISTORY_PURGED (details.oldestVersion).
   * `break`, `return()` or close() ends it.
   */
  watch(options?: WatchOptions): AsyncIterableIterator<Change> {
    this.lifecycle.assertReadable()
    if (options !== undefined && options !== null && typeof options === 'object' && (options.allWriters === true || options.resumeToken !== undefined)) {
      return openAllWriters(options, this.backend.allWritersFeed?.bind(this.backend), this.o)
    }
    return this.watches.open(options)
  }

  /**
   * Copies the store, live, into `target` (a new or empty directory): a data
   * directory holding every write acknowledged up to the returned `version`
   * (backup.ts says how, without stopping writes). `memwal restore` (or a
   * copy) brings it back; `MemWAL.open` opens it as it is.
   */
  async backup(target: string): Promise<BackupResult> {
    this.lifecycle.assertReadable()
    const o = this.o
    const running = backupStore({
      fs: o.fs, random: o.random, dir: this.dirPath, store: this.parts.store, externalBackend: o.backend !== undefined,
      committedLsn: () => this.pending.nextLsn - 1,
      logExtent: () => this.wal.extent,
      holding: (fn) => this.retention.holding(fn),
      locker: o.locker,
    }, target)
    this.backups.add(running)
    try {
      return await running
    } finally {
      this.backups.delete(running)
    }
  }

  /**
   * The namespaces holding entries, with how many each (pending writes
   * included), in namespace order: all, or `prefix` and those under it.
   * Costs one keys-only pass over the index's range.
   */
  listNamespaces(options?: NamespaceListOptions): Promise<NamespaceCount[]> {
    this.lifecycle.assertReadable()
    return listNamespaces(this.namespacePorts(), options)
  }

  /**
   * Entries and bytes per namespace (all, or `prefix` and those under it),
   * and in all: `bytes` are the values' bytes as stored (the value codec's
   * msgpack, as the log and the backend hold it; keys, tags and metadata not
   * counted). As reads see it: pending writes included, expired entries not.
   * From the index (each entry's size is kept there at apply), in the same
   * one pass as listNamespaces; an entry indexed before sizes were kept has
   * its value read from the backend (`sizedFromRows` says how many).
   */
  stats(options?: NamespaceListOptions): Promise<StoreStats> {
    this.lifecycle.assertReadable()
    return namespaceStats(this.namespacePorts(), options)
  }

  /**
   * The store's entries (or one namespace's) as one version, as a stream:
   * ndjson lines (strings) or msgpack frames (Buffers), header first (its
   * `version`), then one record per entry in (namespace, key) order, then an
   * end record; `.version` is the header's (this process's committed LSN at the call). The snapshot is
   * taken by this call (over PostgreSQL, started by it: export.ts says why the entries are still those
   * of the version); writes go on meanwhile and are not in it. A backend of one's own without
   * exportSnapshot is EXPORT_UNSUPPORTED; a snapshot that cannot be read whole (a reopen of the
   * store's LevelDB after a failed write, a PostgreSQL failure) ends it with EXPORT_INTERRUPTED.
   */
  export(options?: ExportOptions): ExportStream {
    this.lifecycle.assertReadable()
    const backend = this.backend
    return exportEntries({
      config: this.o, pending: this.pending, sums: this.sums,
      committedLsn: () => this.pending.nextLsn - 1,
      nowMs: () => this.o.clock.nowMs(),
      assertReadable: () => this.lifecycle.assertReadable(),
      snapshot: (namespace) => {
        if (backend instanceof LevelBackend && this.o.backend === undefined) return { kind: 'level', rows: rowSnapshot(this.parts.store, namespace === undefined ? {} : namespaceRange(namespace)) }
        return backend.exportSnapshot === undefined ? undefined : { kind: 'async', rows: backend.exportSnapshot(namespace) }
      },
      holdBackendAt: (lsn) => this.applierOf(backend).holdAt(lsn),
    }, options)
  }

  /**
   * Writes an export stream (from `export`, a file, any iterable of chunks)
   * into this store through the log, in batches of puts, each atomic.
   * IMPORT_INVALID names the line or byte offset of a bad or truncated
   * stream; the batches before the one it falls in stay written.
   */
  import(source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>, options?: ImportOptions): Promise<ImportResult> {
    this.lifecycle.assertWritable()
    return importEntries(
      {
        config: this.o,
        sums: this.sums,
        keysMayHoldNul: this.o.backend?.keysMayHoldNul !== false,
        batch: (ops) => this.writes.batch(ops),
        put: (op) => this.writes.put(op.key, op.value, { ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags !== undefined ? { tags: op.tags } : {}), ...(op.expiresAt !== undefined ? { expiresAt: op.expiresAt } : {}) }),
      },
      source,
      options,
    )
  }

  // ---- verify ----

  /**
   * The reconciler on the open engine (DESIGN.md §8): verifies every segment
   * and frame, and that the backend, the index and the cache agree with the
   * log where their checkpoints say they should. With `repair`, wrong backend
   * keys are re-applied from the log, the index is rebuilt from the backend
   * and stale cache entries are dropped (the appliers pause meanwhile). Damage
   * in the log itself is reported; repairing it takes `memwal fsck --repair`
   * on a closed directory. After a sink halted, a repair is SINK_HALTED (it
   * would write past the halt); without repair the report names the halted
   * sink (`sink-halted`).
   */
  async verify(options: { readonly repair?: boolean } = {}): Promise<VerifyReport> {
    this.lifecycle.assertReadable()
    // A repair would write into a sink past its halt (into a PostgreSQL schema made again under this writer, say).
    if (options.repair === true && this.halt) throw this.haltedRefusal('verify with repair writes into the sinks')
    // Retention must not delete a segment under the scan: no purge starts meanwhile, and one in progress is waited for.
    return this.retention.holding(() => {
      const wal = this.wal
      return verifyOpenLog({
        fs: this.o.fs, sums: this.sums, walDir: path.join(this.dirPath, 'wal'),
        backend: this.backend, index: this.index, cache: this.cache, repair: options.repair === true, clock: this.o.clock,
        notices: gapNotices(openGaps(this.gapFile)),
        halted: this.halt ? [{ kind: 'sink-halted', sink: this.halt.sink, lsnFirst: (this.sinks.find((s) => s.name === this.halt?.sink)?.checkpoint ?? 0) + 1, detail: `halted: ${this.haltReason()}; it applies nothing more until the engine is reopened`, action: 'none' }] : [],
        dataDir: this.dirPath,
        live: {
          activeSegment: wal.activeSegment,
          lastLsn: wal.lastLsn,
          lastLsnNow: () => wal.lastLsn,
          pendingKeys: () => this.pending.keys(),
          readAfter: (lsn) => wal.read(lsn + 1),
          pause: async () => {
            await Promise.all(this.appliers.map((a) => a.pause()))
            return () => {
              for (const a of this.appliers) a.resume()
            }
          },
        },
      })
    })
  }

  // ---- flush, health, close ----

  /**
   * Resolves when every sink has applied everything acknowledged before the call. SINK_HALTED once a sink halted
   * (waiting then, or called after): it would never apply more until the engine is reopened.
   */
  async flush(options: { readonly timeoutMs?: number } = {}): Promise<void> {
    this.lifecycle.assertReadable()
    // The halted sink's checkpoint never moves again in this process: waiting would be for ever.
    if (this.halt) throw this.haltedRefusal('flush cannot complete')
    const target = this.wal.lastLsn
    if (this.minCheckpoint() >= target) {
      // A sink's checkpoint moves a few promise hops before its applier reports it (advanced): trim now, so the backlog reads empty.
      this.pending.trimThrough(this.minCheckpoint())
      return
    }
    await this.flushes.wait(target, options.timeoutMs, () => this.health() as unknown as Record<string, unknown>)
  }

  /**
   * Maintenance: `true` refuses every write with ENGINE_READ_ONLY (reads are
   * served, the appliers go on draining the backlog) until `setReadOnly(false)`.
   * The state becomes `read-only` with `reason`, and a `state` event says so.
   */
  setReadOnly(readOnly: boolean, reason = 'maintenance'): void {
    this.lifecycle.assertReadable()
    if (typeof readOnly !== 'boolean') throw new MemwalError('INVALID_OPTIONS', `setReadOnly takes true or false, not ${String(readOnly)}`)
    if (typeof reason !== 'string') throw new MemwalError('INVALID_OPTIONS', `setReadOnly's reason must be a string, not ${typeof reason}`)
    this.lifecycle.setReadOnly('forced', readOnly ? reason : undefined)
  }

  health(): EngineHealth {
    return engineHealth({
      lifecycle: this.lifecycle.state,
      readOnlyReason: this.readOnlyReason(),
      wal: this.wal,
      pending: this.pending,
      maxBacklogBytes: this.o.maxBacklogBytes,
      cache: this.cache,
      cacheBytes: this.o.cacheBytes,
      sinks: this.sinks.map((sink) => ({ sink, applier: this.applierOf(sink) })),
      nowMs: this.o.clock.nowMs(),
      gaps: openGaps(this.gapFile),
      disk: this.disk.status,
    })
  }

  /**
   * Acknowledges every declared gap (LSNs recovery or `fsck --repair`
   * dropped): they leave `health().gaps`, `memwal status` and fsck's notices.
   * The record of them stays in `gaps.json`. Resolves how many were acknowledged.
   */
  async acknowledgeGaps(): Promise<number> {
    this.lifecycle.assertReadable()
    const { acknowledged, file } = await acknowledgeGaps(this.o.fs, this.dirPath, this.o.clock.nowMs())
    this.gapFile = file
    return acknowledged
  }

  /**
   * Stops the appliers (waiting up to closeGraceMs for a call in progress),
   * closes the sinks and the log, releases the lock. Unapplied records stay in
   * the log and are applied after the next open.
   */
  async close(): Promise<void> {
    if (!this.lifecycle.beginClose()) return
    this.backpressure.wakeAll()
    // First: a round in progress ends (its append refused as the engine closes) before the log and the sinks close under it.
    await this.sweeper.stop(this.o.closeGraceMs)
    this.watches.close()
    // What they wait for stays in the log and is applied after the next open; they must not wait for ever.
    this.flushes.failAll(new MemwalError('ENGINE_CLOSED', 'the engine closed before flush completed; the records stay in the log'))
    // A purge deleting segments must end before the lock is released: the next opener's recovery scan must not see a segment vanish.
    await this.retention.settled()
    await Promise.allSettled([...this.backups])
    await this.healthLoop.stop()
    await this.endpoint?.close()
    await this.wal.close().catch((err: unknown) => this.o.logger.error({ err }, 'closing the log failed'))
    await Promise.all(this.appliers.map((a) => a.stop(this.o.closeGraceMs)))
    for (const s of this.sinks) await s.close().catch((err: unknown) => this.o.logger.error({ err, sink: s.name }, 'closing a sink failed'))
    await this.dead.close()
    await this.parts.store.close().catch((err: unknown) => this.o.logger.error({ err }, 'closing the store failed'))
    this.metrics?.unregister()
    await this.parts.lock.release().catch(() => undefined)
    this.lifecycle.endClose()
  }

  // ---- internals ----

  private namespacePorts(): NamespacePorts {
    const backend = this.backend
    const packr = createPackr()
    return {
      index: this.indexReads, pending: this.pending, config: this.o,
      nowMs: () => this.o.clock.nowMs(),
      storedValueBytes: async (ids) => {
        try {
          return await (this.appliers[0] as Applier).read(async () => {
            const out: number[] = []
            for (const id of ids) {
              const e = await backend.get(id)
              out.push(e === undefined ? 0 : packValue(packr, e.value).length)
            }
            return out
          })
        } catch (cause) {
          throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `stats reads the values of entries indexed before sizes were kept, and the backend cannot answer: ${(cause as Error).message}`, { cause, transient: true })
        }
      },
    }
  }

  /**
   * The health loop's check: probe the sinks that are idle and due, look at the disk, then decide the state again.
   * `stop`: the engine is closing; a probe still waiting is abandoned (a hung sink must not hold the close).
   */
  private async checkHealth(stop: AbortSignal): Promise<void> {
    if (!this.lifecycle.isOpen) return
    await Promise.all([...this.appliers.map((a) => a.probeIfDue(this.o.healthIntervalMs, stop)), this.checkDisk()])
    if (stop.aborted) return
    this.stateMayHaveChanged('health check')
  }

  /** Samples the disk: `disk-low` when it crosses below the threshold, read-only while below diskReadOnlyBytes. */
  private async checkDisk(): Promise<void> {
    let sample
    try {
      sample = await this.disk.sample(this.o.clock.nowMs(), this.writtenBytes)
    } catch (err) {
      this.o.logger.warn({ err }, 'cannot read the free space of the data directory\'s disk')
      return
    }
    if (!sample || !this.lifecycle.isOpen) return
    const d = sample.status
    if (sample.becameLow) {
      this.o.logger.warn({ freeBytes: d.freeBytes, secondsToFull: d.secondsToFull }, 'disk low')
      this.emit('disk-low', {
        freeBytes: d.freeBytes, totalBytes: d.totalBytes, thresholdBytes: this.o.diskLowBytes,
        ...(d.secondsToFull !== undefined ? { secondsToFull: d.secondsToFull } : {}),
      })
    }
    this.lifecycle.setReadOnly('disk', d.readOnly ? `disk nearly full: free space below diskReadOnlyBytes ${this.o.diskReadOnlyBytes}` : undefined)
  }

  private async serve(host: string, port: number): Promise<HttpEndpoint> {
    const metrics = this.metrics
    assert(metrics !== undefined, 'metricsPort gives the engine a registry')
    try {
      return await serveHttp(host, port, {
        '/metrics': async () => ({ status: 200, contentType: metrics.contentType, body: await metrics.text() }),
        '/health': async () => {
          const h = this.health()
          return { status: h.state === 'failed' || h.state === 'closed' ? 503 : 200, contentType: 'application/json', body: `${JSON.stringify(h)}\n` }
        },
      })
    } catch (cause) {
      throw new MemwalError('INVALID_OPTIONS', `cannot serve metrics on ${host}:${port}: ${(cause as Error).message}`, { cause, details: { host, port } })
    }
  }

  private readOnlyReason(): string | undefined {
    return this.lifecycle.readOnlyReason ?? this.backpressure.readOnlyReason
  }

  /**
   * Something that decides the state changed (`cause` says what): if the
   * state, the level or the reason did, one `state` event says from, to, the
   * level and why (degraded -> degraded when only the level or the reason
   * changed: a caller serving by level must hear that reads narrowed). Nothing
   * while closing: the one event of a close comes when it has ended.
   */
  private stateMayHaveChanged(cause: string): void {
    if (this.lifecycle.state.kind === 'closing') return
    const now = serviceOf(serviceSources({
      lifecycle: this.lifecycle.state,
      readOnlyReason: this.readOnlyReason(),
      sinks: this.sinks.map((sink) => ({ sink, applier: this.applierOf(sink) })),
    }))
    const before = this.announced
    this.announced = now
    if (now.state === before.state && now.level === before.level && now.reason === before.reason) return
    this.o.logger.info({ from: before.state, to: now.state, level: now.level, cause }, 'memwal state')
    this.emit('state', { from: before.state, to: now.state, level: now.level, reason: now.reason ?? cause })
  }

  private applierHost(): ConstructorParameters<typeof Applier>[2] {
    return {
      clock: this.o.clock,
      ackedLsn: () => this.pending.nextLsn - 1,
      pending: (lsn) => this.pending.recordAt(lsn),
      advanced: (sink) => this.advanced(sink),
      deadLetter: async (sink, record, error) => {
        await this.dead.append(sink, record)
        this.o.logger.error({ sink: sink.name, lsn: record.lsn, err: error }, 'record dead-lettered')
        this.metrics?.deadLettered(sink)
        this.emit('dead-letter', { sink: sink.name, lsn: record.lsn, error })
      },
      applyFailed: (sink, failure) => this.metrics?.applyFailed(sink, failure),
      halted: (sink, error) => {
        if (this.halt) return // the first halt is the one named; the engine is read-only already
        this.halt = { sink: sink.name, error }
        this.o.logger.error({ sink: sink.name, err: error }, 'sink halted: no more writes are accepted until reopened')
        this.lifecycle.setReadOnly('halted', this.haltReason())
        this.backpressure.wakeAll() // writes waiting for backlog room would wait for ever: each sees the refusal
        this.flushes.failAll(this.haltedRefusal('flush cannot complete')) // so would flushes (and they hold the process)
      },
      retried: (sink) => this.metrics?.retried(sink),
      sinkHealth: (sink, down, error) => {
        this.o.logger.warn({ sink: sink.name, err: error }, down ? 'sink down' : 'sink recovered')
        if (down) this.emit('sink-down', { sink: sink.name, ...(error !== undefined ? { error } : {}) })
        else this.emit('sink-recovered', { sink: sink.name })
        this.stateMayHaveChanged(down ? `sink ${sink.name} down` : `sink ${sink.name} recovered`)
      },
    }
  }

  /** `sink NAME halted (CODE): message`, for the read-only reason and each refusal. */
  private haltReason(): string {
    const error = this.halt?.error
    return `sink ${this.halt?.sink ?? '?'} halted (${haltCode(error)}): ${(error as Error | undefined)?.message ?? String(error)}`
  }

  /** SINK_HALTED: `what` needs the halted sink to take more, which it will not until the engine is reopened. */
  private haltedRefusal(what: string): MemwalError {
    return new MemwalError('SINK_HALTED', `${what}: ${this.haltReason()}; the engine is read-only until reopened`, {
      details: { sink: this.halt?.sink, haltCode: haltCode(this.halt?.error) },
      cause: this.halt?.error,
    })
  }

  private applierOf(sink: Sink): Applier {
    const a = this.appliers.find((x) => x.sink === sink || x.followers.includes(sink))
    assert(a !== undefined, 'every sink has an applier')
    return a
  }

  private minCheckpoint(): number {
    return Math.min(...this.sinks.map((s) => s.checkpoint))
  }

  /** A sink's checkpoint moved: what every sink applied leaves the backlog; flushes, waiting writes and retention look again. */
  private advanced(sink: Sink): void {
    const min = this.minCheckpoint()
    this.pending.trimThrough(min)
    this.flushes.reached(min)
    this.backpressure.released()
    this.metrics?.applied(sink)
    if (sink.durable) this.mayPurge()
  }

  /**
   * Retention looks again: through what every durable sink applied durably
   * (its durableCheckpoint: for LevelDB's group-synced applies, what the
   * store's last sync covered), less the history watches still need
   * (watchHistoryRecords, open watches).
   */
  private mayPurge(): void {
    if (!this.lifecycle.isOpen) return
    this.retention.maybePurge(Math.min(this.watches.purgeableThrough(), ...this.sinks.filter((s) => s.durable).map((s) => s.durableCheckpoint)))
  }

  /** G2: after the log failed, nothing more is acknowledged; reopening is the way out. */
  private failClosed(err: WalFailedError): void {
    this.lifecycle.fail(err, () => {
      this.wal.poison(err.message, err)
      this.o.logger.error({ err }, 'write-ahead log failed: no more writes are accepted until reopened')
      this.backpressure.wakeAll()
      this.emit('wal-failed', { error: err })
    })
  }
}

/**
 * Records `from`..`to` from the segments for a watcher: at least one, then
 * while the payloads stay within `maxBytes`. HISTORY_PURGED when retention
 * deleted `from` (the caller holds purges off meanwhile).
 */
async function readChangesFrom(wal: Wal, from: number, to: number, maxBytes: number, resume: ResumePoint | undefined): Promise<LogFrames> {
  const oldest = (await wal.segments())[0]?.baseLsn ?? wal.lastLsn + 1
  if (from < oldest) {
    throw new MemwalError('HISTORY_PURGED', `changes after version ${from - 1} are no longer in the log; the oldest still there is ${oldest}`, {
      details: { fromVersion: from - 1, oldestVersion: oldest },
    })
  }
  const frames = new LogFramesBuilder()
  let next: ResumePoint | undefined
  read: for await (const segment of wal.readSegments(from, to, resume)) {
    for (const r of segment) {
      frames.add(r.lsn, r.type, r.payload)
      next = { lsn: r.lsn + 1, segment: segment.segment, offset: segment.next }
      if (frames.payloadBytes >= maxBytes) break read
    }
    frames.endRegion() // before the next segment is read: this one's buffer can go
  }
  // Still encoded: the watch decodes each record as its consumer reaches it (watch.ts, LogFrames).
  return frames.finish(next)
}

function summarise(r: RecoveryReport): object {
  return { records: r.records, lastLsn: r.lastLsn, findings: r.findings.length }
}

/** A halt's error code (a sink's own error may carry none). */
function haltCode(error: unknown): string {
  return (error as { code?: string } | undefined)?.code ?? 'SINK_APPLY_FAILED'
}
