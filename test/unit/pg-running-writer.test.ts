/**
 * A PgBackend writer still running while PostgreSQL loses what it applied
 * (its schema dropped, or its checkpoint row deleted), against the real
 * server. Before, once a new directory recreated the schema empty, the
 * running writer's retried applies went into it: its earlier rows were gone,
 * its checkpoint row said its latest LSN, and nothing reported an error.
 * Now its apply finds its checkpoint row is not the one it last wrote: the
 * backend is halted (BACKEND_SCHEMA_DAMAGED in health(), the engine
 * read-only), nothing of it goes into the recreated schema, nothing is
 * dead-lettered, and its log keeps every acknowledged record. A flush waiting
 * then, or called after, is refused at once (SINK_HALTED; before, it waited
 * for ever, holding the process); verify with repair is refused (before, it
 * wrote the halted writer's rows into the recreated schema), and so is
 * PgBackend.repair on its own. A halt while a batch is narrowed to its poison
 * record ends the narrowing. An apply whose reply was lost (the statement
 * committed) is re-sent without a refusal.
 */
import t from 'tap'
import { DEFAULT_NAMESPACE, dumpLog, MemWAL, PgBackend, type AppliedRecord, type MemwalOptions, type Sink } from '../../engine/index.js'
import { identityOf } from '../../engine/format/identity.js'
import { RecordType } from '../../engine/testing.js'
import { SinkFaults } from '../support/faulty-sink.js'
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
    const backendB = new PgBackend({ connectionString: PG_URL, writerId: 'b', schema, ...backendOptions })
    const B = await open(dirB, 'b', { backend: backendB })
    t.teardown(() => B.close())
    for (let i = 0; i < 3; i++) await B.put(`b-${i}`, i)
    await B.flush({ timeoutMs: 10_000 })

    // A flush waiting for b-3 when the backend halts.
    let early: Promise<unknown> = Promise.resolve()
    if (loss === 'schema dropped') {
      await client.query(`DROP SCHEMA "${schema}" CASCADE`)
      await B.put('b-3', 3)
      early = B.flush().catch((e: unknown) => e)
      await waitFor(() => B.health().sinks['backend']?.lastError?.code === 'BACKEND_SCHEMA_DAMAGED', 'the apply fails on the dropped schema', 10_000)
      // A brand-new directory recreates the schema (right for it), while B retries.
      const fresh = await open(tmpDir(t), 'new')
      await fresh.put('n', 1)
      await fresh.flush({ timeoutMs: 10_000 })
      await fresh.close()
    } else {
      await client.query(`DELETE FROM "${schema}".checkpoints WHERE writer = 'b'`)
      await B.put('b-3', 3)
      early = B.flush().catch((e: unknown) => e)
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

    // A flush waiting when it halted was refused then (a pending one would hold the process for ever); one after, at once.
    const halted = { code: 'SINK_HALTED', details: { sink: 'backend', haltCode: 'BACKEND_SCHEMA_DAMAGED' } }
    // (Settled already, or 'still waiting': the race is decided by what happened, not by a clock.)
    const settled = (p: Promise<unknown>): Promise<unknown> => Promise.race([p.catch((e: unknown) => e), new Promise((r) => setImmediate(() => r('still waiting')))])
    t.match(await settled(early), halted, 'the flush waiting for b-3 was refused at the halt')
    t.match(await settled(B.flush()), halted, 'a flush after it is refused at once')
    t.match(await settled(B.flush({ timeoutMs: 600_000 })), halted, 'with a timeout too')

    // verify reports the halt; a repair, which would write past it into the schema, is refused, and so is the backend's own.
    const report = await B.verify()
    t.equal(report.clean, false, 'verify: not clean')
    t.equal(report.counts['sink-halted'], 1, `naming the halted sink: ${JSON.stringify(report.findings.filter((f) => f.kind === 'sink-halted'))}`)
    t.match(await B.verify({ repair: true }).catch((e: unknown) => e), halted, 'verify with repair is refused')
    const entry = { value: 0, namespace: DEFAULT_NAMESPACE, key: 'b-0', lsn: 1, createdAt: 1, updatedAt: 1 }
    t.match(await backendB.repair([[identityOf(DEFAULT_NAMESPACE, 'b-0'), entry]]).catch((e: unknown) => e), { code: 'BACKEND_SCHEMA_DAMAGED', transient: false }, 'PgBackend.repair checks the checkpoint row as an apply does')

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

type ApplyHook = (records: readonly AppliedRecord[], checkpoint: number, signal?: AbortSignal) => Promise<void>

t.test('a record that halts the backend while a batch is narrowed to its poison record ends the narrowing', async (t) => {
  const server = await schemaWithClient(t, 'narrow')
  if (!server) return
  const { schema, client } = server
  const faults = new SinkFaults()
  const calls: number[][] = []
  let deleteRowAtNextSingle = false
  // After SinkFaults' hook: the batch holding 'poison' is refused for good, and its first record alone finds the row gone.
  const wrapSink = <S extends Sink>(s: S): S => {
    faults.wrap(s)
    if (s.name !== 'backend') return s
    const hooks = s as unknown as { _apply: ApplyHook }
    const inner = hooks._apply.bind(s)
    hooks._apply = async (records, checkpoint, signal) => {
      calls.push(records.map((r) => r.lsn))
      if (deleteRowAtNextSingle && records.length === 1) {
        deleteRowAtNextSingle = false
        await client.query(`DELETE FROM "${schema}".checkpoints WHERE writer = 'b'`)
      }
      return inner(records, checkpoint, signal)
    }
    return s
  }
  const errorsLogged: string[] = []
  const logger = { debug() {}, info() {}, warn() {}, error: (_o: object, msg?: string) => void errorsLogged.push(msg ?? '') }
  const B = await opener(schema)(tmpDir(t), 'b', { wrapSink, logger })
  t.teardown(() => B.close())
  let deadLetters = 0
  B.on('dead-letter', () => deadLetters++)

  faults.hang()
  await B.put('a', 0) // LSN 1: its apply waits, so that LSNs 2-4 go in one batch
  await waitFor(() => faults.hanging === 1, 'the first apply waits', 10_000)
  faults.rejectKeys('poison')
  await B.put('h-1', 1)
  await B.put('h-2', 2)
  await B.put('poison', 3)
  deleteRowAtNextSingle = true
  faults.release()
  await waitFor(() => B.health().state === 'read-only', 'the backend halts', 10_000)
  await B.close() // the applier's loop has ended: whatever it was going to deliver, it has

  t.strictSame(calls, [[1], [2, 3, 4], [2]], 'nothing delivered after the record that halted it')
  t.equal(deadLetters, 0, 'the poison record after them is not dead-lettered')
  t.equal(errorsLogged.filter((m) => m.startsWith('sink halted')).length, 1, `one log line: ${JSON.stringify(errorsLogged)}`)
})

t.test('a backend opened without a data directory writes neither into a directory\'s row nor into a row made again', async (t) => {
  const server = await schemaWithClient(t, 'nodir')
  if (!server) return
  const { schema, client } = server
  const backend = (writerId: string): PgBackend => new PgBackend({ connectionString: PG_URL, writerId, schema, ...backendOptions })
  const put = (lsn: number): AppliedRecord => ({ lsn, bytes: 8, record: { type: RecordType.PUT, hlc: 1_000_000 * lsn, op: { type: 'put', key: `k${lsn}`, value: lsn } } })

  // Writer id 'd' belongs to a data directory.
  const D = await opener(schema)(tmpDir(t), 'd')
  await D.put('d-0', 0)
  await D.flush({ timeoutMs: 10_000 })
  await D.close()
  const alone = backend('d')
  await alone.open()
  t.teardown(() => alone.close())
  const err = await alone.apply({ records: [put(2)], upToLsn: 2 }).catch((e: unknown) => e)
  t.match(err, { code: 'BACKEND_SCHEMA_DAMAGED', transient: false, details: { writerId: 'd', dirId: null } }, `refused: ${(err as Error | undefined)?.message ?? ''}`)
  t.match((err as Error | undefined)?.message, /bound to data directory/, 'naming the binding')
  t.equal((await client.query(`SELECT count(*)::int AS n FROM "${schema}".entries WHERE key = 'k2'`)).rows[0].n, 0, 'nothing of it applied')

  // Writer id 'w' had its row (LSN 0) when the backend opened; the row deleted, the first apply does not make it again.
  await client.query(`INSERT INTO "${schema}".checkpoints (writer, lsn) VALUES ('w', 0)`)
  const w = backend('w')
  await w.open()
  t.teardown(() => w.close())
  await client.query(`DELETE FROM "${schema}".checkpoints WHERE writer = 'w'`)
  t.match(await w.apply({ records: [put(1)], upToLsn: 1 }).catch((e: unknown) => e), { code: 'BACKEND_SCHEMA_DAMAGED', details: { writerId: 'w', found: null } }, 'a row there at open and gone since is lost')
  t.strictSame((await client.query(`SELECT lsn FROM "${schema}".checkpoints WHERE writer = 'w'`)).rows, [], 'not made again')

  // A writer id with no row at open: its first apply makes it, as before.
  const fresh = backend('f')
  await fresh.open()
  t.teardown(() => fresh.close())
  await fresh.apply({ records: [put(1)], upToLsn: 1 })
  t.equal(fresh.checkpoint, 1, 'a new writer id applies')
})
