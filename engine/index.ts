/**
 * memwal's product API. What simulations and tools need besides (the log,
 * the codec, the simulated filesystem, manual clock, seeded random) is in
 * engine/testing.ts, exported as `memwal/testing`. `cli/` and `bench/` import
 * only from these two.
 */
import { limits } from './limits.js'

export { MemWAL, type CountOptions, type Entry, type QueryOptions, type QueryPage, type QueryResult } from './engine.js'
export type { Change, WatchOptions } from './watch.js'
export { restoreBackup, type BackupResult } from './backup.js'
export type { ExportOptions, ExportStream, ImportOptions, ImportProgress, ImportResult } from './export.js'
export { encodeJsonValue, decodeJsonValue, jsonTag } from './format/json-values.js'
export type { ClearOptions, ClearResult, NamespaceCount, NamespaceListOptions, NamespaceStats, StoreStats } from './namespaces.js'
export { type MemwalOptions, engineDefaults } from './options.js'
export type { Logger } from './io/logger.js'
export type { EngineHealth, EngineState, SinkHealth, DegradationLevel, ServiceStatus } from './health.js'
export type {
  MemwalEvents, MemwalEventMap, StateChangeEvent, SinkDownEvent, SinkRecoveredEvent, BacklogHighEvent, DeadLetterEvent, WalFailedEvent, DiskLowEvent,
} from './events.js'
export type { PutOptions, BatchOp, ReadOptions, DeleteOptions } from './validate.js'
export { DEFAULT_NAMESPACE } from './format/identity.js'
/** The largest `limit` a query takes, so the most entries one query returns (README "Queries"). */
export const QUERY_RESULTS_MAX: number = limits.queryResultsMax
/** What a logged record writes (a dead letter's `record`, a dump entry's): its operations, one for a put or a delete. */
export { opsOf, isLegacyDelete, type WalRecord, type Op, type PutOp, type DeleteOp } from './format/record-codec.js'
export { Sink, BackendSink, PermanentSinkError, type AppliedRecord, type ApplyBatch, type BackendSnapshot, type DataDirBinding, type FailureClass, type SnapshotRow, type StoredEntry } from './sinks/sink.js'
export { PgBackend } from './sinks/pg/pg-backend.js'
export type { PgBackendOptions, PgPoolSettings } from './sinks/pg/pg-options.js'
export type { PgChange, PgWatchOptions } from './sinks/pg/pg-changes.js'
export { dumpLog, type DumpOptions } from './reconcile/dump.js'
export type { DumpEntry } from './log/dump-entry.js'
export { followLog, type FollowOptions } from './reconcile/follow.js'
export { inspectDataDir, type DataDirStatus, type InspectOptions, type StatusVerification } from './reconcile/status.js'
export { removeOwnStoreViewsSync } from './sinks/store-view.js'
export { ownerGone, ownerTag, splitOwnerTag } from './io/owner-tag.js'
export { fsck, type FsckOptions } from './reconcile/reconciler.js'
export { checkDataDir, type DataDirKind } from './log/data-dir.js'
export type { BackendKind } from './log/backend-record.js'
export type { VerifyReport, ReconcileFinding, ReconcileFindingKind, NoticeKind } from './reconcile/verify.js'
export type { DeclaredGap } from './log/recovery/gap-record.js'
export { listDeadLetters, type DeadLetter, type DeadLetterResolution, type DeadLetterState } from './log/dead-letter-file.js'
export type { DeadLetterQueue } from './dead-letters.js'
export type { SinkFindingKind } from './reconcile/sink-check.js'
export type { LevelDatabase } from './sinks/level-store.js'
export { resilienceDefaults, type ResilienceConfig, type BreakerState } from './resilience/policy.js'
export type { Durability } from './log/wal-writer.js'
export { CORRUPTION_POLICIES, type CorruptionPolicy, type RecoveryReport } from './log/recovery/wal-recovery.js'
export { describeFinding, type Finding, type FindingKind, type FindingAction } from './log/recovery/findings.js'
export {
  MemwalError, CorruptionError, IoError, WalFailedError, WalClosedError, RecordTooLargeError, LockHeldError,
  InvalidOptionsError, AssertionFailedError, isMemwalError, osError, type ErrorCode, type LogPlace,
} from './errors.js'
export type { FileSystem, FileHandle, FileStat, OpenMode, OpenOptions, DiskSpace } from './io/fs.js'
export type { DiskStatus } from './disk-watch.js'
export type { Clock } from './io/clock.js'
export type { Random } from './io/random.js'
export type { DirLocker, DirLock } from './io/dir-lock.js'
