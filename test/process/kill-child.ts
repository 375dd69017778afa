/**
 * The one child program of the process tests: a writer that a test kills with
 * SIGKILL (test/process/kill-loop.ts) or holds a data directory's lock.
 *
 *   node --import tsx test/process/kill-child.ts <profile> <args...>
 *
 *   wal <dir> <seed>                                  the WAL alone, appending forever
 *   engine <dir> <seed> <engine profile> <deletable> [backup target]  MemWAL with a misbehaving backend (backing up, given a target)
 *   wal-try-open | wal-hold | wal-exit-open <dir>     the lock's cases (test/unit/wal-lock.test.ts)
 *   pg <dir> <writerId> <incarnation> <seed> <url> <schema>   MemWAL into a shared PostgreSQL (pg-multiwriter)
 *   backup-slow <dir> <target> | restore-slow <backup> <target>   a backup or a restore slowed to be killed part-way
 *
 * What each prints is described in children/wal-writer.ts,
 * children/engine-writer.ts, children/pg-writer.ts and children/backup-child.ts; the line protocol in test/support/child-process.ts.
 * A profile's module is loaded only when it runs, so that a WAL child does not
 * pay for loading LevelDB.
 */
import { fileURLToPath } from 'node:url'
import { exitWithError, exitWithUsage, isMainModule, spawnChild, type Child, type SpawnOptions } from '../support/child-process.js'

export const KILL_CHILD_FILE = fileURLToPath(import.meta.url)

const USAGE = 'kill-child.ts wal <dir> <seed> | engine <dir> <seed> <outage|flaky-backend|backup> <deletable-file|-> [backup target] | wal-try-open|wal-hold|wal-exit-open <dir> | pg <dir> <writerId> <incarnation> <seed> <url> <schema> | backup-slow|restore-slow <from> <target>'

/** Spawns the kill child with `args` (see above). */
export function spawnKillChild(args: readonly string[], options: SpawnOptions = {}): Child {
  return spawnChild(KILL_CHILD_FILE, args, options)
}

const isSeed = (s: string | undefined): s is string => s !== undefined && /^\d+$/.test(s)

async function main([profile, dir, ...rest]: string[]): Promise<void> {
  if (dir === undefined) exitWithUsage(USAGE)
  const wal = (): Promise<typeof import('./children/wal-writer.js')> => import('./children/wal-writer.js')
  switch (profile) {
    case 'wal':
      if (!isSeed(rest[0])) exitWithUsage(USAGE)
      return (await wal()).appendForever(dir, Number(rest[0]))
    case 'wal-try-open':
      return (await wal()).tryOpen(dir)
    case 'wal-hold':
      return (await wal()).holdUntilStdinEnds(dir)
    case 'wal-exit-open':
      return (await wal()).exitWhileOpen(dir)
    case 'engine': {
      const [seed, name, deletableFile, backupTo] = rest
      const engine = await import('./children/engine-writer.js')
      if (!isSeed(seed) || name === undefined || !engine.isEngineProfile(name) || deletableFile === undefined) exitWithUsage(USAGE)
      return engine.writeUnderFaults(dir, Number(seed), engine.ENGINE_PROFILES[name], engine.readDeletable(deletableFile), backupTo)
    }
    case 'pg': {
      const [writerId, incarnation, seed, url, schema] = rest
      if (!writerId || !isSeed(incarnation) || !isSeed(seed) || !url || !schema) exitWithUsage(USAGE)
      const { writeToPg } = await import('./children/pg-writer.js')
      return writeToPg({ dir, writerId, incarnation: Number(incarnation), seed: Number(seed), url, schema })
    }
    case 'backup-slow':
    case 'restore-slow': {
      const [target] = rest
      if (target === undefined) exitWithUsage(USAGE)
      const child = await import('./children/backup-child.js')
      return profile === 'backup-slow' ? child.slowBackup(dir, target) : child.slowRestore(dir, target)
    }
    default:
      exitWithUsage(USAGE)
  }
}

if (isMainModule(import.meta.url)) main(process.argv.slice(2)).catch(exitWithError)
