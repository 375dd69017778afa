import { MemwalError, type BackendKind } from '../engine/index.js'
import { PG_COMMANDS, pgFlagsFor } from './pg-options.js'

/**
 * BACKEND_MISMATCH as the CLI reports it: the engine's message, then which
 * option to add (or drop), or, for a command that cannot open such a store,
 * why and what to run instead. The code and the details stay the engine's.
 */
export function withBackendHint(err: MemwalError, command: string): MemwalError {
  const recorded = (err.details['recorded'] ?? null) as BackendKind | null
  const given = err.details['given'] as BackendKind | undefined
  return new MemwalError(err.code, `${err.message}. ${hintFor(recorded, given, command)}`, { cause: err, details: err.details })
}

function hintFor(recorded: BackendKind | null, given: BackendKind | undefined, command: string): string {
  const canPg = PG_COMMANDS.includes(command)
  if (recorded === null || recorded.kind === 'postgres') {
    const flags = recorded === null ? '--pg URL --writer-id ID' : pgFlagsFor(recorded)
    if (canPg) return given?.kind === 'postgres' ? `Give the writer id and schema it was written with: ${flags}` : `Add ${flags} (URL: the PostgreSQL it is backed by)`
    return notForPg(command, flags)
  }
  if (recorded.kind === 'leveldb') return canPg ? 'It is a LevelDB-backed store: drop --pg, --writer-id and --schema' : 'It is a LevelDB-backed store'
  return `Its backend is the application's own (${JSON.stringify(recorded.name)}): read it through the application's MemWAL.open with that backend`
}

/** Why a command without the PostgreSQL options cannot take a PostgreSQL-backed store, and what does the job instead. */
function notForPg(command: string, flags: string): string {
  if (command === 'fsck') {
    // The reconciler compares the log with the local LevelDB backend and index; PostgreSQL holds every writer's rows.
    return `memwal fsck checks LevelDB-backed stores only (it compares the log with the local backend's rows; this store's rows are in PostgreSQL, every writer's): apply its log with memwal replay <dir> ${flags}, and check it against PostgreSQL from the application with PgBackend.verifyLog(dumpLog({ dir }))`
  }
  if (command === 'backup') return 'memwal backup copies LevelDB-backed stores only: this store\'s rows are in PostgreSQL, not in its data directory (back up the database with its own tools)'
  return `memwal ${command} opens LevelDB-backed stores only; ${PG_COMMANDS.join(', ')} open this one with ${flags}`
}
