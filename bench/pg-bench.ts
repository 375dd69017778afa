/**
 * PostgreSQL replication benchmark: acknowledged puts replicated into
 * PostgreSQL by memwal (local WAL, batched multi-row upserts by PgBackend)
 * against the naive alternative, one INSERT ... ON CONFLICT per write, in the
 * same run, each on the real server, directly and through a TCP proxy that
 * adds latency.
 *
 *   node --import tsx bench/pg-bench.ts [--json] [--quick] [--url URL] [--reps N] [--seconds S]
 *                                      [--in-flight N] [--naive-pool N] [--delay-ms MS] [--only ID,...]
 *
 * Same durability on both sides: memwal acknowledges a put once its WAL
 * frame is fdatasync'd (durability 'sync'); the naive writer acknowledges
 * once PostgreSQL committed its INSERT (synchronous_commit as the server has
 * it, `on` by default). Both write the same rows (msgpack value, namespace,
 * tags, HLC, writer, LSN) into the same table, with the same last-writer-wins
 * rule. Both run the same number of writers, each issuing its next put when
 * the last one was acknowledged.
 *
 * memwal's end-to-end rate is the puts acknowledged during the trial divided
 * by the time from the start until flush() resolved (every put in
 * PostgreSQL, checkpoint included); the naive rate is its acknowledged (hence
 * committed) puts per second. Ack latency is per put, issue to
 * acknowledgement, in microseconds. Systems rotate from round to round; each
 * figure is the median over rounds. Every trial gets a fresh data directory
 * and a fresh schema (memwal_bench_<pid>_<random>), dropped afterwards.
 * The goals from the issue are reported, never asserted.
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Packr } from 'msgpackr'
import pg from 'pg'
import { MemWAL, PgBackend } from '../engine/index.js'
import { TcpProxy } from '../test/support/tcp-proxy.js'
import { fmt, LatencyRecorder, median, percentile, table } from './stats.js'

const USAGE = `usage: pg-bench [--json] [--quick] [--url URL] [--reps N] [--seconds S] [--in-flight N] [--naive-pool N] [--delay-ms MS] [--only ID,...]
  --url URL         PostgreSQL (default: MEMWAL_PG_URL, else postgres://postgres@127.0.0.1:5432/test)
  --json            one JSON document on stdout (progress goes to stderr)
  --quick           1 round of 1 s trials
  --reps N          rounds (default 3)
  --seconds S       measured seconds per trial (default 3)
  --in-flight N     concurrent writers, each awaiting its put (default 64)
  --naive-pool N    connections of the naive writer's pool (default 16; PgBackend uses 4)
  --delay-ms MS     latency the proxy adds in each direction in the -slow trials (default 20)
  --only IDS        comma-separated subset of: `

type WorkloadId = 'memwal-pg' | 'naive-pg' | 'memwal-pg-slow' | 'naive-pg-slow'

interface Workload {
  readonly id: WorkloadId
  readonly system: 'memwal' | 'naive'
  readonly slow: boolean
}

const WORKLOADS: readonly Workload[] = [
  { id: 'memwal-pg', system: 'memwal', slow: false },
  { id: 'naive-pg', system: 'naive', slow: false },
  { id: 'memwal-pg-slow', system: 'memwal', slow: true },
  { id: 'naive-pg-slow', system: 'naive', slow: true },
]

interface Config {
  readonly url: string
  readonly json: boolean
  readonly quick: boolean
  readonly reps: number
  readonly measureMs: number
  readonly inFlight: number
  readonly naivePool: number
  readonly delayMs: number
  readonly only: readonly WorkloadId[]
}

class UsageError extends Error {}

function parseConfig(argv: string[]): Config {
  let v
  try {
    v = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: 'string' },
        json: { type: 'boolean', default: false },
        quick: { type: 'boolean', default: false },
        reps: { type: 'string' },
        seconds: { type: 'string' },
        'in-flight': { type: 'string' },
        'naive-pool': { type: 'string' },
        'delay-ms': { type: 'string' },
        only: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (v.help) throw new UsageError('')
  const int = (name: string, s: string | undefined, dflt: number, min: number, max: number): number => {
    const n = s === undefined ? dflt : Number(s)
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}`)
    return n
  }
  const seconds = v.seconds === undefined ? (v.quick ? 1 : 3) : Number(v.seconds)
  if (!(seconds > 0 && seconds <= 600)) throw new UsageError('--seconds must be in (0, 600]')
  const ids = WORKLOADS.map((w) => w.id)
  const only = v.only === undefined ? ids : v.only.split(',').map((s) => s.trim())
  for (const id of only) if (!ids.includes(id as WorkloadId)) throw new UsageError(`unknown workload ${id}; known: ${ids.join(', ')}`)
  return {
    url: v.url ?? process.env['MEMWAL_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test',
    json: v.json,
    quick: v.quick,
    reps: int('reps', v.reps, v.quick ? 1 : 3, 1, 100),
    measureMs: seconds * 1000,
    inFlight: int('in-flight', v['in-flight'], 64, 1, 4096),
    naivePool: int('naive-pool', v['naive-pool'], 16, 1, 90),
    delayMs: int('delay-ms', v['delay-ms'], 20, 0, 10_000),
    only: only as WorkloadId[],
  }
}

// ---- one trial ----

interface Trial {
  readonly acked: number
  /** Puts acknowledged per second while the writers ran. */
  readonly ackOpsPerSec: number
  /** Puts in PostgreSQL per second, from the start until the last one was there. */
  readonly e2eOpsPerSec: number
  /** After the writers stopped: until PostgreSQL had everything (memwal's backlog draining). */
  readonly drainMs: number
  readonly p50Us: number
  readonly p99Us: number
  readonly p999Us: number
}

const packr = new Packr({ useRecords: false, useToJSON: false, mapsAsObjects: true, moreTypes: false })
const VALUE_TEXT = 'v'.repeat(80)
const key = (n: number): string => `bench/${String(n).padStart(10, '0')}`

/** `inFlight` writers, each awaiting its put, until `ms` passed; latencies in microseconds. */
async function drive(put: (n: number) => Promise<unknown>, ms: number, inFlight: number, latencies: LatencyRecorder, first: number): Promise<number> {
  let next = first
  let acked = 0
  const until = performance.now() + ms
  const writer = async (): Promise<void> => {
    while (performance.now() < until) {
      const n = next++
      const t0 = performance.now()
      await put(n)
      latencies.record((performance.now() - t0) * 1000)
      acked++
    }
  }
  await Promise.all(Array.from({ length: inFlight }, writer))
  return acked
}

function trialOf(acked: number, runMs: number, totalMs: number, drainMs: number, l: LatencyRecorder): Trial {
  const s = l.sorted()
  return {
    acked,
    ackOpsPerSec: (acked * 1000) / runMs,
    e2eOpsPerSec: (acked * 1000) / totalMs,
    drainMs,
    p50Us: percentile(s, 50),
    p99Us: percentile(s, 99),
    p999Us: percentile(s, 99.9),
  }
}

async function memwalTrial(c: Config, url: string, schema: string, dir: string): Promise<Trial> {
  const backend = new PgBackend({ connectionString: url, writerId: 'bench', schema })
  // The backlog waits rather than refuses when PostgreSQL falls behind: the rate stays end to end.
  const engine = await MemWAL.open({ dir, backend, durability: 'sync', backlogPolicy: 'wait', backlogWaitMsMax: 600_000 })
  try {
    const put = (n: number): Promise<unknown> => engine.put(key(n), { n, text: VALUE_TEXT }, { namespace: 'bench', tags: ['t'] })
    await drive(put, Math.min(300, c.measureMs / 4), Math.min(c.inFlight, 8), new LatencyRecorder(), 1_000_000_000) // warm-up
    await engine.flush()
    const l = new LatencyRecorder()
    const t0 = performance.now()
    const acked = await drive(put, c.measureMs, c.inFlight, l, 0)
    const stopped = performance.now()
    await engine.flush()
    const done = performance.now()
    const last = engine.health().wal.lastLsn
    if (engine.health().sinks['backend']?.checkpoint !== last) throw new Error('flush resolved before the backend caught up')
    return trialOf(acked, stopped - t0, done - t0, done - stopped, l)
  } finally {
    await engine.close()
  }
}

async function naiveTrial(c: Config, url: string, schema: string): Promise<Trial> {
  // The same table and rule as PgBackend's: created by it.
  const setup = new PgBackend({ connectionString: url, writerId: 'naive', schema })
  await setup.open()
  await setup.close()
  const pool = new pg.Pool({ connectionString: url, max: c.naivePool })
  pool.on('error', () => undefined)
  const sql = `INSERT INTO "${schema}".entries AS e (key, value, namespace, tags, hlc, writer, lsn, deleted) VALUES ($1, $2, $3, $4::text[], $5, $6, $7, false)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, namespace = EXCLUDED.namespace, tags = EXCLUDED.tags, hlc = EXCLUDED.hlc, writer = EXCLUDED.writer, lsn = EXCLUDED.lsn, deleted = false
    WHERE (EXCLUDED.hlc, EXCLUDED.writer, EXCLUDED.lsn) > (e.hlc, e.writer, e.lsn)`
  let lsn = 0
  let lastHlc = 0
  const put = (n: number): Promise<unknown> => {
    lastHlc = Math.max(lastHlc + 1, Date.now() * 1000)
    return pool.query(sql, [key(n), Buffer.from(packr.encode({ n, text: VALUE_TEXT })), 'bench', ['t'], lastHlc, 'naive', ++lsn])
  }
  try {
    await drive(put, Math.min(300, c.measureMs / 4), Math.min(c.inFlight, 8), new LatencyRecorder(), 1_000_000_000)
    const l = new LatencyRecorder()
    const t0 = performance.now()
    const acked = await drive(put, c.measureMs, c.inFlight, l, 0)
    const done = performance.now()
    return trialOf(acked, done - t0, done - t0, 0, l)
  } finally {
    await pool.end()
  }
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  } finally {
    await client.end()
  }
}

async function runTrial(w: Workload, c: Config, proxy: TcpProxy): Promise<Trial> {
  const schema = `memwal_bench_${process.pid}_${randomBytes(4).toString('hex')}`
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-pgbench-'))
  const u = new URL(c.url)
  if (w.slow) {
    u.hostname = '127.0.0.1'
    u.port = String(proxy.port)
    proxy.slow(c.delayMs)
  }
  try {
    return w.system === 'memwal' ? await memwalTrial(c, u.toString(), schema, dir) : await naiveTrial(c, u.toString(), schema)
  } finally {
    proxy.heal()
    fs.rmSync(dir, { recursive: true, force: true })
    await dropSchema(c.url, schema)
  }
}

// ---- running and reporting ----

interface Summary {
  readonly ackOpsPerSec: number
  readonly e2eOpsPerSec: number
  readonly drainMs: number
  readonly p50Us: number
  readonly p99Us: number
  readonly p999Us: number
  readonly repetitions: readonly Trial[]
}

function summarize(trials: readonly Trial[]): Summary {
  const m = (f: (t: Trial) => number): number => median(trials.map(f))
  return { ackOpsPerSec: m((t) => t.ackOpsPerSec), e2eOpsPerSec: m((t) => t.e2eOpsPerSec), drainMs: m((t) => t.drainMs), p50Us: m((t) => t.p50Us), p99Us: m((t) => t.p99Us), p999Us: m((t) => t.p999Us), repetitions: trials }
}

async function measure(c: Config, log: (line: string) => void): Promise<Map<WorkloadId, Summary>> {
  const target = new URL(c.url)
  const proxy = await TcpProxy.start({ host: target.hostname || '127.0.0.1', port: target.port === '' ? 5432 : Number(target.port) })
  const trials = new Map<WorkloadId, Trial[]>()
  try {
    const order = WORKLOADS.filter((w) => c.only.includes(w.id))
    for (let round = 0; round < c.reps; round++) {
      for (let k = 0; k < order.length; k++) {
        const w = order[(k + round) % order.length]
        if (!w) continue
        const r = await runTrial(w, c, proxy)
        trials.set(w.id, [...(trials.get(w.id) ?? []), r])
        log(`round ${round + 1}/${c.reps} ${w.id.padEnd(15)} acked ${fmt(r.ackOpsPerSec).padStart(8)}/s  in PostgreSQL ${fmt(r.e2eOpsPerSec).padStart(8)}/s  ack p99 ${fmt(r.p99Us / 1000, 2)} ms  drain ${fmt(r.drainMs)} ms`)
      }
    }
  } finally {
    await proxy.close()
  }
  return new Map([...trials].map(([id, t]) => [id, summarize(t)]))
}

interface Goal {
  readonly goal: string
  readonly measured: number | null
  readonly met: boolean | null
}

function goalsOf(c: Config, s: Map<WorkloadId, Summary>): Goal[] {
  const ratio = (a: WorkloadId, b: WorkloadId): number | null => {
    const x = s.get(a)?.e2eOpsPerSec
    const y = s.get(b)?.e2eOpsPerSec
    return x !== undefined && y !== undefined && y > 0 ? x / y : null
  }
  const direct = ratio('memwal-pg', 'naive-pg')
  const slow = ratio('memwal-pg-slow', 'naive-pg-slow')
  const p99Slow = s.get('memwal-pg-slow')?.p99Us
  const p99Direct = s.get('memwal-pg')?.p99Us
  const roundTripMs = 2 * c.delayMs
  return [
    { goal: 'memwal replicated puts/s >= 10x naive (direct)', measured: direct, met: direct === null ? null : direct >= 10 },
    { goal: `memwal replicated puts/s >= 10x naive (+${c.delayMs} ms each way)`, measured: slow, met: slow === null ? null : slow >= 10 },
    {
      // An acknowledgement that waited for PostgreSQL would take at least one added round trip.
      goal: `memwal ack p99 with PostgreSQL +${c.delayMs} ms each way below one added round trip (${roundTripMs} ms)${p99Direct === undefined ? '' : `; p99 direct ${fmt(p99Direct / 1000, 2)} ms`}`,
      measured: p99Slow === undefined ? null : p99Slow / 1000,
      met: p99Slow === undefined ? null : p99Slow / 1000 < roundTripMs,
    },
  ]
}

function renderText(c: Config, s: Map<WorkloadId, Summary>, elapsedMs: number): string {
  const label = (w: Workload): string => `${w.system === 'memwal' ? 'memwal + PgBackend (batched)' : `naive INSERT per put (pool ${c.naivePool})`}${w.slow ? `, PG +${c.delayMs} ms each way` : ', PG direct'}`
  const rows: string[][] = [['id', 'system', 'acked/s', 'in PG/s', 'drain ms', 'ack p50 ms', 'ack p99 ms', 'ack p99.9 ms']]
  for (const w of WORKLOADS) {
    const x = s.get(w.id)
    if (x) rows.push([w.id, label(w), fmt(x.ackOpsPerSec), fmt(x.e2eOpsPerSec), fmt(x.drainMs), fmt(x.p50Us / 1000, 2), fmt(x.p99Us / 1000, 2), fmt(x.p999Us / 1000, 2)])
  }
  const out = [
    `memwal PostgreSQL replication benchmark: ${c.inFlight} writers awaiting each put, median of ${c.reps} rounds of ${c.measureMs / 1000} s${c.quick ? ' (quick)' : ''}, node ${process.version}, ${os.cpus().length} cpus`,
    '',
    table(rows),
    '',
    'goals (reported, not asserted):',
  ]
  for (const g of goalsOf(c, s)) {
    if (g.measured === null) continue
    out.push(`  ${g.met ? 'met    ' : 'NOT met'}  ${g.goal}: ${g.goal.includes('p99') ? `${fmt(g.measured, 2)} ms` : `${fmt(g.measured, 1)}x`}`)
  }
  out.push('', `total ${fmt(elapsedMs / 1000, 1)} s`)
  return out.join('\n') + '\n'
}

function renderJson(c: Config, s: Map<WorkloadId, Summary>, elapsedMs: number): string {
  const u = new URL(c.url)
  if (u.password !== '') u.password = '***'
  return JSON.stringify({
    benchmark: 'memwal-pg-replication',
    config: { url: u.toString(), quick: c.quick, reps: c.reps, measureMs: c.measureMs, inFlight: c.inFlight, naivePool: c.naivePool, delayMs: c.delayMs, node: process.version, cpus: os.cpus().length },
    results: Object.fromEntries([...s]),
    goals: goalsOf(c, s),
    elapsedMs,
  }, null, 2) + '\n'
}

async function main(argv: string[]): Promise<number> {
  let c: Config
  try {
    c = parseConfig(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    if (err.message) process.stderr.write(`pg-bench: ${err.message}\n`)
    process.stderr.write(`${USAGE}${WORKLOADS.map((w) => w.id).join(', ')}\n`)
    return err.message ? 16 : 0
  }
  const log = (line: string): void => void process.stderr.write(`${line}\n`)
  const started = performance.now()
  const s = await measure(c, log)
  const elapsed = performance.now() - started
  process.stdout.write(c.json ? renderJson(c, s, elapsed) : renderText(c, s, elapsed))
  return 0
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`pg-bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 8
  },
)
