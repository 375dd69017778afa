/**
 * The WAL append benchmark runs end to end: `--quick --json` prints exactly one
 * JSON document on stdout with a positive, finite figure for every system and
 * workload, cleans up its data directory, and a bad option is a usage error
 * (exit 16) with nothing on stdout. Speed is never asserted: the figures
 * depend on the machine.
 *
 * Runs bench/wal-bench.ts through tsx, so that it needs no build first (~10 s).
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { tmpDir } from '../support/tmp-dir.js'
import { childEnv } from '../support/child-env.js'

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const BENCH = path.join(REPO_DIR, 'bench', 'wal-bench.ts')
const WORKLOADS = ['memwal-awaited', 'memwal-inflight', 'raw-append', 'raw-prealloc', 'level-awaited', 'level-inflight']

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function runBench(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', BENCH, ...args], { cwd: REPO_DIR, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    proc.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    proc.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    proc.on('error', reject)
    proc.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

const positiveFinite = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v > 0

t.test('--quick --json measures every system and workload', async (t) => {
  const base = tmpDir(t, 'memwal-bench-smoke-')
  const run = await runBench(['--quick', '--json', '--dir', base])
  t.equal(run.code, 0, `exit code (stderr: ${run.stderr.slice(-2000)})`)

  let doc: Record<string, any>
  try {
    doc = JSON.parse(run.stdout) as Record<string, any>
  } catch (err) {
    t.fail(`stdout is not one JSON document: ${(err as Error).message}\n${run.stdout.slice(0, 500)}`)
    return
  }
  t.ok(run.stderr.length > 0, 'progress goes to stderr')
  t.equal(doc.config.payloadBytes, 350, 'records carry 350-byte payloads')
  t.equal(doc.config.inFlight, 256)
  t.equal(doc.config.quick, true)

  t.same(Object.keys(doc.results).sort(), [...WORKLOADS].sort(), 'every system and workload is reported')
  for (const id of WORKLOADS) {
    const r = doc.results[id]
    for (const field of ['opsPerSec', 'p50Us', 'p99Us', 'p999Us']) t.ok(positiveFinite(r?.[field]), `${id} ${field} = ${String(r?.[field])}`)
    t.ok(r.p50Us <= r.p99Us && r.p99Us <= r.p999Us, `${id} percentiles are ordered`)
    t.equal(r.repetitions.length, doc.config.reps, `${id} ran every round`)
    for (const rep of r.repetitions) {
      t.ok(Number.isInteger(rep.ops) && rep.ops > 0, `${id} acknowledged operations in a round`)
      t.ok(positiveFinite(rep.opsPerSec) && positiveFinite(rep.p99Us), `${id} round figures`)
    }
  }
  t.ok(doc.results['memwal-inflight'].segmentRotations.every((n: unknown) => Number.isInteger(n) && (n as number) >= 0), 'rotations counted')

  const ratios = Object.entries(doc.ratios as Record<string, unknown>)
  for (const id of ['memwalAwaitedOverRawPrealloc', 'memwalAwaitedOverRawAppend', 'memwalInflightOpsPerSec', 'memwalInflightOverLevelInflight']) {
    t.ok(id in doc.ratios, `ratio ${id} reported`)
  }
  t.equal(doc.ratios.memwalInflightOpsPerSec, doc.results['memwal-inflight'].opsPerSec, 'the in-flight figure is the measured median')
  for (const [name, v] of ratios) t.ok(positiveFinite(v), `ratio ${name} = ${String(v)}`)
  for (const g of doc.goals as { goal: string; measured: unknown; met: unknown }[]) {
    t.ok(positiveFinite(g.measured), `goal measured: ${g.goal}`)
    t.type(g.met, 'boolean', `goal reported as met or not: ${g.goal}`)
  }

  t.same(fs.readdirSync(base), [], 'the run removed its data directory')
})

t.test('a bad option is a usage error, with nothing on stdout', async (t) => {
  const run = await runBench(['--reps', '0', '--json'])
  t.equal(run.code, 16)
  t.equal(run.stdout, '')
  t.match(run.stderr, /--reps/)
})

t.test('percentiles are nearest-rank and medians are over repetitions', async (t) => {
  const { LatencyRecorder, median, percentile, trialResult } = await import('../../bench/stats.js')
  const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1)
  t.equal(percentile(sorted, 50), 50)
  t.equal(percentile(sorted, 99), 99)
  t.equal(percentile(sorted, 99.9), 100)
  t.equal(percentile(sorted, 0), 1)
  t.ok(Number.isNaN(percentile(new Float64Array(0), 50)), 'no samples, no percentile')
  t.throws(() => percentile(sorted, 101))
  t.equal(median([3, 1, 2]), 2)
  t.equal(median([4, 1, 3, 2]), 2.5)

  const rec = new LatencyRecorder(16)
  for (let i = 1000; i >= 1; i--) rec.record(i) // grows past its first capacity, recorded out of order
  const r = trialResult(1000, 500, rec)
  t.equal(r.opsPerSec, 2000)
  t.equal(r.p50Us, 500)
  t.equal(r.p99Us, 990)
  t.equal(r.maxUs, 1000)
})
