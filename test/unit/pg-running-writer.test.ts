/**
 * A PgBackend writer still running while PostgreSQL loses what it applied
 * (its schema dropped, or its checkpoint row deleted), against the real
 * server. Before, once a new directory recreated the schema empty, the
 * running writer's retried applies went into it: its earlier rows were gone,
 * its checkpoint row said its latest LSN, and nothing reported an error.
 * Now its apply finds its checkpoint row is not the one it last wrote: the
 * backend is halted (BACKEND_SCHEMA_DAMAGED in health(), the engine
 * read-only), nothing of it goes into the recreated schema, nothing is
 * dead-lettered, and its log keeps every acknowledged record. An apply whose
 * reply was lost (the statement committed) is re-sent without a refusal.
 */
import t from 'tap'
import { dumpLog, MemWAL, PgBackend, type AppliedRecord, type MemwalOptions } from '../../engine/index.js'
import { RecordType } from '../../engine/testing.js'
import { PG_URL, schemaWithClient } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'
import { waitFor } from '../support/wait-for.js'

const resilience = { retryDelayMsMin: 5, retryDelayMsMax: 50, breakerThreshold: 3, breakerHalfOpenMs: 50, applyTimeoutMs: 2500 }
const backendOptions = { statementTimeoutMs: 800, connectTimeoutMs: 500 } as const

function opener(schema: string): (dir: string, writerId: string, o?: Partial<MemwalOptions>) => Promise<MemWAL> {
  return (dir, writerId, o = {}) => MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId, schema, ...backendOptions }), resilience, closeGraceMs: 1000, ...o })
}

/** The LSNs of the records the directory's log holds (as `memwal dump` reads it). */
async function loggedLsns(dir: string): Promise<number[]> {
  const out: number[] = []
  for await (const e of dumpLog({ dir })) if (e.kind === 'record') out.push(e.lsn)
  return out
}

for (const loss of ['schema dropped', 'checkpoint row deleted'] as const) {
  t.test(`a running writer whose ${loss} does not apply into a schema recreated under it`, async (t) => {
    const server = await schemaWithClient(t, 'running')
    if (!server) return
    const { schema, client } = server
    const open = opener(schema)
    const dirB = tmpDir(t)
    const B = await open(dirB, 'b')
    t.teardown(() => B.close())
    for (let i = 0; i < 3; i++) await B.put(`b-${i}`, i)
    await B.flush({ timeoutMs: 10_000 })

    if (loss === 'schema dropped') {
      await client.query(`DROP SCHEMA "${schema}" CASCADE`)
      await B.put('b-3', 3)
      await waitFor(() => B.health().sinks['backend']?.lastError?.code === 'BACKEND_SCHEMA_DAMAGED', 'the apply fails on the dropped schema', 10_000)
      // A brand-new directory recreates the schema (right for it), while B retries.
      const fresh = await open(tmpDir(t), 'new')
      await fresh.put('n', 1)
      await fresh.flush({ timeoutMs: 10_000 })
      await fresh.close()
    } else {
      await client.query(`DELETE FROM "${schema}".checkpoints WHERE writer = 'b'`)
      await B.put('b-3', 3)
    }

    // Before the fix, B's backlog applied into the recreated schema: its checkpoint reached 4, no error.
    await waitFor(() => B.health().state === 'read-only' || B.health().sinks['backend']?.checkpoint === 4, 'B stops applying, or applies', 10_000)
    const h = B.health()
    const backend = h.sinks['backend']
    t.equal(backend?.lastError?.code, 'BACKEND_SCHEMA_DAMAGED', 'health() names the damage')
    t.match(backend?.lastError?.message, /writerId "b"/, `naming the writer: ${backend?.lastError?.message ?? ''}`)
    t.match(backend?.lastError?.message, /LSN 3/, 'and the checkpoint it last wrote')
    t.match(h.reason, /BACKEND_SCHEMA_DAMAGED/, `the engine says why it refuses writes: ${h.reason ?? ''}`)
    t.equal(backend?.deadLetters, 0, 'nothing dead-lettered')
    t.equal(backend?.checkpoint, 3, 'its checkpoint stays at what PostgreSQL lost')
    t.match(await B.put('b-4', 4).catch((e: unknown) => e), { code: 'ENGINE_READ_ONLY' }, 'a write is refused, not acknowledged into a backlog that cannot apply')

    const rows = await client.query(`SELECT key FROM "${schema}".entries WHERE writer = 'b' ORDER BY key`)
    const expectRows = loss === 'schema dropped' ? [] : [{ key: 'b-0' }, { key: 'b-1' }, { key: 'b-2' }]
    t.strictSame(rows.rows, expectRows, 'B applied nothing after the loss')
    t.strictSame((await client.query(`SELECT lsn FROM "${schema}".checkpoints WHERE writer = 'b'`)).rows, [], 'and wrote no checkpoint row')
    t.strictSame((await client.query(`SELECT lsn FROM "${schema}".changes WHERE writer = 'b' AND lsn > 3`)).rows, [], 'nor changes')

    // Some time on, a health check and retries later, it has not come back on its own.
    await new Promise((r) => setTimeout(r, 300))
    t.equal(B.health().sinks['backend']?.checkpoint, 3, 'still halted')
    await B.close()
    t.strictSame(await loggedLsns(dirB), [1, 2, 3, 4], 'every acknowledged record is in its log (nothing purged)')
  })
}

t.test('an apply re-sent after its reply was lost is not refused; a row behind the last one written is', async (t) => {
  const server = await schemaWithClient(t, 'lostreply')
  if (!server) return
  const { schema, client } = server
  const backend = (): PgBackend => new PgBackend({ connectionString: PG_URL, writerId: 'w', schema, ...backendOptions })
  const put = (lsn: number): AppliedRecord => ({ lsn, bytes: 8, record: { type: RecordType.PUT, hlc: 1_000_000 * lsn, op: { type: 'put', key: `k${lsn}`, value: lsn } } })
  const a = backend()
  await a.open()
  t.teardown(() => a.close())
  await a.apply({ records: [put(1), put(2)], upToLsn: 2 })
  // The next apply commits, but its reply never reaches `a` (another client sends the same statement).
  const lost = backend()
  await lost.open()
  await lost.apply({ records: [put(3), put(4)], upToLsn: 4 })
  await lost.close()
  await a.apply({ records: [put(3), put(4)], upToLsn: 4 })
  t.equal(a.checkpoint, 4, 're-sent: accepted')
  t.equal((await client.query(`SELECT count(*)::int AS n FROM "${schema}".changes WHERE writer = 'w'`)).rows[0].n, 4, 'each change once')
  await a.apply({ records: [put(5)], upToLsn: 5 })
  t.equal((await client.query(`SELECT lsn FROM "${schema}".checkpoints WHERE writer = 'w'`)).rows[0].lsn, '5')

  // The row set back (a schema restored from an older backup): the LSNs between are lost in PostgreSQL: refused.
  await client.query(`UPDATE "${schema}".checkpoints SET lsn = 2 WHERE writer = 'w'`)
  const err = await a.apply({ records: [put(6)], upToLsn: 6 }).catch((e: unknown) => e)
  t.match(err, { code: 'BACKEND_SCHEMA_DAMAGED', transient: false, details: { writerId: 'w', expected: 5, found: 2 } }, 'refused, naming what it expected and found')
  t.equal(a.classify(err), 'halt', 'which halts the applier: no retry, no dead letter')
  t.equal((await client.query(`SELECT count(*)::int AS n FROM "${schema}".entries WHERE key = 'k6'`)).rows[0].n, 0, 'nothing of it applied')
})
