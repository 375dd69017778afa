/**
 * The benchmark harness (bench/harness.ts, `npm run bench`, `memwal bench`)
 * runs end to end: `--quick --json --report FILE` prints exactly one JSON
 * document with a positive, finite figure (ops/s, MB/s, p50/p99/p99.9, peak
 * RSS) for every system and workload, every goal ratio measured and judged,
 * the engine's absolute targets measured,
 * writes a self-contained HTML report with SVG charts, and removes its data.
 * One trial in a child process of its own works too, and bad options are
 * usage errors (exit 16) with nothing on stdout. Speed is never asserted: the
 * figures depend on the machine.
 *
 * Runs bench/harness.ts through tsx, so that it needs no build first
 * (~30-60 s, most of it the quick run).
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { childEnv } from '../support/child-env.js'
import { tmpDir } from '../support/tmp-dir.js'

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const HARNESS = path.join(REPO_DIR, 'bench', 'harness.ts')

const SYSTEMS_AT_EVERY_DEPTH = ['memwal', 'memwal-wal', 'level-put', 'lmdb']
const APPEND_IDS = [
  ...SYSTEMS_AT_EVERY_DEPTH.flatMap((s) => [`${s}/awaited`, `${s}/inflight-1`, `${s}/inflight-16`, `${s}/inflight-256`, `${s}/inflight-4096`]),
  'raw-append/loop', 'raw-prealloc/loop',
  'level-batch/batch-16', 'level-batch/batch-256', 'level-batch/batch-4096',
  'memwal/e2e-256',
]
const ONE_SHOT_IDS = [
  'memwal/backlog', 'memwal/fsck', 'memwal/status', 'memwal/replay',
  'memwal-wal/open-16MiB', 'memwal-wal/open-tail-16MiB', 'memwal-wal/status-16MiB',
]
const GOAL_IDS = [
  'memwal-awaited-vs-raw', 'wal-awaited-vs-raw', 'memwal-awaited-vs-raw-prealloc', 'memwal-256-vs-lmdb',
  'wal-256-vs-lmdb', 'memwal-256-vs-level', 'wal-256-vs-level', 'e2e-vs-wal',
]
const FIGURES = ['opsPerSec', 'mbPerSec', 'p50Us', 'p99Us', 'p999Us', 'peakRssMB']

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function harness(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', HARNESS, ...args], { cwd: REPO_DIR, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    proc.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    proc.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    proc.on('error', reject)
    proc.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

const positiveFinite = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v > 0

function parseDoc(t: { fail(message: string): unknown }, run: Run): Record<string, any> | undefined {
  try {
    return JSON.parse(run.stdout) as Record<string, any>
  } catch (err) {
    t.fail(`stdout is not one JSON document: ${(err as Error).message}\n${run.stdout.slice(0, 500)}\nstderr: ${run.stderr.slice(-2000)}`)
    return undefined
  }
}

t.test('--quick --json --report: every system and workload measured, goals judged, an HTML report with charts', async (t) => {
  const base = tmpDir(t, 'memwal-bench-harness-')
  const out = tmpDir(t, 'memwal-bench-report-')
  const report = path.join(out, 'sub', 'report.html')
  const run = await harness(['--quick', '--json', '--dir', base, '--report', report])
  t.equal(run.code, 0, `exit code (stderr: ${run.stderr.slice(-2000)})`)
  const doc = parseDoc(t, run)
  if (!doc) return
  t.ok(run.stderr.length > 0, 'progress goes to stderr')
  t.equal(doc.config.quick, true)
  t.equal(doc.config.records, 100_000, 'the quick backlog is 100,000 records')
  t.same(doc.config.inFlight, [1, 16, 256, 4096])
  t.ok(positiveFinite(doc.machine.cpus) && typeof doc.machine.node === 'string', 'the machine is described')
  for (const k of ['start', 'end', 'mean', 'max']) t.ok(Number.isFinite(doc.load[k]) && doc.load[k] >= 0, `load average ${k} reported`)

  const results = doc.results as Record<string, any>[]
  t.same(results.map((r) => r.id).sort(), [...APPEND_IDS, ...ONE_SHOT_IDS].sort(), 'every system and workload is reported, once')
  for (const r of results) {
    for (const f of FIGURES) t.ok(positiveFinite(r[f]), `${r.id} ${f} = ${String(r[f])}`)
    t.ok(r.p50Us <= r.p99Us && r.p99Us <= r.p999Us, `${r.id} percentiles are ordered`)
    t.ok(typeof r.systemLabel === 'string' && typeof r.workloadLabel === 'string', `${r.id} is labelled`)
    const expectedReps = r.group === 'append' ? doc.config.reps : r.id === 'memwal/backlog' || r.id === 'memwal/replay' ? 1 : doc.config.oneShotReps
    t.equal(r.repetitions.length, expectedReps, `${r.id} ran every repetition`)
    for (const rep of r.repetitions) t.ok(positiveFinite(rep.opsPerSec) && positiveFinite(rep.peakRssMB), `${r.id} repetition figures`)
    if (r.group === 'append') for (const rep of r.repetitions) t.ok(Number.isInteger(rep.ops) && rep.ops > 0, `${r.id} acknowledged writes in a round`)
    else t.ok(positiveFinite(r.ms), `${r.id} duration`)
  }
  const byId = new Map(results.map((r) => [r.id as string, r]))
  t.equal(byId.get('memwal/backlog')?.details?.records, 100_000, 'the backlog held every record')
  t.ok(positiveFinite(byId.get('memwal/replay')?.details?.openMs) && positiveFinite(byId.get('memwal/replay')?.details?.applyMs), 'replay splits open and apply')
  t.equal(byId.get('memwal/fsck')?.details?.records, 100_000, 'fsck verified every record of the crash')

  const goals = doc.goals as Record<string, any>[]
  t.same(goals.map((g) => g.id), GOAL_IDS, 'every goal of the issue is reported')
  for (const g of goals) {
    t.ok(positiveFinite(g.measured), `goal ${g.id} measured: ${String(g.measured)}`)
    t.equal(g.met, g.measured >= g.target, `goal ${g.id} judged against its target`)
    t.equal(g.measured, byId.get(g.numerator)?.opsPerSec / byId.get(g.denominator)?.opsPerSec, `goal ${g.id} is the ratio of two reported figures`)
  }

  const targets = doc.targets as Record<string, any>[]
  t.same(targets.map((x) => x.id), ['replay-1m-seconds', 'apply-records-per-second', 'backlog-rss-per-byte', 'fsck-mb-per-second', 'status-ms'], 'the engine targets are reported')
  for (const x of targets) t.ok(positiveFinite(x.measured), `target ${x.id} measured: ${String(x.measured)}`)
  t.equal(targets[0]?.met, null, 'a target stated for 1,000,000 records is not judged on 100,000')
  t.equal(targets[2]?.met, targets[2]?.measured <= 2, 'the backlog memory target is judged')

  const html = fs.readFileSync(report, 'utf8')
  t.match(html, /^<!doctype html>/i, 'an HTML document')
  t.ok((html.match(/<svg[\s>]/g) ?? []).length >= 3, 'with SVG charts (throughput, latency, engine)')
  t.notMatch(html, /<script[^>]*\bsrc=|<link\b|<img\b|@import|url\(/i, 'self-contained: nothing loaded from elsewhere')
  t.match(html, /PASS|SHORT/, 'the goals are in it')
  t.same(fs.readdirSync(base), [], 'the run removed its data directory')
})

t.test('a trial in a child process of its own reports that process\'s figures', async (t) => {
  const base = tmpDir(t, 'memwal-bench-isolated-')
  const run = await harness(['--quick', '--json', '--dir', base, '--isolation', 'trial', '--reps', '1', '--only', 'memwal-wal/awaited'])
  t.equal(run.code, 0, `exit code (stderr: ${run.stderr.slice(-2000)})`)
  const doc = parseDoc(t, run)
  if (!doc) return
  t.equal(doc.config.isolation, 'trial')
  t.same(doc.results.map((r: { id: string }) => r.id), ['memwal-wal/awaited'], '--only selects')
  const r = doc.results[0]
  for (const f of FIGURES) t.ok(positiveFinite(r[f]), `${f} = ${String(r[f])}`)
  t.ok(doc.goals.every((g: { measured: unknown; met: unknown }) => g.measured === null && g.met === null), 'goals without their figures are not judged')
  t.same(fs.readdirSync(base), [], 'the run removed its data directory')
})

t.test('bad options are usage errors, with nothing on stdout', async (t) => {
  for (const args of [['--reps', '0', '--json'], ['--isolation', 'none', '--profile', '/tmp/x', '--json'], ['--only', 'no-such-system', '--json'], ['--bogus']]) {
    const run = await harness(args)
    t.equal(run.code, 16, `${args.join(' ')}: exit 16`)
    t.equal(run.stdout, '', `${args.join(' ')}: stdout empty`)
    t.match(run.stderr, /usage/, `${args.join(' ')}: usage on stderr`)
  }
})
