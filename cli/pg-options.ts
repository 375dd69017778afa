import { Option, type Command } from 'commander'
import { InvalidOptionsError, PgBackend } from '../engine/index.js'

/**
 * The option group that opens a PostgreSQL-backed store from the shell:
 * `--pg URL --writer-id ID [--schema S]`, the PgBackend the store was
 * written with. A data directory records its backend (the writer id and the
 * schema, never the URL), so the CLI cannot guess the URL and must be told;
 * without the group a command opens the store with LevelDB's backend, and a
 * PostgreSQL-backed directory refuses that with BACKEND_MISMATCH
 * (backend-hint.ts names the flags to add).
 *
 * The URL may carry a password, which `--pg` would show in `ps` and keep in
 * the shell's history: MEMWAL_PG_URL in the environment stands for `--pg`
 * (`MEMWAL_PG_URL=... memwal get DIR k --writer-id w`), `--pg` winning when
 * both are there. It counts only with `--writer-id` or `--schema`: set for
 * another reason (PgBackend reads it too), it does not make every command on
 * a LevelDB-backed store ask for a writer id.
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

/** The environment variable that stands for `--pg URL` (with --writer-id or --schema). */
export const PG_URL_ENV = 'MEMWAL_PG_URL'

/** Adds the group's three options to a command (main.ts, for each of PG_COMMANDS). */
export function pgOptions(c: Command): Command {
  return c
    .addOption(new Option('--pg <url>', `the store's backend is this PostgreSQL: open it with its PgBackend (needs --writer-id); or set ${PG_URL_ENV}, out of ps and the shell's history`).env(PG_URL_ENV))
    .option('--writer-id <id>', 'with --pg: the writer id the store was written with')
    .option('--schema <name>', 'with --pg: the schema it was written in (default memwal)')
    .hook('preAction', (cmd) => {
      // The environment's URL counts only for a command that asks for the backend (see above).
      const o = cmd.opts<PgFlags>()
      if (cmd.getOptionValueSource('pg') === 'env' && o.writerId === undefined && o.schema === undefined) cmd.setOptionValue('pg', undefined)
    })
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
    if (o.writerId !== undefined || o.schema !== undefined) throw new InvalidOptionsError(`${o.writerId !== undefined ? '--writer-id' : '--schema'} goes with --pg URL, or ${PG_URL_ENV} in the environment (the PostgreSQL the store is backed by)`, o.writerId !== undefined ? 'writerId' : 'schema')
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
