import { assert } from '../../assert.js'
import { InvalidOptionsError, MemwalError } from '../../errors.js'
import { limits } from '../../limits.js'
import { identityOf, splitIdentity } from '../../format/identity.js'
import { hlcMs } from '../../format/record-codec.js'
import { createPackr, packValue } from '../../format/value-codec.js'
import type { DumpEntry } from '../../log/dump-entry.js'
import type { BackendKind } from '../../log/backend-record.js'
import { BackendSink, type AppliedRecord, type BackendEngineOptions, type BackendSnapshot, type DataDirBinding, type FailureClass, type StoredEntry } from '../sink.js'
import { resolvePgOptions, type PgBackendOptions, type PgConfig } from './pg-options.js'
import { PgConnections, sqlState, type PgClient } from './pg-pool.js'
import { claimWriter, requireAppliedSchema } from './pg-claim.js'
import { columnArgs, migrate, requireSchema, requireTables, ROW, tables, toInt, type EntryRow, type Tables } from './pg-schema.js'
import { changeArgs, encodeResumeToken, openFeed, presentPositions, type PgChange, type PgChangeFeed, type PgWatchOptions } from './pg-changes.js'
import { verifyWriterLog, type PgLogReport } from './pg-verify.js'
import { nulFree, PgAllWritersQuery } from './pg-query.js'
import { openPgExport } from './pg-export.js'
import { columnsOf, latestPerKey, valuePacker } from './pg-versions.js'

/**
 * A backend on PostgreSQL (`pg`), shared by many writers: each process keeps
 * its own WAL and data directory, and replicates into the same tables (their
 * schema: pg-schema.ts; the connections: pg-pool.ts; the options:
 * pg-options.ts; the check of a writer's log against the tables:
 * pg-verify.ts).
 *
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
 */

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

/**
 * SQLSTATE classes of errors that come from the data and will fail the same
 * way every time: 21 cardinality violation, 22 data exception (an invalid
 * byte sequence; a NUL in a key is refused before it is logged), 23
 * integrity constraint violation, 54 program limit exceeded (an index row
 * too large: 54000). Anything else (connection
 * exceptions 08, serialization failure 40001, deadlock 40P01, statement
 * timeout 57014, server shutdown 57P0x, too many connections 53300, socket
 * errors, our own read timeout) may pass when retried: transient.
 */
const PERMANENT_SQLSTATE_CLASSES: ReadonlySet<string> = new Set(['21', '22', '23', '54'])

/**
 * SQLSTATEs of an apply that found memwal's schema damaged (a table or the
 * schema dropped, privileges revoked): reported as BACKEND_SCHEMA_DAMAGED,
 * transient (the backlog applies once the schema is restored).
 */
const SCHEMA_DAMAGED_SQLSTATES: ReadonlySet<string> = new Set(['42P01', '3F000', '42501'])

/**
 * The most bytes of namespace plus key whose primary-key entry PostgreSQL's
 * btree always holds (8 KiB pages): an index tuple may take 2,704 bytes
 * (BTMaxItemSize), of which 8 are its header, 4 each the two text headers
 * and up to 3 the namespace's padding. A longer pair that does not compress
 * fails with 54000 on every apply, so the limits that allow one are refused
 * at open. (The GIN entry of a tag, at most labelBytesMax, fits within it too.)
 */
export const PG_KEY_BYTES_MAX = 2_704 - 8 - 4 - 3 - 4

/** How long the client waits past the server's statement timeout (pg-pool.ts): applyTimeoutMs must exceed both. */
const APPLY_TIMEOUT_MARGIN_MS = 1_000

export class PgBackend extends BackendSink {
  readonly name = 'backend'
  readonly writerId: string
  readonly schema: string
  private readonly c: PgConfig
  private readonly conn: PgConnections
  private readonly packr = createPackr()
  private readonly t: Tables
  private readonly feeds = new Set<PgChangeFeed>()
  /** Export snapshots not yet closed (each a transaction on a connection of its own), closed at close(). */
  private readonly exports = new Set<BackendSnapshot>()
  /** MemWAL.query and count: every writer's rows (pg-query.ts). */
  override readonly allWritersQuery: PgAllWritersQuery
  /** The data directory this writer id is bound to in PostgreSQL (bindDataDir); undefined: a backend opened on its own, no binding. */
  private dir: DataDirBinding | undefined
  /** PostgreSQL text holds no NUL. */
  override readonly keysMayHoldNul = false
  /**
   * The checkpoint this process last knew its row to hold (read at open, then each apply's answer): an apply finding the
   * row missing or behind it finds PostgreSQL lost what this writer applied, and halts (applySql, checkpointLost).
   */
  private written = 0
  /** A backend opened on its own whose writer had no checkpoint row at open: its first write makes it (ownRowFirst). */
  private rowToMake = false

  constructor(options: PgBackendOptions) {
    super()
    this.c = resolvePgOptions(options)
    this.writerId = this.c.writerId
    this.schema = this.c.schema
    this.conn = new PgConnections(this.c)
    this.t = tables(this.schema)
    this.allWritersQuery = new PgAllWritersQuery({ conn: this.conn, t: this.t, pageRows: this.c.pageRows, entryOf: (row) => this.entryOf(row) })
  }

  /** The writer and the schema are the store's identity in PostgreSQL; the URL is where it is served from, never recorded. */
  override backendKind(): BackendKind {
    return { kind: 'postgres', writerId: this.writerId, schema: this.schema }
  }

  /** MemWAL.open gives the data directory before opening: this writer id is bound to it (pg-claim.ts). */
  override bindDataDir(dir: DataDirBinding): void {
    this.dir = dir
  }

  // ---- lifecycle ----

  protected async _open(): Promise<number> {
    this.conn.start()
    try {
      const claim = { conn: this.conn, t: this.t, schema: this.schema, writerId: this.writerId }
      // Before migrate, which would recreate a schema dropped under a directory that applied records to it.
      if (this.dir !== undefined) await requireAppliedSchema(claim, this.dir)
      await migrate(this.conn, this.t, this.c)
      await requireTables(this.conn, this.t, this.schema)
      if (this.dir === undefined) {
        const row = await this.conn.query(`SELECT 1 FROM ${this.t.checkpoints} WHERE writer = $1`, [this.writerId])
        this.rowToMake = row.rows.length === 0
      }
      this.written = this.dir === undefined ? await this.checkpointRow() : await claimWriter(claim, this.dir)
      return this.written
    } catch (cause) {
      await this.conn.end()
      throw this.unavailable(cause)
    }
  }

  /**
   * Opens the connections of a backend that only watches (`memwal watch
   * --all-writers`): no migration and no checkpoint of its own, since it
   * never writes; the schema must exist at this memwal's version
   * (INVALID_OPTIONS otherwise, details.schema). Then `watch` and
   * `resumeTokenNow`; `close()` ends it.
   */
  async openToWatch(): Promise<void> {
    this.conn.start()
    try {
      await requireSchema(this.conn, this.t, this.schema)
    } catch (cause) {
      await this.conn.end()
      throw this.unavailable(cause)
    }
  }

  /**
   * This writer's checkpoint as PostgreSQL holds it (0 when it has applied
   * nothing), for `memwal status` and `inspectDataDir({ backend })`. On a
   * backend open (or watching), read with its connections, which stay as
   * they are. On one not open, read as a watcher reads (no migration,
   * nothing written, the schema required as it is) through connections of
   * the call's own, ended after it: the backend's own are left alone, so it
   * may be opened meanwhile.
   */
  override async storedCheckpoint(): Promise<number> {
    if (this.conn.started) {
      try {
        return await this.checkpointRow(this.conn)
      } catch (cause) {
        throw this.unavailable(cause)
      }
    }
    const conn = new PgConnections(this.c)
    conn.start()
    try {
      await requireSchema(conn, this.t, this.schema)
      return await this.checkpointRow(conn)
    } catch (cause) {
      throw this.unavailable(cause)
    } finally {
      await conn.end()
    }
  }

  protected async _close(): Promise<void> {
    for (const f of [...this.feeds]) f.end()
    await Promise.all([...this.exports].map((s) => s.close()))
    await this.conn.end()
  }

  // ---- apply ----

  /**
   * One statement: the batch's last version of each key, upserted where it
   * is greater than the stored one by (hlc, writer, lsn), and this writer's
   * checkpoint, in the same transaction. An abort (the applier's timeout)
   * destroys the connection, so the call settles at once; the server rolls
   * the statement back unless it had committed, and either way a retry
   * converges to the same rows.
   *
   * The statement writes only while this writer's checkpoint row is the one
   * it last wrote, or later (its reply lost: a re-sent batch changes nothing),
   * and bound to this data directory. A row missing or behind it means
   * PostgreSQL lost what this writer applied (the schema dropped and made
   * again by another directory, the row deleted, an older backup restored):
   * applying on would leave that loss unreported and let retention purge the
   * log that still holds it. Nothing is written; BACKEND_SCHEMA_DAMAGED, not
   * transient, which classify calls `halt`.
   */
  protected async _apply(records: readonly AppliedRecord[], checkpoint: number, signal?: AbortSignal): Promise<void> {
    const { versions, legacy } = latestPerKey(records)
    // Each put's value packed once: the upsert's rows and the feed's rows carry the same bytes.
    const pack = valuePacker(this.packr)
    const args = [...columnArgs(columnsOf(versions, pack)), this.writerId, checkpoint, ...changeArgs(records, pack), this.c.changeHistoryRecords, this.written, this.dir?.dirId ?? null]
    const r = await this.conn.withClient(signal, async (c) => {
      await this.ownRowFirst(c)
      if (legacy.length === 0) return c.query<{ checkpoint: string | null }>(this.t.applySql, args)
      // Version-1 deletes (no namespace): the key in every namespace, before the rest, in one transaction.
      try {
        await c.query('BEGIN')
        for (const d of legacy) await c.query(this.t.legacyDeleteSql, [d.key, d.hlc, this.writerId, d.lsn])
        const out = await c.query<{ checkpoint: string | null }>(this.t.applySql, args)
        // The checkpoint row refused the apply: the deletes go with it.
        await c.query(out.rows[0]?.checkpoint == null ? 'ROLLBACK' : 'COMMIT')
        return out
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined)
        throw err
      }
    }).catch((err: unknown) => {
      throw this.schemaDamaged(err) ?? err
    })
    const answer = r.rows[0]?.checkpoint
    if (answer == null) throw await this.checkpointLost()
    const stored = toInt(answer)
    this.written = Math.max(this.written, stored)
    if (stored > checkpoint) {
      this.c.logger.warn({ writer: this.writerId, stored, checkpoint }, 'the stored checkpoint is ahead of this apply: is another process using the same writer id?')
    }
  }

  /**
   * Limits the tables cannot honour, refused at MemWAL.open: a key bound whose
   * primary-key entry the btree cannot hold (PG_KEY_BYTES_MAX), and an
   * applyTimeoutMs the statement timeout (plus the client's margin) reaches:
   * the engine would abandon calls the server still runs, and each retry
   * would take one more server connection, past poolSize.
   */
  override checkEngineOptions(o: BackendEngineOptions): void {
    if (o.keyBytesMax + o.labelBytesMax > PG_KEY_BYTES_MAX) {
      throw new InvalidOptionsError(`keyBytesMax ${o.keyBytesMax} + labelBytesMax ${o.labelBytesMax} exceeds ${PG_KEY_BYTES_MAX} bytes, the most PostgreSQL's primary-key index holds for a namespace and key (PgBackend)`, 'keyBytesMax')
    }
    if (this.c.statementTimeoutMs + APPLY_TIMEOUT_MARGIN_MS >= o.applyTimeoutMs) {
      throw new InvalidOptionsError(`resilience.applyTimeoutMs ${o.applyTimeoutMs} must exceed PgBackend statementTimeoutMs ${this.c.statementTimeoutMs} + ${APPLY_TIMEOUT_MARGIN_MS} ms: an apply abandoned while the server still runs it takes another connection`, 'resilience.applyTimeoutMs')
    }
  }

  /** Data errors (SQLSTATE classes 21, 22, 23, 54) are permanent; a lost checkpoint row halts; everything else may pass on a retry. */
  override classify(err: unknown): FailureClass {
    if (err instanceof MemwalError && err.code === 'BACKEND_SCHEMA_DAMAGED' && !err.transient) return 'halt'
    if (super.classify(err) === 'permanent') return 'permanent'
    const code = sqlState(err)
    return code !== undefined && PERMANENT_SQLSTATE_CLASSES.has(code.slice(0, 2)) ? 'permanent' : 'transient'
  }

  // ---- reads ----

  async get(id: string): Promise<PgStoredEntry | undefined> {
    const { namespace, key } = splitIdentity(id)
    if (key.includes('\u0000')) return undefined // never a row (text cannot hold it), and never a parameter
    const r = await this.conn.query<EntryRow>(`SELECT ${ROW} FROM ${this.t.entries} WHERE namespace = $1 AND key = $2`, [namespace, key])
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
   * read from PostgreSQL without an engine, each naming its writer. Expired
   * rows are left out by this backend's clock, as every reader hides them
   * (the sweep deletes them later). MemWAL.query is the full language.
   */
  async *query(q: PgQuery = {}): AsyncGenerator<PgQueryResult> {
    const limit = q.limit ?? limits.queryResultsDefault
    if (!Number.isInteger(limit) || limit < 1 || limit > limits.queryResultsMax) throw new MemwalError('ENGINE_INVALID_VALUE', `limit must be an integer in [1, ${limits.queryResultsMax}]`)
    for (const [name, v] of [['namespace', q.namespace], ['tag', q.tag], ['prefix', q.prefix]] as const) {
      if (v !== undefined && typeof v !== 'string') throw new MemwalError('ENGINE_INVALID_VALUE', `${name} must be a string`)
    }
    for await (const row of this.pages({ ...q, liveAtMs: this.c.clock.nowMs() }, limit)) {
      const e = this.entryOf(row)
      yield { key: row.key, value: e.value, hlc: e.hlc, writer: e.writer, lsn: e.lsn, namespace: e.namespace, ...(e.tags ? { tags: e.tags } : {}) }
    }
  }

  /** Live rows in (namespace, key) order, keyset-paginated (no transaction held open between pages); gte/lt are identities. */
  /** `liveAtMs`: only rows not expired at that time (entries() leaves it out: verify compares every row with the log). */
  private async *pages(q: { readonly gte?: string; readonly lt?: string; readonly namespace?: string; readonly tag?: string; readonly prefix?: string; readonly liveAtMs?: number }, limit: number): AsyncGenerator<EntryRow> {
    // No stored namespace, tag or key holds a NUL (text cannot), nor could it be a parameter: nothing matches.
    if ([q.namespace, q.tag, q.prefix].some((v) => v?.includes('\u0000') === true)) return
    const where = ['NOT deleted']
    const params: unknown[] = []
    const param = (v: unknown): string => `$${params.push(v)}`
    // A bound's key may hold a NUL (no row's does): compared as the NUL-free string the same rows pass (pg-query.ts).
    const bound = (op: '>=' | '<', id: string): string => {
      const { namespace, key } = splitIdentity(id)
      const [o, k] = nulFree(op, key)
      return `(namespace, key) ${o} (${param(namespace)}, ${param(k)})`
    }
    if (q.liveAtMs !== undefined) where.push(`(expires_at IS NULL OR expires_at > ${param(q.liveAtMs)})`)
    if (q.gte !== undefined) where.push(bound('>=', q.gte))
    if (q.lt !== undefined) where.push(bound('<', q.lt))
    if (q.namespace !== undefined) where.push(`namespace = ${param(q.namespace)}`)
    if (q.tag !== undefined) where.push(`tags @> ARRAY[${param(q.tag)}]::text[]`)
    if (q.prefix !== undefined && q.prefix.length > 0) where.push(`key LIKE ${param(q.prefix.replace(/[\\%_]/g, '\\$&') + '%')}`)
    let after: EntryRow | undefined
    let left = limit
    while (left > 0) {
      const n = Math.min(left, this.c.pageRows)
      const cond = after === undefined ? where : [...where, `(namespace, key) > ($${params.length + 1}, $${params.length + 2})`]
      const args = after === undefined ? [...params, n] : [...params, after.namespace, after.key, n]
      const r = await this.conn.query<EntryRow>(
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

  // ---- export ----

  /**
   * Every writer's live rows (of one namespace, or all) from one
   * REPEATABLE READ snapshot that this call starts taking (pg-export.ts).
   * At most limits.pgExportsOpenMax open at once (EXPORT_BUSY, transient).
   */
  override exportSnapshot(namespace: string | undefined): BackendSnapshot {
    if (this.exports.size >= limits.pgExportsOpenMax) {
      throw new MemwalError('EXPORT_BUSY', `at most ${limits.pgExportsOpenMax} exports may be open at once over PostgreSQL (each holds a connection and a snapshot): finish or return() one`, { transient: true, details: { open: this.exports.size } })
    }
    const s = openPgExport({ conn: this.conn, t: this.t, writerId: this.writerId, pageRows: this.c.pageRows }, namespace, (x) => this.exports.delete(x))
    this.exports.add(s)
    return s
  }

  // ---- the change feed ----

  /**
   * Every writer's changes as they reach PostgreSQL (pg-changes.ts: order,
   * resume tokens, bounds), from now on or after `resumeToken`. Ends at close().
   */
  watch(options?: PgWatchOptions): AsyncIterableIterator<PgChange> {
    if (this.feeds.size >= limits.watchersMax) throw new MemwalError('INVALID_OPTIONS', `at most ${limits.watchersMax} watches may be open at once`, { details: { field: 'watch' } })
    const host = { conn: this.conn, t: this.t, schema: this.schema, packr: this.packr, clock: this.c.clock, logger: this.c.logger, pollMs: this.c.watchPollMs, batchRows: this.c.pageRows }
    const feed = openFeed(host, options, (f) => this.feeds.delete(f))
    this.feeds.add(feed)
    return feed
  }

  /** MemWAL.watch({ allWriters: true }). */
  override allWritersFeed(options: PgWatchOptions): AsyncIterableIterator<PgChange> {
    return this.watch(options)
  }

  /** A token for "now": a watch opened with it later sees every change applied after this call (save it before starting a consumer). */
  async resumeTokenNow(): Promise<string> {
    return encodeResumeToken(this.schema, await presentPositions({ conn: this.conn, t: this.t }))
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
    // One transaction holding this writer's checkpoint row as an apply finds it: a row lost (the schema made again under
    // this writer, the row deleted or set back) writes nothing, and fails as the apply does (checkpointLost).
    const held = await this.conn.withClient(undefined, async (c) => {
      try {
        await c.query('BEGIN')
        await this.ownRowFirst(c)
        const row = await c.query(this.t.ownRowSql, [this.writerId, this.written, this.dir?.dirId ?? null])
        if (row.rows.length > 0) for (const [id, e] of entries) await c.query(...this.repairStatement(id, e))
        await c.query(row.rows.length > 0 ? 'COMMIT' : 'ROLLBACK')
        return row.rows.length > 0
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined)
        throw err
      }
    })
    // Named once the client is back (checkpointLost reads the row on a connection of its own).
    if (!held) throw await this.checkpointLost()
  }

  /** The statement that repairs one entry (undefined: deleted) by the rules of `repair`. */
  private repairStatement(id: string, e: StoredEntry | undefined): [string, unknown[]] {
    const { namespace, key } = splitIdentity(id)
    if (e === undefined) return [`UPDATE ${this.t.entries} SET deleted = true, value = NULL, tags = NULL, expires_at = NULL WHERE namespace = $1 AND key = $2 AND writer = $3`, [namespace, key, this.writerId]]
    const value = Buffer.from(packValue(this.packr, e.value))
    const tags = e.tags ? JSON.stringify(e.tags) : null
    const times = [e.createdAt, e.updatedAt, e.expiresAt ?? null]
    const versioned = e as Partial<PgStoredEntry>
    if (typeof versioned.hlc === 'number' && typeof versioned.writer === 'string') return [this.t.repairVersionedSql, [namespace, key, value, tags, versioned.hlc, versioned.writer, e.lsn, ...times]]
    return [this.t.repairOwnSql, [namespace, key, value, tags, this.writerId, e.lsn, ...times]]
  }

  /** The reconciler for a shared backend: this writer's log (as `dumpLog({ dir })` reads it) against the tables (pg-verify.ts). */
  async verifyLog(log: AsyncIterable<DumpEntry>, options: { readonly repair?: boolean } = {}): Promise<PgLogReport> {
    return verifyWriterLog({ conn: this.conn, t: this.t, writerId: this.writerId, packr: this.packr }, log, options)
  }

  // ---- internals ----

  /** This writer's checkpoint row's LSN, 0 without a row. */
  private async checkpointRow(conn = this.conn): Promise<number> {
    const r = await conn.query<{ lsn: string }>(`SELECT lsn FROM ${this.t.checkpoints} WHERE writer = $1`, [this.writerId])
    return r.rows[0] === undefined ? 0 : toInt(r.rows[0].lsn)
  }

  /**
   * A write only updates this writer's checkpoint row. claimWriter made it at open; a backend opened on its own makes it
   * before its first write (not at open: a backend opened only to read or set up leaves no row, hence no writer in the
   * change feed), and only if there was none at open: a row there at open and gone since was lost, which the write's
   * guard then finds (made again, it would hide the loss).
   */
  private async ownRowFirst(c: PgClient): Promise<void> {
    if (!this.rowToMake) return
    await c.query(`INSERT INTO ${this.t.checkpoints} (writer, lsn) VALUES ($1, 0) ON CONFLICT (writer) DO NOTHING`, [this.writerId])
    this.rowToMake = false
  }

  /**
   * BACKEND_SCHEMA_DAMAGED, not transient: the apply found this writer's checkpoint row missing, behind the checkpoint
   * this process last wrote, or bound to another directory. Names what it expected and what it found (read again,
   * best effort: the row as it is now).
   */
  private async checkpointLost(): Promise<MemwalError> {
    const found = await this.conn.query<{ lsn: string; dir_id: string | null }>(`SELECT lsn, dir_id FROM ${this.t.checkpoints} WHERE writer = $1`, [this.writerId]).then((r) => r.rows[0], () => undefined)
    const expected = this.written
    const dirId = this.dir?.dirId ?? null
    const now = found === undefined ? 'no checkpoint row for it' : `its checkpoint row at LSN ${toInt(found.lsn)}${found.dir_id !== dirId ? (found.dir_id === null ? ', bound to no data directory' : `, bound to data directory ${found.dir_id}`) : ''}`
    return new MemwalError('BACKEND_SCHEMA_DAMAGED', `PostgreSQL schema ${this.schema} lost what writerId ${JSON.stringify(this.writerId)} applied: it last wrote its checkpoint at LSN ${expected}${dirId !== null ? ` (data directory ${dirId})` : ''}, and the schema holds ${now} (the schema or the row dropped and made again, or restored from an older backup). Nothing was applied, and this writer applies nothing more (its log keeps the records): close it, restore the schema from a backup holding its row, and reopen (the log re-applies what it holds after the restored checkpoint)`, {
      transient: false,
      details: { schema: this.schema, writerId: this.writerId, dirId, expected, found: found === undefined ? null : toInt(found.lsn), foundDirId: found?.dir_id ?? null, missing: ['checkpoint row'] },
    })
  }

  /** An apply's error that says the schema lost a table, the schema itself or its privileges, as BACKEND_SCHEMA_DAMAGED; else undefined. */
  private schemaDamaged(err: unknown): MemwalError | undefined {
    const code = sqlState(err)
    if (code === undefined || !SCHEMA_DAMAGED_SQLSTATES.has(code)) return undefined
    return new MemwalError('BACKEND_SCHEMA_DAMAGED', `PostgreSQL schema ${this.schema} is damaged (${code}: ${(err as Error).message}): restore it; the backlog applies once it is back`, {
      cause: err, transient: true, details: { schema: this.schema, sqlState: code },
    })
  }

  /** A failure to reach PostgreSQL as the engine reports it (memwal's own errors pass as they are). */
  private unavailable(cause: unknown): MemwalError {
    if (cause instanceof MemwalError) return cause
    return new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `cannot open the PostgreSQL backend (schema ${this.schema}): ${(cause as Error).message}`, { cause, transient: true })
  }

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
}
