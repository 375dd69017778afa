/**
 * WAL append benchmark: memwal's Wal against the raw fdatasync loop and
 * classic-level, in one run.
 *
 *   npm run bench [-- --json] [--quick] [--dir BASE] [--reps N] [--seconds S] [--only ID,...]
 *
 * Every system runs once per round, rounds repeat (`--reps`), and the order
 * of the systems rotates from round to round, so that machine noise (another
 * process, the disk's own moods) falls on all of them alike. Each figure
 * reported is the median over the rounds. Each trial gets a fresh directory
 * and a warm-up before the clock starts; its directory is removed and the
 * removal flushed before the next trial.
 *
 * Latency is per operation, from issue to acknowledgement, in microseconds.
 * The goals from the issue are reported, never asserted.
 */
import fs from 'node:fs'
import os from 'node:os'
import { posix as path } from 'node:path'
import { parseArgs } from 'node:util'
import { limits, RecordCodec, RecordType, Wal } from '../engine/index.js'
import { classicLevelTrial, driveAwaited, driveInFlight, rawAppendTrial, rawPreallocTrial } from './peers.js'
import { fmt, median, summarize, table, type Summary, type TrialResult } from './stats.js'

const USAGE = `usage: wal-bench [--json] [--quick] [--dir BASE] [--reps N] [--seconds S] [--only ID,...]
  --json       print one JSON document on stdout (progress goes to stderr)
  --quick      a short run (3 rounds of 0.2 s trials, under 20 s)
  --dir BASE   make the run's data directory under BASE (default: the OS temp dir); removed afterwards
  --reps N     rounds (default 5, quick 3)
  --seconds S  measured seconds per trial (default 2, quick 0.2)
  --only IDS   comma-separated subset of: `

/** Target payload of one record, msgpack-encoded, and the frame header the raw loops add to it. */
const PAYLOAD_BYTES = 350
const FRAME_HEADER_BYTES = 32
const IN_FLIGHT = 256

type WorkloadId = 'memwal-awaited' | 'memwal-inflight' | 'raw-append' | 'raw-prealloc' | 'level-awaited' | 'level-inflight'

interface Workload {
  readonly id: WorkloadId
  readonly system: string
  readonly workload: string
}

/** The order of round 0; each later round starts one further along. */
const WORKLOADS: readonly Workload[] = [
  { id: 'memwal-awaited', system: 'memwal Wal (sync)', workload: '1 awaited writer' },
  { id: 'raw-prealloc', system: 'raw write+fdatasync, preallocated file', workload: '1 writer (sync loop)' },
  { id: 'level-awaited', system: 'classic-level put {sync}', workload: '1 awaited writer' },
  { id: 'memwal-inflight', system: 'memwal Wal (sync)', workload: `${IN_FLIGHT} in flight` },
  { id: 'raw-append', system: 'raw write+fdatasync, growing file', workload: '1 writer (sync loop)' },
  { id: 'level-inflight', system: 'classic-level put {sync}', workload: `${IN_FLIGHT} in flight` },
]

interface Config {
  readonly json: boolean
  readonly quick: boolean
  readonly base: string
  readonly reps: number
  readonly measureMs: number
  readonly warmupMs: number
  /** Pause after each trial's cleanup, so that one system's leftovers do not land on the next. */
  readonly settleMs: number
  readonly only: readonly WorkloadId[]
}

class UsageError extends Error {}

function parseConfig(argv: string[]): Config {
  let values
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        json: { type: 'boolean', default: false },
        quick: { type: 'boolean', default: false },
        dir: { type: 'string' },
        reps: { type: 'string' },
        seconds: { type: 'string' },
        only: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.help) throw new UsageError('')
  const quick = values.quick
  const reps = values.reps === undefined ? (quick ? 3 : 5) : Number(values.reps)
  if (!Number.isInteger(reps) || reps < 1 || reps > 100) throw new UsageError('--reps must be an integer from 1 to 100')
  const seconds = values.seconds === undefined ? (quick ? 0.2 : 2) : Number(values.seconds)
  if (!(seconds > 0 && seconds <= 600)) throw new UsageError('--seconds must be in (0, 600]')
  const ids = WORKLOADS.map((w) => w.id)
  const only = values.only === undefined ? ids : values.only.split(',').map((s) => s.trim())
  for (const id of only) if (!ids.includes(id as WorkloadId)) throw new UsageError(`unknown workload ${id}; known: ${ids.join(', ')}`)
  return {
    json: values.json,
    quick,
    base: path.resolve(values.dir ?? os.tmpdir()),
    reps,
    measureMs: seconds * 1000,
    warmupMs: quick ? 100 : 500,
    settleMs: quick ? 30 : 150,
    only: only as WorkloadId[],
  }
}

// ---- the record ----

interface RecordShape {
  readonly key: (n: number) => string
  readonly value: string
  readonly payloadBytes: number
}

/** Keys of constant length, and a value string sized so that the encoded PUT payload is PAYLOAD_BYTES. */
function recordShape(): RecordShape {
  const key = (n: number): string => `key-${String(n).padStart(10, '0')}`
  const codec = new RecordCodec()
  const text = (length: number): string => {
    let s = ''
    for (let i = 0; i < length; i++) s += String.fromCharCode(97 + ((i * 7 + 3) % 26))
    return s
  }
  const size = (length: number): number => codec.encode({ type: RecordType.PUT, op: { type: 'put', key: key(0), value: text(length) } }).length
  let length = Math.max(0, PAYLOAD_BYTES - size(0))
  while (length > 0 && size(length) > PAYLOAD_BYTES) length--
  while (size(length + 1) <= PAYLOAD_BYTES) length++
  return { key, value: text(length), payloadBytes: size(length) }
}

// ---- memwal ----

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Waits until the spare segment that Wal.open (and every rotation) prepares
 * in the background is written, then flushes it ourselves, so that its
 * 64 MiB of zeros are not being written and synced while the clock runs.
 * memwal is observed only from outside: a file in wal/ that is not a `.seg`
 * is a segment being prepared; it is ready when it has the full segment
 * size on two looks in a row. Our own fdatasync of it makes the engine's
 * fdatasync that follows cheap; the short sleep lets that one return.
 */
async function settleSpare(walDir: string, segmentBytes: number): Promise<void> {
  const temps = (): { file: string; size: number }[] =>
    fs.readdirSync(walDir).filter((n) => !n.endsWith('.seg')).map((n) => {
      const file = path.join(walDir, n)
      return { file, size: fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0 }
    })
  const giveUpAt = performance.now() + 10_000
  let readyLooks = 0
  while (readyLooks < 2 && performance.now() < giveUpAt) {
    const t = temps()
    readyLooks = t.length > 0 && t.every((f) => f.size >= segmentBytes) ? readyLooks + 1 : 0
    await sleep(10)
  }
  for (const { file } of temps()) {
    try {
      const fd = fs.openSync(file, 'r')
      try {
        fs.fdatasyncSync(fd)
      } finally {
        fs.closeSync(fd)
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  await sleep(50)
}

interface MemwalTrial {
  readonly result: TrialResult
  /** Segments opened while the clock ran (each one starts another spare in the background). */
  readonly rotations: number
}

/**
 * A fresh Wal (durability 'sync', default 64 MiB segments) in `dir`. Warm-up:
 * the same workload for warmupMs, then settleSpare (see above), then the
 * measured run. close() waits for any spare a rotation started, so nothing of
 * this trial is still writing when the next system starts.
 */
async function memwalTrial(dir: string, c: Config, shape: RecordShape, depth: number): Promise<MemwalTrial> {
  const wal = await Wal.open({ dir, durability: 'sync' })
  try {
    let n = 0
    const op = (): Promise<number> => wal.appendRecord({ type: RecordType.PUT, op: { type: 'put', key: shape.key(n++), value: shape.value } })
    const drive = (ms: number): Promise<TrialResult> => (depth === 1 ? driveAwaited(op, ms) : driveInFlight(op, ms, depth))
    await drive(c.warmupMs)
    await settleSpare(path.join(dir, 'wal'), limits.segmentBytesDefault)
    const before = (await wal.segments()).length
    const result = await drive(c.measureMs)
    const rotations = (await wal.segments()).length - before
    return { result, rotations }
  } finally {
    await wal.close()
  }
}

// ---- running ----

interface Outcome {
  readonly result: TrialResult
  readonly rotations?: number
}

async function runTrial(id: WorkloadId, dir: string, c: Config, shape: RecordShape): Promise<Outcome> {
  const raw = { appendBytes: shape.payloadBytes + FRAME_HEADER_BYTES, warmupMs: c.warmupMs, measureMs: c.measureMs }
  const level = { key: shape.key, value: shape.value, warmupMs: c.warmupMs, measureMs: c.measureMs }
  switch (id) {
    case 'memwal-awaited':
      return memwalTrial(dir, c, shape, 1)
    case 'memwal-inflight':
      return memwalTrial(dir, c, shape, IN_FLIGHT)
    case 'raw-append':
      return { result: rawAppendTrial(dir, raw) }
    case 'raw-prealloc':
      return { result: rawPreallocTrial(dir, { ...raw, fileBytes: limits.segmentBytesDefault }) }
    case 'level-awaited':
      return { result: await classicLevelTrial(dir, { ...level, depth: 1 }) }
    case 'level-inflight':
      return { result: await classicLevelTrial(dir, { ...level, depth: IN_FLIGHT }) }
    default: {
      const never: never = id
      throw new Error(`unknown workload ${String(never)}`)
    }
  }
}

/** Removes a trial's directory and flushes the removal (freed blocks included) before the next trial. */
async function cleanTrialDir(runDir: string, dir: string, settleMs: number): Promise<void> {
  fs.rmSync(dir, { recursive: true, force: true })
  const fd = fs.openSync(runDir, 'r')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  await sleep(settleMs)
}

interface Measured {
  readonly summaries: Map<WorkloadId, Summary>
  readonly rotations: Map<WorkloadId, number[]>
  readonly elapsedMs: number
}

async function measure(c: Config, shape: RecordShape, runDir: string, log: (line: string) => void): Promise<Measured> {
  const started = performance.now()
  const order = WORKLOADS.filter((w) => c.only.includes(w.id))
  const trials = new Map<WorkloadId, TrialResult[]>()
  const rotations = new Map<WorkloadId, number[]>()
  for (let round = 0; round < c.reps; round++) {
    for (let k = 0; k < order.length; k++) {
      const w = order[(k + round) % order.length]
      if (!w) continue
      const dir = path.join(runDir, `r${round}-${w.id}`)
      fs.mkdirSync(dir, { mode: 0o700 })
      let outcome: Outcome
      try {
        outcome = await runTrial(w.id, dir, c, shape)
      } finally {
        await cleanTrialDir(runDir, dir, c.settleMs)
      }
      const r = outcome.result
      trials.set(w.id, [...(trials.get(w.id) ?? []), r])
      if (outcome.rotations !== undefined) rotations.set(w.id, [...(rotations.get(w.id) ?? []), outcome.rotations])
      log(`round ${round + 1}/${c.reps} ${w.id.padEnd(15)} ${fmt(r.opsPerSec).padStart(9)} ops/s  p50 ${fmt(r.p50Us, 1)} us  p99 ${fmt(r.p99Us, 1)} us`)
    }
  }
  const summaries = new Map<WorkloadId, Summary>()
  for (const [id, t] of trials) summaries.set(id, summarize(t))
  return { summaries, rotations, elapsedMs: performance.now() - started }
}

// ---- reporting ----

interface Ratio {
  /** Stable key in the JSON output. */
  readonly id: string
  readonly name: string
  readonly value: number | null
}

interface Goal {
  readonly id: string
  readonly goal: string
  readonly target: number
  readonly measured: number | null
  readonly met: boolean | null
}

function ratiosAndGoals(s: Map<WorkloadId, Summary>): { ratios: Ratio[]; goals: Goal[] } {
  const ops = (id: WorkloadId): number | undefined => s.get(id)?.opsPerSec
  const ratio = (a: WorkloadId, b: WorkloadId): number | null => {
    const x = ops(a)
    const y = ops(b)
    return x !== undefined && y !== undefined && y > 0 ? x / y : null
  }
  const ratios: Ratio[] = [
    { id: 'memwalAwaitedOverRawPrealloc', name: 'memwal awaited / raw loop (preallocated file)', value: ratio('memwal-awaited', 'raw-prealloc') },
    { id: 'memwalAwaitedOverRawAppend', name: 'memwal awaited / raw loop (growing file)', value: ratio('memwal-awaited', 'raw-append') },
    { id: 'memwalInflightOpsPerSec', name: `memwal ${IN_FLIGHT} in flight, ops/s`, value: ops('memwal-inflight') ?? null },
    { id: 'memwalInflightOverLevelInflight', name: `memwal ${IN_FLIGHT} / classic-level ${IN_FLIGHT}`, value: ratio('memwal-inflight', 'level-inflight') },
    { id: 'memwalAwaitedOverLevelAwaited', name: 'memwal awaited / classic-level awaited', value: ratio('memwal-awaited', 'level-awaited') },
  ]
  const goal = (id: string, name: string, target: number, measured: number | null): Goal => ({ id, goal: name, target, measured, met: measured === null ? null : measured >= target })
  const goals: Goal[] = [
    goal('awaitedVsRawPrealloc', 'awaited writer >= 0.9x the raw loop (preallocated file: the disk\'s floor)', 0.9, ratios[0]?.value ?? null),
    goal('awaitedVsRawAppend', 'awaited writer >= 0.9x the raw loop (growing file, as in the issue)', 0.9, ratios[1]?.value ?? null),
    goal('inflightRecordsPerSec', `${IN_FLIGHT} in flight >= 300,000 acknowledged records/s`, 300_000, ratios[2]?.value ?? null),
  ]
  return { ratios, goals }
}

function renderText(c: Config, shape: RecordShape, m: Measured): string {
  const rows: string[][] = [['id', 'system', 'workload', 'ops/s', 'p50 us', 'p99 us', 'p99.9 us']]
  for (const w of WORKLOADS) {
    const s = m.summaries.get(w.id)
    if (s) rows.push([w.id, w.system, w.workload, fmt(s.opsPerSec), fmt(s.p50Us, 1), fmt(s.p99Us, 1), fmt(s.p999Us, 1)])
  }
  const { ratios, goals } = ratiosAndGoals(m.summaries)
  const out = [
    `memwal WAL append benchmark: ${shape.payloadBytes}-byte payloads (${shape.payloadBytes + FRAME_HEADER_BYTES}-byte frames), ` +
      `median of ${c.reps} rounds of ${c.measureMs / 1000} s per system${c.quick ? ' (quick)' : ''}, node ${process.version}, ${os.cpus().length} cpus`,
    '',
    table(rows),
  ]
  if (ratios.some((r) => r.value !== null)) out.push('')
  for (const r of ratios) if (r.value !== null) out.push(`${r.name.padEnd(48)} ${r.name.endsWith('ops/s') ? fmt(r.value) : `${fmt(r.value, 2)}x`}`)
  const rot = m.rotations.get('memwal-inflight')
  if (rot) out.push(`memwal segment rotations while measuring ${IN_FLIGHT} in flight (median per trial): ${fmt(median(rot), 1)}`)
  const measuredGoals = goals.filter((g) => g.measured !== null)
  if (measuredGoals.length > 0) out.push('', 'goals (reported, not asserted):')
  for (const g of measuredGoals) {
    if (g.measured === null) continue
    const shown = g.target >= 1000 ? fmt(g.measured) : `${fmt(g.measured, 2)}x`
    out.push(`  ${g.met ? 'met    ' : 'NOT met'}  ${g.goal}: ${shown}`)
  }
  out.push('', `total ${fmt(m.elapsedMs / 1000, 1)} s`)
  return out.join('\n') + '\n'
}

function renderJson(c: Config, shape: RecordShape, m: Measured): string {
  const results: Record<string, unknown> = {}
  for (const w of WORKLOADS) {
    const s = m.summaries.get(w.id)
    if (!s) continue
    const rotations = m.rotations.get(w.id)
    results[w.id] = { system: w.system, workload: w.workload, ...s, ...(rotations ? { segmentRotations: rotations } : {}) }
  }
  const { ratios, goals } = ratiosAndGoals(m.summaries)
  return JSON.stringify({
    benchmark: 'memwal-wal-append',
    config: {
      quick: c.quick, reps: c.reps, measureMs: c.measureMs, warmupMs: c.warmupMs, inFlight: IN_FLIGHT,
      payloadBytes: shape.payloadBytes, frameBytes: shape.payloadBytes + FRAME_HEADER_BYTES, segmentBytes: limits.segmentBytesDefault,
      base: c.base, node: process.version, platform: `${process.platform}-${process.arch}`, cpus: os.cpus().length,
    },
    results,
    ratios: Object.fromEntries(ratios.map((r) => [r.id, r.value])),
    goals,
    elapsedMs: m.elapsedMs,
  }, null, 2) + '\n'
}

async function main(argv: string[]): Promise<number> {
  let c: Config
  try {
    c = parseConfig(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    if (err.message) process.stderr.write(`wal-bench: ${err.message}\n`)
    process.stderr.write(`${USAGE}${WORKLOADS.map((w) => w.id).join(', ')}\n`)
    return err.message ? 16 : 0
  }
  const log = (line: string): void => void process.stderr.write(`${line}\n`)
  const shape = recordShape()
  fs.mkdirSync(c.base, { recursive: true })
  const runDir = fs.mkdtempSync(path.join(c.base, 'memwal-bench-'))
  log(`wal-bench: data in ${runDir}; ${c.reps} rounds x ${c.only.length} systems, ${c.measureMs / 1000} s each`)
  let m: Measured
  try {
    m = await measure(c, shape, runDir, log)
  } finally {
    fs.rmSync(runDir, { recursive: true, force: true })
  }
  process.stdout.write(c.json ? renderJson(c, shape, m) : renderText(c, shape, m))
  return 0
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`wal-bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 8
  },
)
