import { MemoryLevel } from 'memory-level'
import type { LevelDatabase } from '../../engine/index.js'

type Encoded = { readonly type: 'put' | 'del'; readonly key: unknown; readonly value?: unknown }
type Change =
  | { readonly kind: 'batch'; readonly ops: readonly Encoded[] }
  | { readonly kind: 'clear'; readonly options: object }

interface Hooks {
  _batch(ops: readonly Encoded[], options: object): Promise<void>
  _put(key: unknown, value: unknown, options: object): Promise<void>
  _del(key: unknown, options: object): Promise<void>
  _clear(options: object): Promise<void>
}

const OPTIONS = { keyEncoding: 'utf8', valueEncoding: 'view' } as const

/**
 * A memory-level database that loses, on a simulated power loss, every write
 * after its last synced one, as LevelDB without `sync` may: the model of
 * LevelDB's log that memwal's group sync relies on (a synced write makes every
 * earlier write durable; the rest may be lost, the survivors being a prefix).
 *
 * Writes (put, del, batch, clear) reach the live database at once and are
 * journalled; a write with `{ sync: true }` replays the journal onto `disk`
 * (a second memory-level holding what is durable). `powerLoss()` makes the
 * live database a copy of `disk`. While `crashed()` says the machine is down,
 * writes fail, as the dead process's would.
 */
export class PowerLossLevel {
  readonly db: LevelDatabase
  /** Synced writes so far, and every write: a write numbered at most `syncedWrites` survives a power loss. */
  syncedWrites = 0
  writes = 0
  private readonly disk = new MemoryLevel<string, Uint8Array>(OPTIONS)
  private journal: Change[] = []
  private readonly live: Hooks
  private readonly diskHooks: Hooks
  private flushing: Promise<void> = Promise.resolve()

  constructor(private readonly crashed: () => boolean = () => false) {
    const db = new MemoryLevel<string, Uint8Array>(OPTIONS)
    this.db = db as unknown as LevelDatabase
    const hooks = db as unknown as Hooks
    this.live = { _batch: hooks._batch.bind(db), _put: hooks._put.bind(db), _del: hooks._del.bind(db), _clear: hooks._clear.bind(db) }
    this.diskHooks = this.disk as unknown as Hooks
    hooks._batch = (ops, options) => this.write({ kind: 'batch', ops: ops.map((o) => ({ type: o.type, key: o.key, value: o.value })) }, options)
    hooks._put = (key, value, options) => this.write({ kind: 'batch', ops: [{ type: 'put', key, value }] }, options)
    hooks._del = (key, options) => this.write({ kind: 'batch', ops: [{ type: 'del', key }] }, options)
    // clear() never syncs (LevelDB's is a series of unsynced deletes).
    hooks._clear = (options) => this.write({ kind: 'clear', options: { ...options } }, {})
  }

  /** What is on disk replaces the live database; the unsynced writes are gone. */
  async powerLoss(): Promise<void> {
    await this.flushing
    this.journal = []
    await this.live._clear({ limit: -1 })
    await this.disk.open()
    const ops: Encoded[] = []
    for await (const [key, value] of this.disk.iterator({ keyEncoding: 'buffer', valueEncoding: 'buffer' }) as AsyncIterable<[unknown, unknown]>) ops.push({ type: 'put', key, value })
    if (ops.length > 0) await this.live._batch(ops, {})
  }

  private async write(change: Change, options: object): Promise<void> {
    if (this.crashed()) throw Object.assign(new Error('simulated power loss: the store is gone with the machine'), { code: 'SIM_POWER_LOSS' })
    // Journalled in the order memory-level applies them: at the call, synchronously.
    this.journal.push(change)
    this.writes++
    if (change.kind === 'batch') await this.live._batch(change.ops, options)
    else await this.live._clear(change.options)
    if ((options as { sync?: boolean }).sync === true) await this.flush()
  }

  /** Moves the journal to disk, one flush at a time (so the disk takes the writes in their order). */
  private flush(): Promise<void> {
    const journal = this.journal
    const upTo = this.writes
    this.journal = []
    this.flushing = this.flushing.then(async () => {
      await this.disk.open()
      for (const c of journal) {
        if (c.kind === 'batch') await this.diskHooks._batch(c.ops, {})
        else await this.diskHooks._clear(c.options)
      }
      this.syncedWrites = Math.max(this.syncedWrites, upTo)
    })
    return this.flushing
  }
}
