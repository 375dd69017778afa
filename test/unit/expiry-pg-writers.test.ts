/**
 * Expiry with several writers on one PostgreSQL backend (issue 11 item 5):
 * - each writer's sweep reads its own local index, so it deletes only the
 *   expired entries it wrote; another writer's expired row is hidden from
 *   every reader at once, and stays in the table until its own writer sweeps;
 * - a writer's sweep judges an entry by the backend's row, not by its own
 *   cache: another writer's version written over its expired entry is kept
 *   (before, the cache's expired version was judged, and the sweep's delete,
 *   the newer version by HLC, removed the other writer's entry from the
 *   table); the sweeping writer's expiry posting stays in its index, so each
 *   of its rounds reads that row again.
 */
import t from 'tap'
import { MemWAL, PgBackend } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { PG_URL, schemaWithClient } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'

const NOW = 1_700_000_000_000

interface Sweeping {
  sweeper: { round(): Promise<{ deleted: number; skipped: number }> }
}

t.test('PostgreSQL, two writers: each sweeps its own expired entries; a version another writer wrote over one is kept', async (t) => {
  const pgdb = await schemaWithClient(t, 'expiry2w')
  if (!pgdb) return
  const { schema, client } = pgdb
  const clock = new ManualClock(NOW)
  const open = (writerId: string): Promise<MemWAL> => MemWAL.open({ dir: tmpDir(t), backend: new PgBackend({ connectionString: PG_URL, writerId, schema }), clock, sweepIntervalMs: 3_600_000 })
  const a = await open('a')
  const b = await open('b')
  t.teardown(async () => {
    await a.close()
    await b.close()
  })
  const rows = async (): Promise<Record<string, { deleted: boolean; writer: string }>> => {
    const r = await client.query<{ key: string; deleted: boolean; writer: string }>(`SELECT key, deleted, writer FROM "${schema}".entries ORDER BY key`)
    return Object.fromEntries(r.rows.map((x) => [x.key, { deleted: x.deleted, writer: x.writer }]))
  }
  await a.put('mine', 1, { ttlMs: 100 })
  await a.put('renewed', 2, { ttlMs: 100 })
  await b.put('theirs', 3, { ttlMs: 100 })
  await a.flush()
  await b.flush()
  t.equal(await a.get('renewed'), 2, 'a has read its own version (now in its cache)')
  clock.advance(100)
  t.equal(await a.get('theirs'), undefined, 'b\'s expired row is hidden from a at once')
  await b.put('renewed', 'b wrote it after it expired')
  await b.flush()
  clock.advance(5) // a's sweep comes later: its delete would be the newer version, and win in the table
  const swept = await (a as unknown as Sweeping).sweeper.round()
  await a.flush()
  t.match(swept, { deleted: 1, skipped: 1 }, 'a deletes its own expired entry, and keeps the one b wrote over')
  t.match(await rows(), {
    mine: { deleted: true, writer: 'a' },
    renewed: { deleted: false, writer: 'b' },
    theirs: { deleted: false, writer: 'b' },
  }, 'b\'s version of renewed stands; b\'s expired row stays until b sweeps')
  t.equal(await b.get('renewed'), 'b wrote it after it expired', 'b reads its version')
  t.match(await (a as unknown as Sweeping).sweeper.round(), { deleted: 0, skipped: 1 }, 'a\'s index still holds its expiry posting for renewed: each round of a reads the row again and keeps it')
  t.match(await (b as unknown as Sweeping).sweeper.round(), { deleted: 1 }, 'b sweeps its own')
  await b.flush()
  t.match(await rows(), { theirs: { deleted: true, writer: 'b' } })
})
