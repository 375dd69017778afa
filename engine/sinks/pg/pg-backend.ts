import { Socket } from 'node:net'
import pg from 'pg'
import type { PoolClient, PoolConfig } from 'pg'
import { assert } from '../../assert.js'
import { InvalidOptionsError, MemwalError } from '../../errors.js'
import { systemClock } from '../../io/clock.js'
import { limits } from '../../limits.js'
import type { Logger } from '../../options.js'
import { identityOf, opIdentity, splitIdentity } from '../../format/identity.js'
import type { DumpEntry } from '../../reconcile/dump.js'
import { hlcMs, isLegacyDelete, LegacyDeleteResolver, opsOf, type Op } from '../../format/record-codec.js'
import { createPackr, packValue } from '../../format/value-codec.js'
import { BackendSink, type AppliedRecord, type FailureClass, type StoredEntry } from '../sink.js'

/**
 * A backend on PostgreSQL (`pg`), shared by many writers: each process keeps
 * its own WAL and data directory, and replicates into the same tables.
 *
 * Tables, in the schema given (default `memwal`), created or migrated at open
 * under an advisory lock, their version in `schema_version`:
 *
 *   entries(namespace text COLLATE "C", key text COLLATE "C", value bytea,
 *           tags text[], hlc bigint, writer text, lsn bigint, deleted boolean,
 *           created_at bigint, updated_at bigint, expires_at bigint,
 *           PRIMARY KEY (namespace, key))
 *   checkpoints(writer text PRIMARY KEY, lsn bigint)
 *
 * Identity is (namespace, key), as in the engine. Schema version 3 made it
 * so: an existing table (primary key `key`) is migrated in place, rows
 * without a namespace going to `default`, created_at and updated_at taken
 * from the row's hlc. created_at is carried by the upsert: a put over a live
 * row keeps the row's created_at; over a tombstone, or after a delete of the
 * same identity earlier in the batch, it starts at its own updated_at.
 * A version-1 delete (a log written before identities, no namespace) deletes
 * the key in every namespace, in the same transaction as the rest.
 *
 * A value is stored msgpack-encoded. A delete leaves a tombstone (`deleted`),
 * which `get` reports as absent and `entries` skips: it must stay, or an older
 * put replayed later would bring the key back.
 *
 * Each apply is one statement, hence one transaction: a multi-row upsert (the
 * batch deduplicated, last operation per key winning, sorted by key so that
 * writers lock rows in the same order) and this writer's checkpoint row. A row
 * is replaced only by a version that is greater by (hlc, writer, lsn): the
 * hybrid logical clock stamped into every record, the writer id breaking
 * ties, the LSN ordering records of one writer that carry no HLC. So the
 * stored row is the greatest version any writer applied, whatever the order
 * in which the writers' applies, retries and replays arrived; replaying a
 * version already there changes nothing (idempotent by writer and LSN).
 *
 * `int8` columns come back from pg as strings: they are normalised to numbers
 * (LSNs and HLCs fit a double exactly).
 */

/** The newest schema version this code creates and reads. */
export const PG_SCHEMA_VERSION = 3

export interface PgBackendOptions {
  /** postgres://user@host:port/database (default: the MEMWAL_PG_URL environment variable). */
  readonly connectionString?: string
  /** This writer's id, unique among the writers sharing the schema and bound to one data directory. */
  readonly writerId: string
  /** Schema holding the tables (default `memwal`): a lower-case SQL identifier. */
  readonly schema?: string
  /** Connections in the pool (default 4). */
  readonly poolSize?: number
  /** Server-side statement timeout (default 15 s); the client gives up on an unanswered query 1 s after it. */
  readonly statementTimeoutMs?: number
  /** How long to wait for a new connection (default 5 s). */
  readonly connectTimeoutMs?: number
  /** Rows per page when `entries` and `query` read (default 500). */
  readonly pageRows?: number
  /** Further settings for pg.Pool (ssl, password, ...); the options above take precedence. */
  readonly pgConfig?: PgPoolSettings
  readonly logger?: Logger
}

/**
 * The pg.Pool settings memwal passes through, typed here rather than with
 * pg's own PoolConfig: memwal's public declarations must type-check for a
 * consumer that has not installed @types/pg (a devDependency of memwal).
 * The names and meanings are pg's.
 */
export interface PgPoolSettings {
  readonly user?: string
  readonly password?: string | (() => string | Promise<string>)
  readonly host?: string
  readonly port?: number
  readonly database?: string
  /** `true`, or Node's tls.connect options (ca, cert, key, rejectUnauthorized, ...). */
  readonly ssl?: boolean | Readonly<Record<string, unknown>>
  readonly application_name?: string
  readonly idleTimeoutMillis?: number
  readonly keepAlive?: boolean
  readonly keepAliveInitialDelayMillis?: number
}

/** A stored entry with the version that wrote it: which writer, and its HLC. */
export interface PgStoredEntry extends StoredEntry {
  readonly hlc: number
  readonly writer: string
}

export interface PgQuery {
  readonly namespace?: string
  readonly tag?: string
  readonly prefix?: string
  /** At most this many results (default 1,000; at most 100,000). */
  readonly limit?: number
}

export interface PgQueryResult {
  readonly key: string
  readonly value: unknown
  readonly namespace: string
  readonly tags?: readonly string[]
  readonly hlc: number
  readonly writer: string
  readonly lsn: number
}

export type PgLogFindingKind = 'log-damage' | 'checkpoint-ahead' | 'missing' | 'stale' | 'mismatch' | 'unknown-version'

export interface PgLogFinding {
  readonly kind: PgLogFindingKind
  readonly key?: string
  readonly namespace?: string
  readonly lsn?: number
  readonly detail: string
  repaired: boolean
}

/** What `verifyLog` found: one writer's log against the shared tables. */
export interface PgLogReport {
  readonly writer: string
  readonly clean: boolean
  /** This writer's checkpoint in PostgreSQL, and the log's last LSN. */
  readonly checkpoint: number
  readonly lastLsn: number
  /** Keys whose latest version in the log the checkpoint covers, compared one by one. */
  readonly keysChecked: number
  /** Of those, keys where another writer's greater version (or a later one of this writer) stands: correct. */
  readonly superseded: number
  /** Records past the checkpoint: not applied yet, not compared. */
  readonly pendingRecords: number
  readonly counts: Readonly<Record<string, number>>
  readonly findings: readonly PgLogFinding[]
}

const DEFAULTS = Object.freeze({
  schema: 'memwal',
  poolSize: 4,
  statementTimeoutMs: 15_000,
  connectTimeoutMs: 5_000,
  pageRows: 500,
  /** The client's own read timeout, past the server's statement timeout. */
  clientTimeoutMarginMs: 1_000,
  /** close() waits this long for the pool to end gracefully, then destroys the sockets. */
  closeGraceMs: 2_000,
})
const WRITER_ID_CHARS_MAX = 128
/** Keys per lookup when the reconciler reads rows back. */
const VERIFY_CHUNK_KEYS = 1000

/**
 * SQLSTATE classes of errors that come from the data and will fail the same
 * way every time: 22 data exception (a NUL in a key, an invalid byte
 * sequence), 23 integrity constraint violation. Anything else (connection
 * exceptions 08, serialization failure 40001, deadlock 40P01, statement
 * timeout 57014, server shutdown 57P0x, too many connections 53300, socket
 * errors, our own read timeout) may pass when retried: transient.
 */
const PERMANENT_SQLSTATE_CLASSES: ReadonlySet<string> = new Set(['22', '23'])

interface EntryRow {
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

const ROW = 'namespace, key, value, tags, hlc, writer, lsn, deleted, created_at, updated_at, expires_at'

/** One identity's version in a batch: the last operation on it. */
interface Version {
  readonly op: Op
  readonly lsn: number
  readonly hlc: number
  /** A delete of this identity came earlier in the batch: a put starts its createdAt again. */
  readonly fresh: boolean
  /** The hlc a put's createdAt comes from when the stored row does not settle it: the first put of the batch's run of puts. */
  readonly createdHlc: number
}

export class PgBackend extends BackendSink {
  readonly name = 'backend'
  readonly writerId: string
  readonly schema: string
  private readonly connectionString: string
  private readonly o: Required<Pick<PgBackendOptions, 'poolSize' | 'statementTimeoutMs' | 'connectTimeoutMs' | 'pageRows'>>
  private readonly pgConfig: PoolConfig
  private readonly logger: Logger | undefined
  private readonly packr = createPackr()
  private readonly sockets = new Set<Socket>()
  private pool: pg.Pool | undefined
  private readonly t: Tables

  constructor(options: PgBackendOptions) {
    super()
    if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('PgBackend takes an options object')
    const url = options.connectionString ?? process.env['MEMWAL_PG_URL']
    if (typeof url !== 'string' || url.length === 0) throw new InvalidOptionsError('PgBackend needs connectionString or the MEMWAL_PG_URL environment variable')
    const w = options.writerId
    if (typeof w !== 'string' || w.length === 0 || w.length > WRITER_ID_CHARS_MAX || w.includes('\u0000') || !w.isWellFormed()) {
      throw new InvalidOptionsError(`writerId must be a non-empty string of at most ${WRITER_ID_CHARS_MAX} characters, without NUL`)
    }
    const schema = options.schema ?? DEFAULTS.schema
    if (typeof schema !== 'string' || !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new InvalidOptionsError('schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters)')
    this.connectionString = url
    this.writerId = w
    this.schema = schema
    this.o = {
      poolSize: positiveInt('poolSize', options.poolSize ?? DEFAULTS.poolSize),
      statementTimeoutMs: positiveInt('statementTimeoutMs', options.statementTimeoutMs ?? DEFAULTS.statementTimeoutMs),
      connectTimeoutMs: positiveInt('connectTimeoutMs', options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs),
      pageRows: positiveInt('pageRows', options.pageRows ?? DEFAULTS.pageRows),
    }
    this.pgConfig = (options.pgConfig ?? {}) as PoolConfig
    this.logger = options.logger
    this.t = tables(schema)
  }

  // ---- lifecycle ----

  protected async _open(): Promise<number> {
    assert(this.pool === undefined, 'a PgBackend is opened once (close it before opening it again)')
    const pool = new pg.Pool({
      ...this.pgConfig,
      connectionString: this.connectionString,
      max: this.o.poolSize,
      connectionTimeoutMillis: this.o.connectTimeoutMs,
      statement_timeout: this.o.statementTimeoutMs,
      query_timeout: this.o.statementTimeoutMs + DEFAULTS.clientTimeoutMarginMs,
      idle_in_transaction_session_timeout: 2 * this.o.statementTimeoutMs,
      application_name: `memwal:${this.writerId}`.slice(0, 63),
      keepAlive: true,
      // Our own sockets, so that close() can destroy them when the network swallows the goodbye.
      stream: () => this.track(new Socket()),
    })
    // An idle connection that breaks (server restart, network cut) is dropped by the pool; the next call makes a new one.
    pool.on('error', (err) => this.logger?.warn({ err, writer: this.writerId }, 'PostgreSQL connection lost (idle)'))
    this.pool = pool
    try {
      await this.migrate()
      const r = await pool.query<{ lsn: string }>(`SELECT lsn FROM ${this.t.checkpoints} WHERE writer = $1`, [this.writerId])
      return r.rows[0] === undefined ? 0 : toInt(r.rows[0].lsn)
    } catch (cause) {
      await this.endPool()
      if (cause instanceof MemwalError) throw cause
      throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `cannot open the PostgreSQL backend (schema ${this.schema}): ${(cause as Error).message}`, { cause, transient: true })
    }
  }

  protected async _close(): Promise<void> {
    await this.endPool()
  }

  /** Creates the schema or brings it to PG_SCHEMA_VERSION, one writer at a time (advisory lock). */
  private async migrate(): Promise<void> {
    if ((await this.schemaVersion()) === PG_SCHEMA_VERSION) return
    await this.withClient(undefined, async (client) => {
      try {
        await client.query('BEGIN')
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`memwal schema ${this.schema}`])
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${this.t.schema}`)
        await client.query(`CREATE TABLE IF NOT EXISTS ${this.t.version} (id boolean PRIMARY KEY DEFAULT true CHECK (id), version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())`)
        const r = await client.query<{ version: number }>(`SELECT version FROM ${this.t.version}`)
        const from = r.rows[0]?.version ?? 0
        if (from > PG_SCHEMA_VERSION) throw newerSchema(this.schema, from)
        for (const m of MIGRATIONS) {
          if (m.version <= from) continue
          for (const sql of m.statements(this.t)) await client.query(sql)
        }
        await client.query(`INSERT INTO ${this.t.version} (id, version) VALUES (true, $1) ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()`, [PG_SCHEMA_VERSION])
        await client.query('COMMIT')
        if (from < PG_SCHEMA_VERSION) this.logger?.info({ schema: this.schema, from, to: PG_SCHEMA_VERSION }, 'PostgreSQL schema migrated')
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined)
        throw err
      }
    })
  }

  /** The schema's version: 0 when it does not exist yet. */
  private async schemaVersion(): Promise<number> {
    try {
      const r = await this.requirePool().query<{ version: number }>(`SELECT version FROM ${this.t.version}`)
      const v = r.rows[0]?.version ?? 0
      if (v > PG_SCHEMA_VERSION) throw newerSchema(this.schema, v)
      return v
    } catch (err) {
      const code = sqlState(err)
      if (code === '3F000' || code === '42P01') return 0 // no such schema, no such table
      throw err
    }
  }

  // ---- apply ----

  /**
   * One statement: the batch's last version of each key, upserted where it
   * is greater than the stored one by (hlc, writer, lsn), and this writer's
   * checkpoint, in the same transaction. An abort (the applier's timeout)
   * destroys the connection, so the call settles at once; the server rolls
   * the statement back unless it had committed, and either way a retry
   * converges to the same rows.
   */
  protected async _apply(records: readonly AppliedRecord[], checkpoint: number, signal?: AbortSignal): Promise<void> {
    const { versions, legacy } = latestPerKey(records)
    const cols = this.columns(versions)
    const r = await this.withClient(signal, async (c) => {
      if (legacy.length === 0) return c.query<{ checkpoint: string }>(this.t.applySql, [...columnArgs(cols), this.writerId, checkpoint])
      // Version-1 deletes (no namespace): the key in every namespace, before the rest, in one transaction.
      try {
        await c.query('BEGIN')
        for (const d of legacy) await c.query(this.t.legacyDeleteSql, [d.key, d.hlc, this.writerId, d.lsn])
        const out = await c.query<{ checkpoint: string }>(this.t.applySql, [...columnArgs(cols), this.writerId, checkpoint])
        await c.query('COMMIT')
        return out
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined)
        throw err
      }
    })
    const stored = toInt(r.rows[0]?.checkpoint ?? 0)
    if (stored > checkpoint) {
      this.logger?.warn({ writer: this.writerId, stored, checkpoint }, 'the stored checkpoint is ahead of this apply: is another process using the same writer id?')
    }
  }

  private columns(versions: ReadonlyMap<string, Version>): Columns {
    const ids = [...versions.keys()].sort()
    const c: Columns = { namespaces: [], keys: [], values: [], tags: [], hlcs: [], lsns: [], deleted: [], expires: [], fresh: [], created: [] }
    for (const id of ids) {
      const v = versions.get(id) as Version
      const put = v.op.type === 'put' ? v.op : undefined
      const { namespace, key } = splitIdentity(id)
      c.namespaces.push(namespace)
      c.keys.push(key)
      // Copied: msgpackr's encode returns a view into a buffer it reuses.
      c.values.push(put ? Buffer.from(packValue(this.packr, put.value)) : null)
      c.tags.push(put?.tags ? JSON.stringify(put.tags) : null)
      c.hlcs.push(v.hlc)
      c.lsns.push(v.lsn)
      c.deleted.push(!put)
      c.expires.push(put?.expiresAt ?? null)
      c.fresh.push(v.fresh)
      c.created.push(v.createdHlc)
    }
    return c
  }

  /** Data errors (SQLSTATE classes 22, 23) are permanent; everything else may pass on a retry. */
  override classify(err: unknown): FailureClass {
    if (super.classify(err) === 'permanent') return 'permanent'
    const code = sqlState(err)
    return code !== undefined && PERMANENT_SQLSTATE_CLASSES.has(code.slice(0, 2)) ? 'permanent' : 'transient'
  }

  // ---- reads ----

  async get(id: string): Promise<PgStoredEntry | undefined> {
    const { namespace, key } = splitIdentity(id)
    const r = await this.requirePool().query<EntryRow>(`SELECT ${ROW} FROM ${this.t.entries} WHERE namespace = $1 AND key = $2`, [namespace, key])
    const row = r.rows[0]
    return row === undefined || row.deleted ? undefined : this.entryOf(row)
  }

  /** Every live entry of every writer, in identity order ((namespace, key), bytewise: both columns are COLLATE "C"), read a page at a time. */
  async *entries(options: { readonly gte?: string; readonly lt?: string } = {}): AsyncIterable<[string, PgStoredEntry]> {
    for await (const row of this.pages({ ...(options.gte !== undefined ? { gte: options.gte } : {}), ...(options.lt !== undefined ? { lt: options.lt } : {}) }, Number.MAX_SAFE_INTEGER)) {
      yield [identityOf(row.namespace, row.key), this.entryOf(row)]
    }
  }

  /**
   * Entries of every writer matching each criterion given, in key order,
   * read from PostgreSQL. (MemWAL.query answers from the local index, which
   * holds only this process's keys.)
   */
  async *query(q: PgQuery = {}): AsyncGenerator<PgQueryResult> {
    const limit = q.limit ?? limits.queryResultsDefault
    if (!Number.isInteger(limit) || limit < 1 || limit > limits.queryResultsMax) throw new MemwalError('ENGINE_INVALID_VALUE', `limit must be an integer in [1, ${limits.queryResultsMax}]`)
    for (const [name, v] of [['namespace', q.namespace], ['tag', q.tag], ['prefix', q.prefix]] as const) {
      if (v !== undefined && typeof v !== 'string') throw new MemwalError('ENGINE_INVALID_VALUE', `${name} must be a string`)
    }
    for await (const row of this.pages(q, limit)) {
      const e = this.entryOf(row)
      yield { key: row.key, value: e.value, hlc: e.hlc, writer: e.writer, lsn: e.lsn, namespace: e.namespace, ...(e.tags ? { tags: e.tags } : {}) }
    }
  }

  /** Live rows in (namespace, key) order, keyset-paginated (no transaction held open between pages); gte/lt are identities. */
  private async *pages(q: { readonly gte?: string; readonly lt?: string; readonly namespace?: string; readonly tag?: string; readonly prefix?: string }, limit: number): AsyncGenerator<EntryRow> {
    const where = ['NOT deleted']
    const params: unknown[] = []
    const param = (v: unknown): string => `$${params.push(v)}`
    const pair = (id: string): string => {
      const { namespace, key } = splitIdentity(id)
      return `(${param(namespace)}, ${param(key)})`
    }
    if (q.gte !== undefined) where.push(`(namespace, key) >= ${pair(q.gte)}`)
    if (q.lt !== undefined) where.push(`(namespace, key) < ${pair(q.lt)}`)
    if (q.namespace !== undefined) where.push(`namespace = ${param(q.namespace)}`)
    if (q.tag !== undefined) where.push(`tags @> ARRAY[${param(q.tag)}]::text[]`)
    if (q.prefix !== undefined && q.prefix.length > 0) where.push(`key LIKE ${param(q.prefix.replace(/[\\%_]/g, '\\$&') + '%')}`)
    let after: EntryRow | undefined
    let left = limit
    while (left > 0) {
      const n = Math.min(left, this.o.pageRows)
      const cond = after === undefined ? where : [...where, `(namespace, key) > ($${params.length + 1}, $${params.length + 2})`]
      const args = after === undefined ? [...params, n] : [...params, after.namespace, after.key, n]
      const r = await this.requirePool().query<EntryRow>(
        `SELECT ${ROW} FROM ${this.t.entries} WHERE ${cond.join(' AND ')} ORDER BY namespace, key LIMIT $${args.length}`,
        args,
      )
      for (const row of r.rows) yield row
      left -= r.rows.length
      const last = r.rows[r.rows.length - 1]
      if (r.rows.length < n || last === undefined) return
      after = last
    }
  }

  // ---- repair and verification ----

  /**
   * The generic reconciler's repair (MemWAL.verify), which knows this
   * writer's log but not the HLC of its versions: it writes only where no
   * other writer's version stands (the key is absent, or its row is this
   * writer's, at or below the LSN given), so it can never replace a newer
   * version of another writer. An entry carrying `hlc` and `writer` (as
   * `get` returns them) is upserted by the same rule as an apply.
   */
  async repair(entries: readonly (readonly [string, StoredEntry | undefined])[]): Promise<void> {
    for (const [id, e] of entries) {
      const { namespace, key } = splitIdentity(id)
      if (e === undefined) {
        await this.requirePool().query(`UPDATE ${this.t.entries} SET deleted = true, value = NULL, tags = NULL, expires_at = NULL WHERE namespace = $1 AND key = $2 AND writer = $3`, [namespace, key, this.writerId])
        continue
      }
      const value = Buffer.from(packValue(this.packr, e.value))
      const tags = e.tags ? JSON.stringify(e.tags) : null
      const times = [e.createdAt, e.updatedAt, e.expiresAt ?? null]
      const versioned = e as Partial<PgStoredEntry>
      if (typeof versioned.hlc === 'number' && typeof versioned.writer === 'string') {
        await this.requirePool().query(this.t.repairVersionedSql, [namespace, key, value, tags, versioned.hlc, versioned.writer, e.lsn, ...times])
      } else {
        await this.requirePool().query(this.t.repairOwnSql, [namespace, key, value, tags, this.writerId, e.lsn, ...times])
      }
    }
  }

  /**
   * The reconciler for a shared backend: checks this writer's log (as
   * `dumpLog({ dir })` reads it) against PostgreSQL. For every key, the
   * latest version in the log that the checkpoint covers must be the stored
   * row, or be beaten by a greater one (another writer's later HLC). Finds:
   * `missing` (no row), `stale` (the row is a smaller version: this one was
   * lost), `mismatch` (this version, different contents), `unknown-version`
   * (a row of this writer at an LSN its log does not hold last for the key),
   * `checkpoint-ahead`, `log-damage`. With `repair`, wrong keys are upserted
   * again from the log by the apply rule (a `mismatch` overwrites its own
   * version), which never beats a greater version.
   */
  async verifyLog(log: AsyncIterable<DumpEntry>, options: { readonly repair?: boolean } = {}): Promise<PgLogReport> {
    const pool = this.requirePool()
    const cp = await pool.query<{ lsn: string }>(`SELECT lsn FROM ${this.t.checkpoints} WHERE writer = $1`, [this.writerId])
    const checkpoint = cp.rows[0] === undefined ? 0 : toInt(cp.rows[0].lsn)
    const findings: PgLogFinding[] = []
    const latest = new Map<string, Version>()
    const legacy = new LegacyDeleteResolver()
    let lastLsn = 0
    let pendingRecords = 0
    for await (const d of log) {
      if (d.kind === 'damage') {
        findings.push({ kind: 'log-damage', detail: `segment ${d.segment} bytes ${d.offset}..${d.end}: ${d.detail}`, repaired: false })
        continue
      }
      if (d.kind === 'missing') {
        // A declared gap is a loss already on record (recovery or fsck --repair), not damage.
        if (!d.declared) findings.push({ kind: 'log-damage', detail: `LSNs ${d.lsnFirst}-${d.lsnLast} before segment ${d.segment}: ${d.detail}`, repaired: false })
        continue
      }
      lastLsn = Math.max(lastLsn, d.lsn)
      if (d.lsn > checkpoint) {
        pendingRecords++
        continue
      }
      for (const op of opsOf(d.record)) for (const r of legacy.resolve(op)) latest.set(opIdentity(r), { op: r, lsn: d.lsn, hlc: d.record.hlc ?? 0, fresh: false, createdHlc: d.record.hlc ?? 0 })
    }
    if (checkpoint > lastLsn) findings.push({ kind: 'checkpoint-ahead', lsn: checkpoint, detail: `checkpoint ${checkpoint} is past the log's last LSN ${lastLsn}`, repaired: false })
    let superseded = 0
    const wrong = new Map<string, Version>()
    const ids = [...latest.keys()]
    for (let i = 0; i < ids.length; i += VERIFY_CHUNK_KEYS) {
      const chunk = ids.slice(i, i + VERIFY_CHUNK_KEYS)
      const parts = chunk.map(splitIdentity)
      const r = await pool.query<EntryRow>(`SELECT ${ROW} FROM ${this.t.entries} WHERE (namespace, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, [parts.map((p) => p.namespace), parts.map((p) => p.key)])
      const rows = new Map(r.rows.map((row) => [identityOf(row.namespace, row.key), row]))
      for (const key of chunk) {
        const v = latest.get(key) as Version
        const found = this.compare(key, v, rows.get(key))
        if (found === 'superseded') superseded++
        else if (found !== 'ok') {
          findings.push(found)
          // A row of this writer the log does not explain is evidence: reported, left alone.
          if (found.kind !== 'unknown-version') wrong.set(key, v)
        }
      }
    }
    if (options.repair === true && wrong.size > 0) {
      await this.withClient(undefined, (c) => {
        const cols = this.columns(wrong)
        return c.query(this.t.repairLogSql, [...columnArgs(cols), this.writerId])
      })
      for (const f of findings) if (f.key !== undefined && f.namespace !== undefined && wrong.has(identityOf(f.namespace, f.key))) f.repaired = true
    }
    const counts: Record<string, number> = {}
    for (const f of findings) counts[f.kind] = (counts[f.kind] ?? 0) + 1
    return { writer: this.writerId, clean: findings.length === 0, checkpoint, lastLsn, keysChecked: latest.size, superseded, pendingRecords, counts, findings }
  }

  private compare(id: string, v: Version, row: EntryRow | undefined): PgLogFinding | 'ok' | 'superseded' {
    const key = splitIdentity(id).key
    const namespace = splitIdentity(id).namespace
    const mine = { hlc: v.hlc, writer: this.writerId, lsn: v.lsn }
    if (row === undefined) return { kind: 'missing', key, namespace, lsn: v.lsn, detail: `written at LSN ${v.lsn} (covered by the checkpoint) but PostgreSQL has no row`, repaired: false }
    const stored = { hlc: toInt(row.hlc), writer: row.writer, lsn: toInt(row.lsn) }
    const order = compareVersions(stored, mine)
    if (row.writer === this.writerId && stored.lsn !== v.lsn && order !== -1) {
      return { kind: 'unknown-version', key, namespace, lsn: stored.lsn, detail: `the row is this writer's LSN ${stored.lsn}, the log's latest for the key is LSN ${v.lsn}`, repaired: false }
    }
    if (order > 0) return 'superseded'
    if (order < 0) return { kind: 'stale', key, namespace, lsn: v.lsn, detail: `the row is version (hlc ${stored.hlc}, ${stored.writer}, LSN ${stored.lsn}), older than this writer's LSN ${v.lsn} (hlc ${v.hlc})`, repaired: false }
    const same = v.op.type === 'del'
      ? row.deleted
      : !row.deleted && row.value !== null && Buffer.from(packValue(this.packr, v.op.value)).equals(row.value) && sameTags(row.tags, v.op.tags) && (row.expires_at === null ? undefined : toInt(row.expires_at)) === v.op.expiresAt
    return same ? 'ok' : { kind: 'mismatch', key, namespace, lsn: v.lsn, detail: `the row claims LSN ${v.lsn} of this writer but its contents differ from the log's`, repaired: false }
  }

  // ---- internals ----

  private entryOf(row: EntryRow): PgStoredEntry {
    assert(row.value !== null, 'a live row has a value')
    const hlc = toInt(row.hlc)
    const updatedAt = row.updated_at === null ? hlcMs(hlc) : toInt(row.updated_at)
    return {
      value: this.packr.decode(row.value),
      namespace: row.namespace,
      key: row.key,
      lsn: toInt(row.lsn),
      hlc,
      writer: row.writer,
      createdAt: row.created_at === null ? updatedAt : toInt(row.created_at),
      updatedAt,
      ...(row.tags !== null ? { tags: row.tags } : {}),
      ...(row.expires_at !== null ? { expiresAt: toInt(row.expires_at) } : {}),
    }
  }

  /**
   * Runs `fn` on a pooled connection. A connection that broke, or whose call
   * was aborted, is destroyed rather than returned to the pool.
   */
  private async withClient<T>(signal: AbortSignal | undefined, fn: (c: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.connect()
    let released = false
    const release = (err?: Error): void => {
      if (released) return
      released = true
      client.release(err)
    }
    // A checked-out connection that breaks emits 'error' on the client as well as failing the query.
    const onError = (err: Error): void => this.logger?.warn({ err, writer: this.writerId }, 'PostgreSQL connection lost')
    client.on('error', onError)
    const onAbort = (): void => release(new Error('apply aborted (timeout)'))
    if (signal?.aborted) onAbort()
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      if (released) throw new MemwalError('SINK_TIMEOUT', 'the apply was aborted before it started', { transient: true })
      return await fn(client)
    } catch (err) {
      release(isConnectionLevel(err) ? (err as Error) : undefined)
      throw err
    } finally {
      signal?.removeEventListener('abort', onAbort)
      client.off('error', onError)
      release()
    }
  }

  private async connect(): Promise<PoolClient> {
    return this.requirePool().connect()
  }

  private requirePool(): pg.Pool {
    if (!this.pool) throw new MemwalError('ENGINE_CLOSED', 'the PostgreSQL backend is not open')
    return this.pool
  }

  private track(s: Socket): Socket {
    this.sockets.add(s)
    s.once('close', () => this.sockets.delete(s))
    return s
  }

  /** Ends the pool; sockets still open after a grace period (a network that swallows the goodbye) are destroyed. */
  private async endPool(): Promise<void> {
    const pool = this.pool
    this.pool = undefined
    if (!pool) return
    let cancel: (() => void) | undefined
    const grace = new Promise<void>((resolve) => (cancel = systemClock.setTimer(DEFAULTS.closeGraceMs, resolve)))
    await Promise.race([pool.end().catch(() => undefined), grace])
    cancel?.()
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
  }
}

// ---- SQL ----

interface Tables {
  readonly schema: string
  readonly entries: string
  readonly checkpoints: string
  readonly version: string
  readonly applySql: string
  readonly repairLogSql: string
  readonly repairOwnSql: string
  readonly repairVersionedSql: string
  readonly legacyDeleteSql: string
}

interface Columns {
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
function columnArgs(c: Columns): unknown[] {
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
]

/** The input arrays, one row per identity ($1..$10), this writer ($11). */
const INPUT = `SELECT u.namespace, u.key, u.value,
    CASE WHEN u.tags IS NULL THEN NULL ELSE ARRAY(SELECT json_array_elements_text(u.tags::json)) END AS tags,
    u.hlc, $11::text AS writer, u.lsn, u.deleted, u.created / 1000 AS created_at, u.hlc / 1000 AS updated_at, u.expires_at
  FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::int8[], $6::int8[], $7::bool[], $8::int8[], $9::bool[], $10::int8[]) AS u(namespace, key, value, tags, hlc, lsn, deleted, expires_at, fresh, created)
  ORDER BY u.namespace, u.key`

/**
 * createdAt carried: kept from a live row, started again over a tombstone or
 * when the batch deleted the identity first (its \`fresh\` flag, looked up in
 * the input by identity).
 */
const SET_ALL = `SET value = EXCLUDED.value, tags = EXCLUDED.tags, hlc = EXCLUDED.hlc, writer = EXCLUDED.writer, lsn = EXCLUDED.lsn, deleted = EXCLUDED.deleted,
    updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at,
    created_at = CASE WHEN e.deleted OR e.created_at IS NULL OR (SELECT bool_or(f.fresh) FROM unnest($1::text[], $2::text[], $9::bool[]) AS f(namespace, key, fresh) WHERE f.namespace = EXCLUDED.namespace AND f.key = EXCLUDED.key) THEN EXCLUDED.created_at ELSE e.created_at END`

const COLUMNS = '(namespace, key, value, tags, hlc, writer, lsn, deleted, created_at, updated_at, expires_at)'

function tables(schema: string): Tables {
  const s = `"${schema}"`
  const entries = `${s}.entries`
  const checkpoints = `${s}.checkpoints`
  const upsert = (op: '>' | '>='): string =>
    `INSERT INTO ${entries} AS e ${COLUMNS} ${INPUT}
    ON CONFLICT (namespace, key) DO UPDATE ${SET_ALL}
    WHERE (EXCLUDED.hlc, EXCLUDED.writer, EXCLUDED.lsn) ${op} (e.hlc, e.writer, e.lsn)`
  const tagsOf = (n: number): string => `CASE WHEN $${n}::text IS NULL THEN NULL ELSE ARRAY(SELECT json_array_elements_text($${n}::json)) END`
  const keep = 'updated_at = EXCLUDED.updated_at, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at'
  return {
    schema: s,
    entries,
    checkpoints,
    version: `${s}.schema_version`,
    applySql: `WITH up AS (${upsert('>')} RETURNING 1),
      cp AS (INSERT INTO ${checkpoints} AS c (writer, lsn) VALUES ($11, $12) ON CONFLICT (writer) DO UPDATE SET lsn = GREATEST(c.lsn, EXCLUDED.lsn) RETURNING c.lsn)
      SELECT (SELECT lsn FROM cp) AS checkpoint, (SELECT count(*) FROM up) AS applied`,
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

// ---- helpers ----

/**
 * The last operation on each identity, in LSN order (so also in HLC order:
 * one writer's clock never goes back), and the version-1 deletes, which the
 * apply runs first (they also delete what came before them in the batch).
 */
function latestPerKey(records: readonly AppliedRecord[]): { versions: Map<string, Version>; legacy: { key: string; hlc: number; lsn: number }[] } {
  const versions = new Map<string, Version>()
  const legacy: { key: string; hlc: number; lsn: number }[] = []
  for (const r of records) {
    const hlc = r.record.hlc ?? 0
    for (const op of opsOf(r.record)) {
      if (isLegacyDelete(op)) {
        legacy.push({ key: op.key, hlc, lsn: r.lsn })
        for (const [id, v] of versions) if (v.op.key === op.key) versions.set(id, { op: { type: 'del', key: op.key, namespace: splitIdentity(id).namespace }, lsn: r.lsn, hlc, fresh: true, createdHlc: hlc })
        continue
      }
      const id = opIdentity(op)
      const prev = versions.get(id)
      const fresh = prev !== undefined && (prev.fresh || prev.op.type === 'del')
      versions.set(id, { op, lsn: r.lsn, hlc, fresh, createdHlc: prev !== undefined && prev.op.type === 'put' ? prev.createdHlc : hlc })
    }
  }
  return { versions, legacy }
}

/** -1, 0 or 1: versions order by HLC, then writer id (bytewise, as COLLATE "C" compares), then LSN. */
export function compareVersions(a: { readonly hlc: number; readonly writer: string; readonly lsn: number }, b: { readonly hlc: number; readonly writer: string; readonly lsn: number }): -1 | 0 | 1 {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1
  if (a.writer !== b.writer) return Buffer.compare(Buffer.from(a.writer), Buffer.from(b.writer)) as -1 | 1
  if (a.lsn !== b.lsn) return a.lsn < b.lsn ? -1 : 1
  return 0
}

function sameTags(stored: readonly string[] | null, op: readonly string[] | undefined): boolean {
  if (stored === null || op === undefined) return stored === null && op === undefined
  return stored.length === op.length && stored.every((t, i) => t === op[i])
}

/** The SQLSTATE of an error the server sent (pg's DatabaseError carries a severity), or undefined. */
export function sqlState(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const e = err as { code?: unknown; severity?: unknown }
  const fromServer = err instanceof pg.DatabaseError || typeof e.severity === 'string'
  return fromServer && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined
}

/** An error after which the connection cannot be trusted: anything but a server's answer to a statement. */
function isConnectionLevel(err: unknown): boolean {
  if (err === undefined) return false
  const code = sqlState(err)
  return code === undefined || code.startsWith('08') || code.startsWith('57')
}

function toInt(v: string | number): number {
  const n = typeof v === 'number' ? v : Number(v)
  assert(Number.isSafeInteger(n), `an int8 column holds a safe integer (${String(v)})`)
  return n
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new InvalidOptionsError(`${name} must be a positive integer`)
  return v
}

function newerSchema(schema: string, version: number): MemwalError {
  return new MemwalError('INVALID_OPTIONS', `PostgreSQL schema ${schema} is at version ${version}, newer than this memwal knows (${PG_SCHEMA_VERSION}): upgrade memwal or use another schema`, {
    details: { schema, version, known: PG_SCHEMA_VERSION },
  })
}
