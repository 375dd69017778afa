/**
 * memwal's public API. `cli/` and `bench/` import only from here.
 */
export { MemWAL, type QueryOptions, type QueryResult } from './engine.js'
export { type MemwalOptions, type Logger, engineDefaults } from './options.js'
export type { EngineHealth, EngineState, SinkHealth } from './health.js'
export type { PutOptions, BatchOp } from './validate.js'
export { Sink, BackendSink, PermanentSinkError, type AppliedRecord, type ApplyBatch, type FailureClass, type StoredEntry } from './sinks/sink.js'
export { PgBackend, type PgBackendOptions, type PgPoolSettings } from './sinks/pg/pg-backend.js'
export { dumpLog, type DumpEntry, type DumpOptions } from './reconcile/dump.js'
export { inspectDataDir, type DataDirStatus } from './reconcile/status.js'
export { fsck, checkDataDir, type FsckOptions } from './reconcile/reconciler.js'
export type { VerifyReport, ReconcileFinding, ReconcileFindingKind } from './reconcile/verify.js'
export type { SinkFindingKind } from './reconcile/sink-check.js'
export type { LevelDatabase } from './sinks/level-store.js'
export { resilienceDefaults, type ResilienceConfig, type BreakerState } from './resilience/policy.js'
export { Wal, type WalOptions } from './log/wal.js'
export type { Durability, WriterState } from './log/wal-writer.js'
export type { LogRecord } from './log/wal-reader.js'
export { RecordCodec, type WalRecord, type Op, type PutOp, type DeleteOp } from './format/record-codec.js'
export { RecordType, FORMAT_VERSION } from './format/format.js'
export { CORRUPTION_POLICIES, type CorruptionPolicy, type RecoveryReport } from './log/recovery/wal-recovery.js'
export { describeFinding, type Finding, type FindingKind, type FindingAction } from './log/recovery/findings.js'
export {
  MemwalError, CorruptionError, IoError, WalFailedError, WalClosedError, RecordTooLargeError, LockHeldError,
  InvalidOptionsError, AssertionFailedError, isMemwalError, osError, type ErrorCode, type LogPlace,
} from './errors.js'
export type { FileSystem, FileHandle, FileStat, OpenMode, OpenOptions } from './io/fs.js'
export { NodeFileSystem } from './io/node-fs.js'
export { SimulatedFileSystem, SimulatedCrashError, type FaultRule } from './io/sim-fs.js'
export { systemClock, ManualClock, type Clock } from './io/clock.js'
export { systemRandom, SeededRandom, type Random } from './io/random.js'
export { ProcessDirLocker, noDirLocker, lockHolder, systemLockHost, type DirLocker, type DirLock, type LockHost, type ProcessDirLockerOptions } from './io/dir-lock.js'
export { limits } from './limits.js'
