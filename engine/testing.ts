/**
 * `memwal/testing`: what simulations, tools and benchmarks need beyond the
 * product API (engine/index.ts): the log itself, the record codec and format
 * constants, and the injectable simulated filesystem, manual clock, seeded
 * random source and lockers. Not for applications: these may change with the
 * engine's internals.
 */
export { Wal, type WalOptions } from './log/wal.js'
export type { WriterState } from './log/wal-writer.js'
export type { LogRecord } from './log/wal-reader.js'
export { RecordCodec, encodeVersion1, type WalRecord, type Op, type PutOp, type DeleteOp } from './format/record-codec.js'
export { RecordType, FORMAT_VERSION } from './format/format.js'
export { NodeFileSystem } from './io/node-fs.js'
export { SimulatedFileSystem, SimulatedCrashError, type FaultRule, type SimOptions, type TearMode } from './io/sim-fs.js'
export { systemClock, ManualClock } from './io/clock.js'
export { systemRandom, SeededRandom } from './io/random.js'
export { ProcessDirLocker, noDirLocker, lockHolder, systemLockHost, type LockHost, type ProcessDirLockerOptions } from './io/dir-lock.js'
export { limits } from './limits.js'
