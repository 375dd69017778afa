/**
 * PostgreSQL replication workloads (the harness runs them with `--pg`):
 * acknowledged puts replicated into PostgreSQL by memwal (local WAL, batched
 * multi-row upserts by PgBackend) against the naive alternative, one
 * INSERT ... ON CONFLICT per write, each on the real server, directly and
 * through a proxy that adds latency.
 *
 * Same durability on both sides: memwal acknowledges a put once its WAL
 * frame is fdatasync'd (durability 'sync'); the naive writer acknowledges
 * once PostgreSQL committed its INSERT (synchronous_commit as the server has
 * it, `on` by default). Both write the same rows (msgpack value, namespace,
 * tags, HLC, writer, LSN) into the same table, with the same last-writer-wins
 * rule. Both run the same number of writers in flight.
 *
 * memwal's end-to-end rate is the puts acknowledged during the trial divided
 * by the time from the start until flush() resolved (every put in
 * PostgreSQL, checkpoint included); the naive rate is its acknowledged (hence
 * committed) puts per second. Every trial gets a fresh data directory and a
 * fresh schema (memwal_bench_<pid>_<random>), dropped afterwards.
 */
import { randomBytes } from 'node:crypto'
import { Packr } from 'msgpackr'
import pg from 'pg'
import { MemWAL, PgBackend } from '../engine/index.js'
import { driveInFlight } from './drive.js'
import { TcpProxy } from './tcp-proxy.js'
import type { TrialResult } from './stats.js'

export type PgSystem = 'memwal-pg' | 'naive-pg'

export interface PgWorkload {
  readonly id: string
  readonly system: PgSystem
  /** Through the latency proxy. */
  readonly slow: boolean
}

export const PG_WORKLOADS: readonly PgWorkload[] = [
  { id: 'memwal-pg/direct', system: 'memwal-pg', slow: false },
  { id: 'naive-pg/direct', system: 'naive-pg', slow: false },
  { id: 'memwal-pg/slow', system: 'memwal-pg', slow: true },
  { id: 'naive-pg/slow', system: 'naive-pg', slow: true },
]

export interface PgConfig {
  readonly url: string
  readonly measureMs: number
  readonly warmupMs: number
  /** Writers in flight, each awaiting its put. */
  readonly inFlight: number
  /** Connections of the naive writer's pool (PgBackend uses 4). */
  readonly naivePool: number
  /** Latency the proxy adds in each direction in the slow workloads. */
  readonly delayMs: number
}

export const pgDefaults = { inFlight: 64, naivePool: 16, delayMs: 20 } as const

// ---- one trial ----

/** A trial's acknowledgements (rate and latency, as every append trial reports them), and how long until all were in PostgreSQL. */
export interface PgTrial extends TrialResult {
  /** Puts in PostgreSQL per second, from the start until the last one was there. */
  readonly e2eOpsPerSec: number
  /** After the writers stopped: until PostgreSQL had everything (memwal's backlog draining). */
  readonly drainMs: number
}

const packr = new Packr({ useRecords: false, useToJSON: false, mapsAsObjects: true, moreTypes: false })
const VALUE_TEXT = 'v'.repeat(80)
const key = (n: number): string => `bench/${String(n).padStart(10, '0')}`

/** Warm-up (a quarter of the trial, at most 300 ms, 8 writers), then the measured run with every writer; `flush` waits until PostgreSQL has it all. */
async function measure(c: PgConfig, put: (n: number) => Promise<unknown>, flush: () => Promise<void>): Promise<PgTrial> {
  let n = 1_000_000_000
  await driveInFlight(() => put(n++), Math.min(c.warmupMs, c.measureMs / 4), Math.min(c.inFlight, 8))
  await flush()
  n = 0
  const t0 = performance.now()
  const acks = await driveInFlight(() => put(n++), c.measureMs, c.inFlight)
  const stopped = performance.now()
  await flush()
  const done = performance.now()
  return { ...acks, e2eOpsPerSec: (acks.ops * 1000) / (done - t0), drainMs: done - stopped }
}

async function memwalPgTrial(c: PgConfig, url: string, schema: string, dir: string): Promise<PgTrial> {
  const backend = new PgBackend({ connectionString: url, writerId: 'bench', schema })
  // The backlog waits rather than refuses when PostgreSQL falls behind: the rate stays end to end.
  const engine = await MemWAL.open({ dir, backend, durability: 'sync', backlogPolicy: 'wait', backlogWaitMsMax: 600_000 })
  try {
    return await measure(c, (n) => engine.put(key(n), { n, text: VALUE_TEXT }, { namespace: 'bench', tags: ['t'] }), async () => {
      await engine.flush()
      if (engine.health().sinks['backend']?.checkpoint !== engine.health().wal.lastLsn) throw new Error('flush resolved before the backend caught up')
    })
  } finally {
    await engine.close()
  }
}

async function naivePgTrial(c: PgConfig, url: string, schema: string): Promise<PgTrial> {
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
  try {
    // An acknowledged INSERT is committed: nothing to wait for afterwards.
    return await measure(c, (n) => {
      lastHlc = Math.max(lastHlc + 1, Date.now() * 1000)
      return pool.query(sql, [key(n), Buffer.from(packr.encode({ n, text: VALUE_TEXT })), 'bench', ['t'], lastHlc, 'naive', ++lsn])
    }, async () => undefined)
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

/** One trial of `w` in a fresh schema (dropped afterwards) and the fresh directory `dir`. */
export async function pgTrial(w: PgWorkload, c: PgConfig, dir: string): Promise<PgTrial> {
  const schema = `memwal_bench_${process.pid}_${randomBytes(4).toString('hex')}`
  const target = new URL(c.url)
  const proxy = w.slow ? await TcpProxy.start({ host: target.hostname || '127.0.0.1', port: target.port === '' ? 5432 : Number(target.port) }) : undefined
  proxy?.slow(c.delayMs)
  const u = new URL(c.url)
  if (proxy) {
    u.hostname = '127.0.0.1'
    u.port = String(proxy.port)
  }
  try {
    return w.system === 'memwal-pg' ? await memwalPgTrial(c, u.toString(), schema, dir) : await naivePgTrial(c, u.toString(), schema)
  } finally {
    await proxy?.close()
    await dropSchema(c.url, schema)
  }
}
