/**
 * memwal against its peers, side by side in one run (`npm run bench`,
 * `memwal bench`).
 *
 *   harness [--quick] [--json] [--report FILE] [--dir BASE] [--reps N] [--seconds S]
 *           [--records N] [--only IDS] [--isolation trial|none] [--profile DIR] [--pg [--pg-url URL]]
 *
 * Append workloads (acknowledged = durable): memwal's Wal and MemWAL (sync
 * durability), classic-level puts with `{ sync: true }` and lmdb-js with its
 * durable commits, each with one awaited writer and 1, 16, 256 and 4,096
 * writes in flight; classic-level sync batches; the raw writeSync +
 * fdatasyncSync loop; and MemWAL end to end (acknowledged put -> applied in
 * the LevelDB backend). Every system runs once per round and the order
 * rotates from round to round, so that machine noise falls on all of them
 * alike; each figure is the median over the rounds. Each trial has a fresh
 * directory and a warm-up, and (full mode) a fresh process of its own, so
 * that its peak RSS is its own and no trial inherits another's heap.
 *
 * Engine workloads (one-shot): a backlog of N records (1,000,000; --quick
 * 100,000) acknowledged while the sinks are down, in a process then killed
 * with SIGKILL; fsck and status on what it left; its replay (open + apply
 * everything), with peak RSS; and opening logs of 100 MiB and 1 GiB
 * (--quick: 16 MiB) with full verification and with the tail only.
 *
 * Output: a table on stdout, or with --json one JSON document (progress on
 * stderr); --report FILE writes a self-contained HTML report with charts.
 * The goals from the issue are reported, never asserted.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { posix as path } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { limits } from '../engine/testing.js'
import { backlogBytesMax, buildBacklog, buildWal, fsckRun, memwalFootprint, processPeakRss, replay, RssSampler, sleep, statusRun, walOpen } from './memwal-workloads.js'
import { ADAPTER_SYSTEM_LABELS, ADAPTER_WORKLOADS, adapterTrial, adapterWorkloadLabel, GRAPH_STEPS } from './adapter-workloads.js'
import { PG_WORKLOADS, pgDefaults, pgTrial, type PgConfig } from './pg-workloads.js'
import { unavailablePeerPackages, type PeerPackage } from './peer-modules.js'
import { FRAME_HEADER_BYTES, plainShape, shapeOf, SHAPES, type RecordShape, type ShapeId } from './records.js'
import { renderHtmlReport, type BenchDocument, type FootprintEntry, type GoalEntry, type ProfileSummary, type ResultEntry, type SkippedEntry, type TargetEntry } from './report-html.js'
import { fmt, median, percentile, table } from './stats.js'
import { APPEND, appendTrial, DEPTHS, HEADLINE, LEVEL_BATCHES, peerOf, SYSTEMS, systemLabel, type AppendWorkload, type SystemId } from './workloads.js'

const USAGE = `usage: memwal bench [--quick] [--json] [--report FILE] [--dir BASE] [--reps N] [--seconds S]
                    [--records N] [--only IDS] [--isolation trial|none] [--profile DIR] [--pg [--pg-url URL]]
  --quick            a short run (under a minute): 2 rounds of 0.2 s trials, 100,000-record backlog, 16 MiB log
  --json             print one JSON document on stdout (progress goes to stderr)
  --report FILE      write a self-contained HTML report (charts as inline SVG)
  --dir BASE         make the run's data directory under BASE (default: the OS temp dir); removed afterwards
  --reps N           rounds of the append workloads (default 5, quick 2)
  --seconds S        measured seconds per append trial (default 1, quick 0.2; 42 append workloads x 5 rounds: about 8 minutes on an idle machine)
  --records N        records in the crash backlog that is replayed (default 1,000,000, quick 100,000)
  --only IDS         comma-separated workload ids, or prefixes of them (e.g. memwal/,lmdb/inflight-256)
  --isolation MODE   trial: each trial in a child process of its own (default); none: all in this process (default with --quick)
  --profile DIR      CPU-profile every memwal child process (the adapters' memwal trials too) into DIR and summarise where the time goes (needs --isolation trial)
  --pg               add the PostgreSQL replication workloads (memwal + PgBackend against one INSERT per put, direct and
                     with ${pgDefaults.delayMs} ms added each way; ${pgDefaults.inFlight} writers in flight)
  --pg-url URL       the PostgreSQL server (default: MEMWAL_PG_URL, else postgres://postgres@127.0.0.1:5432/test)`

// ---- configuration ----

interface Config {
  readonly json: boolean
  readonly quick: boolean
  readonly report: string | undefined
  readonly base: string
  readonly reps: number
  readonly measureMs: number
  readonly warmupMs: number
  /** Pause after each trial's cleanup, so that one system's leftovers do not land on the next. */
  readonly settleMs: number
  readonly records: number
  readonly walSizes: readonly number[]
  /** memwal trials' segment size: the default, smaller in quick mode (less zero-filling). */
  readonly segmentBytes: number
  /** Repetitions of fsck, status and open. */
  readonly oneShotReps: number
  readonly only: readonly string[] | undefined
  readonly isolate: boolean
  readonly profileDir: string | undefined
  /** The PostgreSQL server of the replication workloads; undefined: they do not run. */
  readonly pgUrl: string | undefined
  readonly argv: readonly string[]
}

class UsageError extends Error {}

const MiB = 1024 * 1024

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
        report: { type: 'string' },
        dir: { type: 'string' },
        reps: { type: 'string' },
        seconds: { type: 'string' },
        records: { type: 'string' },
        only: { type: 'string' },
        isolation: { type: 'string' },
        profile: { type: 'string' },
        pg: { type: 'boolean', default: false },
        'pg-url': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.help) throw new UsageError('')
  const quick = values.quick
  const reps = values.reps === undefined ? (quick ? 2 : 5) : Number(values.reps)
  if (!Number.isInteger(reps) || reps < 1 || reps > 100) throw new UsageError('--reps must be an integer from 1 to 100')
  const seconds = values.seconds === undefined ? (quick ? 0.2 : 1) : Number(values.seconds)
  if (!(seconds > 0 && seconds <= 600)) throw new UsageError('--seconds must be in (0, 600]')
  const records = values.records === undefined ? (quick ? 100_000 : 1_000_000) : Number(values.records)
  if (!Number.isInteger(records) || records < 1 || records > 20_000_000) throw new UsageError('--records must be an integer from 1 to 20,000,000')
  const isolation = values.isolation ?? (quick ? 'none' : 'trial')
  if (isolation !== 'trial' && isolation !== 'none') throw new UsageError('--isolation must be trial or none')
  if (values.profile !== undefined && isolation !== 'trial') throw new UsageError('--profile needs --isolation trial')
  if (values['pg-url'] !== undefined && !values.pg) throw new UsageError('--pg-url needs --pg')
  const only = values.only?.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  if (only !== undefined) {
    const ids = allWorkloadIds()
    for (const o of only) if (!ids.some((id) => id.startsWith(o))) throw new UsageError(`--only ${o} matches no workload; known: ${ids.join(', ')}`)
  }
  return {
    json: values.json,
    quick,
    report: values.report === undefined ? undefined : path.resolve(values.report),
    base: path.resolve(values.dir ?? os.tmpdir()),
    reps,
    measureMs: seconds * 1000,
    warmupMs: quick ? 100 : 400,
    settleMs: quick ? 20 : 100,
    records,
    walSizes: quick ? [16 * MiB] : [100 * MiB, 1024 * MiB],
    segmentBytes: quick ? 16 * MiB : limits.segmentBytesDefault,
    oneShotReps: quick ? 2 : 3,
    only,
    isolate: isolation === 'trial',
    profileDir: values.profile === undefined ? undefined : path.resolve(values.profile),
    pgUrl: values.pg ? (values['pg-url'] ?? process.env['MEMWAL_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test') : undefined,
    argv,
  }
}

// ---- the one-shot workloads ----

interface OneShotWorkload {
  readonly id: string
  readonly system: SystemId
  readonly workload: string
  readonly label: string
}

const sizeName = (bytes: number): string => (bytes >= 1024 * MiB ? `${bytes / (1024 * MiB)}GiB` : `${bytes / MiB}MiB`)

function oneShotWorkloads(records: number, walSizes: readonly number[]): OneShotWorkload[] {
  const n = fmt(records)
  return [
    { id: 'memwal/backlog', system: 'memwal', workload: 'backlog', label: `${n}-record backlog, sinks down (then SIGKILL)` },
    { id: 'memwal/fsck', system: 'memwal', workload: 'fsck', label: `fsck of the crashed directory (${n} unapplied)` },
    { id: 'memwal/status', system: 'memwal', workload: 'status', label: `status of the crashed directory` },
    { id: 'memwal/replay', system: 'memwal', workload: 'replay', label: `replay after the crash: open + apply ${n} records` },
    ...walSizes.flatMap((b): OneShotWorkload[] => [
      { id: `memwal-wal/open-${sizeName(b)}`, system: 'memwal-wal', workload: `open-${sizeName(b)}`, label: `open a ${sizeName(b)} log, every frame verified` },
      { id: `memwal-wal/open-tail-${sizeName(b)}`, system: 'memwal-wal', workload: `open-tail-${sizeName(b)}`, label: `open a ${sizeName(b)} log, tail verified (sinks caught up)` },
      { id: `memwal-wal/status-${sizeName(b)}`, system: 'memwal-wal', workload: `status-${sizeName(b)}`, label: `status of a ${sizeName(b)} log` },
    ]),
  ]
}

const FOOTPRINT_RECORDS = 3
const FOOTPRINT_ID = 'memwal/footprint'

function allWorkloadIds(): string[] {
  return [...APPEND.map((w) => w.id), ...oneShotWorkloads(1, [100 * MiB, 1024 * MiB, 16 * MiB]).map((w) => w.id), FOOTPRINT_ID, ...PG_WORKLOADS.map((w) => w.id), ...ADAPTER_WORKLOADS.map((w) => w.id)]
}

const selected = (c: Config, id: string): boolean => c.only === undefined || c.only.some((o) => id.startsWith(o))

// ---- tasks: what one process (this one, or a child) does ----

type Task =
  | { readonly task: 'append'; readonly id: string; readonly dir: string; readonly warmupMs: number; readonly measureMs: number; readonly segmentBytes: number; readonly settle: boolean }
  | { readonly task: 'footprint'; readonly dir: string; readonly records: number }
  | { readonly task: 'pg'; readonly id: string; readonly dir: string; readonly config: PgConfig }
  | { readonly task: 'adapter'; readonly id: string; readonly dir: string; readonly warmupMs: number; readonly measureMs: number }
  | { readonly task: 'backlog'; readonly dir: string; readonly records: number }
  | { readonly task: 'replay'; readonly dir: string; readonly records: number }
  | { readonly task: 'fsck'; readonly dir: string }
  | { readonly task: 'status'; readonly dir: string }
  | { readonly task: 'build-wal'; readonly dir: string; readonly bytes: number }
  | { readonly task: 'wal-open'; readonly dir: string; readonly lastLsn: number; readonly tail: boolean }

/** What a task reports: numbers only (it crosses a process boundary as JSON). */
type Outcome = Record<string, number>

async function appendTask(t: Extract<Task, { task: 'append' }>): Promise<Outcome> {
  const w = APPEND.find((x) => x.id === t.id)
  if (!w) throw new Error(`unknown workload ${t.id}`)
  const { result, rotations } = await appendTrial(w, t.dir, shapeOf(w.shape), { warmupMs: t.warmupMs, measureMs: t.measureMs }, { segmentBytes: t.segmentBytes, settle: t.settle })
  return { ...result, ...(rotations !== undefined ? { segmentRotations: rotations } : {}) }
}

/** Runs a task in this process; `peakRssBytes` is the process's (in a child: its own; here: sampled during the task). */
async function runTask(t: Task): Promise<Outcome> {
  const shape = plainShape()
  const sampler = new RssSampler().start()
  let out: Outcome
  try {
    switch (t.task) {
      case 'append':
        out = await appendTask(t)
        break
      case 'pg': {
        const w = PG_WORKLOADS.find((x) => x.id === t.id)
        if (!w) throw new Error(`unknown workload ${t.id}`)
        out = { ...(await pgTrial(w, t.config, t.dir)) }
        break
      }
      case 'adapter':
        out = { ...(await adapterTrial(t.id, t.dir, { warmupMs: t.warmupMs, measureMs: t.measureMs })) }
        break
      case 'footprint':
        out = { ...(await memwalFootprint(t.dir, shapeOf('agent'), t.records)) }
        break
      case 'backlog':
        out = { ...(await buildBacklog(t.dir, shape, t.records)) }
        break
      case 'replay':
        out = { ...(await replay(t.dir, t.records)) }
        break
      case 'fsck':
        out = { ...(await fsckRun(t.dir)) }
        break
      case 'status':
        out = { ...(await statusRun(t.dir)) }
        break
      case 'build-wal':
        out = { ...(await buildWal(t.dir, shape, t.bytes)) }
        break
      case 'wal-open':
        out = { ...(await walOpen(t.dir, t.lastLsn, t.tail)) }
        break
      default: {
        const never: never = t
        throw new Error(`unknown task ${JSON.stringify(never)}`)
      }
    }
  } finally {
    sampler.stop()
  }
  return { ...out, peakRssBytes: out['peakRssBytes'] ?? sampler.stop() }
}

// ---- child processes ----

const SCRIPT = fileURLToPath(import.meta.url)

/** This process's node flags, minus any CPU-profiling ones (a child is profiled only when asked). */
function inheritedExecArgv(): string[] {
  const out: string[] = []
  const a = process.execArgv
  for (let i = 0; i < a.length; i++) {
    const arg = a[i] ?? ''
    if (arg.startsWith('--cpu-prof')) {
      if (!arg.includes('=') && arg !== '--cpu-prof') i++
      continue
    }
    out.push(arg)
  }
  return out
}

/**
 * Runs a task in a child process (this script with `--child`) and returns
 * its outcome. A `backlog` child is killed with SIGKILL as soon as it has
 * reported: the crash whose leftovers the replay recovers.
 */
function runChild(t: Task, profileDir: string | undefined): Promise<Outcome> {
  const flags = [...inheritedExecArgv()]
  if (t.task === 'backlog' || t.task === 'replay') flags.push('--expose-gc')
  if (profileDir !== undefined) flags.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`)
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, SCRIPT, '--child', JSON.stringify(t)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    let reported: Outcome | undefined
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s
      const nl = stdout.indexOf('\n')
      if (reported === undefined && nl >= 0) {
        try {
          reported = JSON.parse(stdout.slice(0, nl)) as Outcome
        } catch (err) {
          reject(new Error(`child ${t.task} printed no JSON: ${stdout.slice(0, 200)} (${(err as Error).message})`))
          child.kill('SIGKILL')
          return
        }
        if (t.task === 'backlog') child.kill('SIGKILL')
      }
    })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (reported !== undefined && (code === 0 || (t.task === 'backlog' && signal === 'SIGKILL'))) resolve(reported)
      else reject(new Error(`child ${t.task}${t.task === 'append' ? ` ${t.id}` : ''} ended with ${signal ?? `exit code ${String(code)}`}`))
    })
  })
}

/** The `--child` side: run one task, print its outcome as one line; a backlog child then waits to be killed. */
async function childMain(spec: string): Promise<void> {
  const t = JSON.parse(spec) as Task
  const out = await runTask(t)
  const line = `${JSON.stringify({ ...out, peakRssBytes: processPeakRss() })}\n`
  await new Promise<void>((resolve) => process.stdout.write(line, () => resolve()))
  if (t.task === 'backlog') {
    setInterval(() => undefined, 60_000) // the crash comes from outside
    return
  }
  process.exit(0)
}

// ---- the machine ----

function diskOf(dir: string): Record<string, string> {
  try {
    const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')).filter((p) => p.length >= 3)
    let best: string[] | undefined
    for (const m of mounts) {
      const mp = m[1] ?? ''
      if ((dir === mp || dir.startsWith(mp.endsWith('/') ? mp : `${mp}/`)) && (!best || mp.length > (best[1] ?? '').length)) best = m
    }
    if (!best) return {}
    const dev = path.basename(best[0] ?? '')
    const block = dev.replace(/p?\d+$/, '')
    const read = (f: string): string | undefined => {
      try {
        return fs.readFileSync(f, 'utf8').trim()
      } catch {
        return undefined
      }
    }
    const rotational = read(`/sys/block/${block}/queue/rotational`)
    const model = read(`/sys/block/${block}/device/model`)
    const sizeSectors = read(`/sys/block/${block}/size`)
    return {
      device: best[0] ?? '', mountPoint: best[1] ?? '', filesystem: best[2] ?? '', mountOptions: best[3] ?? '',
      ...(rotational !== undefined ? { rotational } : {}),
      ...(model !== undefined ? { model } : {}),
      ...(sizeSectors !== undefined ? { sizeGB: String(Math.round((Number(sizeSectors) * 512) / 1e9)) } : {}),
    }
  } catch {
    return {}
  }
}

function machineInfo(base: string): Record<string, unknown> {
  const cpus = os.cpus()
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGB: Math.round(os.totalmem() / 1e9),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    kernel: os.release(),
    disk: diskOf(base),
  }
}

class LoadWatch {
  readonly start = os.loadavg()[0] ?? Number.NaN
  private readonly samples: number[] = [this.start]
  private readonly timer = setInterval(() => this.samples.push(os.loadavg()[0] ?? Number.NaN), 5000)

  constructor() {
    this.timer.unref()
  }

  stop(): BenchDocument['load'] {
    clearInterval(this.timer)
    const end = os.loadavg()[0] ?? Number.NaN
    this.samples.push(end)
    return { start: this.start, end, mean: this.samples.reduce((a, b) => a + b, 0) / this.samples.length, max: Math.max(...this.samples), samples: this.samples.length }
  }
}

// ---- running ----

interface Run {
  readonly c: Config
  readonly shapes: Readonly<Record<ShapeId, RecordShape>>
  /** Peer packages that cannot be loaded here: their workloads are skipped. */
  readonly unavailable: ReadonlyMap<PeerPackage, string>
  readonly runDir: string
  readonly log: (line: string) => void
  /** Per result id, the repetitions' outcomes. */
  readonly outcomes: Map<string, Outcome[]>
  readonly profiled: Map<string, string[]>
}

let childSeq = 0

/** memwal's own trials and the adapters' trials on memwal (langgraph-memwal/..., cf-memwal/...): the peers' trials are not profiled. */
function profiledId(id: string): boolean {
  return id.startsWith('memwal') || id.startsWith('langgraph-memwal/') || id.startsWith('cf-memwal/')
}

/** Runs `t` as configured (child or here), records the outcome under `id`. */
async function perform(run: Run, id: string, t: Task, options: { readonly forceChild?: boolean } = {}): Promise<Outcome> {
  const child = run.c.isolate || options.forceChild === true
  let profileDir: string | undefined
  if (child && run.c.profileDir !== undefined && profiledId(id)) {
    profileDir = path.join(run.c.profileDir, `${id.replace(/[^a-zA-Z0-9-]+/g, '_')}-${++childSeq}`)
    run.profiled.set(id, [...(run.profiled.get(id) ?? []), profileDir])
  }
  const out = child ? await runChild(t, profileDir) : await runTask(t)
  if (!id.startsWith('_')) run.outcomes.set(id, [...(run.outcomes.get(id) ?? []), out])
  return out
}

/** Removes a trial's directory and flushes the removal (freed blocks included) before the next trial. */
async function cleanDir(runDir: string, dir: string, settleMs: number): Promise<void> {
  fs.rmSync(dir, { recursive: true, force: true })
  const fd = fs.openSync(runDir, 'r')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  await sleep(settleMs)
}

/** False for a workload whose peer package cannot be loaded here. */
function runnable(run: Run, w: AppendWorkload): boolean {
  const peer = peerOf(w.system)
  return peer === undefined || !run.unavailable.has(peer)
}

/** The workloads skipped because their peer package cannot be loaded, by package. */
function skippedPeers(run: Run): SkippedEntry[] {
  return [...run.unavailable].flatMap(([pkg, reason]) => {
    const workloads = APPEND.filter((w) => peerOf(w.system) === pkg && selected(run.c, w.id)).map((w) => w.id)
    return workloads.length > 0 ? [{ package: pkg, reason, workloads }] : []
  })
}

/** A fresh MemWAL store with the defaults and 3 agent records: what it takes on disk. */
async function footprintWorkload(run: Run): Promise<void> {
  if (!selected(run.c, FOOTPRINT_ID)) return
  const dir = path.join(run.runDir, 'footprint')
  const r = await perform(run, FOOTPRINT_ID, { task: 'footprint', dir, records: FOOTPRINT_RECORDS })
  run.log(`a store with ${FOOTPRINT_RECORDS} records: ${fmt((r['diskBytes'] ?? 0) / MiB, 1)} MiB on disk`)
  await cleanDir(run.runDir, dir, run.c.settleMs)
}

/**
 * Every item once per round, `reps` rounds, the order rotating from round to
 * round (so that machine noise falls on all alike); each trial on a fresh
 * directory, removed afterwards.
 */
async function interleavedRounds(run: Run, ids: readonly string[], task: (id: string, dir: string) => Task): Promise<void> {
  const { c, log } = run
  for (let round = 0; round < c.reps; round++) {
    for (let k = 0; k < ids.length; k++) {
      const id = ids[(k + round) % ids.length]
      if (id === undefined) continue
      const dir = path.join(run.runDir, `r${round}-${id.replace('/', '-')}`)
      fs.mkdirSync(dir, { mode: 0o700 })
      let r: Outcome
      try {
        r = await perform(run, id, task(id, dir))
      } finally {
        await cleanDir(run.runDir, dir, c.settleMs)
      }
      log(`round ${round + 1}/${c.reps} ${id.padEnd(30)} ${fmt(r['opsPerSec'] ?? Number.NaN).padStart(9)} records/s  p50 ${fmt(r['p50Us'] ?? Number.NaN, 1)} us  p99 ${fmt(r['p99Us'] ?? Number.NaN, 1)} us`)
    }
  }
}

async function appendRounds(run: Run): Promise<void> {
  const { c } = run
  const ids = APPEND.filter((w) => selected(c, w.id) && runnable(run, w)).map((w) => w.id)
  await interleavedRounds(run, ids, (id, dir) => ({ task: 'append', id, dir, warmupMs: c.warmupMs, measureMs: c.measureMs, segmentBytes: c.segmentBytes, settle: !c.quick }))
}

/** The PostgreSQL replication workloads, with --pg. */
async function pgRounds(run: Run): Promise<void> {
  const { c } = run
  if (c.pgUrl === undefined) return
  const config: PgConfig = { url: c.pgUrl, warmupMs: c.warmupMs, measureMs: c.measureMs, ...pgDefaults }
  await interleavedRounds(run, PG_WORKLOADS.filter((w) => selected(c, w.id)).map((w) => w.id), (id, dir) => ({ task: 'pg', id, dir, config }))
}

/**
 * The adapters against the frameworks' own stores (bench/adapter-workloads.ts):
 * only when --only names them, since they need the frameworks (optional peers).
 */
async function adapterRounds(run: Run): Promise<void> {
  const { c } = run
  if (c.only === undefined) return
  const ids = ADAPTER_WORKLOADS.filter((w) => selected(c, w.id)).map((w) => w.id)
  await interleavedRounds(run, ids, (id, dir) => ({ task: 'adapter', id, dir, warmupMs: c.warmupMs, measureMs: c.measureMs }))
}

/** The crash backlog: built and killed, then fsck and status (interleaved, repeated), then the replay. */
async function crashWorkloads(run: Run, oneShots: readonly OneShotWorkload[]): Promise<void> {
  const { c, log } = run
  const want = (id: string): boolean => oneShots.some((w) => w.id === id && selected(c, id))
  if (!['memwal/backlog', 'memwal/fsck', 'memwal/status', 'memwal/replay'].some(want)) return
  const dir = path.join(run.runDir, 'crash')
  log(`building a ${fmt(c.records)}-record backlog with the sinks down, then SIGKILL`)
  // Always a child: it must be killed, and its RSS must be its own.
  const b = await perform(run, want('memwal/backlog') ? 'memwal/backlog' : '_backlog', { task: 'backlog', dir, records: c.records }, { forceChild: true })
  log(`  ${fmt(b['records'] ?? 0)} records acknowledged in ${fmt((b['ms'] ?? 0) / 1000, 1)} s; backlog ${fmt((b['backlogBytes'] ?? 0) / 1e6)} MB, RSS ${fmt((b['backlogRssBytes'] ?? 0) / 1e6)} MB`)
  for (let i = 0; i < c.oneShotReps; i++) {
    const pair: ('fsck' | 'status')[] = i % 2 === 0 ? ['fsck', 'status'] : ['status', 'fsck']
    for (const task of pair) {
      if (!want(`memwal/${task}`)) continue
      const r = await perform(run, `memwal/${task}`, { task, dir })
      log(`  ${task} ${i + 1}/${c.oneShotReps}: ${fmt(r['ms'] ?? 0, 1)} ms`)
    }
  }
  if (want('memwal/replay')) {
    log(`replaying ${fmt(c.records)} records`)
    const r = await perform(run, 'memwal/replay', { task: 'replay', dir, records: c.records }, { forceChild: true })
    log(`  open ${fmt(r['openMs'] ?? 0)} ms + apply ${fmt(r['drainMs'] ?? 0)} ms, peak RSS ${fmt((r['peakRssBytes'] ?? 0) / 1e6)} MB`)
  }
  await cleanDir(run.runDir, dir, c.settleMs)
}

/** Logs of each size: opened (all frames verified, and tail only) and inspected, interleaved, repeated. */
async function openWorkloads(run: Run, oneShots: readonly OneShotWorkload[]): Promise<Map<string, Outcome>> {
  const { c, log } = run
  const built = new Map<string, Outcome>()
  const sizes = c.walSizes.filter((b) => oneShots.some((w) => w.id.endsWith(`-${sizeName(b)}`) && selected(c, w.id)))
  const dirs = new Map<number, { dir: string; lastLsn: number }>()
  for (const bytes of sizes) {
    const dir = path.join(run.runDir, `log-${sizeName(bytes)}`)
    log(`writing a ${sizeName(bytes)} log`)
    const b = await perform(run, `_build-${sizeName(bytes)}`, { task: 'build-wal', dir, bytes })
    built.set(sizeName(bytes), b)
    dirs.set(bytes, { dir, lastLsn: b['lastLsn'] ?? 0 })
  }
  const steps: { id: string; task: Task }[] = []
  for (const [bytes, { dir, lastLsn }] of dirs) {
    const s = sizeName(bytes)
    steps.push({ id: `memwal-wal/open-${s}`, task: { task: 'wal-open', dir, lastLsn, tail: false } })
    steps.push({ id: `memwal-wal/open-tail-${s}`, task: { task: 'wal-open', dir, lastLsn, tail: true } })
    steps.push({ id: `memwal-wal/status-${s}`, task: { task: 'status', dir } })
  }
  const chosen = steps.filter((s) => selected(c, s.id))
  for (let i = 0; i < c.oneShotReps; i++) {
    for (let k = 0; k < chosen.length; k++) {
      const s = chosen[(k + i) % chosen.length]
      if (!s) continue
      const r = await perform(run, s.id, s.task)
      log(`  ${s.id} ${i + 1}/${c.oneShotReps}: ${fmt(r['ms'] ?? 0, 1)} ms`)
    }
  }
  for (const { dir } of dirs.values()) await cleanDir(run.runDir, dir, c.settleMs)
  return built
}

// ---- results ----

const mb = (bytes: number): number => bytes / 1e6

function appendResult(w: AppendWorkload, reps: readonly Outcome[], shape: RecordShape): ResultEntry {
  // MB/s counts the Wal payload of the record, whatever each system writes.
  const repetitions = reps.map((r) => {
    const { peakRssBytes, ...rest } = r
    return { ...rest, mbPerSec: mb((r['opsPerSec'] ?? Number.NaN) * shape.payloadBytes), peakRssMB: mb(peakRssBytes ?? Number.NaN) }
  })
  const med = (k: string): number => median(repetitions.map((r) => (r as Record<string, number>)[k] ?? Number.NaN))
  const rotations = repetitions.map((r) => (r as Record<string, number>)['segmentRotations']).filter((x): x is number => x !== undefined)
  return {
    id: w.id, system: w.system, systemLabel: systemLabel(w.system), workload: w.workload, workloadLabel: w.label, group: 'append', shape: w.shape, concurrency: w.concurrency,
    opsPerSec: med('opsPerSec'), mbPerSec: med('mbPerSec'), p50Us: med('p50Us'), p99Us: med('p99Us'), p999Us: med('p999Us'),
    peakRssMB: Math.max(...repetitions.map((r) => r.peakRssMB)),
    ...(rotations.length > 0 ? { details: { segmentRotationsMedian: median(rotations) } } : {}),
    repetitions,
  }
}

/**
 * A one-shot workload's entry: its duration `msKey` per repetition; ops/s and
 * MB/s are the records and bytes it covered per second of that duration;
 * the latency percentiles are those of the durations.
 */
function oneShotResult(w: OneShotWorkload, reps: readonly Outcome[], msKey: string, covered: { records: number; bytes: number }, details: Record<string, number>): ResultEntry {
  const repetitions = reps.map((r) => {
    const ms = r[msKey] ?? Number.NaN
    return { ...r, ms, opsPerSec: covered.records / (ms / 1000), mbPerSec: mb(covered.bytes) / (ms / 1000), peakRssMB: mb(r['peakRssBytes'] ?? Number.NaN) }
  })
  const ms = [...repetitions.map((r) => r.ms)].sort((a, b) => a - b)
  const msMedian = median(ms)
  return {
    id: w.id, system: w.system, systemLabel: systemLabel(w.system), workload: w.workload, workloadLabel: w.label, group: 'engine', shape: 'plain', concurrency: null,
    opsPerSec: covered.records / (msMedian / 1000), mbPerSec: mb(covered.bytes) / (msMedian / 1000),
    p50Us: percentile(ms, 50) * 1000, p99Us: percentile(ms, 99) * 1000, p999Us: percentile(ms, 99.9) * 1000,
    peakRssMB: Math.max(...repetitions.map((r) => r.peakRssMB)), ms: msMedian, details, repetitions,
  }
}

/** A replication workload's entry: records/s into PostgreSQL (end to end); latencies of the acknowledgements. */
function pgResult(id: string, reps: readonly Outcome[]): ResultEntry {
  const w = PG_WORKLOADS.find((x) => x.id === id)
  const repetitions = reps.map((r) => ({ ...r, ackOpsPerSec: r['opsPerSec'] ?? Number.NaN, opsPerSec: r['e2eOpsPerSec'] ?? Number.NaN, peakRssMB: mb(r['peakRssBytes'] ?? Number.NaN) }))
  const med = (k: string): number => median(repetitions.map((r) => (r as Record<string, number>)[k] ?? Number.NaN))
  return {
    id, system: w?.system ?? id, systemLabel: w?.system === 'memwal-pg' ? 'memwal + PgBackend (batched)' : `one INSERT per put (pool of ${pgDefaults.naivePool})`,
    workload: w?.slow ? 'slow' : 'direct', workloadLabel: `${pgDefaults.inFlight} in flight, PostgreSQL ${w?.slow ? `+${pgDefaults.delayMs} ms each way` : 'direct'} (records/s in PostgreSQL)`,
    group: 'replication', shape: 'plain', concurrency: null,
    opsPerSec: med('opsPerSec'), mbPerSec: Number.NaN, p50Us: med('p50Us'), p99Us: med('p99Us'), p999Us: med('p999Us'),
    peakRssMB: Math.max(...repetitions.map((r) => r.peakRssMB)), details: { ackOpsPerSec: med('ackOpsPerSec'), drainMs: med('drainMs') }, repetitions,
  }
}

/** An adapter workload's entry: operations (checkpoints, stores, queries) per second and their latencies, medians over the rounds. */
function adapterResult(w: (typeof ADAPTER_WORKLOADS)[number], reps: readonly Outcome[]): ResultEntry {
  const repetitions = reps.map((r) => ({ ...r, peakRssMB: mb(r['peakRssBytes'] ?? Number.NaN) }))
  const med = (k: string): number => median(repetitions.map((r) => (r as Record<string, number>)[k] ?? Number.NaN))
  const sum = (k: string): number => repetitions.reduce((a, r) => a + ((r as Record<string, number>)[k] ?? 0), 0)
  return {
    id: w.id, system: w.system, systemLabel: ADAPTER_SYSTEM_LABELS[w.system], workload: w.id.split('/')[1] ?? w.id, workloadLabel: adapterWorkloadLabel(w),
    group: 'adapter', shape: 'agent', concurrency: String(w.concurrency),
    opsPerSec: med('opsPerSec'), mbPerSec: Number.NaN, p50Us: med('p50Us'), p99Us: med('p99Us'), p999Us: med('p999Us'),
    peakRssMB: Math.max(...repetitions.map((r) => r.peakRssMB)), repetitions,
    ...(w.kind === 'kill9' ? { details: { acked: sum('acked'), lost: sum('lost') } } : {}),
    ...(w.kind === 'graph' ? { details: { cpuUsPerCheckpoint: med('cpuUsPerOp') } } : {}),
  }
}

function results(run: Run, built: Map<string, Outcome>, oneShots: readonly OneShotWorkload[]): ResultEntry[] {
  const out: ResultEntry[] = []
  for (const w of APPEND) {
    const reps = run.outcomes.get(w.id)
    if (reps && reps.length > 0) out.push(appendResult(w, reps, run.shapes[w.shape]))
  }
  for (const w of PG_WORKLOADS) {
    const reps = run.outcomes.get(w.id)
    if (reps && reps.length > 0) out.push(pgResult(w.id, reps))
  }
  for (const w of ADAPTER_WORKLOADS) {
    const reps = run.outcomes.get(w.id)
    if (reps && reps.length > 0) out.push(adapterResult(w, reps))
  }
  const first = (id: string): Outcome | undefined => run.outcomes.get(id)?.[0]
  const backlog = first('memwal/backlog')
  const fsckFirst = first('memwal/fsck')
  const records = run.c.records
  const walBytes = backlog?.['walBytes'] ?? fsckFirst?.['bytesScanned'] ?? Number.NaN
  for (const w of oneShots) {
    const reps = run.outcomes.get(w.id)
    if (!reps || reps.length === 0) continue
    const r0 = reps[0] ?? {}
    switch (w.workload) {
      case 'backlog': {
        const bytes = r0['backlogBytes'] ?? Number.NaN
        out.push(oneShotResult(w, reps, 'ms', { records, bytes }, {
          records, backlogMB: mb(bytes), walMB: mb(r0['walBytes'] ?? Number.NaN), baselineRssMB: mb(r0['baselineRssBytes'] ?? Number.NaN),
          rssWithBacklogMB: mb(r0['backlogRssBytes'] ?? Number.NaN), rssGrowthPerBacklogByte: ((r0['backlogRssBytes'] ?? Number.NaN) - (r0['baselineRssBytes'] ?? Number.NaN)) / bytes,
        }))
        break
      }
      case 'fsck':
        out.push(oneShotResult(w, reps, 'ms', { records: r0['records'] ?? records, bytes: r0['bytesScanned'] ?? Number.NaN }, { bytesScannedMB: mb(r0['bytesScanned'] ?? Number.NaN), records: r0['records'] ?? Number.NaN }))
        break
      case 'status':
        out.push(oneShotResult(w, reps, 'ms', { records, bytes: walBytes }, { walMB: mb(walBytes) }))
        break
      case 'replay': {
        const backlogBytes = backlog?.['backlogBytes'] ?? Number.NaN
        out.push(oneShotResult(w, reps, 'totalMs', { records, bytes: backlogBytes }, {
          records, openMs: median(reps.map((r) => r['openMs'] ?? Number.NaN)), applyMs: median(reps.map((r) => r['drainMs'] ?? Number.NaN)),
          backlogMB: mb(backlogBytes), peakRssPerBacklogByte: Math.max(...reps.map((r) => r['peakRssBytes'] ?? Number.NaN)) / backlogBytes,
        }))
        break
      }
      default: {
        const size = w.workload.replace(/^(open-tail-|open-|status-)/, '')
        const b = built.get(size)
        const covered = { records: b?.['records'] ?? Number.NaN, bytes: b?.['walBytes'] ?? Number.NaN }
        out.push(oneShotResult(w, reps, 'ms', covered, { records: covered.records, frameMB: mb(b?.['frameBytes'] ?? Number.NaN), segmentFilesMB: mb(covered.bytes) }))
      }
    }
  }
  return out
}

/**
 * The goals of issues 5 and 15, as ratios of two figures of this run. Issue
 * 15's are judged for both record shapes (the agent record is the headline);
 * the raw loops write plain frames, the floor for either shape.
 */
function goals(res: readonly ResultEntry[], pg: boolean): GoalEntry[] {
  const ops = (id: string): number | undefined => res.find((r) => r.id === id)?.opsPerSec
  const goal = (id: string, shape: ShapeId, text: string, target: number, a: string, b: string): GoalEntry => {
    const x = ops(a)
    const y = ops(b)
    const measured = x !== undefined && y !== undefined && y > 0 ? x / y : null
    return { id, shape, goal: text, target, measured, met: measured === null ? null : measured >= target, numerator: a, denominator: b }
  }
  const p99Goal = (id: string, text: string, a: string, b: string): GoalEntry => {
    const x = res.find((r) => r.id === a)?.p99Us
    const y = res.find((r) => r.id === b)?.p99Us
    const measured = x !== undefined && y !== undefined && x > 0 ? y / x : null
    return { id, shape: 'agent', goal: text, target: 1, measured, met: measured === null ? null : measured >= 1, numerator: b, denominator: a }
  }
  const h = HEADLINE
  const issue15 = (shape: ShapeId): GoalEntry[] => {
    const sfx = shape === 'agent' ? '-agent' : ''
    const at = (system: string, workload: string): string => `${system}/${shape === 'agent' ? 'agent-' : ''}${workload}`
    const of = shape === 'agent' ? ' (agent record)' : ''
    return [
      goal(`memwal-${h}-vs-lmdb${sfx}`, shape, `MemWAL.put, ${h} in flight >= 1.3x lmdb-js at ${h}${of}`, 1.3, at('memwal', `inflight-${h}`), at('lmdb', `inflight-${h}`)),
      goal(`memwal-${h}-vs-wal${sfx}`, shape, `MemWAL.put, ${h} in flight >= 0.9x the log alone at ${h}${of}`, 0.9, at('memwal', `inflight-${h}`), at('memwal-wal', `inflight-${h}`)),
      goal(`e2e-vs-wal${sfx}`, shape, `end to end into LevelDB (ack -> applied, ${h} in flight) >= 0.8x the log alone at ${h}${of}`, 0.8, at('memwal', `e2e-${h}`), at('memwal-wal', `inflight-${h}`)),
      goal(`memwal-awaited-vs-raw-prealloc${sfx}`, shape, `MemWAL.put, one awaited writer >= 0.9x the raw loop on a preallocated file${of}`, 0.9, at('memwal', 'awaited'), 'raw-prealloc/loop'),
      goal(`memwal-batch-vs-sqlite${sfx}`, shape, `MemWAL.batch of ${h} puts >= 1.5x better-sqlite3 with ${h} puts per transaction${of}`, 1.5, at('memwal-batch', `batch-${h}`), at('sqlite-batch', `batch-${h}`)),
      goal(`memwal-awaited-vs-sqlite${sfx}`, shape, `MemWAL.put, one awaited writer >= 1.0x better-sqlite3 with a transaction per put${of}`, 1.0, at('memwal', 'awaited'), at('sqlite', 'batch-1')),
    ]
  }
  return [
    ...issue15('agent'),
    ...issue15('plain'),
    // Issue 5's, on the plain record.
    goal('memwal-awaited-vs-raw', 'plain', 'MemWAL.put, one awaited writer >= 0.9x the raw write+fdatasync loop (growing file)', 0.9, 'memwal/awaited', 'raw-append/loop'),
    goal('wal-awaited-vs-raw', 'plain', 'Wal, one awaited writer >= 0.9x the raw write+fdatasync loop (growing file)', 0.9, 'memwal-wal/awaited', 'raw-append/loop'),
    goal(`wal-${h}-vs-lmdb`, 'plain', `Wal, ${h} in flight >= 1.3x lmdb-js at ${h} in flight`, 1.3, `memwal-wal/inflight-${h}`, `lmdb/inflight-${h}`),
    goal(`memwal-${h}-vs-level`, 'plain', `MemWAL.put, ${h} in flight >= 20x classic-level sync puts at ${h} in flight`, 20, `memwal/inflight-${h}`, `level-put/inflight-${h}`),
    goal(`wal-${h}-vs-level`, 'plain', `Wal, ${h} in flight >= 20x classic-level sync puts at ${h} in flight`, 20, `memwal-wal/inflight-${h}`, `level-put/inflight-${h}`),
    // Issue 13's, when the adapter workloads ran: MemwalSaver's durable checkpoints/s against SqliteSaver's at 64 threads, p99 the same or lower.
    ...(ops('langgraph-memwal/graph-64') === undefined ? [] : [
      goal('langgraph-64-vs-sqlite', 'agent', `MemwalSaver, ${GRAPH_STEPS}-step graph on 64 threads >= 3x SqliteSaver (synchronous=FULL), checkpoints/s`, 3, 'langgraph-memwal/graph-64', 'langgraph-sqlite/graph-64'),
      p99Goal('langgraph-64-p99-vs-sqlite', 'MemwalSaver checkpoint put p99 on 64 threads <= SqliteSaver\'s (SqliteSaver p99 / MemwalSaver p99 >= 1)', 'langgraph-memwal/graph-64', 'langgraph-sqlite/graph-64'),
    ]),
    // The PostgreSQL backend's (issue 7), with --pg: records/s in PostgreSQL.
    ...(pg ? [
      goal('memwal-pg-vs-naive', 'plain', 'memwal + PgBackend, records/s in PostgreSQL >= 10x one INSERT per put (direct)', 10, 'memwal-pg/direct', 'naive-pg/direct'),
      goal('memwal-pg-vs-naive-slow', 'plain', `the same with ${pgDefaults.delayMs} ms added each way >= 10x`, 10, 'memwal-pg/slow', 'naive-pg/slow'),
    ] : []),
  ]
}

/** The engine's absolute targets from earlier issues, judged on this run's figures. */
function targets(res: readonly ResultEntry[], records: number, footprint: FootprintEntry | undefined): TargetEntry[] {
  const r = (id: string): ResultEntry | undefined => res.find((x) => x.id === id)
  const target = (id: string, text: string, measured: number | undefined, unit: string, ok: (v: number) => boolean, from: string, judged = true): TargetEntry => {
    const m = measured !== undefined && Number.isFinite(measured) ? measured : null
    return { id, target: text, measured: m, unit, met: m === null || !judged ? null : ok(m), from }
  }
  const replay = r('memwal/replay')
  const applyMs = replay?.details?.['applyMs']
  const status = [...res].reverse().find((x) => x.id.startsWith('memwal-wal/status-'))
  return [
    target('replay-1m-seconds', 'replay of 1,000,000 unapplied records (open + apply) <= 5 s', replay?.ms === undefined ? undefined : replay.ms / 1000, 's', (v) => v <= 5, `memwal/replay (${fmt(records)} records)`, records === 1_000_000),
    target('apply-records-per-second', 'applier >= 150,000 records/s into LevelDB (backend and index)', applyMs === undefined ? undefined : records / (applyMs / 1000), 'records/s', (v) => v >= 150_000, 'the apply step of memwal/replay'),
    target('backlog-rss-per-byte', 'memory for a backlog <= 2x its bytes', r('memwal/backlog')?.details?.['rssGrowthPerBacklogByte'], 'x', (v) => v <= 2, 'memwal/backlog: RSS growth after GC / backlog bytes'),
    target('fsck-mb-per-second', 'fsck >= 500 MB/s', r('memwal/fsck')?.mbPerSec, 'MB/s', (v) => v >= 500, 'memwal/fsck (log verified, backend and index compared)'),
    target('footprint-3-records', `a fresh store with ${FOOTPRINT_RECORDS} records <= 8 MiB on disk`, footprint === undefined ? undefined : footprint.diskBytes / MiB, 'MiB', (v) => v <= 8, `${FOOTPRINT_ID} (blocks allocated, as du counts)`),
    ...(r('memwal-pg/slow') === undefined ? [] : [
      // An acknowledgement that waited for PostgreSQL would take at least one added round trip.
      target('pg-ack-p99-slow-ms', `memwal's ack p99 with PostgreSQL ${pgDefaults.delayMs} ms away < one added round trip (${2 * pgDefaults.delayMs} ms)`, (r('memwal-pg/slow')?.p99Us ?? Number.NaN) / 1000, 'ms', (v) => v < 2 * pgDefaults.delayMs, 'memwal-pg/slow'),
    ]),
    target('status-ms', 'status < 200 ms on 1 GiB of log', status?.ms, 'ms', (v) => v < 200, status?.id ?? 'memwal-wal/status-1GiB', status?.id === 'memwal-wal/status-1GiB'),
  ]
}

function notes(c: Config, shapes: Readonly<Record<ShapeId, RecordShape>>): string[] {
  const { plain, agent } = shapes
  return [
    `Plain records: a string value, ${plain.payloadBytes}-byte Wal payloads (${plain.payloadBytes + FRAME_HEADER_BYTES}-byte frames); every peer stores the same key and value string. Agent-memory records: an object (id, agent, type, content, three tags, metadata) of ${agent.valueBytes} bytes as JSON, put with a namespace and its three tags (${agent.payloadBytes}-byte Wal payloads); classic-level and better-sqlite3 store its JSON, lmdb-js the object, each with an index entry for the namespace and one per tag in the same atomic write (SQLite: a memories table indexed by namespace, and a table of tag postings). MB/s counts the Wal payload per acknowledged record, whatever each system writes on disk.`,
    `Append trials: ${c.reps} rounds, ${fmt(c.warmupMs)} ms warm-up then ${fmt(c.measureMs)} ms measured, fresh directory each, systems in rotating order; figures are medians over the rounds, peak RSS the highest.`,
    c.isolate ? 'Each trial ran in a child process of its own: its peak RSS is that process\'s (the kernel\'s maxrss, Node itself included).' : 'All trials ran in this one process (--isolation none): peak RSS is the process\'s, sampled during the trial, and includes whatever earlier trials left.',
    `Latency runs from issuing a write to its acknowledgement; for batches, per batch (every record of it waits that long). For one-shot workloads the percentiles are those of the durations over ${c.oneShotReps} repetition(s) (the backlog and its replay: one), and records/s and MB/s are the records and bytes covered per second of the operation.`,
    `The crash backlog: ${fmt(c.records)} MemWAL puts (durability none, which changes nothing in what is held in memory) while the backend and index fail every apply, in a child process killed with SIGKILL once they were acknowledged; replay = MemWAL.open (recovery reads the backlog back) + flush (everything applied to LevelDB), in a fresh process. The logs were just written: opens, fsck and status read them from a warm page cache.`,
    `Segment files are preallocated (${fmt(c.segmentBytes / MiB)} MiB each${c.quick ? ' in this quick run; 64 MiB by default' : ''}): a log's size on disk counts whole segments, so MB/s for open, status and fsck counts the zero-filled end of the last segment too.`,
    'Goals are reported, never asserted; the figures depend on the machine and on what else it runs (see the load average).',
  ]
}

// ---- profiles ----

interface CpuProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: readonly number[]
}

interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[]
  readonly samples?: readonly number[]
  readonly timeDeltas?: readonly number[]
}

function areaOf(url: string, name: string): string {
  if (name === '(garbage collector)' || name === '(program)' || name === '(idle)') return name
  if (url === '') return '(native/VM)'
  if (url.startsWith('node:')) return 'node internals'
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) return url.slice(nm + 13).split('/').slice(0, url.slice(nm + 13).startsWith('@') ? 2 : 1).join('/')
  const m = /\/(engine|bench|cli|adapters)\/(([a-z-]+)\/)?/.exec(url)
  if (m) return m[3] !== undefined ? `${m[1]}/${m[3]}` : (m[1] ?? url)
  return url
}

function summariseProfiles(id: string, dirs: readonly string[]): ProfileSummary | undefined {
  const fnMs = new Map<string, { name: string; location: string; selfMs: number }>()
  const ownerMs = new Map<string, { name: string; location: string; selfMs: number }>()
  const areaMs = new Map<string, number>()
  const shortUrl = (url: string): string => url.replace(/^file:\/\//, '').replace(/^.*?\/(engine|bench|cli|adapters|node_modules)\//, '$1/')
  const ours = (url: string): boolean => /\/(engine|bench|cli|adapters)\/[^/]/.test(url) && !url.includes('/node_modules/')
  let idle = 0
  let busy = 0
  for (const d of dirs) {
    if (!fs.existsSync(d)) continue
    for (const f of fs.readdirSync(d).filter((n) => n.endsWith('.cpuprofile'))) {
      const p = JSON.parse(fs.readFileSync(path.join(d, f), 'utf8')) as CpuProfile
      const byId = new Map(p.nodes.map((n) => [n.id, n]))
      const parent = new Map<number, number>()
      for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
      const samples = p.samples ?? []
      const deltas = p.timeDeltas ?? []
      for (let i = 0; i < samples.length; i++) {
        const node = byId.get(samples[i] ?? -1)
        const ms = (deltas[i + 1] ?? deltas[i] ?? 0) / 1000
        if (!node) continue
        const { functionName, url, lineNumber } = node.callFrame
        const name = functionName || '(anonymous)'
        if (name === '(idle)') {
          idle += ms
          continue
        }
        busy += ms
        const location = url === '' ? '' : `${shortUrl(url)}:${lineNumber + 1}`
        const key = `${name} ${location}`
        const e = fnMs.get(key) ?? { name, location, selfMs: 0 }
        e.selfMs += ms
        fnMs.set(key, e)
        const area = areaOf(url, name)
        areaMs.set(area, (areaMs.get(area) ?? 0) + ms)
        // The innermost memwal (or benchmark) function on the stack: what the time was spent in or on behalf of.
        let at: CpuProfileNode | undefined = node
        while (at && !ours(at.callFrame.url)) at = byId.get(parent.get(at.id) ?? -1)
        const o = at
          ? { name: at.callFrame.functionName || '(anonymous)', location: `${shortUrl(at.callFrame.url)}:${at.callFrame.lineNumber + 1}` }
          : { name: name.startsWith('(') ? name : '(outside memwal)', location: name.startsWith('(') ? '' : area }
        const ok = `${o.name} ${o.location}`
        const oe = ownerMs.get(ok) ?? { ...o, selfMs: 0 }
        oe.selfMs += ms
        ownerMs.set(ok, oe)
      }
    }
  }
  if (busy === 0) return undefined
  const pct = (ms: number): number => (100 * ms) / busy
  return {
    id, busyMs: busy, idleMs: idle,
    functions: [...fnMs.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, 15).map((f) => ({ ...f, pct: pct(f.selfMs) })),
    areas: [...areaMs.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([area, selfMs]) => ({ area, selfMs, pct: pct(selfMs) })),
    owners: [...ownerMs.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, 15).map((f) => ({ ...f, pct: pct(f.selfMs) })),
  }
}

// ---- output ----

function renderText(doc: BenchDocument): string {
  const head = ['system', 'workload', 'records/s', 'MB/s', 'p50 us', 'p99 us', 'p99.9 us', 'peak RSS MB', 'reps']
  const append = doc.results.filter((r) => r.group === 'append').map((r) => [r.systemLabel, r.workloadLabel, fmt(r.opsPerSec), fmt(r.mbPerSec, 2), fmt(r.p50Us, 1), fmt(r.p99Us, 1), fmt(r.p999Us, 1), fmt(r.peakRssMB), String(r.repetitions.length)])
  const engine = doc.results.filter((r) => r.group === 'engine').map((r) => [r.systemLabel, r.workloadLabel, fmt(r.ms ?? Number.NaN, 1), fmt(r.opsPerSec), fmt(r.mbPerSec, 1), fmt(r.peakRssMB), String(r.repetitions.length)])
  const m = doc.machine
  const disk = m['disk'] as Record<string, string>
  const out = [
    `memwal benchmark${doc.config['quick'] ? ' (quick)' : ''}: ${String(m['cpus'])} cpus (${String(m['cpuModel'])}), node ${String(m['node'])}, disk ${disk['device'] ?? '?'} (${disk['filesystem'] ?? '?'}), ` +
      `load average ${fmt(doc.load.start, 2)} at start, ${fmt(doc.load.end, 2)} at end (max ${fmt(doc.load.max, 2)})`,
    '',
  ]
  if (append.length > 0) out.push('append (acknowledged = durable), median over rounds:', table([head, ...append]), '')
  const replication = doc.results.filter((r) => r.group === 'replication').map((r) => [r.systemLabel, r.workloadLabel, fmt(r.opsPerSec), fmt(r.details?.['ackOpsPerSec'] ?? Number.NaN), fmt(r.details?.['drainMs'] ?? Number.NaN), fmt(r.p50Us / 1000, 2), fmt(r.p99Us / 1000, 2), fmt(r.p999Us / 1000, 2)])
  if (replication.length > 0) out.push('replication into PostgreSQL, median over rounds:', table([['system', 'workload', 'in PG/s', 'acked/s', 'drain ms', 'ack p50 ms', 'ack p99 ms', 'ack p99.9 ms'], ...replication]), '')
  const adapters = doc.results.filter((r) => r.group === 'adapter').map((r) => [r.systemLabel, r.workloadLabel, fmt(r.opsPerSec), fmt(r.p50Us / 1000, 2), fmt(r.p99Us / 1000, 2), fmt(r.p999Us / 1000, 2), fmt(r.peakRssMB), String(r.repetitions.length)])
  if (adapters.length > 0) out.push('the adapters against the frameworks\' own stores, median over rounds:', table([['system', 'workload', 'ops/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'peak RSS MB', 'reps'], ...adapters]), '')
  for (const r of doc.results.filter((x) => x.group === 'adapter' && x.details)) out.push(`  ${r.id}, ${r.id.endsWith('/kill9') ? 'all rounds' : 'median over rounds'}: ${Object.entries(r.details ?? {}).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`)
  if (engine.length > 0) out.push('one-shot engine workloads:', table([['system', 'workload', 'ms', 'records/s', 'MB/s', 'peak RSS MB', 'reps'], ...engine]), '')
  for (const r of doc.results.filter((x) => x.group === 'engine' && x.details)) {
    out.push(`  ${r.id}: ${Object.entries(r.details ?? {}).map(([k, v]) => `${k} ${fmt(v, Math.abs(v) < 10 ? 2 : 0)}`).join(', ')}`)
  }
  if (doc.footprint) out.push(`a fresh store with ${doc.footprint.records} ${doc.footprint.shape} records: ${fmt(doc.footprint.diskBytes / MiB, 1)} MiB on disk (${fmt(doc.footprint.apparentBytes / MiB, 1)} MiB in ${doc.footprint.files} files)`)
  for (const s of doc.skipped) out.push(`skipped ${s.workloads.join(', ')}: ${s.package} ${s.reason}`)
  const measured = doc.goals.filter((g) => g.measured !== null)
  if (measured.length > 0) out.push('', 'goals (ratios in this run; reported, not asserted):')
  for (const g of measured) out.push(`  ${g.met ? 'PASS ' : 'SHORT'}  ${fmt(g.measured ?? Number.NaN, 2).padStart(7)}x  (target ${g.target}x)  ${g.goal}`)
  const targetsMeasured = doc.targets.filter((x) => x.measured !== null)
  if (targetsMeasured.length > 0) out.push('', 'engine targets (from earlier issues):')
  for (const x of targetsMeasured) out.push(`  ${x.met === null ? '  -  ' : x.met ? 'PASS ' : 'SHORT'}  ${`${fmt(x.measured ?? Number.NaN, (x.measured ?? 0) < 10 ? 2 : 0)} ${x.unit}`.padStart(16)}  ${x.target}  [${x.from}]`)
  for (const p of doc.profiles ?? []) {
    out.push('', `where the time goes: ${p.id} (${fmt(p.busyMs)} ms busy): ${p.areas.slice(0, 6).map((a) => `${a.area} ${fmt(a.pct, 1)}%`).join(', ')}`)
    out.push('  by innermost memwal function on the stack (its own time and the library calls it made):')
    for (const f of p.owners.slice(0, 10)) out.push(`  ${fmt(f.pct, 1).padStart(5)}%  ${f.name}  ${f.location}`)
    out.push('  by function (self time):')
    for (const f of p.functions.slice(0, 6)) out.push(`  ${fmt(f.pct, 1).padStart(5)}%  ${f.name}  ${f.location}`)
  }
  out.push('', `total ${fmt(doc.elapsedMs / 1000, 1)} s`)
  return out.join('\n') + '\n'
}

async function main(argv: string[]): Promise<number> {
  const childAt = argv.indexOf('--child')
  if (childAt >= 0) {
    await childMain(argv[childAt + 1] ?? '')
    return 0
  }
  let c: Config
  try {
    c = parseConfig(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    if (err.message) process.stderr.write(`memwal bench: ${err.message}\n`)
    process.stderr.write(`${USAGE}\n`)
    return err.message ? 16 : 0
  }
  const log = (line: string): void => void process.stderr.write(`${line}\n`)
  const started = performance.now()
  const startedAt = new Date().toISOString()
  const load = new LoadWatch()
  const unavailable = await unavailablePeerPackages()
  const shapes = { plain: plainShape(), agent: shapeOf('agent') }
  fs.mkdirSync(c.base, { recursive: true })
  if (c.profileDir !== undefined) fs.mkdirSync(c.profileDir, { recursive: true })
  const runDir = fs.mkdtempSync(path.join(c.base, 'memwal-bench-'))
  const run: Run = { c, shapes, unavailable, runDir, log, outcomes: new Map(), profiled: new Map() }
  const skipped = skippedPeers(run)
  for (const s of skipped) log(`skipping ${s.workloads.length} workload(s) of ${s.package}: ${s.reason}`)
  const oneShots = oneShotWorkloads(c.records, c.walSizes)
  const appendCount = APPEND.filter((w) => selected(c, w.id)).length
  log(`memwal bench: data in ${runDir}; ${c.reps} rounds x ${appendCount} append workloads, ${c.measureMs / 1000} s each; backlog ${fmt(c.records)} records; ${c.isolate ? 'a process per trial' : 'one process'}`)
  let built: Map<string, Outcome>
  try {
    await footprintWorkload(run)
    await appendRounds(run)
    await pgRounds(run)
    await adapterRounds(run)
    await crashWorkloads(run, oneShots)
    built = await openWorkloads(run, oneShots)
  } finally {
    fs.rmSync(runDir, { recursive: true, force: true })
  }
  const res = results(run, built, oneShots)
  const fp = run.outcomes.get(FOOTPRINT_ID)?.[0]
  const footprint: FootprintEntry | undefined = fp === undefined ? undefined : { id: FOOTPRINT_ID, records: FOOTPRINT_RECORDS, shape: 'agent', diskBytes: fp['diskBytes'] ?? Number.NaN, apparentBytes: fp['apparentBytes'] ?? Number.NaN, files: fp['files'] ?? Number.NaN }
  const profiles = [...run.profiled.entries()].map(([id, dirs]) => summariseProfiles(id, dirs)).filter((p): p is ProfileSummary => p !== undefined)
  const doc: BenchDocument = {
    benchmark: 'memwal',
    startedAt,
    command: `memwal bench ${c.argv.join(' ')}`.trim(),
    config: {
      quick: c.quick, reps: c.reps, measureMs: c.measureMs, warmupMs: c.warmupMs, records: c.records, walSizesMiB: c.walSizes.map((b) => b / MiB),
      segmentBytes: c.segmentBytes, oneShotReps: c.oneShotReps, isolation: c.isolate ? 'trial' : 'none', payloadBytes: shapes.plain.payloadBytes,
      frameBytes: shapes.plain.payloadBytes + FRAME_HEADER_BYTES, agentPayloadBytes: shapes.agent.payloadBytes, agentValueBytes: shapes.agent.valueBytes, shapes: [...SHAPES],
      inFlight: [...DEPTHS], levelBatches: [...LEVEL_BATCHES], headline: HEADLINE,
      backlogBytesMax: backlogBytesMax(c.records), base: c.base, ...(c.profileDir !== undefined ? { profileDir: c.profileDir } : {}),
    },
    machine: machineInfo(c.base),
    load: load.stop(),
    systems: SYSTEMS,
    results: res,
    goals: goals(res, c.pgUrl !== undefined),
    targets: targets(res, c.records, footprint),
    ...(footprint !== undefined ? { footprint } : {}),
    skipped,
    ...(profiles.length > 0 ? { profiles } : {}),
    notes: notes(c, run.shapes),
    elapsedMs: performance.now() - started,
  }
  if (c.report !== undefined) {
    fs.mkdirSync(path.dirname(c.report), { recursive: true })
    fs.writeFileSync(c.report, renderHtmlReport(doc))
    log(`report written to ${c.report}`)
  }
  process.stdout.write(c.json ? `${JSON.stringify(doc, null, 2)}\n` : renderText(doc))
  return 0
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`memwal bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 8
  },
)
