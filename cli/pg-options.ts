import type { Command } from 'commander'
import { InvalidOptionsError, PgBackend } from '../engine/index.js'

/**
 * The option group that opens a PostgreSQL-backed store from the shell:
 * `--pg URL --writer-id ID [--schema S]`, the PgBackend the store was
 * written with. A data directory records its backend (the writer id and the
 * schema, never the URL), so the CLI cannot guess the URL and must be told;
 * without the group a command opens the store with LevelDB's backend, and a
 * PostgreSQL-backed directory refuses that with BACKEND_MISMATCH
 * (backend-hint.ts names the flags to add).
 */
export interface PgFlags {
  readonly pg?: string
  readonly writerId?: string
  readonly schema?: string
}

/**
 * The commands that take the group: every one that opens a store through
 * the engine, and `status`, which reads the backend's checkpoint from
 * PostgreSQL (only reads it). Not `fsck` (the reconciler compares the log
 * with the local LevelDB backend only), nor `backup` (a PostgreSQL-backed
 * store's rows are not in its data directory: BACKUP_UNSUPPORTED), nor the
 * commands that read only the log (`dump`, `watch`, whose --pg is
 * --all-writers').
 */
export const PG_COMMANDS: readonly string[] = ['replay', 'status', 'get', 'query', 'namespaces', 'stats', 'export', 'import', 'deadletter']

/** The group as a store recorded with PgBackend needs it (the URL left to the user: it is never recorded). */
export function pgFlagsFor(recorded: { readonly writerId: string; readonly schema: string }): string {
  return `--pg URL --writer-id ${recorded.writerId}${recorded.schema !== 'memwal' ? ` --schema ${recorded.schema}` : ''}`
}

/** Adds the group's three options to a command (main.ts, for each of PG_COMMANDS). */
export function pgOptions(c: Command): Command {
  return c
    .option('--pg <url>', 'the store\'s backend is this PostgreSQL: open it with its PgBackend (needs --writer-id)')
    .option('--writer-id <id>', 'with --pg: the writer id the store was written with')
    .option('--schema <name>', 'with --pg: the schema it was written in (default memwal)')
}

/** Whether any of the three was given. */
export function hasPgFlags(o: PgFlags): boolean {
  return o.pg !== undefined || o.writerId !== undefined || o.schema !== undefined
}

/**
 * The PgBackend the flags ask for, or none (LevelDB's). `--writer-id` or
 * `--schema` without `--pg`, and `--pg` without `--writer-id`, are
 * INVALID_OPTIONS (details.field `writerId` or `schema`, the one given
 * alone; `writerId`, the one missing): refused before the directory is
 * touched.
 */
export function pgBackendOf(o: PgFlags): PgBackend | undefined {
  if (o.pg === undefined) {
    if (o.writerId !== undefined || o.schema !== undefined) throw new InvalidOptionsError(`${o.writerId !== undefined ? '--writer-id' : '--schema'} goes with --pg URL (the PostgreSQL the store is backed by)`, o.writerId !== undefined ? 'writerId' : 'schema')
    return undefined
  }
  if (o.writerId === undefined) throw new InvalidOptionsError('--pg opens the store with its PostgreSQL backend: give the writer id it was written with, --writer-id', 'writerId')
  return new PgBackend({ connectionString: o.pg, writerId: o.writerId, ...(o.schema !== undefined ? { schema: o.schema } : {}) })
}

/** A command's own options, the group taken out (what goes on to an engine call, which refuses fields it does not know). */
export function withoutPgFlags<O extends PgFlags>(o: O): Omit<O, keyof PgFlags> {
  const { pg: _pg, writerId: _writerId, schema: _schema, ...own } = o
  return own
}
