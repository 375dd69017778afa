/**
 * `npm run torture -- --seed S --scenarios N [--json] [--steps K] [--jobs J] [--verbose]`
 *
 * Deterministic simulation of the whole engine under faults (see
 * test/sim/torture-scenario.ts for what a scenario does and checks). Scenario i
 * runs seed S + i, so a failing seed replays alone, exactly, with
 *
 *   npm run torture -- --seed <failing seed> --scenarios 1 --verbose
 *
 * Scenarios are shared among J worker processes (default: one per core, at
 * most 4); each scenario's outcome depends only on its seed.
 *
 * Prints a summary (with --json, one JSON document on stdout: scenarios,
 * operations, acknowledged records, acknowledged lost, double applies, wrong
 * reads, undetected corruptions, reopen failures, the first failing seed,
 * and what was exercised). Progress goes to stderr. Exit code 0 when every
 * scenario kept every guarantee, 1 otherwise, 16 on a usage error.
 */
import { fork } from 'node:child_process'
import { randomInt } from 'node:crypto'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { emptyCounts, emptyViolations, runTortureScenario, type Sabotage, type TortureCounts, type TortureViolations } from './torture-scenario.js'

const USAGE = 'usage: npm run torture -- [--seed S] [--scenarios N] [--steps K] [--jobs J] [--json] [--verbose] [--sabotage double-apply|drop-apply]'
const SABOTAGES: readonly Sabotage[] = ['double-apply', 'drop-apply']
const EXIT_USAGE = 16
/** Failing seeds listed in the report (all are counted). */
const FAILING_LISTED_MAX = 20
/** Violation messages printed per failing seed, for the first few seeds. */
const MESSAGES_SHOWN = 3

interface Failure {
  readonly index: number
  readonly seed: number
  readonly violations: readonly string[]
}

interface Totals {
  scenarios: number
  counts: TortureCounts
  failures: TortureViolations
  failing: Failure[]
}

type WorkerMessage = { readonly kind: 'progress'; readonly done: number } | { readonly kind: 'done'; readonly totals: Totals }

interface Args {
  seed: number
  scenarios: number
  steps: number
  jobs: number
  json: boolean
  verbose: boolean
  worker: number | undefined
  /** A deliberate harness bug, to show that the checks catch it (tests only). */
  sabotage: Sabotage | undefined
}

function usage(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`)
  process.exit(EXIT_USAGE)
}

function parse(): Args {
  let values: Record<string, string | boolean | undefined>
  try {
    ;({ values } = parseArgs({
      options: {
        seed: { type: 'string' }, scenarios: { type: 'string' }, steps: { type: 'string' }, jobs: { type: 'string' },
        json: { type: 'boolean' }, verbose: { type: 'boolean' }, worker: { type: 'string' }, help: { type: 'boolean' }, sabotage: { type: 'string' },
      },
    }))
  } catch (err) {
    usage((err as Error).message)
  }
  if (values['help'] === true) {
    process.stdout.write(`${USAGE}\n`)
    process.exit(0)
  }
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const v = values[name]
    if (v === undefined) return fallback
    if (typeof v !== 'string' || !/^\d+$/.test(v)) usage(`--${name} must be an unsigned integer`)
    const n = Number(v)
    if (n < min || n > max) usage(`--${name} must be in [${min}, ${max}]`)
    return n
  }
  const verbose = values['verbose'] === true
  const sabotage = values['sabotage']
  if (sabotage !== undefined && !SABOTAGES.includes(sabotage as Sabotage)) usage(`--sabotage must be one of ${SABOTAGES.join(', ')}`)
  const scenarios = int('scenarios', 1000, 1, 100_000_000)
  return {
    seed: int('seed', randomInt(0, 2 ** 31), 0, 2 ** 32 - 1),
    scenarios,
    steps: int('steps', 16, 2, 10_000),
    jobs: verbose ? 1 : Math.min(int('jobs', Math.min(4, os.availableParallelism()), 1, 64), scenarios),
    json: values['json'] === true,
    verbose,
    worker: values['worker'] === undefined ? undefined : int('worker', 0, 0, 63),
    sabotage: sabotage as Sabotage | undefined,
  }
}

function emptyTotals(): Totals {
  return { scenarios: 0, counts: emptyCounts(), failures: emptyViolations(), failing: [] }
}

function add<T extends object>(into: T, from: T): void {
  for (const k of Object.keys(from) as (keyof T)[]) {
    const v = from[k]
    if (typeof v === 'number') (into[k] as number) = k === 'lastLsn' ? Math.max(into[k] as number, v) : (into[k] as number) + v
  }
}

/** Runs scenarios job, job + jobs, ... of the run. */
async function runShare(a: Args, job: number, onProgress: (done: number) => void): Promise<Totals> {
  const t = emptyTotals()
  const log = a.verbose ? (line: string) => process.stderr.write(`${line}\n`) : undefined
  for (let i = job; i < a.scenarios; i += a.jobs) {
    const seed = (a.seed + i) >>> 0
    const r = await runTortureScenario(seed, { steps: a.steps, ...(log ? { log } : {}), ...(a.sabotage ? { sabotage: a.sabotage } : {}) })
    t.scenarios++
    add(t.counts, r.counts)
    add(t.failures, r.failures)
    if (!r.ok) t.failing.push({ index: i, seed, violations: r.violations.slice(0, MESSAGES_SHOWN) })
    if (t.scenarios % 250 === 0) onProgress(t.scenarios)
  }
  return t
}

async function runWorker(a: Args, job: number): Promise<void> {
  const send = (m: WorkerMessage): Promise<void> => new Promise((resolve) => process.send?.(m, () => resolve()))
  const totals = await runShare(a, job, (done) => void send({ kind: 'progress', done }))
  await send({ kind: 'done', totals })
  process.disconnect?.()
}

function spawnWorker(a: Args, job: number, onProgress: (job: number, done: number) => void): Promise<Totals> {
  const args = ['--seed', String(a.seed), '--scenarios', String(a.scenarios), '--steps', String(a.steps), '--jobs', String(a.jobs), '--worker', String(job), ...(a.sabotage ? ['--sabotage', a.sabotage] : [])]
  const child = fork(fileURLToPath(import.meta.url), args, { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  return new Promise((resolve, reject) => {
    let totals: Totals | undefined
    child.on('message', (m: WorkerMessage) => {
      if (m.kind === 'progress') onProgress(job, m.done)
      else totals = m.totals
    })
    child.on('error', reject)
    child.on('exit', (code, signal) => (totals ? resolve(totals) : reject(new Error(`worker ${job} ended (${String(code ?? signal)}) without its results`))))
  })
}

async function main(): Promise<void> {
  const a = parse()
  if (a.worker !== undefined) return runWorker(a, a.worker)
  const started = performance.now()
  const done = new Array<number>(a.jobs).fill(0)
  let reported = 0
  const progress = (job: number, n: number): void => {
    done[job] = n
    const all = done.reduce((x, y) => x + y, 0)
    if (all - reported >= Math.max(1000, a.scenarios / 20)) {
      reported = all
      process.stderr.write(`torture: ${all}/${a.scenarios} scenarios, ${((performance.now() - started) / 1000).toFixed(0)} s\n`)
    }
  }
  const shares = a.jobs === 1 ? [await runShare(a, 0, (n) => progress(0, n))] : await Promise.all(Array.from({ length: a.jobs }, (_, j) => spawnWorker(a, j, progress)))
  const t = emptyTotals()
  for (const s of shares) {
    t.scenarios += s.scenarios
    add(t.counts, s.counts)
    add(t.failures, s.failures)
    t.failing.push(...s.failing)
  }
  t.failing.sort((x, y) => x.index - y.index)
  const elapsedMs = Math.round(performance.now() - started)
  const first = t.failing[0]
  const replay = (seed: number): string => `npm run torture -- --seed ${seed} --scenarios 1 --steps ${a.steps}${a.sabotage ? ` --sabotage ${a.sabotage}` : ''} --verbose`
  const { acknowledged, ...exercised } = t.counts
  const { acknowledgedLost, doubleApplies, wrongReads, undetectedCorruptions, reopenFailures, failClosed, notConverged, origin, wrongConditions, other } = t.failures
  const report = {
    seed: a.seed,
    ...(a.sabotage ? { sabotage: a.sabotage } : {}),
    scenarios: t.scenarios,
    stepsMax: a.steps,
    operations: t.counts.operations,
    acknowledgedRecords: acknowledged,
    acknowledgedLost,
    doubleApplies,
    wrongReads,
    undetectedCorruptions,
    reopenFailures,
    failClosedViolations: failClosed,
    notConverged,
    originViolations: origin,
    wrongConditions,
    otherViolations: other,
    failingScenarios: t.failing.length,
    firstFailingSeed: first ? first.seed : null,
    replay: first ? replay(first.seed) : null,
    failingSeeds: t.failing.slice(0, FAILING_LISTED_MAX).map((f) => f.seed),
    exercised,
    jobs: a.jobs,
    elapsedMs,
    scenariosPerSecond: Math.round((t.scenarios / Math.max(1, elapsedMs)) * 1000),
    node: process.version,
  }
  for (const f of t.failing.slice(0, 5)) process.stderr.write(`FAIL seed ${f.seed}:\n  ${f.violations.join('\n  ')}\n  replay: ${replay(f.seed)}\n`)
  if (a.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  } else {
    const lines = [
      `torture: ${t.scenarios} scenarios from seed ${a.seed} (at most ${a.steps} steps each) in ${(elapsedMs / 1000).toFixed(1)} s on ${a.jobs} job(s)`,
      `operations ${report.operations}, acknowledged records ${acknowledged}`,
      `acknowledged lost ${acknowledgedLost}, double applies ${doubleApplies}, wrong reads ${wrongReads}, undetected corruptions ${undetectedCorruptions}, reopen failures ${reopenFailures}`,
      `fail-closed violations ${failClosed}, not converged ${notConverged}, origin violations ${origin}, wrong conditions ${wrongConditions}, other ${other}`,
      `exercised: ${Object.entries(exercised).map(([k, v]) => `${k} ${v}`).join(', ')}`,
      first ? `FAILED: ${t.failing.length} scenario(s); first failing seed ${first.seed}; replay: ${replay(first.seed)}` : 'every scenario kept every guarantee',
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
  }
  process.exitCode = first ? 1 : 0
}

await main()
