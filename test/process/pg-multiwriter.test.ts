/**
 * Several writer processes share one PostgreSQL backend (PgBackend), each
 * with its own data directory and WAL, writing on a key space they all share,
 * through an in-test TCP proxy that cuts, blackholes and slows the network
 * (the machine's server is never stopped). Two writers are SIGKILLed during
 * a blackhole and restarted after it. Then, with every writer stopped and
 * flushed:
 *
 *   ACK    every write a child saw acknowledged is in its log, at its LSN,
 *          with its operations; and writes kept being acknowledged during
 *          every outage;
 *   DRAIN  every writer's checkpoint row in PostgreSQL is its log's last LSN;
 *   LWW    PostgreSQL holds, for every key, exactly the greatest version by
 *          (hlc, writer, lsn) over all the writers' logs: value, namespace,
 *          tags, tombstone; every acknowledged operation is stored or beaten
 *          by a greater version;
 *   ONCE   no (writer, LSN, key) was applied twice (an audit trigger logs
 *          every row PostgreSQL inserted or updated);
 *   VERIFY the reconciler (PgBackend.verifyLog) finds each writer's log and
 *          PostgreSQL in agreement;
 *   ORDER  replaying every writer's log into fresh schemas in other orders
 *          (writer after writer in reverse; randomly interleaved, with
 *          batches delivered twice as after a lost acknowledgement) gives
 *          exactly the same rows.
 *
 * MEMWAL_SEED replays the run's choices (the timing is the OS's).
 */
import { randomInt } from 'node:crypto'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { Packr } from 'msgpackr'
import pg from 'pg'
import t from 'tap'
import { dumpLog, type AppliedRecord } from '../../engine/index.js'
import { RecordType, SeededRandom, type Op, type WalRecord } from '../../engine/testing.js'
import { PgBackend } from '../../engine/sinks/pg/pg-backend.js'
import { compareVersions } from '../../engine/sinks/pg/pg-versions.js'
import { TcpProxy } from '../../bench/tcp-proxy.js'
import { normalOp } from '../support/identity-view.js'
import { tmpDir } from '../support/tmp-dir.js'
import type { Child } from '../support/child-process.js'
import { dropSchema, PG_URL, pgTarget, requirePg, testSchemaName, viaPort } from '../support/pg.js'
import { sleep, waitFor } from '../support/wait-for.js'
import { pgChildBackendOptions, pgWriterArgs } from './children/pg-writer.js'
import { spawnKillChild } from './kill-child.js'

const SEED = Number(process.env['MEMWAL_SEED'] ?? randomInt(0, 2 ** 31))
const WRITERS = ['w0', 'w1', 'w2'] as const
const KILLED = new Set<string>(['w0', 'w1'])
/** Acknowledgements each phase waits for (per writer) before it moves on. */
const ACKS_PER_PHASE = 25
const DEADLINE_MS = 30_000
const packr = new Packr({ useRecords: false, useToJSON: false, mapsAsObjects: true, moreTypes: false })

interface Ack {
  readonly lsn: number
  readonly ops: Op[]
}

interface Writer {
  readonly id: string
  readonly dir: string
  readonly acks: Ack[]
  child?: Child
  incarnation: number
  ready?: Promise<void>
  /** The last `ready` line: the log's last LSN and the backend checkpoint at open. */
  opened?: { lastLsn: number; checkpoint: number }
  flushed?: { lastLsn: number; checkpoint: number }
  errors: string[]
  killedByUs: boolean
}

interface Version {
  readonly hlc: number
  readonly writer: string
  readonly lsn: number
  readonly op: Op
}

interface Row {
  key: string
  value: Buffer | null
  namespace: string | null
  tags: string[] | null
  hlc: string
  writer: string
  lsn: string
  deleted: boolean
}

/** Exposes the protected apply hook: delivers a batch the sink's checkpoint filter would drop (a replay after a lost acknowledgement). */
class Replayer extends PgBackend {
  replay(records: readonly AppliedRecord[], checkpoint: number): Promise<void> {
    return this._apply(records, checkpoint)
  }
}

/** How often a phase looks at the acknowledgements it waits for. */
const POLL_MS = 20

function opsOf(r: WalRecord): readonly Op[] {
  return r.type === RecordType.BATCH ? r.ops : [r.op]
}

/** An op as JSON would carry it (what the child printed). */
function plain(ops: readonly Op[]): unknown {
  return asJson(ops)
}

function asJson(x: unknown): unknown {
  return JSON.parse(JSON.stringify(x))
}

if (await requirePg(t)) {
  t.comment(`MEMWAL_SEED=${SEED}`)
  const schema = testSchemaName('test')
  const schemas = [schema]
  const db = new pg.Client({ connectionString: PG_URL })
  await db.connect()
  t.teardown(async () => {
    await db.end().catch(() => undefined)
    for (const s of schemas) await dropSchema(s)
  })

  // The tables, and an audit of every row PostgreSQL inserts or updates.
  const setup = new PgBackend({ connectionString: PG_URL, writerId: 'setup', schema })
  await setup.open()
  await setup.close()
  await db.query(`CREATE TABLE "${schema}".audit (writer text, lsn bigint, key text)`)
  await db.query(`CREATE FUNCTION "${schema}".audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO "${schema}".audit (writer, lsn, key) VALUES (NEW.writer, NEW.lsn, NEW.key); RETURN NEW; END $$`)
  await db.query(`CREATE TRIGGER audit AFTER INSERT OR UPDATE ON "${schema}".entries FOR EACH ROW EXECUTE FUNCTION "${schema}".audit_row()`)

  const proxy = await TcpProxy.start(pgTarget())
  t.teardown(() => proxy.close())
  const url = viaPort(proxy.port)
  const base = tmpDir(t, 'memwal-pgmw-')
  const rng = new SeededRandom(SEED)
  const writers: Writer[] = WRITERS.map((id) => ({ id, dir: path.join(base, id), acks: [], incarnation: 0, errors: [], killedByUs: false }))
  const byId = new Map(writers.map((w) => [w.id, w]))

  const start = (w: Writer): void => {
    let ready!: () => void
    w.ready = new Promise<void>((r) => (ready = r))
    const args = pgWriterArgs({ dir: w.dir, writerId: w.id, incarnation: w.incarnation, seed: rng.nextU32(), url, schema })
    const child = spawnKillChild(args, { stdin: true, keepLines: false, onLine: (line) => {
      const [kind, a, b, c] = line.split(' ', 4)
      if (kind === 'ready') {
        w.opened = { lastLsn: Number(b), checkpoint: Number(c) }
        ready()
      }
      else if (kind === 'ack') w.acks.push({ lsn: Number(a), ops: JSON.parse(line.slice(line.indexOf(' ', 4) + 1)) as Op[] })
      else if (kind === 'flushed') w.flushed = { lastLsn: Number(a), checkpoint: Number(b) }
      else if (kind === 'error') w.errors.push(line)
    } })
    w.child = child
    w.killedByUs = false
    void child.ended.then(({ code }) => {
      if (!w.killedByUs && code !== 0) w.errors.push(`${w.id} exited with ${String(code)}: ${child.stderr().slice(-2000)}`)
    })
  }
  const counts = (): Map<string, number> => new Map(writers.map((w) => [w.id, w.acks.length]))
  const ackedSince = (before: Map<string, number>, w: Writer): number => w.acks.length - (before.get(w.id) ?? 0)
  const noErrors = (): void => {
    for (const w of writers) if (w.errors.length > 0) throw new Error(w.errors.join('\n'))
  }
  t.teardown(() => {
    for (const w of writers) w.child?.killIfRunning()
  })

  await t.test('writers keep acknowledging through outages, and are killed in one', async (t) => {
    for (const w of writers) start(w)
    await Promise.all(writers.map((w) => w.ready))
    await waitFor(() => writers.every((w) => w.acks.length >= ACKS_PER_PHASE), 'the first acknowledgements', DEADLINE_MS, POLL_MS)

    proxy.cut()
    const cut = counts()
    await waitFor(() => writers.every((w) => ackedSince(cut, w) >= ACKS_PER_PHASE), 'acknowledgements while PostgreSQL is cut off', DEADLINE_MS, POLL_MS)
    await sleep(400)
    noErrors()
    for (const w of writers) t.ok(ackedSince(cut, w) >= ACKS_PER_PHASE, `${w.id}: ${ackedSince(cut, w)} writes acknowledged while the connection was cut`)
    proxy.heal()
    await sleep(400)

    proxy.blackhole()
    const hole = counts()
    await waitFor(() => writers.every((w) => ackedSince(hole, w) >= ACKS_PER_PHASE), 'acknowledgements while PostgreSQL is blackholed', DEADLINE_MS, POLL_MS)
    for (const id of KILLED) {
      const w = byId.get(id) as Writer
      w.killedByUs = true
      w.child?.proc.kill('SIGKILL')
      await w.child?.ended
    }
    const survivor = counts()
    await waitFor(() => writers.every((w) => KILLED.has(w.id) || ackedSince(survivor, w) >= ACKS_PER_PHASE), 'acknowledgements after the kills, still blackholed', DEADLINE_MS, POLL_MS)
    noErrors()
    for (const w of writers) t.ok(ackedSince(hole, w) >= ACKS_PER_PHASE, `${w.id}: ${ackedSince(hole, w)} writes acknowledged while the network was blackholed${KILLED.has(w.id) ? ' (then SIGKILLed)' : ''}`)
    proxy.heal()

    for (const id of KILLED) {
      const w = byId.get(id) as Writer
      w.incarnation++
      start(w)
    }
    await Promise.all(writers.map((w) => w.ready))
    for (const id of KILLED) {
      const o = byId.get(id)?.opened
      t.ok(o && o.checkpoint < o.lastLsn, `${id} restarted with a backlog: log at LSN ${o?.lastLsn}, PostgreSQL checkpoint ${o?.checkpoint}`)
    }
    const back = counts()
    await waitFor(() => writers.every((w) => ackedSince(back, w) >= ACKS_PER_PHASE), 'acknowledgements after the restart', DEADLINE_MS, POLL_MS)

    proxy.slow(20)
    const slow = counts()
    await waitFor(() => writers.every((w) => ackedSince(slow, w) >= ACKS_PER_PHASE), 'acknowledgements with 20 ms added each way', DEADLINE_MS, POLL_MS)
    proxy.heal()

    for (const w of writers) w.child?.send('stop\n')
    await waitFor(() => writers.every((w) => w.flushed !== undefined), 'every writer to stop and flush', 60_000, POLL_MS)
    const exits = await Promise.all(writers.map((w) => w.child?.ended))
    noErrors()
    t.same(exits.map((e) => e?.code), writers.map(() => 0), 'every writer exited cleanly after its flush')
    for (const w of writers) t.equal(w.flushed?.checkpoint, w.flushed?.lastLsn, `${w.id}: the backlog drained (backend checkpoint = last LSN ${w.flushed?.lastLsn})`)
  })

  // Each writer's log, read back: LSN -> record.
  const logs = new Map<string, Map<number, WalRecord>>()

  await t.test('ACK: every acknowledged write is in its writer\'s log', async (t) => {
    for (const w of writers) {
      const log = new Map<number, WalRecord>()
      const damage: string[] = []
      for await (const d of dumpLog({ dir: w.dir })) {
        if (d.kind === 'damage') damage.push(`${d.segment}@${d.offset}: ${d.detail}`)
        else if (d.kind === 'missing') damage.push(`LSNs ${d.lsnFirst}-${d.lsnLast} before ${d.segment}: ${d.detail}`)
        else log.set(d.lsn, d.record)
      }
      logs.set(w.id, log)
      t.same(damage, [], `${w.id}: the log reads back without damage`)
      const last = Math.max(0, ...log.keys())
      t.equal(log.size, last, `${w.id}: LSNs 1..${last} are all there`)
      t.equal(last, w.flushed?.lastLsn, `${w.id}: the log ends at the LSN the writer last reported`)
      let wrong = 0
      let first = ''
      for (const a of w.acks) {
        const r = log.get(a.lsn)
        // Compared as identity sees them: the log's version-2 records name `default`, the writer omitted it; tags as the engine keeps them.
        if (r && isDeepStrictEqual(asJson(opsOf(r).map(normalOp)), asJson(a.ops.map(normalOp)))) continue
        if (wrong++ === 0) first = `LSN ${a.lsn}: acknowledged ${JSON.stringify(a.ops)}, log has ${r ? JSON.stringify(plain(opsOf(r))) : 'nothing'}`
      }
      t.equal(wrong, 0, `${w.id}: all ${w.acks.length} acknowledged writes are in the log as acknowledged${first ? `; first wrong: ${first}` : ''}`)
      t.ok([...log.values()].every((r) => typeof r.hlc === 'number' && r.hlc > 0), `${w.id}: every record carries an HLC timestamp`)
    }
  })

  await t.test('DRAIN, LWW, ONCE: PostgreSQL holds the greatest version of every key, each applied once', async (t) => {
    const cps = await db.query<{ writer: string; lsn: string }>(`SELECT writer, lsn FROM "${schema}".checkpoints ORDER BY writer`)
    t.same(cps.rows.map((r) => [r.writer, Number(r.lsn)]), writers.map((w) => [w.id, logs.get(w.id)?.size]), 'every writer\'s checkpoint row is its log\'s last LSN')

    const expected = new Map<string, Version>()
    const writersOfKey = new Map<string, Set<string>>()
    for (const [writer, log] of logs) {
      for (const [lsn, r] of [...log].sort((a, b) => a[0] - b[0])) {
        for (const op of opsOf(r)) {
          const v: Version = { hlc: r.hlc ?? 0, writer, lsn, op }
          const cur = expected.get(op.key)
          if (!cur || compareVersions(v, cur) >= 0) expected.set(op.key, v)
          writersOfKey.set(op.key, (writersOfKey.get(op.key) ?? new Set()).add(writer))
        }
      }
    }
    const contested = [...writersOfKey.values()].filter((s) => s.size > 1).length
    t.ok(contested > 0, `${contested} keys were written by more than one writer`)

    const rows = (await db.query<Row>(`SELECT key, value, namespace, tags, hlc, writer, lsn, deleted FROM "${schema}".entries ORDER BY key`)).rows
    t.same(rows.map((r) => r.key).sort(), [...expected.keys()].sort(), 'PostgreSQL has a row (live or tombstone) for exactly the keys the logs touch')
    const wrong: string[] = []
    for (const row of rows) {
      const v = expected.get(row.key)
      if (!v) continue
      const got = { hlc: Number(row.hlc), writer: row.writer, lsn: Number(row.lsn), deleted: row.deleted }
      const want = { hlc: v.hlc, writer: v.writer, lsn: v.lsn, deleted: v.op.type === 'del' }
      let same = isDeepStrictEqual(got, want)
      if (same && v.op.type === 'put') {
        same = row.value !== null && isDeepStrictEqual(packr.decode(row.value), v.op.value) && (row.namespace ?? undefined) === v.op.namespace && isDeepStrictEqual(row.tags ?? undefined, v.op.tags)
      }
      if (!same) wrong.push(`${row.key}: stored ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`)
    }
    t.same(wrong, [], 'every row is the greatest version by (hlc, writer, lsn), contents included')

    let beaten = 0
    let lost = 0
    const stored = new Map(rows.map((r) => [r.key, { hlc: Number(r.hlc), writer: r.writer, lsn: Number(r.lsn) }]))
    for (const w of writers) {
      const log = logs.get(w.id) as Map<number, WalRecord>
      for (const a of w.acks) {
        const hlc = log.get(a.lsn)?.hlc ?? 0
        for (const op of a.ops) {
          const s = stored.get(op.key)
          const order = s ? compareVersions(s, { hlc, writer: w.id, lsn: a.lsn }) : -1
          if (order < 0) lost++
          else if (order > 0) beaten++
        }
      }
    }
    t.equal(lost, 0, `every acknowledged operation of every writer is stored or beaten by a greater version (${beaten} beaten)`)

    const dup = await db.query(`SELECT writer, lsn, key, count(*)::int AS n FROM "${schema}".audit GROUP BY writer, lsn, key HAVING count(*) > 1 LIMIT 5`)
    t.same(dup.rows, [], 'no (writer, LSN, key) was applied twice')
    const audited = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".audit`)
    t.ok(audited.rows[0]!.n >= rows.length, `${audited.rows[0]!.n} row writes audited`)
  })

  await t.test('VERIFY: the reconciler finds each writer\'s log and PostgreSQL in agreement', async (t) => {
    let superseded = 0
    for (const w of writers) {
      const backend = new PgBackend({ connectionString: PG_URL, writerId: w.id, schema, ...pgChildBackendOptions })
      await backend.open()
      try {
        const report = await backend.verifyLog(dumpLog({ dir: w.dir }))
        t.same(report.findings, [], `${w.id}: no findings`)
        t.ok(report.clean, `${w.id}: clean`)
        t.equal(report.checkpoint, logs.get(w.id)?.size, `${w.id}: checkpoint is the log's last LSN`)
        t.equal(report.pendingRecords, 0, `${w.id}: nothing pending`)
        t.ok(report.keysChecked > 0, `${w.id}: ${report.keysChecked} keys checked`)
        superseded += report.superseded
      } finally {
        await backend.close()
      }
    }
    t.ok(superseded > 0, `${superseded} of the writers' latest versions stand beaten by another writer's greater one`)
  })

  await t.test('ORDER: replays in other orders converge to the same rows', async (t) => {
    const snapshot = async (s: string): Promise<unknown[]> =>
      (await db.query(`SELECT key, encode(value, 'hex') AS value, namespace, tags, hlc, writer, lsn, deleted FROM "${s}".entries ORDER BY key`)).rows
    const want = await snapshot(schema)
    const wantCps = (await db.query(`SELECT writer, lsn FROM "${schema}".checkpoints ORDER BY writer`)).rows
    for (const order of ['writer after writer, reversed', 'interleaved, with replays'] as const) {
      const s = testSchemaName('replay')
      schemas.push(s)
      const r = new SeededRandom(SEED ^ (order.length * 0x9e37))
      const sinks = new Map<string, Replayer>()
      const queues = new Map<string, AppliedRecord[][]>()
      for (const w of writers) {
        const sink = new Replayer({ connectionString: PG_URL, writerId: w.id, schema: s })
        await sink.open()
        sinks.set(w.id, sink)
        const records = [...(logs.get(w.id) as Map<number, WalRecord>)].sort((a, b) => a[0] - b[0]).map(([lsn, record]): AppliedRecord => ({ lsn, record, bytes: 0 }))
        const batches: AppliedRecord[][] = []
        for (let i = 0; i < records.length; ) {
          const n = 1 + r.below(120)
          batches.push(records.slice(i, i + n))
          i += n
        }
        queues.set(w.id, batches)
      }
      let replays = 0
      try {
        if (order === 'writer after writer, reversed') {
          for (const w of [...writers].reverse()) {
            for (const b of queues.get(w.id) as AppliedRecord[][]) await (sinks.get(w.id) as Replayer).apply({ records: b, upToLsn: (b[b.length - 1] as AppliedRecord).lsn })
          }
        } else {
          const delivered = new Map<string, AppliedRecord[][]>(writers.map((w) => [w.id, []]))
          for (;;) {
            const left = writers.filter((w) => (queues.get(w.id) as AppliedRecord[][]).length > 0)
            const w = left[r.below(left.length)]
            if (!w) break
            const b = (queues.get(w.id) as AppliedRecord[][]).shift() as AppliedRecord[]
            const sink = sinks.get(w.id) as Replayer
            await sink.apply({ records: b, upToLsn: (b[b.length - 1] as AppliedRecord).lsn })
            const done = delivered.get(w.id) as AppliedRecord[][]
            done.push(b)
            // As after a lost acknowledgement: this batch, or an earlier one, arrives again.
            if (r.chance(0.3)) {
              const again = done[r.below(done.length)] as AppliedRecord[]
              await sink.replay(again, (again[again.length - 1] as AppliedRecord).lsn)
              replays++
            }
          }
        }
      } finally {
        for (const sink of sinks.values()) await sink.close()
      }
      const got = await snapshot(s)
      t.equal(got.length, want.length, `${order}: as many rows`)
      t.ok(isDeepStrictEqual(got, want), `${order}: the same rows, byte for byte${replays > 0 ? ` (${replays} batches delivered twice)` : ''}`)
      t.same((await db.query(`SELECT writer, lsn FROM "${s}".checkpoints ORDER BY writer`)).rows, wantCps, `${order}: the same checkpoints`)
    }
  })
}
