import { InvalidOptionsError } from './errors.js'
import { refuseUnknown } from './option-fields.js'
import type { Clock } from './io/clock.js'
import { noDirLocker, type DirLocker } from './io/dir-lock.js'
import type { FileSystem } from './io/fs.js'
import { silentLogger, type Logger } from './io/logger.js'
import type { Random } from './io/random.js'
import type { CorruptionPolicy } from './log/recovery/wal-recovery.js'
import { resilienceDefaults, type ResilienceConfig } from './resilience/policy.js'
import type { BackendSink } from './sinks/sink.js'
import type { Durability } from './log/wal-writer.js'
import { resolveWalConfig, type WalConfig } from './log/wal.js'
import type { Registry } from 'prom-client'
import { resolveSweep, type ResolvedSweep } from './expiry-options.js'
import { limits } from './limits.js'
import type { StoreSyncConfig } from './sinks/store-sync.js'

export interface MemwalOptions {
  /** The data directory (created 0700 if missing). */
  readonly dir: string
  /** `sync` (default): acknowledged once durable. See Durability. */
  readonly durability?: Durability
  readonly syncIntervalMs?: number
  readonly segmentBytes?: number
  readonly recordBytesMax?: number
  readonly corruptionPolicy?: CorruptionPolicy
  /** Log groups up to this many bytes are written on the calling thread (0: never; default 8 KiB). */
  readonly inlineWriteBytesMax?: number
  /** Key length in UTF-8 bytes (default 1 KiB). */
  readonly keyBytesMax?: number
  /** Namespace and each tag, UTF-8 bytes (default 256). */
  readonly labelBytesMax?: number
  /** Tags per record (default 64). */
  readonly tagsMax?: number
  /** Operations in one batch (default 10,000). */
  readonly batchOpsMax?: number
  /** Acknowledged but not yet applied everywhere, in payload bytes (default 64 MiB). */
  readonly maxBacklogBytes?: number
  /** At the backlog limit: `reject` (default) with ENGINE_BACKLOG_FULL, or `wait` up to `backlogWaitMsMax`. */
  readonly backlogPolicy?: 'reject' | 'wait'
  readonly backlogWaitMsMax?: number
  /** In-memory cache size in bytes (default 32 MiB). */
  readonly cacheBytes?: number
  /** Records per apply batch (default 1,024) and bytes (default 1 MiB). */
  readonly applyBatchRecordsMax?: number
  readonly applyBatchBytesMax?: number
  /**
   * Group sync of the LevelDB store: apply batches are written unsynced, and
   * the store is synced storeSyncIntervalMs (default 100 ms, in [1 ms, 60 s])
   * after the first unsynced write, or as soon as storeSyncBytes (default
   * 4 MiB, in [4 KiB, 1 GiB]) were written, whichever comes first. Log
   * segments are purged only through what a completed sync made durable.
   */
  readonly storeSyncIntervalMs?: number
  readonly storeSyncBytes?: number
  /** Retry, breaker and timeout per sink. */
  readonly resilience?: Partial<ResilienceConfig>
  /** Replaces the LevelDB backend (the index stays in the local LevelDB store). */
  readonly backend?: BackendSink
  /**
   * The abstract-level database for the backend and the index, instead of
   * LevelDB at `<dir>/store` (utf8 keys, 'view' values): memory-level in
   * simulations. memwal opens and closes it.
   */
  readonly level?: import('./sinks/level-store.js').LevelDatabase
  /** Wraps each sink before use (fault injection in tests, instrumentation). */
  readonly wrapSink?: <S extends import('./sinks/sink.js').Sink>(sink: S) => S
  readonly logger?: Logger
  /** prom-client registry to register memwal's metrics on (never the global one). */
  readonly metrics?: Registry
  /** How long `close()` waits for a sink call in progress (default 5 s). */
  readonly closeGraceMs?: number
  /**
   * The health loop's period (default 10 s, on the injected clock): each time
   * it probes a sink whose breaker is open (the half-open probe) or that
   * nothing used for this long (a cheap read), and re-decides the state.
   */
  readonly healthIntervalMs?: number
  /**
   * The disk, looked at on each health check (when the filesystem can say):
   * a `disk-low` event when free space falls below diskLowBytes (default
   * 1 GiB) or would run out within diskLowSeconds (default 1 h) at the recent
   * write rate; writes are refused (ENGINE_READ_ONLY) while free space is
   * below diskReadOnlyBytes (default twice segmentBytes, at most
   * diskLowBytes; 0 never), before the log meets ENOSPC.
   */
  readonly diskLowBytes?: number
  readonly diskLowSeconds?: number
  readonly diskReadOnlyBytes?: number
  /**
   * Serve `GET /metrics` (Prometheus text, from `metrics` or a registry of
   * memwal's own) and `GET /health` (health() as JSON; 503 once failed or
   * closed) on this port (0: any free one, see `metricsAddress`). Off unless set.
   */
  readonly metricsPort?: number
  /** The address to bind (default 127.0.0.1: loopback only). */
  readonly metricsHost?: string
  /**
   * History the log keeps for `watch` beyond what the sinks need: retention
   * never deletes a segment holding one of the last this many records
   * (default 0), so a consumer reconnecting within that window resumes
   * without HISTORY_PURGED. An open watch also holds back the records it has
   * not read yet, up to limits.watchHoldRecordsMax behind the last one.
   */
  readonly watchHistoryRecords?: number
  /**
   * The expiry sweep (expiry-sweep.ts), on the injected clock: a round every
   * sweepIntervalMs (default 1 s, in [10 ms, 1 h]) deletes, through the log,
   * up to sweepEntriesPerRound expired entries (default 10,000; the next round
   * follows at once when more are left), in logged batches of sweepBatchOps
   * deletes (default 256, at most batchOpsMax).
   */
  readonly sweepIntervalMs?: number
  readonly sweepEntriesPerRound?: number
  readonly sweepBatchOps?: number
  readonly fs?: FileSystem
  readonly clock?: Clock
  readonly random?: Random
  readonly locker?: DirLocker
}

/** The engine's configuration: every option resolved and checked once, at open, then frozen. */
export interface ResolvedOptions {
  /** The data directory, absolute. */
  readonly dir: string
  /** The log's own configuration (its lock left to the engine, which takes it before anything else). */
  readonly wal: WalConfig
  readonly keyBytesMax: number
  readonly labelBytesMax: number
  readonly tagsMax: number
  readonly batchOpsMax: number
  readonly maxBacklogBytes: number
  readonly backlogPolicy: 'reject' | 'wait'
  readonly backlogWaitMsMax: number
  readonly cacheBytes: number
  readonly applyBatchRecordsMax: number
  readonly applyBatchBytesMax: number
  /** The LevelDB store's group sync cadence (storeSyncIntervalMs, storeSyncBytes). */
  readonly storeSync: StoreSyncConfig
  readonly resilience: ResilienceConfig
  readonly backend: BackendSink | undefined
  readonly level: import('./sinks/level-store.js').LevelDatabase | undefined
  readonly wrapSink: MemwalOptions['wrapSink']
  readonly logger: Logger
  readonly metrics: Registry | undefined
  readonly closeGraceMs: number
  readonly healthIntervalMs: number
  readonly diskLowBytes: number
  readonly diskLowSeconds: number
  readonly diskReadOnlyBytes: number
  readonly metricsPort: number | undefined
  readonly metricsHost: string
  readonly watchHistoryRecords: number
  readonly sweep: ResolvedSweep
  readonly fs: FileSystem
  readonly clock: Clock
  readonly random: Random
  /** The data directory lock, taken by the engine at open. */
  readonly locker: DirLocker
}

/** Every default, written once. */
export const engineDefaults = Object.freeze({
  keyBytesMax: 1024,
  labelBytesMax: 256,
  tagsMax: 64,
  batchOpsMax: 10_000,
  maxBacklogBytes: 64 * 1024 * 1024,
  backlogWaitMsMax: 10_000,
  cacheBytes: 32 * 1024 * 1024,
  applyBatchRecordsMax: 1024,
  applyBatchBytesMax: 1024 * 1024,
  storeSyncIntervalMs: 100,
  storeSyncBytes: 4 * 1024 * 1024,
  closeGraceMs: 5_000,
  healthIntervalMs: 10_000,
  diskLowBytes: 1024 * 1024 * 1024,
  diskLowSeconds: 3600,
})

/** Every option MemwalOptions has: a name not here is refused, never ignored (the type keeps the two in step). */
const OPTION_NAMES = Object.freeze(Object.keys({
  dir: 0, durability: 0, syncIntervalMs: 0, segmentBytes: 0, recordBytesMax: 0, corruptionPolicy: 0, inlineWriteBytesMax: 0,
  keyBytesMax: 0, labelBytesMax: 0, tagsMax: 0, batchOpsMax: 0, maxBacklogBytes: 0, backlogPolicy: 0, backlogWaitMsMax: 0,
  cacheBytes: 0, applyBatchRecordsMax: 0, applyBatchBytesMax: 0, storeSyncIntervalMs: 0, storeSyncBytes: 0, resilience: 0, backend: 0, level: 0, wrapSink: 0, logger: 0,
  metrics: 0, closeGraceMs: 0, healthIntervalMs: 0, diskLowBytes: 0, diskLowSeconds: 0, diskReadOnlyBytes: 0, metricsPort: 0,
  metricsHost: 0, watchHistoryRecords: 0, sweepIntervalMs: 0, sweepEntriesPerRound: 0, sweepBatchOps: 0, fs: 0, clock: 0, random: 0, locker: 0,
} satisfies Record<keyof MemwalOptions, 0>))

export function resolveOptions(o: MemwalOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw new InvalidOptionsError('options are required')
  refuseUnknown('MemWAL.open', o, OPTION_NAMES)
  const wal = resolveWalConfig({
    // The log's config holds the defaults of what it shares with the engine (filesystem, clock, random, lock): written once, there.
    dir: o.dir,
    ...(o.fs !== undefined ? { fs: o.fs } : {}),
    ...(o.clock !== undefined ? { clock: o.clock } : {}),
    ...(o.random !== undefined ? { random: o.random } : {}),
    ...(o.locker !== undefined ? { locker: o.locker } : {}),
    ...(o.durability !== undefined ? { durability: o.durability } : {}),
    ...(o.syncIntervalMs !== undefined ? { syncIntervalMs: o.syncIntervalMs } : {}),
    ...(o.segmentBytes !== undefined ? { segmentBytes: o.segmentBytes } : {}),
    ...(o.recordBytesMax !== undefined ? { recordBytesMax: o.recordBytesMax } : {}),
    ...(o.corruptionPolicy !== undefined ? { corruptionPolicy: o.corruptionPolicy } : {}),
    ...(o.inlineWriteBytesMax !== undefined ? { inlineWriteBytesMax: o.inlineWriteBytesMax } : {}),
  })
  const batchOpsMax = positive('batchOpsMax', o.batchOpsMax ?? engineDefaults.batchOpsMax)
  const r: ResolvedOptions = {
    dir: wal.dir,
    // The engine takes the lock before its store opens; the log must not take it a second time.
    wal: Object.freeze({ ...wal, locker: noDirLocker }),
    keyBytesMax: positive('keyBytesMax', o.keyBytesMax ?? engineDefaults.keyBytesMax),
    labelBytesMax: positive('labelBytesMax', o.labelBytesMax ?? engineDefaults.labelBytesMax),
    tagsMax: positive('tagsMax', o.tagsMax ?? engineDefaults.tagsMax),
    batchOpsMax,
    maxBacklogBytes: positive('maxBacklogBytes', o.maxBacklogBytes ?? engineDefaults.maxBacklogBytes),
    backlogPolicy: o.backlogPolicy ?? 'reject',
    backlogWaitMsMax: positive('backlogWaitMsMax', o.backlogWaitMsMax ?? engineDefaults.backlogWaitMsMax),
    cacheBytes: positive('cacheBytes', o.cacheBytes ?? engineDefaults.cacheBytes),
    applyBatchRecordsMax: positive('applyBatchRecordsMax', o.applyBatchRecordsMax ?? engineDefaults.applyBatchRecordsMax),
    applyBatchBytesMax: positive('applyBatchBytesMax', o.applyBatchBytesMax ?? engineDefaults.applyBatchBytesMax),
    storeSync: Object.freeze({
      intervalMs: within('storeSyncIntervalMs', o.storeSyncIntervalMs ?? engineDefaults.storeSyncIntervalMs, limits.storeSyncIntervalMsMin, limits.storeSyncIntervalMsMax),
      bytes: within('storeSyncBytes', o.storeSyncBytes ?? engineDefaults.storeSyncBytes, limits.storeSyncBytesMin, limits.storeSyncBytesMax),
    }),
    resilience: resolveResilience(o.resilience ?? {}),
    backend: o.backend,
    level: o.level,
    wrapSink: o.wrapSink,
    logger: o.logger ?? silentLogger,
    metrics: o.metrics,
    closeGraceMs: positive('closeGraceMs', o.closeGraceMs ?? engineDefaults.closeGraceMs),
    healthIntervalMs: positive('healthIntervalMs', o.healthIntervalMs ?? engineDefaults.healthIntervalMs),
    diskLowBytes: positive('diskLowBytes', o.diskLowBytes ?? engineDefaults.diskLowBytes),
    diskLowSeconds: positive('diskLowSeconds', o.diskLowSeconds ?? engineDefaults.diskLowSeconds),
    diskReadOnlyBytes: 0, // resolved below: its default depends on segmentBytes and diskLowBytes
    metricsPort: o.metricsPort,
    metricsHost: o.metricsHost ?? '127.0.0.1',
    watchHistoryRecords: o.watchHistoryRecords ?? 0,
    sweep: resolveSweep(o, batchOpsMax), // a sweep's batch is a batch: within batchOpsMax
    fs: wal.fs,
    clock: wal.clock,
    random: wal.random,
    locker: wal.locker,
  }
  if (r.backlogPolicy !== 'reject' && r.backlogPolicy !== 'wait') throw new InvalidOptionsError(`backlogPolicy must be reject or wait, not ${String(r.backlogPolicy)}`)
  if (r.metricsPort !== undefined && !(Number.isInteger(r.metricsPort) && r.metricsPort >= 0 && r.metricsPort <= 65_535)) {
    throw new InvalidOptionsError(`metricsPort must be an integer in [0, 65535], not ${String(r.metricsPort)}`)
  }
  if (!(Number.isSafeInteger(r.watchHistoryRecords) && r.watchHistoryRecords >= 0)) {
    throw new InvalidOptionsError(`watchHistoryRecords must be an integer >= 0, not ${String(r.watchHistoryRecords)}`, 'watchHistoryRecords')
  }
  if (typeof r.metricsHost !== 'string' || r.metricsHost.length === 0) throw new InvalidOptionsError(`metricsHost must be a host name or address, not ${String(r.metricsHost)}`)
  r.backend?.checkEngineOptions?.({ keyBytesMax: r.keyBytesMax, labelBytesMax: r.labelBytesMax, applyTimeoutMs: r.resilience.applyTimeoutMs })
  const diskReadOnlyBytes = o.diskReadOnlyBytes ?? Math.min(2 * wal.limits.segmentBytes, r.diskLowBytes)
  if (typeof diskReadOnlyBytes !== 'number' || !Number.isFinite(diskReadOnlyBytes) || diskReadOnlyBytes < 0 || diskReadOnlyBytes > r.diskLowBytes) {
    throw new InvalidOptionsError(`diskReadOnlyBytes must be a number in [0, diskLowBytes ${r.diskLowBytes}], not ${String(diskReadOnlyBytes)}`)
  }
  return Object.freeze({ ...r, diskReadOnlyBytes })
}

function resolveResilience(p: Partial<ResilienceConfig>): ResilienceConfig {
  if (typeof p !== 'object' || p === null) throw new InvalidOptionsError('resilience must be an object', 'resilience')
  refuseUnknown('MemWAL.open resilience', p, Object.keys(resilienceDefaults), 'resilience.')
  const r = { ...resilienceDefaults, ...p }
  for (const [k, v] of Object.entries(r)) positive(k, v)
  if (r.retryDelayMsMin > r.retryDelayMsMax) throw new InvalidOptionsError(`retryDelayMsMin ${r.retryDelayMsMin} must not exceed retryDelayMsMax ${r.retryDelayMsMax}`)
  return Object.freeze(r)
}

/** `v`, a finite number in [min, max]. */
function within(name: string, v: number, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new InvalidOptionsError(`${name} must be a number in [${min}, ${max}], not ${String(v)}`, name)
  return v
}

function positive(name: string, v: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InvalidOptionsError(`${name} must be a finite number > 0, not ${String(v)}`)
  return v
}
