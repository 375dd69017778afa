import { assert } from '../../assert.js'
import { MemwalError } from '../../errors.js'
import type { Logger } from '../../io/logger.js'
import { sqlState, type PgConnections } from './pg-pool.js'

/**
 * The PostgreSQL schema of a PgBackend: its tables, their migrations, and
 * the statements that write them.
 *
 * Tables, in the schema given (default `memwal`), created or migrated at open
 * under an advisory lock, their version in `schema_version`:
 *
 *   entries(namespace text COLLATE "C", key text COLLATE "C", value bytea,
 *           tags text[], hlc bigint, writer text, lsn bigint, deleted boolean,
 *           created_at bigint, updated_at bigint, expires_at bigint,
 *           PRIMARY KEY (namespace, key))
 *   checkpoints(writer text PRIMARY KEY, lsn bigint, changes_from bigint, dir_id text)
 *
 * `dir_id` (version 6) is the id of the data directory this writer id is
 * bound to (its BACKEND record): set by the first directory that opens with
 * the writer id (a row from before version 6 adopts the first that opens it
 * and holds records, or any when the row's checkpoint is 0), and another
 * directory is refused (PgBackend: WRITER_IN_USE; pg-claim.ts).
 *
 * Identity is (namespace, key), as in the engine. Schema version 3 made it
 * so: an existing table (primary key `key`) is migrated in place, rows
 * without a namespace going to `default`, created_at and updated_at taken
 * from the row's hlc. created_at is carried by the upsert: a put over a live
 * row keeps the row's created_at; over a tombstone, over a row that had
 * expired by the put's write time (not yet swept), or after a delete of the
 * same identity earlier in the batch, it starts at its own updated_at.
 *
 * `int8` columns come back from pg as strings: they are normalised to numbers
 * (LSNs and HLCs fit a double exactly) by `toInt`.
 */

/** The newest schema version this code creates and reads. */
export const PG_SCHEMA_VERSION = 6

/** A row of `entries` as pg returns it. */
export interface EntryRow {
  namespace: string
  key: string
  value: Buffer | null
  tags: string[] | null
  hlc: string | number
  writer: string
  lsn: string | number
  deleted: boolean
  created_at: string | number | null
  updated_at: string | number | null
  expires_at: string | number | null
}

/** The columns of an EntryRow, for a SELECT. */
export const ROW = 'namespace, key, value, tags, hlc, writer, lsn, deleted, created_at, updated_at, expires_at'

/** Creates the schema or brings it to PG_SCHEMA_VERSION, one writer at a time (advisory lock). */
export async function migrate(conn: PgConnections, t: Tables, s: { readonly schema: string; readonly logger: Logger }): Promise<void> {
  if ((await schemaVersion(conn, t, s.schema)) === PG_SCHEMA_VERSION) return
  await conn.withClient(undefined, async (client) => {
    try {
      await client.query('BEGIN')
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`memwal schema ${s.schema}`])
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${t.schema}`)
      await client.query(`CREATE TABLE IF NOT EXISTS ${t.version} (id boolean PRIMARY KEY DEFAULT true CHECK (id), version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())`)
      const r = await client.query<{ version: number }>(`SELECT version FROM ${t.version}`)
      const from = r.rows[0]?.version ?? 0
      if (from > PG_SCHEMA_VERSION) throw newerSchema(s.schema, from)
      for (const m of MIGRATIONS) {
        if (m.version <= from) continue
        for (const sql of m.statements(t)) await client.query(sql)
      }
      await client.query(`INSERT INTO ${t.version} (id, version) VALUES (true, $1) ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()`, [PG_SCHEMA_VERSION])
      await client.query('COMMIT')
      if (from < PG_SCHEMA_VERSION) s.logger.info({ schema: s.schema, from, to: PG_SCHEMA_VERSION }, 'PostgreSQL schema migrated')
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined)
      throw err
    }
  })
}

/**
 * For a process that only reads the schema (a watcher): the schema must be
 * there at this memwal's version, since nothing here creates or migrates it
 * (a misspelt schema would otherwise be a watch that waits forever).
 */
export async function requireSchema(conn: PgConnections, t: Tables, schema: string): Promise<void> {
  const v = await schemaVersion(conn, t, schema)
  if (v === PG_SCHEMA_VERSION) return requireTables(conn, t, schema)
  throw new MemwalError('INVALID_OPTIONS', v === 0
    ? `PostgreSQL schema ${schema} holds no memwal tables: no writer has opened it (check the schema's name)`
    : `PostgreSQL schema ${schema} is at version ${v}: a writer of this memwal migrates it when it opens; a watcher does not`, { details: { field: 'schema', schema, version: v } })
}

/**
 * The tables memwal reads and writes, checked at every open even when
 * schema_version is current (migrate then does nothing): a table dropped by
 * hand would otherwise open fine and fail every apply. BACKEND_SCHEMA_DAMAGED
 * names the missing ones (details.missing). A table emptied (TRUNCATE) is
 * still there: only PgBackend.verifyLog sees that.
 */
export async function requireTables(conn: PgConnections, t: Tables, schema: string): Promise<void> {
  const missing = await missingParts(conn, t)
  if (missing.length === 0) return
  throw new MemwalError('BACKEND_SCHEMA_DAMAGED', `PostgreSQL schema ${schema} is at memwal's version but lacks ${missing.join(', ')}: restore it from a backup (or open another schema); memwal does not recreate a table that held rows`, {
    details: { schema, missing },
  })
}

/** What of memwal's schema is not there: `['schema']` when the schema itself is not, else the tables missing (none: []). */
export async function missingParts(conn: PgConnections, t: Tables): Promise<string[]> {
  const names = { entries: t.entries, checkpoints: t.checkpoints, changes: t.changes, schema_version: t.version }
  const r = await conn.query<Record<string, string | null>>(
    `SELECT to_regnamespace($1) AS schema, ${Object.keys(names).map((n, i) => `to_regclass($${i + 2}) AS ${n}`).join(', ')}`,
    [t.schema, ...Object.values(names)],
  )
  const row = r.rows[0] ?? {}
  if (row['schema'] === null || row['schema'] === undefined) return ['schema']
  return Object.keys(names).filter((n) => row[n] === null || row[n] === undefined)
}

/** The schema's version: 0 when it does not exist yet. */
async function schemaVersion(conn: PgConnections, t: Tables, schema: string): Promise<number> {
  try {
    const r = await conn.query<{ version: number }>(`SELECT version FROM ${t.version}`)
    const v = r.rows[0]?.version ?? 0
    if (v > PG_SCHEMA_VERSION) throw newerSchema(schema, v)
    return v
  } catch (err) {
    const code = sqlState(err)
    if (code === '3F000' || code === '42P01') return 0 // no such schema, no such table
    throw err
  }
}

function newerSchema(schema: string, version: number): MemwalError {
  return new MemwalError('INVALID_OPTIONS', `PostgreSQL schema ${schema} is at version ${version}, newer than this memwal knows (${PG_SCHEMA_VERSION}): upgrade memwal or use another schema`, {
    details: { schema, version, known: PG_SCHEMA_VERSION },
  })
}

/** An int8 column's value as a number (pg returns int8 as a string). */
export function toInt(v: string | number): number {
  const n = typeof v === 'number' ? v : Number(v)
  assert(Number.isSafeInteger(n), `an int8 column holds a safe integer (${String(v)})`)
  return n
}

// ---- tables and statements ----

export interface Tables {
  readonly schema: string
  readonly entries: string
  readonly checkpoints: string
  readonly changes: string
  readonly version: string
  readonly applySql: string
  readonly claimSql: string
  /** This writer's checkpoint row ($1) at or past LSN $2, bound to data directory $3 (NULL: none), locked FOR SHARE. */
  readonly ownRowSql: string
  readonly repairLogSql: string
  readonly repairOwnSql: string
  readonly repairVersionedSql: string
  readonly legacyDeleteSql: string
}

export interface Columns {
  readonly namespaces: string[]
  readonly keys: string[]
  readonly values: (Buffer | null)[]
  /** Each key's tags as a JSON array (arrays of arrays must be rectangular in SQL). */
  readonly tags: (string | null)[]
  readonly hlcs: number[]
  readonly lsns: number[]
  readonly deleted: boolean[]
  readonly expires: (number | null)[]
  readonly fresh: boolean[]
  readonly created: number[]
}

/** The column arrays as statement parameters $1..$10, in INPUT's order. */
export function columnArgs(c: Columns): unknown[] {
  return [c.namespaces, c.keys, c.values, c.tags, c.hlcs, c.lsns, c.deleted, c.expires, c.fresh, c.created]
}

const MIGRATIONS: readonly { readonly version: number; statements(t: Tables): string[] }[] = [
  {
    version: 1,
    statements: (t) => [
      `CREATE TABLE ${t.entries} (
        key text COLLATE "C" PRIMARY KEY,
        value bytea,
        namespace text,
        tags text[],
        hlc bigint NOT NULL,
        writer text COLLATE "C" NOT NULL,
        lsn bigint NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        CHECK (deleted OR value IS NOT NULL)
      )`,
      `CREATE TABLE ${t.checkpoints} (writer text COLLATE "C" PRIMARY KEY, lsn bigint NOT NULL CHECK (lsn >= 0))`,
    ],
  },
  {
    version: 2,
    statements: (t) => [
      `CREATE INDEX entries_writer_lsn ON ${t.entries} (writer, lsn)`,
      `CREATE INDEX entries_namespace ON ${t.entries} (namespace, key) WHERE NOT deleted`,
      `CREATE INDEX entries_tags ON ${t.entries} USING gin (tags) WHERE NOT deleted`,
    ],
  },
  {
    // Identity (namespace, key): a row without a namespace (a tombstone, or a put that named none) goes to `default`.
    version: 3,
    statements: (t) => [
      `UPDATE ${t.entries} SET namespace = 'default' WHERE namespace IS NULL`,
      `ALTER TABLE ${t.entries} ALTER COLUMN namespace TYPE text COLLATE "C", ALTER COLUMN namespace SET NOT NULL`,
      `ALTER TABLE ${t.entries} DROP CONSTRAINT entries_pkey`,
      `ALTER TABLE ${t.entries} ADD PRIMARY KEY (namespace, key)`,
      `DROP INDEX IF EXISTS ${t.schema}.entries_namespace`,
      `ALTER TABLE ${t.entries} ADD COLUMN created_at bigint, ADD COLUMN updated_at bigint, ADD COLUMN expires_at bigint`,
      `UPDATE ${t.entries} SET updated_at = hlc / 1000, created_at = hlc / 1000`,
      `CREATE INDEX entries_key ON ${t.entries} (key)`,
    ],
  },
  {
    // The change feed (pg-changes.ts): every operation each writer applied, kept for a window of its records.
    version: 4,
    statements: (t) => [
      `CREATE TABLE ${t.changes} (
        writer text COLLATE "C" NOT NULL,
        lsn bigint NOT NULL,
        seq integer NOT NULL CHECK (seq >= 0),
        last boolean NOT NULL,
        namespace text COLLATE "C",
        key text COLLATE "C" NOT NULL,
        deleted boolean NOT NULL,
        value bytea,
        tags text[],
        hlc bigint NOT NULL,
        expires_at bigint,
        PRIMARY KEY (writer, lsn, seq),
        CHECK (deleted OR value IS NOT NULL)
      )`,
      // Rows of a writer with an LSN below this may have been pruned: a feed positioned below it gets HISTORY_PURGED.
      `ALTER TABLE ${t.checkpoints} ADD COLUMN changes_from bigint NOT NULL DEFAULT 0`,
    ],
  },
  {
    // MemWAL.query over every writer (pg-query.ts): a write-time range without a namespace to narrow it (since/until alone, or
    // under a namespace prefix) reads this index instead of every row. An update already changes an indexed column (lsn, of
    // entries_writer_lsn), so it was never a HOT update: this adds one index entry per write.
    version: 5,
    statements: (t) => [`CREATE INDEX IF NOT EXISTS entries_live_updated_at ON ${t.entries} (updated_at) WHERE NOT deleted`],
  },
  {
    // One writer id, one data directory: the id of the directory a writer id is bound to (claimSql), NULL until one opens it.
    version: 6,
    statements: (t) => [`ALTER TABLE ${t.checkpoints} ADD COLUMN IF NOT EXISTS dir_id text`],
  },
]

/** The input arrays, one row per identity ($1..$10), this writer ($11); `only`: a WHERE that holds them back. */
const INPUT = (only: string): string => `SELECT u.namespace, u.key, u.value,
    CASE WHEN u.tags IS NULL THEN NULL ELSE ARRAY(SELECT json_array_elements_text(u.tags::json)) END AS tags,
    u.hlc, $11::text AS writer, u.lsn, u.deleted, u.created / 1000 AS created_at, u.hlc / 1000 AS updated_at, u.expires_at
  FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::int8[], $6::int8[], $7::bool[], $8::int8[], $9::bool[], $10::int8[]) AS u(namespace, key, value, tags, hlc, lsn, deleted, expires_at, fresh, created)
  ${only}
  ORDER BY u.namespace, u.key`

/**
 * createdAt carried: kept from a live row, started again over a tombstone,
 * over a row that had expired by the write time of the batch's first put of
 * the identity (EXCLUDED.created_at: keepsCreatedAt, engine/format/expiry-key.ts,
 * as SQL), or when the batch started it again itself (its \`fresh\` flag,
 * looked up in the input by identity).
 */
const SET_ALL = `SET value = EXCLUDED.value, tags = EXCLUDED.tags, hlc = EXCLUDED.hlc, writer = EXCLUDED.writer, lsn = EXCLUDED.lsn, deleted = EXCLUDED.deleted,
    updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at,
    created_at = CASE WHEN e.deleted OR e.created_at IS NULL OR e.expires_at <= EXCLUDED.created_at OR (SELECT bool_or(f.fresh) FROM unnest($1::text[], $2::text[], $9::bool[]) AS f(namespace, key, fresh) WHERE f.namespace = EXCLUDED.namespace AND f.key = EXCLUDED.key) THEN EXCLUDED.created_at ELSE e.created_at END`

/**
 * Every operation of the batch into the change feed ($13..$22: one row per
 * operation, this writer $11). A replayed or re-sent batch finds its rows
 * there already: DO NOTHING, so each (writer, lsn, seq) is there once.
 */
const CHANGES_INSERT = (changes: string, only: string): string => `INSERT INTO ${changes} (writer, lsn, seq, last, namespace, key, deleted, value, tags, hlc, expires_at)
  SELECT $11::text, u.lsn, u.seq, u.last, u.namespace, u.key, u.deleted, u.value,
    CASE WHEN u.tags IS NULL THEN NULL ELSE ARRAY(SELECT json_array_elements_text(u.tags::json)) END, u.hlc, u.expires_at
  FROM unnest($13::int8[], $14::int4[], $15::bool[], $16::text[], $17::text[], $18::bool[], $19::bytea[], $20::text[], $21::int8[], $22::int8[])
    AS u(lsn, seq, last, namespace, key, deleted, value, tags, hlc, expires_at)
  ${only}
  ON CONFLICT (writer, lsn, seq) DO NOTHING`

const COLUMNS = '(namespace, key, value, tags, hlc, writer, lsn, deleted, created_at, updated_at, expires_at)'

/**
 * The condition on this writer's checkpoint row (`c`) for it to write at all: the writer's row ($writer), holding the
 * checkpoint this process last wrote ($written) or a later one (its reply lost), bound to its data directory ($dirId;
 * NULL: a backend opened without one, which writes only an unbound row: one bound to a directory is that directory's).
 * A row missing, set back or bound elsewhere means PostgreSQL lost what it applied, or another owns the writer id.
 */
function ownRow(writer: string, written: string, dirId: string): string {
  return `c.writer = ${writer} AND c.lsn >= ${written}::int8 AND c.dir_id IS NOT DISTINCT FROM ${dirId}::text`
}

/** The tables and statements of one schema. */
export function tables(schema: string): Tables {
  const s = `"${schema}"`
  const entries = `${s}.entries`
  const checkpoints = `${s}.checkpoints`
  const changes = `${s}.changes`
  const upsert = (op: '>' | '>=', only = ''): string =>
    `INSERT INTO ${entries} AS e ${COLUMNS} ${INPUT(only)}
    ON CONFLICT (namespace, key) DO UPDATE ${SET_ALL}
    WHERE (EXCLUDED.hlc, EXCLUDED.writer, EXCLUDED.lsn) ${op} (e.hlc, e.writer, e.lsn)`
  const tagsOf = (n: number): string => `CASE WHEN $${n}::text IS NULL THEN NULL ELSE ARRAY(SELECT json_array_elements_text($${n}::json)) END`
  const keep = 'updated_at = EXCLUDED.updated_at, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at'
  return {
    schema: s,
    entries,
    checkpoints,
    changes,
    version: `${s}.schema_version`,
    // This writer's checkpoint row is updated first, and only where it is the row this process last wrote or one after it
    // (a statement that committed while its reply was lost): at or past $24, bound to data directory $25 (NULL: a backend
    // opened without one, which needs a row bound to none: ownRow). The data, the feed and its pruning read cp's row, so a row missing or set back (the schema
    // recreated, the row deleted or restored from an older backup) writes nothing and answers checkpoint NULL.
    applySql: `WITH cp AS (UPDATE ${checkpoints} AS c SET lsn = GREATEST(c.lsn, $12::int8), changes_from = GREATEST(c.changes_from, $12::int8 - $23::int8 + 1)
        WHERE ${ownRow('$11', '$24', '$25')} RETURNING c.lsn),
      up AS (${upsert('>', 'WHERE EXISTS (SELECT 1 FROM cp)')} RETURNING 1),
      ch AS (${CHANGES_INSERT(changes, 'WHERE EXISTS (SELECT 1 FROM cp)')}),
      pr AS (DELETE FROM ${changes} WHERE EXISTS (SELECT 1 FROM cp) AND writer = $11 AND lsn <= $12::int8 - $23::int8)
      SELECT (SELECT lsn FROM cp) AS checkpoint, (SELECT count(*) FROM up) AS applied`,
    // This writer's row, bound to data directory $2 unless bound to another already, or unbound (schema 5) with a checkpoint
    // that a directory holding no records ($3 false) cannot have written: then it returns no row, and writes nothing.
    claimSql: `INSERT INTO ${checkpoints} AS c (writer, lsn, dir_id) VALUES ($1, 0, $2)
      ON CONFLICT (writer) DO UPDATE SET dir_id = EXCLUDED.dir_id
        WHERE c.dir_id = EXCLUDED.dir_id OR (c.dir_id IS NULL AND (c.lsn = 0 OR $3::boolean))
      RETURNING c.lsn`,
    // The same guard for PgBackend.repair, held (FOR SHARE) until its transaction ends: no row, no repair.
    ownRowSql: `SELECT c.lsn FROM ${checkpoints} AS c WHERE ${ownRow('$1', '$2', '$3')} FOR SHARE`,
    repairLogSql: upsert('>='),
    legacyDeleteSql: `UPDATE ${entries} AS e SET deleted = true, value = NULL, tags = NULL, expires_at = NULL, hlc = $2, writer = $3, lsn = $4
      WHERE e.key = $1 AND NOT e.deleted AND ($2::int8, $3::text COLLATE "C", $4::int8) > (e.hlc, e.writer, e.lsn)`,
    repairOwnSql: `INSERT INTO ${entries} AS e ${COLUMNS}
      VALUES ($1, $2, $3, ${tagsOf(4)}, 0, $5, $6, false, $7, $8, $9)
      ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, tags = EXCLUDED.tags, lsn = EXCLUDED.lsn, deleted = false, ${keep}
      WHERE e.writer = EXCLUDED.writer AND e.lsn <= EXCLUDED.lsn`,
    repairVersionedSql: `INSERT INTO ${entries} AS e ${COLUMNS}
      VALUES ($1, $2, $3, ${tagsOf(4)}, $5, $6, $7, false, $8, $9, $10)
      ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, tags = EXCLUDED.tags, hlc = EXCLUDED.hlc, writer = EXCLUDED.writer, lsn = EXCLUDED.lsn, deleted = false, ${keep}
      WHERE (EXCLUDED.hlc, EXCLUDED.writer, EXCLUDED.lsn) >= (e.hlc, e.writer, e.lsn)`,
  }
}
