import type { AbstractBatchOperation, AbstractBatchOptions, AbstractLevel } from 'abstract-level'
import { Level } from 'level'
import { MemwalError } from '../errors.js'
import { createPackr } from '../format/value-codec.js'
import type { Clock } from '../io/clock.js'
import { StoreSync, type StoreSyncConfig } from './store-sync.js'

/** Any abstract-level database with string keys and binary values (LevelDB by default; memory-level in simulations). */
export type LevelDatabase = AbstractLevel<string | Uint8Array | Buffer, string, Uint8Array>

/**
 * Group sync of the sinks' apply batches (store-sync.ts): the engine's store
 * has it; a store opened by a tool (fsck, status, backup) does not, and syncs
 * every batch.
 */
export interface GroupSyncOptions {
  readonly clock: Clock
  readonly config: StoreSyncConfig
  /**
   * How many LevelDB log files the store's directory holds (absent for a
   * database of the caller's). A synced write syncs only LevelDB's current
   * log: when its memtable fills, LevelDB starts a new log and closes the old
   * one without syncing it, and the old log's writes are on disk only once
   * its memtable was written to a table (synced), after which the old log is
   * deleted. So a sync covers every earlier write only when one log is left.
   */
  readonly logFiles?: () => Promise<number>
}

/** What the engine hears from the store's group sync. */
export interface GroupSyncHooks {
  /** Durable checkpoints moved (WAL retention may look again). */
  synced(): void
  /** A sync failed; the next round tries again. */
  failed(err: unknown): void
  /**
   * The store reopened after a failed write holds less than the sinks wrote
   * (unsynced batches lost with the pages of its log, as after an EIO from
   * fdatasync): it refuses every write from now on (see reopenIfDamaged).
   */
  lost(err: MemwalError): void
}

/**
 * The LevelDB database under `<dir>/store`, shared by the LevelDB backend and
 * the index: each keeps its data in its own sublevel and its checkpoint under
 * `meta`, written in the same batch as the data (one batch may span sublevels
 * atomically). Keys sort as bytes. With group sync, apply batches are written
 * unsynced and each sink has a durable checkpoint besides (store-sync.ts).
 */
export class LevelStore {
  readonly db: LevelDatabase
  /** Layouts 2 and 3: backend rows keyed by identity (`rows`) and the index (`ix`; 3 adds write times to it). */
  readonly data
  readonly index
  readonly meta
  /** Layout 1's sublevels (rows keyed by key alone): read by the migration, then emptied. */
  readonly legacyData
  readonly legacyIndex
  /** Values are msgpack, as value-codec.ts specifies (values go through toWireValue first). */
  readonly packr = createPackr()

  /** True when the database is our own LevelDB (classic-level), which takes pre-encoded batches (see writeBatch). */
  private readonly ownLevelDb: boolean
  private groupSync: StoreSync | undefined
  private hooks: GroupSyncHooks | undefined

  private constructor(readonly location: string, db: LevelDatabase | undefined) {
    this.ownLevelDb = db === undefined
    this.db = db ?? (new Level<string, Uint8Array>(location, { keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as LevelDatabase)
    this.data = this.db.sublevel<string, Uint8Array>('rows', { keyEncoding: 'utf8', valueEncoding: 'view' })
    this.index = this.db.sublevel<string, Uint8Array>('ix', { keyEncoding: 'utf8', valueEncoding: 'view' })
    this.legacyData = this.db.sublevel<string, Uint8Array>('data', { keyEncoding: 'utf8', valueEncoding: 'view' })
    this.legacyIndex = this.db.sublevel<string, Uint8Array>('idx', { keyEncoding: 'utf8', valueEncoding: 'view' })
    this.meta = this.db.sublevel<string, Uint8Array>('meta', { keyEncoding: 'utf8', valueEncoding: 'view' })
  }

  /** True when the database is LevelDB's files under `location` (not a database the caller gave, such as memory-level). */
  get onDisk(): boolean {
    return this.ownLevelDb
  }

  /**
   * Opens LevelDB at `location`, or the database given (which must use utf8
   * keys and 'view' values). With `group`, apply batches are group-synced,
   * and the store is synced once here: the checkpoints the sinks open at are
   * then durable (LevelDB itself writes what it recovers from its logs to a
   * synced table at open; a simulated database needs the sync).
   */
  static async open(location: string, db?: LevelDatabase, group?: GroupSyncOptions): Promise<LevelStore> {
    const s = new LevelStore(location, db)
    try {
      await s.db.open({ createIfMissing: true })
      await s.openSublevels()
    } catch (cause) {
      throw new MemwalError('IO_ERROR', `cannot open the LevelDB store at ${location}: ${(cause as Error).message}`, { cause })
    }
    if (group) {
      await s.syncedWrite(undefined)
      s.groupClock = group.clock
      s.groupSync = new StoreSync(group.config, {
        clock: group.clock,
        syncedWrite: () => s.syncedWrite(group.logFiles),
        failed: (err) => s.hooks?.failed(err),
        synced: () => s.hooks?.synced(),
      })
    }
    return s
  }

  /** Who hears of syncs (the engine, once it exists). */
  onGroupSync(hooks: GroupSyncHooks): void {
    this.hooks = hooks
  }

  /**
   * The store's layout: 2 to 4 when `meta` says so; 1 for a store written
   * before (namespace, key) identity (no `layout` key, something stored); 0
   * for an empty store, which is made layout 4 at once (level-layout.ts).
   */
  async layout(): Promise<0 | 1 | 2 | 3 | 4> {
    const v = await this.meta.get(LAYOUT_KEY)
    if (v !== undefined) {
      const n = decodeLsn(v)
      if (n !== 2 && n !== 3 && n !== 4) throw new MemwalError('STORE_UNKNOWN_LAYOUT', `the store at ${this.location} has layout ${n}; this memwal reads layouts 1 to 4`)
      return n
    }
    // Layout 1 left checkpoints or rows; other meta keys (written by newer code at a first open) do not make a store layout 1.
    for await (const _ of this.meta.keys({ gte: 'checkpoint:', lt: 'checkpoint;', limit: 1 })) return 1
    for await (const _ of this.legacyData.keys({ limit: 1 })) return 1
    for await (const _ of this.legacyIndex.keys({ limit: 1 })) return 1
    return 0
  }

  async readCheckpoint(name: string): Promise<number> {
    const v = await this.meta.get(`checkpoint:${name}`)
    return v === undefined ? 0 : decodeLsn(v)
  }

  /** A sink's checkpoint as it opens: read, and (with group sync) known durable from here on (see open). */
  async openCheckpoint(name: string): Promise<number> {
    const lsn = await this.readCheckpoint(name)
    this.groupSync?.opened(name, lsn)
    return lsn
  }

  /**
   * A sink's apply: `ops` hold its data and its checkpoint `lsn`, in one
   * atomic batch. With group sync the batch is not synced: the checkpoint is
   * durable (durableCheckpoint) once a later sync completes. Without, it is
   * synced at once.
   */
  async applyBatch(name: string, lsn: number, ops: AbstractBatchOperation<LevelDatabase, string, Uint8Array>[]): Promise<void> {
    const group = this.groupSync
    const written = this.joinApplyGroup(ops, group === undefined)
    this.endApply(name)
    await written
    group?.wrote(name, lsn, batchBytes(ops))
  }

  /**
   * A sink's apply on this store has begun (after `ready()`): the apply
   * group waiting for the store's write waits for its batch too (see
   * joinApplyGroup), until `applyBatch` or `endApply`. Only with group sync
   * (the engine's store, where both the backend and the index apply).
   */
  beginApply(name: string): void {
    if (this.groupSync) this.applying.add(name)
  }

  /** The apply `beginApply` announced is over (its batch joined a group, or it failed before): idempotent. */
  endApply(name: string): void {
    if (!this.applying.delete(name) || this.applying.size > 0) return
    const open = this.gateOpen
    this.gateOpen = undefined
    open?.()
  }

  /**
   * One LevelDB write per apply group (issue 15 item 1). The backend and the
   * index apply the same acknowledged records, each from its own applier; an
   * apply group is their batches written as one atomic LevelDB batch. A group
   * takes batches until its turn to write comes and no sink's apply is under
   * way (begun, its batch not yet given), or `APPLY_GROUP_WAIT_MS` passed
   * (a sink whose apply hangs holds the other's writes no longer than that);
   * then the next group starts. Each sink's data and checkpoint stay in one
   * atomic batch, now with the other's: a failed write fails every apply in
   * it, each retried by its own applier. At most `APPLY_GROUP_OPS_MAX`
   * operations unless one batch alone holds more: classic-level marshals a
   * batch on this thread, and the bound keeps one write from holding it
   * longer than two applies would.
   */
  private joinApplyGroup(ops: AbstractBatchOperation<LevelDatabase, string, Uint8Array>[], sync: boolean): Promise<void> {
    const open = this.applyGroup
    if (open !== undefined && open.ops.length + ops.length <= APPLY_GROUP_OPS_MAX) {
      for (const op of ops) open.ops.push(op)
      open.sync ||= sync
      return open.written
    }
    const g: ApplyGroup = { ops: [...ops], sync, written: Promise.resolve() }
    this.applyGroup = g
    g.written = this.writeSerially(async () => {
      await this.applyGate()
      // Its turn: later applies start the next group.
      if (this.applyGroup === g) this.applyGroup = undefined
      return g
    })
    return g.written
  }

  /** Resolves once no sink's apply is under way on this store, or after APPLY_GROUP_WAIT_MS. */
  private applyGate(): Promise<void> {
    const clock = this.groupClock
    if (this.applying.size === 0 || clock === undefined) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const cancel = clock.setTimer(APPLY_GROUP_WAIT_MS, () => {
        if (this.gateOpen === done) this.gateOpen = undefined
        resolve()
      })
      const done = (): void => {
        cancel()
        resolve()
      }
      this.gateOpen = done
    })
  }

  /** The apply group still taking batches (its write not begun), if any. */
  private applyGroup: ApplyGroup | undefined
  /** Sinks whose apply has begun and whose batch has not joined a group yet (beginApply). */
  private readonly applying = new Set<string>()
  /** Opens the gate the group about to write waits at (applyGate), once `applying` is empty. */
  private gateOpen: (() => void) | undefined
  private groupClock: Clock | undefined

  /**
   * LevelDB's estimate of the bytes its table files hold of the index keys in
   * [gte, lt): what is still in the memtable counts nothing. Undefined for a
   * database that cannot say (not classic-level): a query planner then plans
   * without it.
   */
  async indexBytes(gte: string, lt: string): Promise<number | undefined> {
    if (!this.ownLevelDb) return undefined
    const db = this.db as unknown as { approximateSize(start: string, end: string): Promise<number> }
    return db.approximateSize(this.index.prefixKey(gte, 'utf8'), this.index.prefixKey(lt, 'utf8'))
  }

  /**
   * The checkpoint of sink `name` known to survive power loss, or undefined
   * without group sync (every apply is synced: the sink's checkpoint is).
   */
  durableCheckpoint(name: string): number | undefined {
    return this.groupSync ? (this.groupSync.durableCheckpoint(name) ?? 0) : undefined
  }

  /** Syncs what the sinks wrote (flush, close): resolves when it is durable, or the attempt failed (reported to the hooks). */
  async sync(): Promise<void> {
    await this.groupSync?.sync()
  }

  /**
   * Writes one atomic batch, synced unless `sync` is false: the data and
   * checkpoint it holds land together, and a synced one survives power loss
   * once this resolves, with every write before it in LevelDB's current log.
   * `sync` is classic-level's option; memory-level ignores it (a test's
   * wrapper may honour it: test/support/power-loss-level.ts).
   *
   * Writes to our own LevelDB go one at a time, and a failed one marks the
   * store's log damaged: the next write (or `ready()`) first reopens
   * LevelDB. Why: when an append to LevelDB's log fails part-way (ENOSPC or
   * EIO while writing, not while syncing), LevelDB reports the error but
   * keeps appending behind the partial record; the later writes succeed,
   * sinks advance their checkpoints, WAL retention purges the segments, and
   * LevelDB's recovery at the next open stops at the partial record and drops
   * every write behind it (measured on a full tmpfs: 90 to 245 acknowledged
   * writes lost, test/unit/disk-real.test.ts). A reopen starts a fresh log
   * after recovering what was written before the failure; one write at a time
   * makes sure nothing is appended between the failure and the reopen.
   */
  async writeBatch(ops: AbstractBatchOperation<LevelDatabase, string, Uint8Array>[], sync = true): Promise<void> {
    await this.writeSerially(() => ({ ops, sync }))
  }

  /**
   * Writes, in the store's one-at-a-time order, the batch `take` gives when
   * its turn comes (an apply group is closed then: joinApplyGroup).
   */
  private writeSerially(take: () => WriteStep | Promise<WriteStep>): Promise<void> {
    if (!this.ownLevelDb) {
      // A database of the caller's (memory-level in simulations) orders its own writes.
      return this.serially(async () => {
        const { ops, sync } = await take()
        await this.db.batch(ops, { sync } as AbstractBatchOptions<string, Uint8Array>)
      })
    }
    return this.serially(async () => {
      const { ops, sync } = await take()
      // Our own LevelDB: keys are utf8 and values views, as in every sublevel here,
      // so the ops are encoded once, here, and handed to classic-level's batch hook.
      // abstract-level's public batch() normalises every op (copies, encoding
      // lookups, validation, hooks and events, none of which memwal uses): that
      // was half of the apply path's time, measured at 85k against 172k puts/s.
      const encoded = ops.map((op) => {
        const key = op.sublevel ? op.sublevel.prefixKey(op.key, 'utf8') : op.key
        return op.type === 'put' ? { type: 'put' as const, key, value: op.value, keyEncoding: 'utf8', valueEncoding: 'view' } : { type: 'del' as const, key, keyEncoding: 'utf8' }
      })
      await this.reopenIfDamaged()
      try {
        await (this.db as unknown as { _batch(ops: unknown[], options: object): Promise<void> })._batch(encoded, { sync })
      } catch (cause) {
        this.logDamaged = true
        throw cause
      }
    })
  }

  /**
   * Resolves once the store can take writes: reopens LevelDB after a failed
   * write (see writeBatch), or throws IO_ERROR if it still cannot (no room
   * to recover, say). Health probes call it, so that a probe's success means
   * the next apply will not meet the damaged log.
   */
  async ready(): Promise<void> {
    if (this.ownLevelDb) await this.serially(() => this.reopenIfDamaged())
  }

  private writes: Promise<void> = Promise.resolve()
  private logDamaged = false
  private reopensBegun = 0

  /**
   * Reopens of LevelDB begun since open (after failed writes): a reader that
   * holds an iterator across awaits (a backup's copy entry by entry) tells by
   * it that the reopen closed its iterator, and reads again.
   */
  get reopens(): number {
    return this.reopensBegun
  }
  /** Set when a reopen found batches lost (checkNothingLost): every later write is refused with it. */
  private lostWrites: MemwalError | undefined

  private serially(step: () => Promise<void>): Promise<void> {
    const run = this.writes.then(step)
    this.writes = run.catch(() => {})
    return run
  }

  /**
   * Opens the sublevels, which abstract-level would open from a microtask
   * queued by their constructor: not after a reopen (they do not reopen with
   * their parent), and never while an application's tests fake
   * `queueMicrotask` (Jest's fake timers: every read and write then waited
   * forever; test/adapters/fake-timers.test.ts).
   */
  private async openSublevels(): Promise<void> {
    for (const s of [this.data, this.index, this.meta, this.legacyData, this.legacyIndex]) await s.open()
  }

  private async reopenIfDamaged(): Promise<void> {
    if (this.lostWrites) throw this.lostWrites
    if (!this.logDamaged) return
    this.reopensBegun++
    try {
      await this.db.close()
      await this.db.open({ createIfMissing: false })
      await this.openSublevels()
    } catch (cause) {
      throw new MemwalError('IO_ERROR', `cannot reopen the LevelDB store at ${this.location} after a failed write: ${(cause as Error).message}`, { cause })
    }
    this.logDamaged = false
    await this.checkNothingLost()
  }

  /**
   * After a reopen, each sink's checkpoint read back must be the one it last
   * wrote. With group sync, batches LevelDB took unsynced come back from the
   * page cache after a failed write (ENOSPC); after an EIO from fdatasync the
   * kernel may have dropped them. A store behind what its sinks wrote must not
   * take another write: the appliers would write later checkpoints over the
   * gap, the next sync would make them durable, and WAL retention would purge
   * the records the store lost. So it fails closed, as the log does on EIO:
   * every later write is refused, the engine is told (state failed), and a
   * reopen of the engine replays what the store lacks from the log, which
   * retention kept from the durable checkpoints on.
   */
  private async checkNothingLost(): Promise<void> {
    const written = this.groupSync?.writtenCheckpoints()
    if (written === undefined) return
    for (const [name, lsn] of written) {
      const stored = await this.readCheckpoint(name)
      if (stored >= lsn) continue
      this.lostWrites = new MemwalError('IO_ERROR', `the LevelDB store at ${this.location} came back from a failed write without batches it had taken (sink ${name}: checkpoint ${stored}, wrote ${lsn}); it takes no more writes until the engine is reopened, which replays them from the log`, { details: { sink: name, stored, written: lsn } })
      this.hooks?.lost(this.lostWrites)
      throw this.lostWrites
    }
  }

  /** Closes LevelDB, synced first (LevelDB's close does not sync its log). */
  async close(): Promise<void> {
    this.groupSync?.stop()
    await this.sync()
    await this.writes
    await this.db.close()
  }

  /**
   * One synced write that changes nothing (a delete of a key never written):
   * it syncs LevelDB's log, and with it every earlier write in that log.
   * True when that covers every earlier write: no older log is left (see GroupSyncOptions.logFiles).
   */
  private async syncedWrite(logFiles: (() => Promise<number>) | undefined): Promise<boolean> {
    await this.writeBatch([{ type: 'del', sublevel: this.meta, key: SYNC_KEY }], true)
    return logFiles === undefined || (await logFiles()) <= 1
  }
}

/** Apply batches waiting for the store's write, gathered into one (LevelStore.joinApplyGroup). */
interface ApplyGroup {
  readonly ops: AbstractBatchOperation<LevelDatabase, string, Uint8Array>[]
  sync: boolean
  written: Promise<void>
}

/** A batch the store writes when its turn comes. */
interface WriteStep {
  readonly ops: AbstractBatchOperation<LevelDatabase, string, Uint8Array>[]
  readonly sync: boolean
}

/** LevelDB operations one apply group gathers at most (a single batch of more goes alone). */
const APPLY_GROUP_OPS_MAX = 16_384
/** How long an apply group waits for a sink's apply under way to give its batch (LevelStore.applyGate). */
const APPLY_GROUP_WAIT_MS = 20

/** The key the store's sync deletes: never written, so the delete changes nothing. */
const SYNC_KEY = 'sync'

/** What a batch adds to LevelDB's log, near enough for the sync cadence: keys and values. */
function batchBytes(ops: readonly AbstractBatchOperation<LevelDatabase, string, Uint8Array>[]): number {
  let n = 0
  for (const op of ops) n += op.key.length + (op.type === 'put' ? op.value.byteLength : 0)
  return n
}

export const LAYOUT_KEY = 'layout'
/** 2: identity (namespace, key); 3: the index keeps write times (forward entries and tag postings); 4: tag postings carry the entry's tags. */
export const LAYOUT = 4

/** Checkpoints (and the layout number) are stored as 8-byte big-endian integers. */
export function encodeLsn(lsn: number): Uint8Array {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(lsn))
  return b
}

export function decodeLsn(b: Uint8Array): number {
  return Number(Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64BE(0))
}
