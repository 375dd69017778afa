/**
 * Expiry on the PostgreSQL backend: its rows carry expires_at; a row whose
 * expiry has passed reads as absent at once (get, getEntry, query, read from
 * the backend: the cache holds nothing), and the sweep's deletes reach the
 * table through the log like any delete.
 */
import t from 'tap'
import { MemWAL, PgBackend } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { PG_URL, schemaWithClient } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'

const NOW = 1_700_000_000_000

t.test('PostgreSQL: an expired row is invisible at once and the sweep deletes it through the log', async (t) => {
  const pgdb = await schemaWithClient(t, 'expiry')
  if (!pgdb) return
  const { schema, client } = pgdb
  const clock = new ManualClock(NOW)
  const backend = new PgBackend({ connectionString: PG_URL, writerId: 'w', schema, clock })
  const db = await MemWAL.open({ dir: tmpDir(t), backend, clock, cacheBytes: 1, sweepIntervalMs: 3_600_000 })
  await db.put('short', 1, { ttlMs: 100 })
  await db.put('long', 2, { expiresAt: NOW + 10_000 })
  await db.put('never', 3)
  await db.flush()
  const rows = async (): Promise<Record<string, { deleted: boolean; expires_at: string | null }>> => {
    const r = await client.query<{ key: string; deleted: boolean; expires_at: string | null }>(`SELECT key, deleted, expires_at FROM "${schema}".entries ORDER BY key`)
    return Object.fromEntries(r.rows.map((x) => [x.key, { deleted: x.deleted, expires_at: x.expires_at }]))
  }
  t.match(await rows(), { short: { deleted: false, expires_at: String(NOW + 100) }, long: { expires_at: String(NOW + 10_000) }, never: { expires_at: null } })
  clock.advance(100)
  t.equal(await db.get('short'), undefined, 'expired: absent, read from the backend')
  t.equal(await db.getEntry('short'), undefined)
  const keys: string[] = []
  for await (const e of db.query()) keys.push(e.key)
  t.same(keys, ['long', 'never'])
  const direct: string[] = []
  for await (const e of backend.query()) direct.push(e.key)
  t.same(direct, ['long', 'never'], 'PgBackend.query, without the engine, leaves the expired row out too')
  const round = await (db as unknown as { sweeper: { round(): Promise<{ deleted: number }> } }).sweeper.round()
  t.equal(round.deleted, 1)
  await db.flush()
  t.match(await rows(), { short: { deleted: true }, long: { deleted: false }, never: { deleted: false } }, 'the sweep\'s delete reached the table')
  t.same((await db.verify()).findings, [])
  await db.close()
})

t.test('PostgreSQL: a put over an expired row not yet swept makes a new entry (its own createdAt); over a live one it keeps it', async (t) => {
  const pgdb = await schemaWithClient(t, 'expiry_created')
  if (!pgdb) return
  const clock = new ManualClock(NOW)
  const backend = new PgBackend({ connectionString: PG_URL, writerId: 'w', schema: pgdb.schema, clock })
  // Nothing cached: getEntry reads the row, and a pending put's createdAt judges the row it overwrites.
  const db = await MemWAL.open({ dir: tmpDir(t), backend, clock, cacheBytes: 1, sweepIntervalMs: 3_600_000 })
  await db.put('k', 1, { ttlMs: 100 })
  await db.put('kept', 1, { ttlMs: 100 })
  await db.batch([{ type: 'put', key: 'b', value: 1, ttlMs: 100 }])
  await db.flush()
  clock.advance(99)
  await db.put('kept', 2)
  clock.advance(1)
  const second = clock.nowMs()
  await db.put('k', 2)
  await db.batch([{ type: 'put', key: 'b', value: 2 }, { type: 'put', key: 'other', value: 2 }])
  const times = async (key: string): Promise<unknown> => {
    const e = await db.getEntry(key)
    return e && { createdAt: e.createdAt, updatedAt: e.updatedAt }
  }
  const want = { k: { createdAt: second, updatedAt: second }, kept: { createdAt: NOW, updatedAt: NOW + 99 }, b: { createdAt: second, updatedAt: second } }
  t.strictSame({ k: await times('k'), kept: await times('kept'), b: await times('b') }, want, 'read while pending or just applied')
  await db.flush()
  t.strictSame({ k: await times('k'), kept: await times('kept'), b: await times('b') }, want, 'the rows')
  const r = await pgdb.client.query<{ key: string; created_at: string }>(`SELECT key, created_at FROM "${pgdb.schema}".entries WHERE key IN ('k', 'kept', 'b') ORDER BY key`)
  t.strictSame(r.rows.map((x) => [x.key, Number(x.created_at)]), [['b', second], ['k', second], ['kept', NOW]], 'created_at in the table')
  t.same((await db.verify()).findings, [])
  await db.close()
})
