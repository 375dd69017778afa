import type { AbstractBatchOperation, AbstractBatchOptions, AbstractLevel } from 'abstract-level'
import { Level } from 'level'
import { MemwalError } from '../errors.js'
import { createPackr } from '../format/value-codec.js'

/** Any abstract-level database with string keys and binary values (LevelDB by default; memory-level in simulations). */
export type LevelDatabase = AbstractLevel<string | Uint8Array | Buffer, string, Uint8Array>

/**
 * The LevelDB database under `<dir>/store`, shared by the LevelDB backend and
 * the index: each keeps its data in its own sublevel and its checkpoint under
 * `meta`, written in the same batch as the data (one batch may span sublevels
 * atomically). Keys sort as bytes.
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

  /** Opens LevelDB at `location`, or the database given (which must use utf8 keys and 'view' values). */
  static async open(location: string, db?: LevelDatabase): Promise<LevelStore> {
    const s = new LevelStore(location, db)
    try {
      await s.db.open({ createIfMissing: true })
    } catch (cause) {
      throw new MemwalError('IO_ERROR', `cannot open the LevelDB store at ${location}: ${(cause as Error).message}`, { cause })
    }
    return s
  }

  /**
   * The store's layout: 2 or 3 when `meta` says so; 1 for a store written
   * before (namespace, key) identity (no `layout` key, something stored); 0
   * for an empty store, which is made layout 3 at once (level-layout.ts).
   */
  async layout(): Promise<0 | 1 | 2 | 3> {
    const v = await this.meta.get(LAYOUT_KEY)
    if (v !== undefined) {
      const n = decodeLsn(v)
      if (n !== 2 && n !== 3) throw new MemwalError('STORE_UNKNOWN_LAYOUT', `the store at ${this.location} has layout ${n}; this memwal reads layouts 1 to 3`)
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

  /**
   * Writes one atomic batch, synced: a sink's data and checkpoint land
   * together, and survive power loss once this resolves (WAL retention trusts
   * them). `sync` is classic-level's option; other databases ignore it.
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
  async writeBatch(ops: AbstractBatchOperation<LevelDatabase, string, Uint8Array>[]): Promise<void> {
    if (!this.ownLevelDb) {
      await this.db.batch(ops, { sync: true } as AbstractBatchOptions<string, Uint8Array>)
      return
    }
    // Our own LevelDB: keys are utf8 and values views, as in every sublevel here,
    // so the ops are encoded once, here, and handed to classic-level's batch hook.
    // abstract-level's public batch() normalises every op (copies, encoding
    // lookups, validation, hooks and events, none of which memwal uses): that
    // was half of the apply path's time, measured at 85k against 172k puts/s.
    const encoded = ops.map((op) => {
      const key = op.sublevel ? op.sublevel.prefixKey(op.key, 'utf8') : op.key
      return op.type === 'put' ? { type: 'put' as const, key, value: op.value, keyEncoding: 'utf8', valueEncoding: 'view' } : { type: 'del' as const, key, keyEncoding: 'utf8' }
    })
    await this.serially(async () => {
      await this.reopenIfDamaged()
      try {
        await (this.db as unknown as { _batch(ops: unknown[], options: object): Promise<void> })._batch(encoded, { sync: true })
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

  private serially(step: () => Promise<void>): Promise<void> {
    const run = this.writes.then(step)
    this.writes = run.catch(() => {})
    return run
  }

  private async reopenIfDamaged(): Promise<void> {
    if (!this.logDamaged) return
    try {
      await this.db.close()
      await this.db.open({ createIfMissing: false })
      // Sublevels do not reopen with their parent (abstract-level): each is opened again.
      for (const s of [this.data, this.index, this.meta, this.legacyData, this.legacyIndex]) await s.open()
    } catch (cause) {
      throw new MemwalError('IO_ERROR', `cannot reopen the LevelDB store at ${this.location} after a failed write: ${(cause as Error).message}`, { cause })
    }
    this.logDamaged = false
  }

  async close(): Promise<void> {
    await this.writes
    await this.db.close()
  }
}

export const LAYOUT_KEY = 'layout'
/** 2: identity (namespace, key); 3: the index keeps write times (forward entries and tag postings). */
export const LAYOUT = 3

/** Checkpoints (and the layout number) are stored as 8-byte big-endian integers. */
export function encodeLsn(lsn: number): Uint8Array {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(lsn))
  return b
}

export function decodeLsn(b: Uint8Array): number {
  return Number(Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64BE(0))
}
