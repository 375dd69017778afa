import { WalFailedError } from './errors.js'
import { BackendClaim } from './backend-claim.js'
import { PendingLog } from './apply/pending-log.js'
import { BacklogLoad } from './apply/backlog-load.js'
import { createChecksums, type Checksums } from './format/checksum.js'
import { RecordCodec } from './format/record-codec.js'
import type { DirLock } from './io/dir-lock.js'
import { describeLooseDir, looseDirs, prepareDataDir, writeMarker } from './log/data-dir.js'
import type { GapFile } from './log/recovery/gap-record.js'
import { Wal } from './log/wal.js'
import { loadCursorSecret } from './query/cursor.js'
import type { ResolvedOptions } from './options.js'
import { CacheSink } from './sinks/cache-sink.js'
import { IndexSink } from './sinks/index-sink.js'
import { LevelBackend } from './sinks/level-backend.js'
import type { LevelStore } from './sinks/level-store.js'
import { openStore } from './sinks/store-dir.js'
import { migrateLayout, type MigrationLog } from './sinks/level-layout.js'
import type { BackendSink } from './sinks/sink.js'

/** Everything an open engine is made of, built once by `assemble`. */
export interface EngineParts {
  readonly config: ResolvedOptions
  /**
   * Checksums for the log, the dead-letter logs and verify(), made once: compiling
   * xxhash's WebAssembly is asynchronous off the event loop, and doing it in the
   * background would let a seeded simulation's interleaving vary from run to run.
   */
  readonly sums: Checksums
  readonly codec: RecordCodec
  readonly lock: DirLock
  readonly store: LevelStore
  readonly backend: BackendSink
  readonly index: IndexSink
  readonly cache: CacheSink
  readonly wal: Wal
  /** Acknowledged records some sink has not applied: rebuilt from the log at open. */
  readonly pending: PendingLog
  /** The timestamp of the last record in the log, so the clock never goes back across a restart. */
  readonly lastHlc: number
  /** This store's secret for query cursors (made at its first open). */
  readonly cursorSecret: Uint8Array
  /** Declared gaps (`gaps.json`), with any this recovery declared added. */
  readonly gaps: GapFile
}

/**
 * Opens (or creates) a data directory: lock, read each sink's checkpoint,
 * recover the log (verifying it from the lowest checkpoint), rebuild the
 * pending overlay. `onFailed` is told when the log fails or the lock is lost,
 * from then on. On any failure what was opened is closed again.
 */
export async function assemble(config: ResolvedOptions, onFailed: (err: WalFailedError) => void): Promise<EngineParts> {
  const { dir, fs } = config
  // Before anything runs in the background (the writer prepares a spare segment as soon as it exists).
  const sums = await createChecksums()
  // A new directory gets its marker before anything else; one made before markers existed gets it under the lock.
  const kind = await prepareDataDir(fs, dir)
  const lock = await config.locker.acquire(dir, (err) => onFailed(new WalFailedError('the data directory lock was compromised', err)))
  const undo: (() => Promise<unknown>)[] = [() => lock.release()]
  try {
    if (kind === 'unmarked') await writeMarker(fs, dir)
    // Before the store opens: a directory written with another backend is refused with nothing written.
    const claim = await BackendClaim.check(fs, dir, config.backend?.backendKind() ?? { kind: 'leveldb' }, kind === 'missing' || kind === 'empty')
    for (const l of await looseDirs(fs, dir)) config.logger.warn({ path: l.path, mode: `0${(l.mode & 0o777).toString(8)}` }, describeLooseDir(l))
    const store = await openStore(fs, dir, config.level, { clock: config.clock, config: config.storeSync })
    undo.push(() => store.close())
    await claim.settle(store, config.logger)
    const wrap = config.wrapSink ?? (<S,>(s: S) => s)
    // Before the backend opens: a backend several writers share binds this writer id to this directory there (PgBackend: WRITER_IN_USE).
    const binding = await claim.binding(store)
    if (binding !== undefined) config.backend?.bindDataDir?.(binding)
    const backend = wrap(config.backend ?? new LevelBackend(store))
    const index = wrap(new IndexSink(store))
    let backendLsn = await claim.openBackend(() => backend.open())
    // A backend with its own connections (PostgreSQL) must not outlive a failed open.
    undo.push(() => backend.close())
    let indexLsn = await index.open()
    const durable = Math.max(backendLsn, indexLsn)
    const codec = new RecordCodec()
    const fromLsn = Math.min(backendLsn, indexLsn) + 1
    // The backlog is loaded in recovery's scan of the log (each frame read and verified once), if that scan is what the log holds.
    const load = new BacklogLoad(codec, fromLsn, config.clock.nowMs())
    const wal = await Wal.openResolved(config.wal, {
      // In sync mode a checkpoint can only cover acknowledged, hence durable, records: a log that ends before it has a hole.
      durableLsn: config.wal.durability === 'sync' ? durable : 0,
      appliedLsn: backendLsn,
      verifyFromLsn: fromLsn,
      // Otherwise a sink may be ahead of a log that lost its tail: new records must not reuse those LSNs.
      nextLsnAtLeast: durable + 1,
      onFailed,
      frames: load,
    }, sums)
    undo.push(() => wal.close())
    // What recovery dropped (skip-corrupt, point-in-time), recorded by recovery before it dropped it,
    // stays visible until an operator acknowledges it.
    const gaps = wal.gaps
    // Store layout 2 (identity (namespace, key)): a layout-1 store is migrated here, before any sink applies a record.
    const migrated = await migrateLayout(store, logOf(wal), { ownBackend: config.backend === undefined, nowMs: config.clock.nowMs() })
    if (migrated) {
      indexLsn = await index.open()
      if (config.backend === undefined) backendLsn = await backend.open()
    }
    const loaded = migrated ? undefined : load.result(wal.recovery, wal.lastLsn)
    const pending = loaded ?? new PendingLog(codec, Math.min(backendLsn, indexLsn) + 1)
    if (!loaded) await loadBacklog(wal, pending, config.clock.nowMs())
    const cache = wrap(new CacheSink(config.cacheBytes, () => wal.lastLsn))
    await cache.open()
    return { config, sums, codec, lock, store, backend, index, cache, wal, pending, lastHlc: (loaded ? load.hlcOf(wal.lastLsn) : undefined) ?? (await lastHlc(wal)), gaps, cursorSecret: await loadCursorSecret(store, config.random) }
  } catch (err) {
    for (const u of undo.reverse()) await u().catch(() => undefined)
    throw err
  }
}

/** The log as the layout migration reads it. */
export function logOf(wal: Wal): MigrationLog {
  return {
    lastLsn: wal.lastLsn,
    read: async function* (fromLsn) {
      for await (const r of wal.read(fromLsn)) yield { lsn: r.lsn, record: wal.decode(r) }
    },
  }
}

/** The timestamp of the last record in the log. */
async function lastHlc(wal: Wal): Promise<number> {
  if (wal.lastLsn === 0) return 0
  try {
    for await (const r of wal.read(wal.lastLsn)) return wal.decode(r).hlc ?? 0
  } catch {
    // An unreadable last record was already reported by recovery; the wall clock will do.
  }
  return 0
}

/** Reads what some sink has not applied back from the segments into the pending log, when recovery's scan could not load it (BacklogLoad). */
async function loadBacklog(wal: Wal, pending: PendingLog, nowMs: number): Promise<void> {
  if (pending.nextLsn > wal.lastLsn) return
  for await (const r of wal.read(pending.nextLsn)) {
    if (r.lsn > pending.nextLsn) pending.skipTo(r.lsn)
    pending.accept(r.lsn, wal.decode(r), pending.copy(r.payload), nowMs)
  }
  if (pending.nextLsn <= wal.lastLsn) pending.skipTo(wal.lastLsn + 1)
}
