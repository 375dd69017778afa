import { MemwalError, type BackendKind } from '../engine/index.js'

/** The commands that can open a store with its PgBackend (`--pg URL --writer-id ID [--schema S]`). */
const PG_COMMANDS: ReadonlySet<string> = new Set(['export'])

/**
 * BACKEND_MISMATCH as the CLI reports it: the engine's message, then which
 * option to add (or drop), or which command can open that store. The code
 * and the details stay the engine's.
 */
export function withBackendHint(err: MemwalError, command: string): MemwalError {
  const recorded = (err.details['recorded'] ?? null) as BackendKind | null
  const given = err.details['given'] as BackendKind | undefined
  return new MemwalError(err.code, `${err.message}. ${hintFor(recorded, given, command)}`, { cause: err, details: err.details })
}

function hintFor(recorded: BackendKind | null, given: BackendKind | undefined, command: string): string {
  const canPg = PG_COMMANDS.has(command)
  if (recorded === null || recorded.kind === 'postgres') {
    const flags = recorded === null ? '--pg URL --writer-id ID' : `--pg URL --writer-id ${recorded.writerId}${recorded.schema !== 'memwal' ? ` --schema ${recorded.schema}` : ''}`
    if (canPg) return given?.kind === 'postgres' ? `Give the writer id and schema it was written with: ${flags}` : `Add ${flags} (URL: the PostgreSQL it is backed by)`
    return `memwal ${command} opens a store with the LevelDB backend only: export it with memwal export <dir> ${flags}, or read it through the application's MemWAL.open with its PgBackend`
  }
  if (recorded.kind === 'leveldb') return canPg ? 'It is a LevelDB-backed store: drop --pg, --writer-id and --schema' : 'It is a LevelDB-backed store'
  return `Its backend is the application's own (${JSON.stringify(recorded.name)}): read it through the application's MemWAL.open with that backend`
}
