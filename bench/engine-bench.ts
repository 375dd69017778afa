/**
 * Engine benchmark: what the applier, replay, fsck and status cost, against
 * the WAL alone in the same run.
 *
 *   npx tsx bench/engine-bench.ts [--json] [--quick] [--records N] [--dir BASE]
 *
 * - wal-inflight / engine-inflight: 256 puts in flight for a few seconds, on
 *   the Wal alone and on MemWAL (sync durability, LevelDB backend and index
 *   applying concurrently); the engine's figure counts acknowledgements, and
 *   the drain after the trial is timed too.
 * - apply: N records acknowledged while both durable sinks are down, then the
 *   sinks come back and the backlog drains: records per second into LevelDB
 *   (backend and index).
 * - replay: N records left unapplied by a process that stopped, then a fresh
 *   open (recovery reads the backlog back from the segments) and a flush:
 *   open time, replay time, and the process's peak RSS against the backlog's
 *   bytes.
 * - fsck: the offline reconciler over that directory (log verified, backend
 *   and index compared): MB of log per second.
 * - status: `inspectDataDir` on it.
 * Uses only the public API. Goals are reported, never asserted.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { fsck, inspectDataDir, MemWAL, RecordType, Wal, type Sink } from '../engine/index.js'
import { driveInFlight } from './peers.js'
import { fmt, table } from './stats.js'

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    records: { type: 'string' },
    dir: { type: 'string' },
  },
})
const quick = args.quick === true
const N = Number(args.records ?? (quick ? 100_000 : 1_000_000))
const TRIAL_MS = quick ? 1000 : 4000
const IN_FLIGHT = 256
const base = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), 'memwal-engine-bench-'))
const log = (s: string): void => void process.stderr.write(`${s}\n`)
/** A ~350-byte record once msgpack-encoded. */
const value = { text: 'x'.repeat(310), source: 'bench', n: 0 }

type Outage = { down: boolean }
/** Makes the durable sinks fail while `o.down`: acknowledged records pile up as backlog. */
function outage(o: Outage) {
  return <S extends Sink>(sink: S): S => {
    if (sink.durable) {
      const apply = sink.apply.bind(sink)
      sink.apply = (b, signal) => (o.down ? Promise.reject(new Error('down (benchmark outage)')) : apply(b, signal))
    }
    return sink
  }
}

async function putMany(db: MemWAL, n: number): Promise<void> {
  const inflight = new Set<Promise<unknown>>()
  for (let i = 0; i < n; i++) {
    const p: Promise<unknown> = db.put(`key/${i}`, value).then(() => inflight.delete(p))
    inflight.add(p)
    if (inflight.size >= 1024) await Promise.race(inflight)
  }
  await Promise.all(inflight)
}

async function walInflight(): Promise<Record<string, number>> {
  const dir = path.join(base, 'wal-only')
  const wal = await Wal.open({ dir })
  await new Promise((r) => setTimeout(r, 1500)) // let the spare segment's zero-fill finish
  let i = 0
  const r = await driveInFlight(() => wal.appendRecord({ type: RecordType.PUT, op: { type: 'put', key: `key/${i++}`, value } }), TRIAL_MS, IN_FLIGHT)
  await wal.close()
  return { opsPerSec: r.opsPerSec, p50Us: r.p50Us, p99Us: r.p99Us }
}

async function engineInflight(): Promise<Record<string, number>> {
  const dir = path.join(base, 'engine')
  const db = await MemWAL.open({ dir, maxBacklogBytes: 1 << 30 })
  await new Promise((r) => setTimeout(r, 1500))
  let i = 0
  const r = await driveInFlight(() => db.put(`key/${i++}`, value), TRIAL_MS, IN_FLIGHT)
  const t = performance.now()
  const backlog = db.health().backlog.records
  await db.flush()
  const drainMs = performance.now() - t
  await db.close()
  return { opsPerSec: r.opsPerSec, p50Us: r.p50Us, p99Us: r.p99Us, backlogAtEnd: backlog, drainMs, appliedPerSec: r.ops / ((r.elapsedMs + drainMs) / 1000) }
}

async function applyDrain(): Promise<Record<string, number>> {
  const dir = path.join(base, 'apply')
  const o: Outage = { down: true }
  const db = await MemWAL.open({ dir, durability: 'none', maxBacklogBytes: 2 ** 31, wrapSink: outage(o), resilience: { retryDelayMsMin: 5, retryDelayMsMax: 20 } })
  await putMany(db, N)
  const backlogBytes = db.health().backlog.bytes
  o.down = false
  const t = performance.now()
  await db.flush()
  const ms = performance.now() - t
  await db.close()
  return { records: N, backlogMB: backlogBytes / 1e6, drainMs: ms, recordsPerSec: N / (ms / 1000) }
}

async function replay(): Promise<Record<string, number>> {
  const dir = path.join(base, 'replay')
  const o: Outage = { down: true }
  const first = await MemWAL.open({ dir, durability: 'none', maxBacklogBytes: 2 ** 31, wrapSink: outage(o) })
  await putMany(first, N)
  const backlogBytes = first.health().backlog.bytes
  await first.close() // stops with everything unapplied, as a crash would leave it
  global.gc?.()
  const rssBefore = process.memoryUsage().rss
  let peak = rssBefore
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20)
  const t0 = performance.now()
  const db = await MemWAL.open({ dir, maxBacklogBytes: 2 ** 31 })
  const t1 = performance.now()
  await db.flush()
  const t2 = performance.now()
  clearInterval(sampler)
  await db.close()
  return {
    records: N, backlogMB: backlogBytes / 1e6, openMs: t1 - t0, replayMs: t2 - t1, totalMs: t2 - t0,
    recordsPerSec: N / ((t2 - t0) / 1000), peakRssMB: peak / 1e6, rssGrowthMB: (peak - rssBefore) / 1e6, rssGrowthPerBacklogByte: (peak - rssBefore) / backlogBytes,
  }
}

async function fsckRate(): Promise<Record<string, number>> {
  const dir = path.join(base, 'replay')
  const t = performance.now()
  const r = await fsck({ dir, repair: false })
  const ms = performance.now() - t
  return { bytesScannedMB: r.bytesScanned / 1e6, ms, mbPerSec: r.bytesScanned / 1e6 / (ms / 1000), clean: r.clean ? 1 : 0 }
}

async function statusTime(): Promise<Record<string, number>> {
  const dir = path.join(base, 'replay')
  const times: number[] = []
  let walMB = 0
  for (let i = 0; i < 5; i++) {
    const t = performance.now()
    const s = await inspectDataDir(dir)
    times.push(performance.now() - t)
    walMB = s.segments.bytes / 1e6
  }
  times.sort((a, b) => a - b)
  return { walMB, medianMs: times[2] ?? Number.NaN }
}

try {
  log(`engine benchmark: ${N} records, trials of ${TRIAL_MS} ms, in ${base}`)
  const results: Record<string, Record<string, number>> = {}
  for (const [name, fn] of [['wal-inflight', walInflight], ['engine-inflight', engineInflight], ['apply', applyDrain], ['replay', replay], ['fsck', fsckRate], ['status', statusTime]] as const) {
    log(`- ${name}`)
    results[name] = await fn()
  }
  const wal = results['wal-inflight']?.['opsPerSec'] ?? Number.NaN
  const eng = results['engine-inflight']?.['opsPerSec'] ?? Number.NaN
  const goals = {
    applierRecordsPerSec: { measured: results['apply']?.['recordsPerSec'], goal: '>= 150,000' },
    engineOverWal: { measured: eng / wal, goal: '>= 0.8' },
    replaySeconds: { measured: (results['replay']?.['totalMs'] ?? Number.NaN) / 1000, goal: `<= 5 for 1,000,000 records (this run: ${N})` },
    replayRssPerBacklogByte: { measured: results['replay']?.['rssGrowthPerBacklogByte'], goal: '<= 2' },
    fsckMBPerSec: { measured: results['fsck']?.['mbPerSec'], goal: '>= 500' },
    statusMs: { measured: results['status']?.['medianMs'], goal: `< 200 on 1 GiB of WAL (this run: ${fmt(results['status']?.['walMB'] ?? 0)} MB)` },
  }
  if (args.json) process.stdout.write(`${JSON.stringify({ machine: { cpus: os.cpus().length, node: process.version }, records: N, results, goals }, null, 2)}\n`)
  else {
    process.stdout.write(`${table([['workload', 'figures'], ...Object.entries(results).map(([k, v]) => [k, Object.entries(v).map(([a, b]) => `${a}=${fmt(b, b < 10 ? 2 : 0)}`).join(' ')])])}\n\n`)
    process.stdout.write(`${table([['goal', 'measured', 'target'], ...Object.entries(goals).map(([k, g]) => [k, fmt(g.measured ?? Number.NaN, 2), g.goal])])}\n`)
  }
} finally {
  fs.rmSync(base, { recursive: true, force: true })
}
