/**
 * The expiry sweep's cost (issue 11: "the expiry sweep of 100,000 expired
 * entries costs <= 2 s of engine time and never blocks an acknowledgement
 * for more than a group commit"):
 *
 *   npm run bench:expiry -- [--records N] [--reps R] [--json]
 *
 * Each round sweeps twice, each time in a fresh store holding N agent
 * records (default 100,000) put with an expiry in batches of 256 and applied
 * everywhere; 2 s later the engine's clock is moved past the expiry and the
 * sweep (the engine's own, at its defaults) removes the N entries through
 * the log.
 * - Alone (nothing else runs): sweep ms, from the clock's move until a watch
 *   started then has seen the N deletes, and until every sink applied them;
 *   the process's CPU over the latter span (every thread: the sweep's engine
 *   time, with the appliers' work on its deletes, LevelDB's compactions and
 *   the watch's counting of them), and how much of it the event loop was
 *   busy (the thread that acknowledges).
 * - Beside one writer putting other records one at a time, awaited,
 *   throughout: its acknowledgement latency, p99 and max, in the 2 s before
 *   the move and during the sweep; meanwhile a probe process times a 4 KiB
 *   O_DSYNC overwrite every 2 ms on the same filesystem (what a group commit
 *   costs on the device at that moment: the writer cannot do better), and
 *   the event loop's delay says how long the engine's thread was held at once.
 * Medians over R rounds.
 * The goals are printed beside the figures; nothing is asserted.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { MemWAL, type Clock } from '../engine/index.js'
import { startDeviceProbe } from './device-probe.js'
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
  /** The sweep's span until every sink applied its deletes. */
  readonly appliedMs: number
  /**
   * CPU of the process over appliedMs, every thread (LevelDB's compactions,
   * the thread pool, the garbage collector's helpers): a round with no
   * writer, so the sweep's (and the watch's counting), with any compaction
   * the load before it left.
   */
  readonly sweepCpuMs: number
  /** Of appliedMs, the time the event loop was busy (eventLoopUtilization): the sweep's cost on the thread that acknowledges. */
  readonly sweepLoopBusyMs: number
  readonly beforeP99Ms: number
  readonly beforeMaxMs: number
  readonly duringP99Ms: number
  readonly duringMaxMs: number
  readonly duringPuts: number
  /** The event loop's delay (monitorEventLoopDelay) during the sweep: how long the engine's thread was held at once. */
  readonly loopP99Ms: number
  readonly loopMaxMs: number
  /** A 4 KiB O_DSYNC overwrite in another process meanwhile: what one group commit costs on the device then. */
  readonly deviceP99Ms: number
  readonly deviceMaxMs: number
}

const q = (xs: readonly number[], p: number): number => percentile([...xs].sort((a, b) => a - b), p)
const max = (xs: readonly number[]): number => xs.reduce((m, x) => Math.max(m, x), Number.NEGATIVE_INFINITY)

/**
 * One sweep of n expired entries. With `writer`, one awaited writer runs
 * throughout and a device probe beside it (latencies); without, nothing else
 * runs, so the process's CPU over the sweep is the sweep's (its cost).
 */
async function round(dir: string, n: number, writer: boolean): Promise<Partial<Round>> {
  const clock = new MovableClock()
  const db = await MemWAL.open({ dir, clock, maxBacklogBytes: 2 ** 30 })
  const probe = writer ? await startDeviceProbe(path.dirname(dir)) : undefined
  // The engine's timers (the sweep's cadence among them) do not hold the process open: this does, for the round.
  const keepAlive = setInterval(() => undefined, 1_000)
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
    const writing = writer
      ? (async () => {
          for (let i = 0; !stop; i++) {
            const began = state.phase
            const t = performance.now()
            await db.put(`writer/${i}`, shape.value(i), { namespace: 'writer' })
            if (began !== 'after') latencies[began].push(performance.now() - t)
          }
        })()
      : undefined
    probe?.phase('before')
    await new Promise((r) => setTimeout(r, BASELINE_MS))
    // The watch starts now: it sees the sweep's deletes (and the writer's puts, not counted).
    const changes = db.watch()
    let deletes = 0
    const loop = monitorEventLoopDelay({ resolution: 1 })
    loop.enable()
    const started = performance.now()
    const c1 = process.cpuUsage()
    const elu1 = performance.eventLoopUtilization()
    state.phase = 'during'
    probe?.phase('during')
    process.stderr.write('  the clock moved past their expiry: sweeping\n')
    clock.offsetMs += TTL_MS + 1
    for await (const c of changes) {
      if (c.type === 'delete' && ++deletes === n) break
    }
    const sweepMs = performance.now() - started
    if (!writer) await db.flush({ timeoutMs: 600_000 })
    const appliedMs = performance.now() - started
    const used = process.cpuUsage(c1)
    const busy = performance.eventLoopUtilization(elu1)
    loop.disable()
    state.phase = 'after'
    probe?.phase('after')
    stop = true
    await writing
    const device = await probe?.stop()
    if (!writer) return { sweepMs, appliedMs, sweepCpuMs: (used.user + used.system) / 1000, sweepLoopBusyMs: busy.active }
    return {
      sweepMs,
      beforeP99Ms: q(latencies.before, 99),
      beforeMaxMs: max(latencies.before),
      duringP99Ms: q(latencies.during, 99),
      duringMaxMs: max(latencies.during),
      duringPuts: latencies.during.length,
      loopP99Ms: loop.percentile(99) / 1e6,
      loopMaxMs: loop.max / 1e6,
      deviceP99Ms: q(device?.['during'] ?? [], 99),
      deviceMaxMs: max(device?.['during'] ?? []),
    }
  } finally {
    clearInterval(keepAlive)
    probe?.kill()
    await db.close()
  }
}

async function main(o: RunOptions): Promise<void> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-bench-expiry-'))
  const rounds: Round[] = []
  try {
    for (let r = 0; r < o.reps; r++) {
      const alone = await round(path.join(base, `r${r}-alone`), o.records, false)
      const beside = await round(path.join(base, `r${r}-writer`), o.records, true)
      for (const d of ['alone', 'writer']) fs.rmSync(path.join(base, `r${r}-${d}`), { recursive: true, force: true })
      rounds.push({ ...beside, sweepMs: alone.sweepMs, appliedMs: alone.appliedMs, sweepCpuMs: alone.sweepCpuMs, sweepLoopBusyMs: alone.sweepLoopBusyMs } as Round)
      process.stderr.write(`round ${r + 1}/${o.reps}: ${JSON.stringify({ ...rounds[r], sweepMsBesideWriter: beside.sweepMs })}\n`)
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
  const m = (f: (r: Round) => number): number => median(rounds.map(f))
  const fields = ['sweepMs', 'appliedMs', 'sweepCpuMs', 'sweepLoopBusyMs', 'beforeP99Ms', 'beforeMaxMs', 'duringP99Ms', 'duringMaxMs', 'duringPuts', 'loopP99Ms', 'loopMaxMs', 'deviceP99Ms', 'deviceMaxMs'] as const
  const result = { records: o.records, reps: o.reps, ...Object.fromEntries(fields.map((f) => [f, m((r) => r[f])])), rounds } as Record<(typeof fields)[number], number> & { records: number; reps: number; rounds: Round[] }
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    return
  }
  const ms2 = (a: number, b: number): string => `${a.toFixed(2)} / ${b.toFixed(2)} ms`
  process.stdout.write(
    table([
        ['measure', `median of ${o.reps}`, 'goal (issue 11)'],
        [`sweep of ${fmt(o.records)} expired entries alone: logged / applied`, `${fmt(result.sweepMs)} / ${fmt(result.appliedMs)} ms`, ''],
        ['sweep alone until applied: CPU, all threads', `${fmt(result.sweepCpuMs)} ms`, '<= 2,000 ms (at 100,000)'],
        ['sweep alone until applied: event loop busy', `${fmt(result.sweepLoopBusyMs)} ms`, ''],
        ['beside an awaited writer: its acks before, p99 / max', ms2(result.beforeP99Ms, result.beforeMaxMs), ''],
        ['its acks during the sweep, p99 / max', ms2(result.duringP99Ms, result.duringMaxMs), 'no longer than a group commit'],
        ['a group commit on the device meanwhile (probe), p99 / max', ms2(result.deviceP99Ms, result.deviceMaxMs), ''],
        ['the event loop held at once meanwhile, p99 / max', ms2(result.loopP99Ms, result.loopMaxMs), ''],
      ]) + '\n',
  )
}

await main(parseRunArgs('expiry', process.argv.slice(2), { records: 100_000, reps: 3 }))
