import type { MemWAL } from '../../engine/index.js'
import type { LevelStore } from '../../engine/sinks/level-store.js'

/** The engine's LevelDB store (level-store.ts), which a test makes reopen. */
export function liveLevelStore(db: MemWAL): LevelStore {
  return (db as unknown as { parts: { store: LevelStore } }).parts.store
}

/**
 * The live store's next LevelDB write fails (ENOSPC, as LevelDB reports it);
 * the put of `key` (`v`) then makes an applier write again, which reopens
 * LevelDB first (level-store.ts, writeBatch). Resolves once the reopen is
 * done and every sink applied the put, with the put's LSN.
 */
export async function failAndReopen(db: MemWAL, key: string, v: unknown): Promise<number> {
  const store = liveLevelStore(db)
  const level = store.db as unknown as { _batch(ops: unknown[], options: object): Promise<void> }
  const real = level._batch
  let failed = false
  level._batch = async function (this: unknown, ops, options) {
    if (!failed) {
      failed = true
      throw Object.assign(new Error('IO error: No space left on device'), { code: 'LEVEL_IO_ERROR' })
    }
    return real.call(this, ops, options)
  }
  const reopened = new Promise<void>((resolve) => store.db.once('open', () => resolve()))
  try {
    const { lsn } = await db.put(key, v)
    // flush first: it holds the process while the appliers retry on their (unref'd) backoff timers, which bring the reopen.
    await db.flush({ timeoutMs: 20_000 })
    await reopened
    return lsn
  } finally {
    level._batch = real
  }
}
