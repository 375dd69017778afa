import { checkDataDir, isMemwalError, MemWAL, MemwalError } from '../engine/index.js'
import { pgBackendOf, type PgFlags } from './pg-options.js'

export interface OpenStoreOptions {
  /** The directory must be a data directory already (every command but import, which makes a new one). */
  readonly existing: boolean
  /**
   * For LOCK_HELD: the command, and the call that does its work from the
   * process holding the lock (`db.export()`); without it, the engine's
   * LOCK_HELD (naming the holder) as it is.
   */
  readonly lockHint?: { readonly command: string; readonly api: string }
}

/**
 * A store opened for a CLI command through the engine, with the backend
 * the flags ask for (pg-options.ts): the flags are checked before the
 * directory is looked at, and the directory is checked (checkDataDir) before
 * the engine opens it, so a mistyped path is not made into a new store.
 */
export async function openStore(dir: string, flags: PgFlags, o: OpenStoreOptions): Promise<MemWAL> {
  const backend = pgBackendOf(flags)
  if (o.existing) await checkDataDir(dir)
  try {
    return await MemWAL.open(backend === undefined ? { dir } : { dir, backend })
  } catch (err) {
    if (o.lockHint !== undefined && isMemwalError(err) && err.code === 'LOCK_HELD') {
      const { command, api } = o.lockHint
      throw new MemwalError('LOCK_HELD', `${err.message}: memwal ${command} opens the store and needs its lock; from the process that holds it, call ${api}`, { cause: err, details: err.details })
    }
    throw err
  }
}
