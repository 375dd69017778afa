import { assert } from '../assert.js'
import { MemwalError } from '../errors.js'
import type { Change } from '../format/change.js'
import type { WalRecord } from '../format/record-codec.js'
import type { AllWritersQuery } from './all-writers-query.js'
import type { BackendKind } from '../log/backend-record.js'

/** One acknowledged record on its way to a sink. */
export interface AppliedRecord {
  readonly lsn: number
  readonly record: WalRecord
  /** Encoded size of the record's payload: what bounds caches and batches. */
  readonly bytes: number
}

/**
 * A bounded batch of consecutive records. The sink's checkpoint becomes
 * `upToLsn` (>= the last record's LSN: a batch may carry no records, only a
 * checkpoint moved past a dead-lettered one).
 */
export interface ApplyBatch {
  readonly records: readonly AppliedRecord[]
  readonly upToLsn: number
}

/**
 * `transient`: may pass when retried. `permanent`: this record will never apply (it goes to the dead-letter log).
 * `halt`: the sink can take nothing more from this process, whatever the record (PgBackend: its checkpoint row is
 * not the one it last wrote): the applier stops, and the engine refuses writes until it is reopened.
 */
export type FailureClass = 'transient' | 'permanent' | 'halt'

/**
 * The contract every replica implements (abstract-level's pattern: the public
 * method validates and keeps the invariants, the protected hook does the work).
 *
 * - `apply` is idempotent by LSN: records at or below the checkpoint are
 *   dropped before the hook sees them (G3).
 * - A durable sink writes its checkpoint in the same atomic step as the data
 *   (`_apply` receives the new checkpoint for that reason). WAL retention
 *   trusts only `durableCheckpoint`: the checkpoint once that step is known to
 *   survive power loss (at once for a sink whose step is synced before it
 *   resolves; after the store's next sync for LevelDB's group-synced applies).
 * - `classify` says whether a failure may succeed if retried, or the sink must stop taking applies (`halt`).
 */
export abstract class Sink {
  abstract readonly name: string
  /** Whether the sink's checkpoint survives a restart (it then holds WAL retention). */
  abstract readonly durable: boolean
  private checkpointValue = 0
  private opened = false

  /** Opens the sink and resolves its checkpoint. */
  async open(): Promise<number> {
    this.checkpointValue = await this._open()
    assert(Number.isSafeInteger(this.checkpointValue) && this.checkpointValue >= 0, 'sink checkpoint is a non-negative integer')
    this.opened = true
    return this.checkpointValue
  }

  get checkpoint(): number {
    return this.checkpointValue
  }

  /**
   * The highest checkpoint known to survive power loss: what WAL retention
   * may purge through. The checkpoint itself, unless the sink's storage
   * syncs its applies later (LevelDB's group sync: store-sync.ts).
   */
  get durableCheckpoint(): number {
    return this.checkpointValue
  }

  async apply(batch: ApplyBatch, signal?: AbortSignal): Promise<void> {
    assert(this.opened, `sink ${this.name} is open`)
    let prev = this.checkpointValue
    const fresh: AppliedRecord[] = []
    for (const r of batch.records) {
      if (r.lsn <= this.checkpointValue) continue // applied already: no second effect
      assert(r.lsn > prev, 'records in a batch are in LSN order')
      prev = r.lsn
      fresh.push(r)
    }
    if (batch.upToLsn <= this.checkpointValue) return
    assert(prev <= batch.upToLsn, 'batch checkpoint covers its records')
    await this._apply(fresh, batch.upToLsn, signal)
    this.checkpointValue = batch.upToLsn
  }

  /** A failure is transient unless the sink knows better. */
  classify(err: unknown): FailureClass {
    return err instanceof MemwalError && !err.transient && err.code === 'SINK_APPLY_FAILED' ? 'permanent' : 'transient'
  }

  async close(): Promise<void> {
    this.opened = false
    await this._close()
  }

  /**
   * A cheap read that shows the sink answers: the health loop's probe of a
   * sink whose breaker is open, or that nothing has used for a while.
   * Rejects when the sink cannot answer. An in-memory sink answers by being there.
   */
  async probe(): Promise<void> {}

  /** Opens storage; resolves the checkpoint stored with the data (0 if none). */
  protected abstract _open(): Promise<number>
  /** Applies `records` and stores `checkpoint` in the same atomic step (durable at once, or by `durableCheckpoint` later). */
  protected abstract _apply(records: readonly AppliedRecord[], checkpoint: number, signal?: AbortSignal): Promise<void>
  protected abstract _close(): Promise<void>
}

/** A sink that rejects a record for good (it will never apply): it goes to the dead-letter log. */
export class PermanentSinkError extends MemwalError {
  constructor(message: string, cause?: unknown) {
    super('SINK_APPLY_FAILED', message, { cause, transient: false })
  }
}

/** A stored entry, as a backend returns it. */
export interface StoredEntry {
  readonly value: unknown
  readonly namespace: string
  readonly key: string
  readonly tags?: readonly string[]
  /** LSN of the record that wrote it (the entry's version). */
  readonly lsn: number
  /** ms of the first put of this identity still live: carried forward by a put that overwrites; a delete then a put starts again. */
  readonly createdAt: number
  /** ms of the record that wrote it (its hlc stamp). */
  readonly updatedAt: number
  /** ms since the epoch, if the put set one. */
  readonly expiresAt?: number
}

/** A stored entry without its identity and value: what a backend can answer without decoding values. */
export type EntryMeta = Omit<StoredEntry, 'namespace' | 'key' | 'value'>

/**
 * A backend is a sink that can also be read. Entries are addressed by their
 * identity string (engine/format/identity.ts: namespace + NUL + key) and
 * listed in its order.
 */
export abstract class BackendSink extends Sink {
  readonly durable = true
  /**
   * Whether a key may hold NUL. PostgreSQL's text cannot (PgBackend): such a
   * key would be acknowledged, then dead-lettered by the backend, so the
   * write path refuses it (ENGINE_INVALID_KEY) before anything is logged.
   */
  readonly keysMayHoldNul: boolean = true

  /**
   * Refuses (INVALID_OPTIONS) engine options this backend cannot honour,
   * called by MemWAL.open once the options are resolved: a key bound its
   * index cannot hold, a timeout that would let abandoned calls pile up.
   */
  checkEngineOptions?(o: BackendEngineOptions): void

  /**
   * Which backend this is, as the data directory records it (log/backend-record.ts): a store is
   * never opened with another. A backend of one's own is `custom` with its `name`.
   */
  backendKind(): BackendKind {
    return { kind: 'custom', name: this.name }
  }
  /**
   * The data directory (its id from its BACKEND record, and what it held
   * before this open), given by MemWAL.open before `open`, to a backend that
   * several writers share: it binds this writer to that directory and
   * refuses another's (PgBackend: WRITER_IN_USE), and refuses to start over
   * empty under a directory that applied records to it
   * (BACKEND_SCHEMA_DAMAGED). Absent on a backend that only this directory
   * writes.
   */
  bindDataDir?(dir: DataDirBinding): void
  /** The entry stored under identity `id`, or undefined. Rejects when the backend cannot answer. */
  abstract get(id: string): Promise<StoredEntry | undefined>

  /**
   * What the rows of several identities hold besides their values (version,
   * times, tags, expiry), in their order (undefined where absent): one read
   * where the backend can (LevelBackend: one LevelDB getMany, the values
   * skipped undecoded), so a caller that judges many entries (the expiry
   * sweep) waits once, not once per entry. By default one `get` each, all at once.
   */
  async metaMany(ids: readonly string[]): Promise<(EntryMeta | undefined)[]> {
    const entries = await Promise.all(ids.map((id) => this.get(id)))
    return entries.map((e) => {
      if (e === undefined) return undefined
      const { namespace: _n, key: _k, value: _v, ...meta } = e
      return meta
    })
  }
  /** Every live entry in identity order (for the reconciler and index rebuilds). */
  abstract entries(options?: { readonly gte?: string; readonly lt?: string }): AsyncIterable<[string, StoredEntry]>
  /**
   * The reconciler's repair: stores each entry as given (undefined deletes
   * the identity), leaving the checkpoint alone. Used to re-apply from the
   * WAL the latest version of identities the backend holds wrongly.
   */
  abstract repair(entries: readonly (readonly [string, StoredEntry | undefined])[]): Promise<void>

  /**
   * Every writer's changes, for a backend that several writers share
   * (PgBackend: pg-changes.ts); absent on one that holds only this writer's.
   */
  allWritersFeed?(options: { readonly namespace?: string; readonly prefix?: string; readonly resumeToken?: string }): AsyncIterableIterator<Change>

  /**
   * MemWAL.query and count over every writer's entries, for a backend that
   * several writers share (PgBackend: pg/pg-query.ts); absent on one that
   * holds only this writer's, where the local index answers.
   */
  readonly allWritersQuery?: AllWritersQuery

  /**
   * The live rows (of every writer) of one namespace or all, from a snapshot
   * this call starts taking, for export (export.ts), for a backend that can
   * give one but not synchronously (PgBackend: pg/pg-export.ts); absent on
   * one that cannot (export then refuses it: EXPORT_UNSUPPORTED). LevelDB's
   * own snapshot is made in the caller's tick (level-snapshot.ts).
   */
  exportSnapshot?(namespace: string | undefined): BackendSnapshot

  /**
   * This writer's checkpoint as the backend holds it, read without opening
   * the sink (on one open: with its connections) or writing anything
   * (`inspectDataDir`, `memwal status`), for a
   * backend whose rows are not in the data directory (PgBackend); absent on
   * one whose checkpoint the directory's store holds, or that cannot say.
   */
  storedCheckpoint?(): Promise<number>

  /** One point read (of a key nobody writes: what is stored does not matter, that the backend answers does). */
  override async probe(): Promise<void> {
    await this.get(PROBE_KEY)
  }
}

/** The engine options a backend may refuse (BackendSink.checkEngineOptions). */
export interface BackendEngineOptions {
  readonly keyBytesMax: number
  readonly labelBytesMax: number
  /** resilience.applyTimeoutMs: how long the engine waits for a sink call before it abandons it. */
  readonly applyTimeoutMs: number
}


/**
 * A data directory as MemWAL.open gives it to a shared backend
 * (BackendSink.bindDataDir), read under its lock before the backend opens.
 */
export interface DataDirBinding {
  /** Its id, from its BACKEND record. */
  readonly dirId: string
  /**
   * Its local store shows records applied (an index checkpoint above 0): it
   * wrote records before this open, and its log holds them or, purged,
   * held them.
   */
  readonly holdsRecords: boolean
  /**
   * What its BACKEND record said of this backend before this open: `none`
   * (no record: a new directory, or one from before records), `writer` (this
   * writer, from before directory ids), `bound` (this writer and this id: a
   * backend was bound to it at an earlier open).
   */
  readonly recorded: 'none' | 'writer' | 'bound'
}
/** A row of a backend snapshot, as export writes it. */
export interface SnapshotRow {
  /** The value codec's bytes of the value (msgpack), as the log held them. */
  readonly valueBytes: Uint8Array
  readonly tags: string[] | null
  readonly expiresAt: number | null
}

/** Rows as of one moment, in identity order, a step at a time. */
export interface BackendSnapshot {
  /**
   * Resolves once the snapshot's moment is fixed, to this writer's
   * checkpoint as the snapshot holds it (every record of this writer up to
   * it applied, none after); rejects when it could not be taken.
   */
  readonly taken: Promise<number>
  /** The next rows (empty once at the end): [identity, row]. One call at a time. */
  next(): Promise<readonly (readonly [string, SnapshotRow])[]>
  /** Ends the snapshot (its transaction, its connection); idempotent. */
  close(): Promise<void>
}

/** The key the health probe reads. */
const PROBE_KEY = '\u0000memwal-health-probe'

