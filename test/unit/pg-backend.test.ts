/**
 * PgBackend against the real PostgreSQL (MEMWAL_PG_URL, or 127.0.0.1:5432
 * database `test`), in schemas of this run's own, dropped at the end:
 *
 * - options and configuration (MEMWAL_PG_URL), a typed refusal when the
 *   server cannot be reached;
 * - the schema: created at open, versioned, migrated from an older version,
 *   refused when newer, safe when many writers open at once;
 * - apply: multi-row upserts deduplicated per batch, tombstones, int8
 *   normalised, bytewise key order, the checkpoint stored with the data, a
 *   batch all or nothing;
 * - last writer wins by (hlc, writer, lsn), whatever the order of arrival,
 *   and replays change nothing (an audit trigger sees every row written);
 *   a property test over random interleavings and replays of three writers;
 * - error classification per SQLSTATE and socket error;
 * - MemWAL on PostgreSQL: reads, flush, a data error dead-lettered; two
 *   writers reading each other's entries (get, PgBackend.query);
 * - outages through an in-test TCP proxy (cut, blackhole, slow): writes are
 *   acknowledged, reads never guess, the backlog drains after;
 * - the reconciler (verifyLog): finds missing, stale, mismatched and unknown
 *   rows, repairs them, and never beats another writer's greater version.
 */
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import fc from 'fast-check'
import pg from 'pg'
import t from 'tap'
import { dumpLog, MemWAL, PermanentSinkError, type AppliedRecord, type MemwalOptions } from '../../engine/index.js'
import { ManualClock, RecordType, type Op, type WalRecord } from '../../engine/testing.js'
import { PgBackend, type PgStoredEntry } from '../../engine/sinks/pg/pg-backend.js'
import type { PgBackendOptions } from '../../engine/sinks/pg/pg-options.js'
import { PG_SCHEMA_VERSION } from '../../engine/sinks/pg/pg-schema.js'
import { compareVersions } from '../../engine/sinks/pg/pg-versions.js'
import { TcpProxy } from '../../bench/tcp-proxy.js'
import { identityOf } from '../../engine/format/identity.js'
import { createPackr } from '../../engine/format/value-codec.js'
import { tmpDir } from '../support/tmp-dir.js'
import { dropSchema, PG_URL, pgTarget, requirePg, testSchemaName, viaPort } from '../support/pg.js'
import { sleep, waitFor } from '../support/wait-for.js'

/** Exposes the protected apply hook, to deliver what the checkpoint filter would drop (a replay after a lost acknowledgement). */
class Replayer extends PgBackend {
  replay(records: readonly AppliedRecord[], checkpoint: number): Promise<void> {
    return this._apply(records, checkpoint)
  }
}

/** applyTimeoutMs above the backends' statementTimeoutMs (800) + 1 s, as PgBackend requires. */
const fastResilience = { retryDelayMsMin: 5, retryDelayMsMax: 200, breakerThreshold: 3, breakerHalfOpenMs: 200, applyTimeoutMs: 2500 }
const fastBackend = { statementTimeoutMs: 800, connectTimeoutMs: 500 } as const
/** How long a PostgreSQL outage may take to show. */
const SHOWS_WITHIN_MS = 20_000

/** A backend's identity of `key` in the default namespace. */
const dflt = (key: string): string => identityOf('default', key)
const put = (key: string, value: unknown, o: { namespace?: string; tags?: string[] } = {}): Op => ({ type: 'put', key, value, ...o })
const del = (key: string, namespace?: string): Op => ({ type: 'del', key, ...(namespace !== undefined ? { namespace } : {}) })

/** One record: a PUT or DELETE for one op, a BATCH for several. */
function rec(lsn: number, hlc: number, ...ops: Op[]): AppliedRecord {
  const [op] = ops
  let record: WalRecord
  if (ops.length > 1 || !op) record = { type: RecordType.BATCH, ops, hlc }
  else if (op.type === 'put') record = { type: RecordType.PUT, op, hlc }
  else record = { type: RecordType.DELETE, op, hlc }
  return { lsn, record, bytes: 64 }
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return (err as { code?: string }).code ?? String(err)
  }
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

if (await requirePg(t)) {
  const keepAlive = setInterval(() => undefined, 1000)
  t.teardown(() => clearInterval(keepAlive))
  const schemas: string[] = []
  const newSchema = (): string => {
    const s = testSchemaName('test')
    schemas.push(s)
    return s
  }
  const db = new pg.Client({ connectionString: PG_URL })
  db.on('error', () => undefined)
  await db.connect()
  t.teardown(async () => {
    await db.end().catch(() => undefined)
    for (const s of schemas) await dropSchema(s)
  })

  /** An open backend, closed when the test ends. */
  async function backendOn(tt: { teardown(fn: () => unknown): void }, schema: string, writerId: string, extra: Partial<PgBackendOptions> = {}): Promise<PgBackend> {
    const b = new PgBackend({ connectionString: PG_URL, writerId, schema, ...extra })
    await b.open()
    tt.teardown(() => b.close())
    return b
  }

  async function rowsOf(schema: string): Promise<{ key: string; hlc: string; writer: string; lsn: string; deleted: boolean; value: Buffer | null }[]> {
    return (await db.query(`SELECT key, value, namespace, tags, hlc, writer, lsn, deleted FROM "${schema}".entries ORDER BY key`)).rows
  }

  async function checkpointRow(schema: string, writer: string): Promise<number | undefined> {
    const r = await db.query<{ lsn: string }>(`SELECT lsn FROM "${schema}".checkpoints WHERE writer = $1`, [writer])
    return r.rows[0] ? Number(r.rows[0].lsn) : undefined
  }

  async function addAudit(schema: string): Promise<() => Promise<number>> {
    await db.query(`CREATE TABLE "${schema}".audit (writer text, lsn bigint, key text)`)
    await db.query(`CREATE FUNCTION "${schema}".audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO "${schema}".audit VALUES (NEW.writer, NEW.lsn, NEW.key); RETURN NEW; END $$`)
    await db.query(`CREATE TRIGGER audit AFTER INSERT OR UPDATE ON "${schema}".entries FOR EACH ROW EXECUTE FUNCTION "${schema}".audit_row()`)
    return async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".audit`)).rows[0]!.n
  }

  function openEngine(tt: { teardown(fn: () => unknown): void }, dir: string, backend: PgBackend, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
    return MemWAL.open({ dir, backend, resilience: fastResilience, closeGraceMs: 2000, ...extra }).then((e) => {
      tt.teardown(() => e.close())
      return e
    })
  }

  t.test('options: a writer id is required, the server comes from the options or MEMWAL_PG_URL', async (t) => {
    const refusalOf = (o: unknown): { code?: string; details?: { field?: string } } | undefined => {
      try {
        new PgBackend(o as PgBackendOptions)
        return undefined
      } catch (err) {
        return err as { code?: string; details?: { field?: string } }
      }
    }
    const codeOfNew = (o: unknown): string | undefined => refusalOf(o)?.code
    const fieldOfNew = (o: unknown): string | undefined => refusalOf(o)?.details?.field
    t.equal(codeOfNew({ connectionString: PG_URL }), 'INVALID_OPTIONS', 'no writer id')
    t.equal(codeOfNew({ connectionString: PG_URL, writerId: '' }), 'INVALID_OPTIONS', 'an empty writer id')
    t.equal(codeOfNew({ connectionString: PG_URL, writerId: 'a', schema: 'Bad-Name' }), 'INVALID_OPTIONS', 'a schema that is not a plain identifier')
    t.equal(codeOfNew({ connectionString: PG_URL, writerId: 'a', poolSize: 0 }), 'INVALID_OPTIONS', 'a pool of no connections')
    t.equal(fieldOfNew({ connectionString: PG_URL, writerId: 'a', poolsize: 8 }), 'poolsize', 'an option not understood is refused, named')
    t.equal(fieldOfNew({ connectionString: PG_URL, writerId: 'a', pgConfig: { sslmode: 'require' } }), 'pgConfig.sslmode', 'a pool setting not understood is refused, named')
    t.equal(fieldOfNew({ connectionString: PG_URL, writerId: 'a', pageRows: '50' }), 'pageRows', 'an option of the wrong type is refused, named')
    const saved = process.env['MEMWAL_PG_URL']
    t.teardown(() => {
      if (saved === undefined) delete process.env['MEMWAL_PG_URL']
      else process.env['MEMWAL_PG_URL'] = saved
    })
    delete process.env['MEMWAL_PG_URL']
    t.equal(codeOfNew({ writerId: 'a' }), 'INVALID_OPTIONS', 'no connection string and no MEMWAL_PG_URL')
    process.env['MEMWAL_PG_URL'] = PG_URL
    const schema = newSchema()
    const b = new PgBackend({ writerId: 'env', schema })
    t.equal(await b.open(), 0, 'MEMWAL_PG_URL alone is enough: open resolves checkpoint 0 on a new schema')
    await b.close()

    // A port nobody listens on.
    const server = net.createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const port = (server.address() as net.AddressInfo).port
    await new Promise<void>((r) => server.close(() => r()))
    const down = new PgBackend({ connectionString: viaPort(port), writerId: 'a', schema, connectTimeoutMs: 500 })
    const err = (await errorOf(down.open())) as { code?: string; transient?: boolean }
    t.equal(err.code, 'ENGINE_BACKEND_UNAVAILABLE', 'an unreachable server: a typed refusal at open')
    t.equal(err.transient, true, '... which may pass later')
  })

  t.test('schema: created at open, versioned, migrated, never downgraded, safe to open concurrently', async (t) => {
    const schema = newSchema()
    // Many writers opening a schema that does not exist yet: one creates it, none fails.
    const first = await Promise.all(['a', 'b', 'c', 'd'].map((w) => new PgBackend({ connectionString: PG_URL, writerId: w, schema })).map(async (b) => {
      const cp = await b.open()
      await b.close()
      return cp
    }))
    t.same(first, [0, 0, 0, 0], 'four writers opened the new schema at once')
    const version = async (): Promise<number> => (await db.query(`SELECT version FROM "${schema}".schema_version`)).rows[0].version
    const indexes = async (): Promise<string[]> =>
      (await db.query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname`, [schema])).rows.map((r: { indexname: string }) => r.indexname)
    t.equal(await version(), PG_SCHEMA_VERSION, `schema_version is ${PG_SCHEMA_VERSION}`)
    t.same(await indexes(), ['changes_pkey', 'checkpoints_pkey', 'entries_key', 'entries_live_updated_at', 'entries_pkey', 'entries_tags', 'entries_writer_lsn', 'schema_version_pkey'], 'tables and indexes of the latest version')
    const collation = await db.query(`SELECT column_name, collation_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'entries' AND column_name IN ('key', 'namespace', 'writer') ORDER BY column_name`, [schema])
    t.same(collation.rows, [{ column_name: 'key', collation_name: 'C' }, { column_name: 'namespace', collation_name: 'C' }, { column_name: 'writer', collation_name: 'C' }], 'keys, namespaces and writer ids compare bytewise')
    const pkey = await db.query(`SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`, [`"${schema}".entries`])
    t.same(pkey.rows.map((r: { attname: string }) => r.attname), ['namespace', 'key'], 'identity is the primary key (namespace, key)')
    const b = await backendOn(t, schema, 'a')
    await b.apply({ records: [rec(1, 10, put('k', 1))], upToLsn: 1 })

    // A newer schema than this code knows: refused, untouched.
    await db.query(`UPDATE "${schema}".schema_version SET version = 99`)
    const newer = new PgBackend({ connectionString: PG_URL, writerId: 'a', schema })
    t.equal(await codeOf(newer.open()), 'INVALID_OPTIONS', 'a newer schema version is refused')
    t.equal(await version(), 99, 'and left as it was')
    t.equal((await rowsOf(schema)).length, 1, 'its data untouched')
  })

  t.test('schema version 2 (primary key: key) is migrated to (namespace, key) identity in place', async (t) => {
    const schema = newSchema()
    // The tables as schema version 2 made them, with a namespaced row, a row without a namespace, and a tombstone.
    await db.query(`CREATE SCHEMA "${schema}"`)
    await db.query(`CREATE TABLE "${schema}".schema_version (id boolean PRIMARY KEY DEFAULT true CHECK (id), version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())`)
    await db.query(`INSERT INTO "${schema}".schema_version (id, version) VALUES (true, 2)`)
    await db.query(`CREATE TABLE "${schema}".entries (key text COLLATE "C" PRIMARY KEY, value bytea, namespace text, tags text[], hlc bigint NOT NULL, writer text COLLATE "C" NOT NULL, lsn bigint NOT NULL, deleted boolean NOT NULL DEFAULT false, CHECK (deleted OR value IS NOT NULL))`)
    await db.query(`CREATE TABLE "${schema}".checkpoints (writer text COLLATE "C" PRIMARY KEY, lsn bigint NOT NULL CHECK (lsn >= 0))`)
    await db.query(`CREATE INDEX entries_writer_lsn ON "${schema}".entries (writer, lsn)`)
    await db.query(`CREATE INDEX entries_namespace ON "${schema}".entries (namespace, key) WHERE NOT deleted`)
    await db.query(`CREATE INDEX entries_tags ON "${schema}".entries USING gin (tags) WHERE NOT deleted`)
    const packed = (v: unknown): Buffer => Buffer.from(createPackr().encode(v))
    await db.query(`INSERT INTO "${schema}".entries (key, value, namespace, tags, hlc, writer, lsn, deleted) VALUES ('n', $1, 'agents/7', '{t}', 1700000000000000, 'a', 1, false), ('plain', $2, NULL, NULL, 1700000001000000, 'a', 2, false), ('gone', NULL, NULL, NULL, 1700000002000000, 'a', 3, true)`, [packed('in agents/7'), packed('plain')])
    await db.query(`INSERT INTO "${schema}".checkpoints (writer, lsn) VALUES ('a', 3)`)
    const b = await backendOn(t, schema, 'a')
    t.equal(b.checkpoint, 3, 'the checkpoint is kept')
    t.equal((await db.query(`SELECT version FROM "${schema}".schema_version`)).rows[0].version, PG_SCHEMA_VERSION, 'migrated to the latest version')
    t.equal((await db.query(`SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = $1 AND indexname = 'entries_live_updated_at'`, [schema])).rows[0].n, 1, 'with the write-time index of version 5 (queries over every writer)')
    t.match(await b.get(identityOf('agents/7', 'n')), { namespace: 'agents/7', key: 'n', value: 'in agents/7', tags: ['t'], lsn: 1, updatedAt: 1_700_000_000_000, createdAt: 1_700_000_000_000 }, 'a namespaced row keeps its namespace; times from its hlc')
    t.match(await b.get(identityOf('default', 'plain')), { namespace: 'default', key: 'plain', value: 'plain' }, 'a row without a namespace is in default')
    t.equal(await b.get(identityOf('default', 'gone')), undefined, 'a tombstone stays a tombstone')
    await b.apply({ records: [rec(4, 1_800_000_000_000_000, put('n', 'in b', { namespace: 'b' }))], upToLsn: 4 })
    t.equal((await b.get(identityOf('agents/7', 'n')))?.value, 'in agents/7', 'the same key in another namespace is another row')
    t.equal((await b.get(identityOf('b', 'n')))?.value, 'in b')
  })

  t.test('createdAt is carried by a put over a live row, and starts again after a delete', async (t) => {
    const schema = newSchema()
    const b = await backendOn(t, schema, 'a')
    const ms = (n: number): number => (1_800_000_000_000 + n * 1000) * 1000
    await b.apply({ records: [rec(1, ms(1), put('k', 1, { namespace: 'x' }))], upToLsn: 1 })
    await b.apply({ records: [rec(2, ms(2), put('k', 2, { namespace: 'x' }))], upToLsn: 2 })
    t.match(await b.get(identityOf('x', 'k')), { value: 2, createdAt: 1_800_000_001_000, updatedAt: 1_800_000_002_000 }, 'an overwrite keeps createdAt')
    await b.apply({ records: [rec(3, ms(3), del('k', 'x')), rec(4, ms(4), put('k', 4, { namespace: 'x' }))], upToLsn: 4 })
    t.match(await b.get(identityOf('x', 'k')), { value: 4, createdAt: 1_800_000_004_000, updatedAt: 1_800_000_004_000 }, 'a delete then a put (one batch) starts again')
    await b.apply({ records: [rec(5, ms(5), put('j', 5, { namespace: 'x' })), rec(6, ms(6), put('j', 6, { namespace: 'x' }))], upToLsn: 6 })
    t.match(await b.get(identityOf('x', 'j')), { value: 6, createdAt: 1_800_000_005_000, updatedAt: 1_800_000_006_000 }, 'two puts of a new identity in one batch: the first one\'s time')
  })

  t.test('createdAt starts again over a row (or an earlier put of the batch) that had expired by the put\'s write time', async (t) => {
    const schema = newSchema()
    const b = await backendOn(t, schema, 'a')
    const ms = (n: number): number => 1_800_000_000_000 + n * 1000
    const at = (n: number): number => ms(n) * 1000
    const ttl = (key: string, value: unknown, expiresAt: number): Op => ({ type: 'put', key, value, namespace: 'x', expiresAt })
    // Separate applies: the stored row decides (the SQL's comparison).
    await b.apply({ records: [rec(1, at(1), ttl('k', 1, ms(2))), rec(2, at(1), ttl('live', 1, ms(3)))], upToLsn: 2 })
    await b.apply({ records: [rec(3, at(2), put('k', 2, { namespace: 'x' })), rec(4, at(2), put('live', 2, { namespace: 'x' }))], upToLsn: 4 })
    t.match(await b.get(identityOf('x', 'k')), { value: 2, createdAt: ms(2), updatedAt: ms(2) }, 'over a row expired at the write (expires_at <= write time): started again')
    t.match(await b.get(identityOf('x', 'live')), { value: 2, createdAt: ms(1), updatedAt: ms(2) }, 'over a row still live at the write: carried')
    // One apply: the batch's versions decide (pg-versions.ts), and its first put of the identity against the stored row.
    await b.apply({ records: [rec(5, at(3), ttl('j', 5, ms(4))), rec(6, at(4), put('j', 6, { namespace: 'x' })), rec(7, at(5), put('j', 7, { namespace: 'x' }))], upToLsn: 7 })
    t.match(await b.get(identityOf('x', 'j')), { value: 7, createdAt: ms(4), updatedAt: ms(5) }, 'in one batch: the put over the expired one started again, the next carried it')
    await b.apply({ records: [rec(8, at(6), ttl('live', 8, ms(8))), rec(9, at(7), put('live', 9, { namespace: 'x' })), rec(10, at(7), ttl('k', 10, ms(7))), rec(11, at(8), put('k', 11, { namespace: 'x' }))], upToLsn: 11 })
    t.match(await b.get(identityOf('x', 'live')), { value: 9, createdAt: ms(1), updatedAt: ms(7) }, 'a run of live puts keeps the stored createdAt')
    t.match(await b.get(identityOf('x', 'k')), { value: 11, createdAt: ms(8), updatedAt: ms(8) }, 'the batch\'s first put carried the row\'s, the second started again')
  })

  t.test('apply: upserts, tombstones, one version per key per batch, checkpoint stored with the data', async (t) => {
    const schema = newSchema()
    const b = await backendOn(t, schema, 'a', { pageRows: 3 })
    const value = { n: 1.5, s: 'x', arr: [1, '2'], nested: { deep: true }, bin: Buffer.from([1, 2, 3]), nul: null }
    await b.apply({
      records: [
        rec(1, 1000, put('k1', 'one', { namespace: 'ns', tags: ['t1', 't2'] })),
        rec(2, 1001, put('k2', value, { namespace: 'ns' })),
        rec(3, 1002, del('k1', 'ns')),
        // One record touching k3 twice and k4, k5: the last operation per key wins.
        rec(4, 1003, put('k3', 'first'), put('k3', 'second', { tags: [] }), del('k4'), put('k5', 5)),
      ],
      upToLsn: 4,
    })
    t.equal(b.checkpoint, 4, 'checkpoint 4')
    t.equal(await checkpointRow(schema, 'a'), 4, 'stored in the checkpoints row')
    t.equal(await b.get(identityOf('ns', 'k1')), undefined, 'a deleted key reads as absent')
    t.equal(await b.get(dflt('k4')), undefined, 'a key deleted without ever being stored reads as absent')
    const rows = await rowsOf(schema)
    t.same(rows.filter((r) => r.deleted).map((r) => r.key), ['k1', 'k4'], 'deletes leave tombstones')
    const k2 = (await b.get(identityOf('ns', 'k2'))) as PgStoredEntry
    t.same(k2.value, value, 'a value comes back as stored (msgpack)')
    t.same({ namespace: k2.namespace, tags: k2.tags, lsn: k2.lsn, hlc: k2.hlc, writer: k2.writer }, { namespace: 'ns', tags: undefined, lsn: 2, hlc: 1001, writer: 'a' }, 'namespace, LSN, HLC and writer')
    t.equal(typeof k2.lsn, 'number', 'int8 columns are numbers, not strings')
    const k3 = (await b.get(dflt('k3'))) as PgStoredEntry
    t.same([k3.value, k3.tags], ['second', []], 'the last operation of a batch on a key wins')
    const keys = async (o?: { gte?: string; lt?: string }): Promise<string[]> => {
      const out: string[] = []
      for await (const [id, e] of b.entries(o)) out.push(id === identityOf(e.namespace, e.key) ? e.key : `bad identity ${id}`)
      return out
    }
    t.same(await keys(), ['k3', 'k5', 'k2'], 'entries: live keys only, in identity order (default before ns)')
    t.same(await keys({ gte: dflt('k3'), lt: dflt('k5') }), ['k3'], 'entries within a range of identities')

    // Bytewise order, across pages of 3 rows.
    const odd = ['B', 'a', 'é', 'Z', 'b', '\u{1F600}', 'ab', 'a b', 'A']
    await b.apply({ records: odd.map((k, i) => rec(5 + i, 2000 + i, put(`o/${k}`, i))), upToLsn: 4 + odd.length })
    const bytewise = odd.map((k) => `o/${k}`).sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    t.same(await keys({ gte: dflt('o/'), lt: dflt('o0') }), bytewise, 'keys in bytewise (UTF-8) order, whatever the database locale')

    // A batch that only moves the checkpoint (records dead-lettered before it).
    await b.apply({ records: [], upToLsn: 20 })
    t.equal(await checkpointRow(schema, 'a'), 20, 'an empty batch moves the checkpoint')
    const again = await backendOn(t, schema, 'a')
    t.equal(again.checkpoint, 20, 'a new process reads the checkpoint back')
    t.equal((await backendOn(t, schema, 'other')).checkpoint, 0, 'each writer has its own checkpoint')
  })

  t.test('a batch is all or nothing: a data error stores none of it, nor its checkpoint', async (t) => {
    const schema = newSchema()
    const b = await backendOn(t, schema, 'a')
    await b.apply({ records: [rec(1, 10, put('before', 1))], upToLsn: 1 })
    const err = await errorOf(b.apply({ records: [rec(2, 11, put('ok', 1)), rec(3, 12, put('bad\u0000key', 2))], upToLsn: 3 }))
    t.equal((err as { code?: string }).code?.slice(0, 2), '22', `PostgreSQL refuses a NUL in a text key (SQLSTATE ${(err as { code?: string }).code})`)
    t.equal(b.classify(err), 'permanent', 'a data error is permanent: it would fail the same way every time')
    t.equal(await b.get(dflt('ok')), undefined, 'nothing of the batch was stored')
    t.equal(await checkpointRow(schema, 'a'), 1, 'nor its checkpoint')
    t.equal(b.checkpoint, 1, 'the sink did not move either')
  })

  t.test('last writer wins by HLC, the writer id breaking ties, whatever the order of arrival', async (t) => {
    const schema = newSchema()
    const a = await backendOn(t, schema, 'a')
    const b = await backendOn(t, schema, 'b')
    let la = 0
    let lb = 0
    const byA = (hlc: number, ...ops: Op[]): Promise<void> => a.apply({ records: [rec(++la, hlc, ...ops)], upToLsn: la })
    const byB = (hlc: number, ...ops: Op[]): Promise<void> => b.apply({ records: [rec(++lb, hlc, ...ops)], upToLsn: lb })
    const valueOf = async (k: string): Promise<unknown> => (await a.get(dflt(k)))?.value

    await byB(2000, put('x1', 'b'))
    await byA(1000, put('x1', 'a')) // arrives last, but is older
    await byA(1001, put('x2', 'a'))
    await byB(2001, put('x2', 'b'))
    t.same([await valueOf('x1'), await valueOf('x2')], ['b', 'b'], 'the greater HLC wins, whichever arrived first')

    await byA(3000, put('tie1', 'a'))
    await byB(3000, put('tie1', 'b'))
    await byB(3001, put('tie2', 'b'))
    await byA(3001, put('tie2', 'a'))
    t.same([await valueOf('tie1'), await valueOf('tie2')], ['b', 'b'], 'equal HLCs: the greater writer id wins, whichever arrived first')

    await byA(4000, put('d', 'a'))
    await byB(4002, del('d'))
    await byA(4001, put('d', 'late')) // older than the delete
    t.equal(await valueOf('d'), undefined, 'an older put arriving after a newer delete does not bring the key back')
    t.match((await rowsOf(schema)).find((r) => r.key === 'd'), { writer: 'b', deleted: true }, 'the tombstone of the newer delete stands')
    t.equal(compareVersions({ hlc: 1, writer: 'b', lsn: 1 }, { hlc: 1, writer: 'a', lsn: 9 }), 1, 'compareVersions: HLC, then writer id, then LSN')
  })

  t.test('replays change nothing: idempotent by writer and LSN', async (t) => {
    const schema = newSchema()
    const b = new Replayer({ connectionString: PG_URL, writerId: 'a', schema })
    await b.open()
    t.teardown(() => b.close())
    const audited = await addAudit(schema)
    const batch1 = [rec(1, 100, put('k', 'v1')), rec(2, 101, put('j', 'j1'))]
    const batch2 = [rec(3, 102, put('k', 'v2'), del('j'))]
    await b.apply({ records: batch1, upToLsn: 2 })
    await b.apply({ records: batch2, upToLsn: 3 })
    const rows = await rowsOf(schema)
    const writes = await audited()
    t.equal(writes, 4, 'four row writes (k twice, j twice)')
    await b.apply({ records: batch1, upToLsn: 2 })
    t.equal(await audited(), writes, 'the sink drops records at or below its checkpoint')
    // As after a lost acknowledgement, the statement itself runs again: the old batch, then the newer one.
    await b.replay(batch1, 2)
    await b.replay(batch2, 3)
    t.equal(await audited(), writes, 'PostgreSQL wrote no row again')
    t.same(await rowsOf(schema), rows, 'the rows are as before')
    t.equal(await checkpointRow(schema, 'a'), 3, 'the checkpoint never goes back')
  })

  t.test('property: any interleaving of three writers\' batches, with replays, ends in the greatest version of each key', async (t) => {
    const schema = newSchema()
    const writers = ['a', 'b', 'c'] as const
    const sinks = new Map<string, Replayer>()
    for (const w of writers) {
      const s = new Replayer({ connectionString: PG_URL, writerId: w, schema })
      await s.open()
      sinks.set(w, s)
    }
    t.teardown(async () => {
      for (const s of sinks.values()) await s.close()
    })
    const opArb = fc.oneof(
      fc.record({ type: fc.constant('put' as const), key: fc.constantFrom('p', 'q', 'r'), value: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ type: fc.constant('del' as const), key: fc.constantFrom('p', 'q', 'r') }),
    )
    // Per writer: batches of records, each record 1-3 ops and an HLC step of 0-2 ms (so writers' HLCs often collide).
    const writerArb = fc.array(fc.array(fc.record({ ops: fc.array(opArb, { minLength: 1, maxLength: 3 }), step: fc.integer({ min: 0, max: 2 }) }), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 })
    const scheduleArb = fc.array(fc.record({ writer: fc.integer({ min: 0, max: 2 }), replay: fc.boolean(), pick: fc.nat() }), { minLength: 0, maxLength: 30 })
    await fc.assert(
      fc.asyncProperty(fc.tuple(writerArb, writerArb, writerArb), scheduleArb, async (plans, schedule) => {
        await db.query(`TRUNCATE "${schema}".entries, "${schema}".checkpoints`)
        const batches = plans.map((plan) => {
          let lsn = 0
          let hlc = 1000
          return plan.map((recs) => recs.map((r) => rec(++lsn, (hlc += r.step * 1000 + 1), ...(r.ops as Op[]))))
        })
        const model = new Map<string, { hlc: number; writer: string; lsn: number; op: Op }>()
        for (const [i, w] of writers.entries()) {
          for (const recs of batches[i] as AppliedRecord[][]) {
            for (const r of recs) {
              for (const op of r.record.type === RecordType.BATCH ? r.record.ops : [r.record.op]) {
                const v = { hlc: r.record.hlc ?? 0, writer: w, lsn: r.lsn, op }
                const cur = model.get(op.key)
                if (!cur || compareVersions(v, cur) >= 0) model.set(op.key, v)
              }
            }
          }
        }
        // Fresh sinks at checkpoint 0 (the tables were emptied).
        for (const w of writers) {
          await sinks.get(w)?.close()
          const s = new Replayer({ connectionString: PG_URL, writerId: w, schema })
          await s.open()
          sinks.set(w, s)
        }
        const next = [0, 0, 0]
        const deliver = async (i: number, replay: boolean, pick = 0): Promise<void> => {
          const list = batches[i] as AppliedRecord[][]
          const sink = sinks.get(writers[i] as string) as Replayer
          const n = next[i] as number
          if (replay && n > 0) {
            const old = list[pick % n] as AppliedRecord[]
            await sink.replay(old, (old[old.length - 1] as AppliedRecord).lsn)
          }
          if (n >= list.length) return
          const b = list[n] as AppliedRecord[]
          await sink.apply({ records: b, upToLsn: (b[b.length - 1] as AppliedRecord).lsn })
          next[i] = n + 1
        }
        for (const s of schedule) await deliver(s.writer, s.replay, s.pick)
        for (let i = 0; i < 3; i++) while ((next[i] as number) < (batches[i] as AppliedRecord[][]).length) await deliver(i, false)
        const rows = await rowsOf(schema)
        const got = rows.map((r) => [r.key, Number(r.hlc), r.writer, Number(r.lsn), r.deleted])
        const want = [...model.entries()].sort((x, y) => (x[0] < y[0] ? -1 : 1)).map(([k, v]) => [k, v.hlc, v.writer, v.lsn, v.op.type === 'del'])
        if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`rows ${JSON.stringify(got)} != model ${JSON.stringify(want)}`)
        for (const [k, v] of model) {
          const e = await (sinks.get('a') as Replayer).get(dflt(k))
          if (v.op.type === 'put' ? e?.value !== v.op.value : e !== undefined) throw new Error(`get(${k}) = ${JSON.stringify(e)}, model ${JSON.stringify(v)}`)
        }
      }),
      { numRuns: 25 },
    )
    t.pass('25 random schedules converged to the model')
  })

  t.test('classify: data errors (SQLSTATE 21, 22, 23, 54) are permanent; connection loss, timeouts, conflicts transient', async (t) => {
    const schema = newSchema()
    const b = await backendOn(t, schema, 'a')
    const dbErr = (code: string): Error => Object.assign(new pg.DatabaseError(`synthetic ${code}`, 0, 'error'), { code })
    const sqlError = (sql: string, client: pg.Client = db): Promise<unknown> => errorOf(client.query(sql))

    t.equal(b.classify(await sqlError(`SELECT 'x'::int`)), 'permanent', '22P02 invalid text representation')
    await db.query('CREATE TEMP TABLE uniq (a int PRIMARY KEY)')
    await db.query('INSERT INTO uniq VALUES (1)')
    t.equal(b.classify(await sqlError('INSERT INTO uniq VALUES (1)')), 'permanent', '23505 unique violation')
    t.equal(b.classify(await sqlError('INSERT INTO uniq VALUES (NULL)')), 'permanent', '23502 not-null violation')
    t.equal(b.classify(await sqlError('SELECT * FROM no_such_table_here')), 'transient', '42P01 (an operator error, not the record\'s): retried, never dead-lettered')

    const timed = new pg.Client({ connectionString: PG_URL, statement_timeout: 50 })
    await timed.connect()
    const timeout = (await sqlError('SELECT pg_sleep(2)', timed)) as { code?: string }
    await timed.end()
    t.equal(timeout.code, '57014', 'a real statement timeout')
    t.equal(b.classify(timeout), 'transient', '57014 statement timeout')

    const readTimeout = new pg.Client({ connectionString: PG_URL, query_timeout: 50 })
    readTimeout.on('error', () => undefined)
    await readTimeout.connect()
    const rt = await sqlError('SELECT pg_sleep(1)', readTimeout)
    await readTimeout.end().catch(() => undefined)
    t.equal(b.classify(rt), 'transient', `the client's own read timeout (${(rt as Error).message})`)

    const proxy = await TcpProxy.start(pgTarget())
    t.teardown(() => proxy.close())
    const viaProxy = new pg.Client({ connectionString: viaPort(proxy.port) })
    viaProxy.on('error', () => undefined)
    await viaProxy.connect()
    const query = viaProxy.query('SELECT pg_sleep(1)')
    await sleep(100)
    proxy.cut()
    const lost = await errorOf(query)
    t.equal(b.classify(lost), 'transient', `a connection cut mid-query (${(lost as Error).message})`)
    const refused = await errorOf(new pg.Client({ connectionString: viaPort(proxy.port), connectionTimeoutMillis: 500 }).connect())
    t.equal(b.classify(refused), 'transient', `a connection refused or reset (${(refused as Error).message})`)
    proxy.heal()

    for (const code of ['40001', '40P01', '08006', '08001', '53300', '57P01', '55P03']) t.equal(b.classify(dbErr(code)), 'transient', `${code} is transient`)
    for (const code of ['21000', '22001', '22021', '23503', '23514', '54000']) t.equal(b.classify(dbErr(code)), 'permanent', `${code} is permanent`)
    t.equal(b.classify(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), 'transient', 'ECONNRESET')
    t.equal(b.classify(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })), 'transient', 'EPIPE (five capitals, but no SQLSTATE)')
    t.equal(b.classify(new PermanentSinkError('no')), 'permanent', 'PermanentSinkError')
  })

  t.test('MemWAL on PostgreSQL: reads, flush, and a data error dead-lettered', async (t) => {
    const schema = newSchema()
    const dir = tmpDir(t, 'memwal-pg-')
    const backend = new PgBackend({ connectionString: PG_URL, writerId: 'solo', schema, ...fastBackend })
    const engine = await openEngine(t, dir, backend)
    // A key with NUL is refused at put now (pg-failures.test.ts): the poison is a row a constraint refuses (23514).
    await db.query(`ALTER TABLE "${schema}".entries ADD CONSTRAINT no_poison CHECK (key <> 'poison')`)
    const dead: { sink: string; lsn: number }[] = []
    engine.on('dead-letter', (e: { sink: string; lsn: number }) => dead.push(e))
    await engine.put('a', { v: 1 }, { namespace: 'n', tags: ['x'] })
    await engine.batch([{ type: 'put', key: 'b', value: 2 }, { type: 'put', key: 'c', value: 3 }, { type: 'del', key: 'a', namespace: 'n' }])
    // Issued together, so that they are likely one apply batch: the poison is isolated from its neighbours either way.
    const [, bad] = await Promise.all([engine.put('good1', 1), engine.put('poison', 'refused'), engine.put('good2', 2)])
    await engine.flush({ timeoutMs: 20_000 })
    const last = engine.health().wal.lastLsn
    t.equal(await checkpointRow(schema, 'solo'), last, 'the checkpoint row is the last LSN')
    t.same((await rowsOf(schema)).map((r) => [r.key, r.deleted]), [['a', true], ['b', false], ['c', false], ['good1', false], ['good2', false]], 'PostgreSQL holds every record but the poison')
    t.same(dead.map((d) => [d.sink, d.lsn]), [['backend', bad.lsn]], 'the refused row was dead-lettered by the backend, by LSN')
    t.ok(fs.statSync(path.join(dir, 'deadletter', 'backend.log')).size > 0, 'into deadletter/backend.log')
    t.equal(engine.health().sinks['backend']?.deadLetters, 1, 'health counts it')
    t.same([await engine.get('a', { namespace: 'n' }), await engine.get('b'), await engine.get('good2')], [undefined, 2, 2], 'reads through the engine')
  })

  t.test('a write that waited at the version gate, appended after another put of its key, is the version PostgreSQL keeps (stamped after its wait)', async (t) => {
    const schema = newSchema()
    const backend = new PgBackend({ connectionString: PG_URL, writerId: 'gate', schema, ...fastBackend })
    const engine = await openEngine(t, tmpDir(t, 'memwal-pg-gate-'), backend)
    const held = engine.health().wal.lastLsn + 1
    // j's put is in flight when the batch reaches the gate: the batch waits; k's plain put, called after it, is appended first.
    const first = engine.put('j', 1)
    const batch = engine.batch([{ type: 'put', key: 'j', value: 2, ifVersion: held }, { type: 'put', key: 'k', value: 'batch' }])
    const plain = engine.put('k', 'plain')
    const [, b, p] = await Promise.all([first, batch, plain])
    t.ok(p.lsn < b.lsn, 'the batch that waited was appended after the plain put')
    await engine.flush({ timeoutMs: 20_000 })
    const k = (await rowsOf(schema)).find((r) => r.key === 'k')
    t.equal(Number(k?.lsn), b.lsn, 'PostgreSQL keeps the batch\'s version of k, the one the log acknowledged last (as the cache and LevelDB do)')
  })

  t.test('a writer id belongs to one data directory: reused on a fresh one, open refuses and closes the backend', async (t) => {
    const schema = newSchema()
    const first = await openEngine(t, tmpDir(t, 'memwal-pgw-'), new PgBackend({ connectionString: PG_URL, writerId: 'same', schema, ...fastBackend }))
    for (let i = 0; i < 5; i++) await first.put(`k${i}`, i)
    await first.flush()
    await first.close()
    const reused = new PgBackend({ connectionString: PG_URL, writerId: 'same', schema })
    const err = (await errorOf(MemWAL.open({ dir: tmpDir(t, 'memwal-pgw-'), backend: reused }))) as { code?: string }
    t.equal(err.code, 'WRITER_IN_USE', 'the writer id is bound to the first directory: refused before the log is judged (it used to be WAL_HOLE, and in interval durability nothing)')
    t.equal(await codeOf(reused.get(dflt('k1'))), 'ENGINE_CLOSED', 'the failed open closed the backend it had opened (no pool left behind)')
  })

  t.test('storedCheckpoint: on a backend open, read with its connections, which stay; on one not open, through connections of the call\'s own', async (t) => {
    const schema = newSchema()
    const other = new PgBackend({ connectionString: PG_URL, writerId: 'sc', schema })
    t.equal(await codeOf(other.storedCheckpoint()), 'INVALID_OPTIONS', 'not open, on a schema no writer made: refused (and not made)')
    const b = await backendOn(t, schema, 'sc')
    t.equal(await b.storedCheckpoint(), 0, 'open, nothing applied: 0 (it used to fail an assertion)')
    await b.apply({ records: [rec(1, 1000, put('k', 'v'))], upToLsn: 3 })
    t.equal(await b.storedCheckpoint(), 3, 'open: the row as stored')
    t.equal(await b.storedCheckpoint(), 3, 'again')
    t.match(await b.get(dflt('k')), { value: 'v' }, 'and the backend still reads: its connections were not ended')
    t.equal(await other.storedCheckpoint(), 3, 'a backend not open reads it too')
    t.equal(await codeOf(other.get(dflt('k'))), 'ENGINE_CLOSED', '... and is left not open')
    const [read, opened] = await Promise.all([other.storedCheckpoint(), other.open()])
    t.same([read, opened], [3, 3], 'opened while such a read runs: both answer (the read\'s connections are its own)')
    t.match(await other.get(dflt('k')), { value: 'v' }, 'and the opened backend reads: the read ended only its own connections')
    await other.close()
  })

  t.test('two writers: get and PgBackend.query see every writer\'s entries', async (t) => {
    const schema = newSchema()
    const ba = new PgBackend({ connectionString: PG_URL, writerId: 'a', schema, ...fastBackend })
    const bb = new PgBackend({ connectionString: PG_URL, writerId: 'b', schema, ...fastBackend })
    // B's clock runs a second ahead of A's, and neither caches (cacheBytes: 1), so reads go to PostgreSQL.
    const A = await openEngine(t, tmpDir(t, 'memwal-pga-'), ba, { cacheBytes: 1, clock: new ManualClock(1_800_000_000_000) })
    const B = await openEngine(t, tmpDir(t, 'memwal-pgb-'), bb, { cacheBytes: 1, clock: new ManualClock(1_800_000_001_000) })
    await A.put('shared/1', { from: 'a' }, { namespace: 'n', tags: ['t'] })
    await A.put('a/only', 'a', { namespace: 'n' })
    await A.flush()
    t.same(await B.get('shared/1', { namespace: 'n' }), { from: 'a' }, 'B reads what A wrote')
    t.match(await B.getEntry('a/only', { namespace: 'n' }), { value: 'a', namespace: 'n', key: 'a/only', version: 2, updatedAt: 1_800_000_000_000 }, 'with its version (A\'s LSN) and time')
    t.match(await bb.get(identityOf('n', 'a/only')), { lsn: 2, hlc: 1_800_000_000_000_001, writer: 'a' }, 'the row names its writer, LSN and HLC')

    await B.put('shared/1', { from: 'b' }, { namespace: 'n', tags: ['t'] })
    await B.put('b/only', 'b', { tags: ['t'] })
    await B.flush()
    t.same(await A.get('shared/1', { namespace: 'n' }), { from: 'b' }, 'A reads B\'s newer version of its own key')
    // A writes the key again, later in real time, but its clock is behind B's: B's version stands.
    await A.put('shared/1', { from: 'a, behind' }, { namespace: 'n', tags: ['t'] })
    await A.flush()
    t.same(await A.get('shared/1', { namespace: 'n' }), { from: 'b' }, 'last writer by HLC wins, not last to arrive')

    const keys = async (q: Parameters<PgBackend['query']>[0]): Promise<string[]> => {
      const out: string[] = []
      for await (const r of ba.query(q)) out.push(`${r.key}@${r.writer}`)
      return out
    }
    t.same(await keys({}), ['b/only@b', 'a/only@a', 'shared/1@b'], 'PgBackend.query: every writer\'s entries, in identity order (default before n)')
    t.same(await keys({ namespace: 'n' }), ['a/only@a', 'shared/1@b'], 'by namespace')
    t.same(await keys({ tag: 't' }), ['b/only@b', 'shared/1@b'], 'by tag')
    t.same(await keys({ prefix: 'b/' }), ['b/only@b'], 'by prefix')
    t.same(await keys({ prefix: '%' }), [], 'a prefix is not a LIKE pattern')
    t.same(await keys({ tag: 't', limit: 1 }), ['b/only@b'], 'with a limit')
    t.equal(await codeOf(keys({ limit: 0 })), 'ENGINE_INVALID_VALUE', 'a limit out of range is refused')

    const all: string[] = []
    for await (const r of A.query({})) all.push(`${r.key}=${JSON.stringify(r.value)}`)
    t.same(all, ['b/only="b"', 'a/only="a"', 'shared/1={"from":"b"}'], 'MemWAL.query answers from PostgreSQL: B\'s entries too, and the versions PostgreSQL holds')
  })

  t.test('outages through a TCP proxy: writes are acknowledged, reads never guess, the backlog drains', async (t) => {
    const schema = newSchema()
    const proxy = await TcpProxy.start(pgTarget())
    t.teardown(() => proxy.close())
    const backend = new PgBackend({ connectionString: viaPort(proxy.port), writerId: 'o', schema, ...fastBackend })
    const engine = await openEngine(t, tmpDir(t, 'memwal-pgo-'), backend)
    let n = 0
    for (const outage of ['cut', 'blackhole', 'slow'] as const) {
      if (outage === 'cut') proxy.cut()
      else if (outage === 'blackhole') proxy.blackhole()
      else proxy.slow(20)
      const keys = Array.from({ length: 60 }, () => `${outage}/${n++}`)
      const acks = await Promise.all(keys.map((k, i) => engine.put(k, { outage, i })))
      t.equal(acks.length, keys.length, `${outage}: all ${keys.length} writes acknowledged`)
      if (outage !== 'slow') {
        await waitFor(() => engine.health().sinks['backend']?.breaker !== 'closed' || engine.health().state === 'degraded', `${outage}: the backend reported down`, SHOWS_WITHIN_MS, 10)
        t.ok(engine.health().sinks['backend']!.lag.records > 0, `${outage}: acknowledged records wait for the backend`)
        t.same(await engine.get(keys[7] as string), { outage, i: 7 }, `${outage}: a pending write reads back (G4)`)
        t.equal(await codeOf(engine.get('never/written')), 'ENGINE_BACKEND_UNAVAILABLE', `${outage}: an unknown key is an error, not "not found"`)
      }
      proxy.heal()
      await engine.flush({ timeoutMs: 30_000 })
      const stored = await db.query(`SELECT count(*)::int AS n FROM "${schema}".entries WHERE key LIKE $1`, [`${outage}/%`])
      t.equal(stored.rows[0].n, keys.length, `${outage}: after healing, every write is in PostgreSQL`)
      t.equal(await checkpointRow(schema, 'o'), engine.health().wal.lastLsn, `${outage}: the checkpoint row caught up`)
    }

    // Closing while the network swallows everything still completes (the sockets are destroyed).
    const other = new PgBackend({ connectionString: viaPort(proxy.port), writerId: 'p', schema, ...fastBackend })
    const dir = tmpDir(t, 'memwal-pgp-')
    const e2 = await MemWAL.open({ dir, backend: other, resilience: fastResilience, closeGraceMs: 500 })
    proxy.blackhole()
    await e2.put('p/1', 'during')
    await e2.close()
    t.pass('close() returned with the connection blackholed')
    proxy.heal()
    const again = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId: 'p', schema, ...fastBackend }), resilience: fastResilience })
    await again.flush({ timeoutMs: 20_000 })
    await again.close()
    t.equal((await db.query(`SELECT count(*)::int AS n FROM "${schema}".entries WHERE key = 'p/1'`)).rows[0].n, 1, 'and the write reached PostgreSQL after the reopen')
  })

  t.test('the reconciler: verifyLog finds what is wrong, repairs it, never beats a greater version', async (t) => {
    const schema = newSchema()
    const dir = tmpDir(t, 'memwal-pgr-')
    const engine = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId: 'r', schema, ...fastBackend }), resilience: fastResilience })
    for (let i = 1; i <= 6; i++) await engine.put(`r/${i}`, { i })
    await engine.delete('r/6')
    await engine.flush()
    await engine.close()
    const b = await backendOn(t, schema, 'r')
    const clean = await b.verifyLog(dumpLog({ dir }))
    t.same({ clean: clean.clean, findings: clean.findings, keysChecked: clean.keysChecked, checkpoint: clean.checkpoint, lastLsn: clean.lastLsn }, { clean: true, findings: [], keysChecked: 6, checkpoint: 7, lastLsn: 7 }, 'log and PostgreSQL agree')

    await db.query(`UPDATE "${schema}".entries SET value = '\\x01' WHERE key = 'r/1'`)
    await db.query(`DELETE FROM "${schema}".entries WHERE key = 'r/2'`)
    await db.query(`UPDATE "${schema}".entries SET hlc = hlc - 5000000 WHERE key = 'r/3'`)
    await db.query(`UPDATE "${schema}".entries SET writer = 'zz', hlc = hlc + 1, value = '\\x02' WHERE key = 'r/4'`)
    await db.query(`UPDATE "${schema}".entries SET lsn = lsn + 1000 WHERE key = 'r/5'`)
    await db.query(`UPDATE "${schema}".entries SET deleted = false, value = '\\x03' WHERE key = 'r/6'`)
    const found = await b.verifyLog(dumpLog({ dir }))
    t.equal(found.clean, false, 'not clean')
    t.same(found.counts, { mismatch: 2, missing: 1, stale: 1, 'unknown-version': 1 }, 'each wrong row found by kind')
    t.same(found.findings.map((f) => `${f.kind} ${f.key}`).sort(), ['mismatch r/1', 'mismatch r/6', 'missing r/2', 'stale r/3', 'unknown-version r/5'], 'and by key')
    t.equal(found.superseded, 1, 'another writer\'s greater version (r/4) is no finding')

    const repaired = await b.verifyLog(dumpLog({ dir }), { repair: true })
    t.same(repaired.findings.filter((f) => !f.repaired).map((f) => f.key), ['r/5'], 'everything but the unexplained row was repaired')
    const after = await b.verifyLog(dumpLog({ dir }))
    t.same(after.findings.map((f) => `${f.kind} ${f.key}`), ['unknown-version r/5'], 'only the evidence is left')
    t.same([(await b.get(dflt('r/1')))?.value, (await b.get(dflt('r/2')))?.value, (await b.get(dflt('r/3')))?.value, await b.get(dflt('r/6'))], [{ i: 1 }, { i: 2 }, { i: 3 }, undefined], 'values restored from the log')
    t.match(await b.get(dflt('r/4')), { writer: 'zz' }, 'the greater version of another writer stands')

    // The engine's generic reconciler (single-writer checks) repairs conservatively: never over another writer's row.
    const e2 = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId: 'r', schema, ...fastBackend }), resilience: fastResilience })
    await e2.verify({ repair: true })
    await e2.close()
    t.match(await b.get(dflt('r/4')), { writer: 'zz' }, 'MemWAL.verify({ repair }) left the other writer\'s row alone')
  })
}
