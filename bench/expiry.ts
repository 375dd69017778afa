/**
 * The expiry sweep's cost (issue 11: "the expiry sweep of 100,000 expired
 * entries costs <= 2 s of engine time and never blocks an acknowledgement
 * for more than a group commit"):
 *
 *   npm run bench:expiry -- [--records N] [--reps R] [--json]
 *
 * Each round: a fresh store; N agent records (default 100,000) put with an
 * expiry, in batches of 256, applied everywhere; one writer putting other
 * records (no expiry) one at a time, awaited, throughout; 2 s of that writer
 * alone, then the engine's clock is moved past the expiry and the sweep
 * (the engine's own, at its defaults) removes the N entries through the log.
 * Measured, medians over R rounds:
 * - sweep ms: from the clock's move until a watch (from that moment) has seen
 *   the N deletes;
 * - sweep CPU ms: the process's CPU time over that span, less what the
 *   writer alone used over as long a span before the move (its rate measured
 *   in the 2 s): the sweep's cost, with the appliers' work on its deletes and
 *   the watch's reading of them;
 * - the writer's acknowledgement latency, p99 and max, before the move and
 *   during the sweep: how much longer a put waits behind the sweep's groups.
 * The goals are printed beside the figures; nothing is asserted.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { MemWAL, type Clock } from '../engine/index.js'
import { agentShape } from './records.js'
import { parseRunArgs, type RunOptions } from './run-args.js'
import { fmt, median, percentile, table } from './stats.js'

const BATCH = 256
const TTL_MS = 60_000
const BASELINE_MS = 2_000

/**
 * Real time plus an offset the bench moves (past the expiry), with real
 * timers: the sweep's cadence, the appliers and the health loop run as in
 * production (the sweep's cadence is the engine's clock's).
 */
class MovableClock implements Clock {
  offsetMs = 0
  nowMs(): number {
    return Date.now() + this.offsetMs
  }
  setTimer(ms: number, fn: () => void): () => void {
    const t = setTimeout(fn, ms)
    t.unref()
    return () => clearTimeout(t)
  }
}

interface Round {
  readonly sweepMs: number
  readonly sweepCpuMs: number
  readonly writerCpuMsPerSec: number
  readonly beforeP99Ms: number
  readonly beforeMaxMs: number
  readonly duringP99Ms: number
  readonly duringMaxMs: number
  readonly duringPuts: number
}

async function round(dir: string, n: number): Promise<Round> {
  const clock = new MovableClock()
  const db = await MemWAL.open({ dir, clock, maxBacklogBytes: 2 ** 30 })
  try {
    const shape = agentShape()
    for (let from = 0; from < n; from += BATCH) {
      const ops = []
      for (let i = from; i < Math.min(n, from + BATCH); i++) ops.push({ type: 'put' as const, key: shape.key(i), value: shape.value(i), ...shape.labels(i), ttlMs: TTL_MS })
      await db.batch(ops)
    }
    await db.flush()
    process.stderr.write(`  ${fmt(n)} expiring entries written and applied\n`)
    // The writer: awaited puts of other records, each latency kept with the phase it began in.
    const state: { phase: 'before' | 'during' | 'after' } = { phase: 'before' }
    const latencies = { before: [] as number[], during: [] as number[] }
    let stop = false
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const began = state.phase
        const t = performance.now()
        await db.put(`writer/${i}`, shape.value(i), { namespace: 'writer' })
        if (began !== 'after') latencies[began].push(performance.now() - t)
      }
    })()
    const c0 = process.cpuUsage()
    await new Promise((r) => setTimeout(r, BASELINE_MS))
    const baseline = process.cpuUsage(c0)
    const writerCpuMsPerSec = (baseline.user + baseline.system) / 1000 / (BASELINE_MS / 1000)
    // The watch starts now: it sees the sweep's deletes (and the writer's puts, not counted).
    const changes = db.watch()
    let deletes = 0
    const started = performance.now()
    const c1 = process.cpuUsage()
    state.phase = 'during'
    process.stderr.write('  the clock moved past their expiry: sweeping\n')
    clock.offsetMs += TTL_MS + 1
    for await (const c of changes) {
      if (c.type === 'delete' && ++deletes === n) break
    }
    const sweepMs = performance.now() - started
    const used = process.cpuUsage(c1)
    state.phase = 'after'
    stop = true
    await writer
    const cpuMs = (used.user + used.system) / 1000
    const q = (xs: number[], p: number): number => percentile([...xs].sort((a, b) => a - b), p)
    const max = (xs: number[]): number => xs.reduce((m, x) => Math.max(m, x), Number.NEGATIVE_INFINITY)
    return {
      sweepMs,
      sweepCpuMs: cpuMs - writerCpuMsPerSec * (sweepMs / 1000),
      writerCpuMsPerSec,
      beforeP99Ms: q(latencies.before, 99),
      beforeMaxMs: max(latencies.before),
      duringP99Ms: q(latencies.during, 99),
      duringMaxMs: max(latencies.during),
      duringPuts: latencies.during.length,
    }
  } finally {
    await db.close()
  }
}

async function main(o: RunOptions): Promise<void> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-bench-expiry-'))
  const rounds: Round[] = []
  try {
    for (let r = 0; r < o.reps; r++) {
      const dir = path.join(base, `r${r}`)
      rounds.push(await round(dir, o.records))
      fs.rmSync(dir, { recursive: true, force: true })
      process.stderr.write(`round ${r + 1}/${o.reps}: ${JSON.stringify(rounds[r])}\n`)
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
  const m = (f: (r: Round) => number): number => median(rounds.map(f))
  const result = {
    records: o.records,
    reps: o.reps,
    sweepMs: m((r) => r.sweepMs),
    sweepCpuMs: m((r) => r.sweepCpuMs),
    writerCpuMsPerSec: m((r) => r.writerCpuMsPerSec),
    beforeP99Ms: m((r) => r.beforeP99Ms),
    beforeMaxMs: m((r) => r.beforeMaxMs),
    duringP99Ms: m((r) => r.duringP99Ms),
    duringMaxMs: m((r) => r.duringMaxMs),
    rounds,
  }
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    return
  }
  process.stdout.write(
    table([
        ['measure', `median of ${o.reps}`, 'goal (issue 11)'],
        [`sweep of ${fmt(o.records)} expired entries, wall`, `${fmt(result.sweepMs)} ms`, ''],
        ['sweep, CPU (less the writer alone)', `${fmt(result.sweepCpuMs)} ms`, '<= 2,000 ms (at 100,000)'],
        ['writer ack latency before: p99 / max', `${result.beforeP99Ms.toFixed(2)} / ${result.beforeMaxMs.toFixed(2)} ms`, ''],
        ['writer ack latency during the sweep: p99 / max', `${result.duringP99Ms.toFixed(2)} / ${result.duringMaxMs.toFixed(2)} ms`, 'no longer than a group commit'],
      ]) + '\n',
  )
}

await main(parseRunArgs('expiry', process.argv.slice(2), { records: 100_000, reps: 3 }))
