/**
 * The claude-flow differential long run: the seeds 1..N sharded over J
 * processes (seed % J), each running its share in L concurrent lanes, no
 * test runner (tap's async hooks cost about a sixth of the CPU here). Prints
 * one JSON line per shard as it ends, then the totals; exits 1 on any
 * difference that is not a known SqlJsBackend defect.
 *
 *   npx tsx test/adapters/support/cf-long-run.ts --sequences 100000 --jobs 4 --lanes 4
 *
 * A shard alone (what the parent spawns): --shard i/J.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Tally, runDifferential } from './cf-differential.js'

interface ShardResult {
  readonly shard: string
  readonly sequences: number
  readonly compared: number
  readonly same: number
  readonly known: Record<string, number>
  readonly differences: number
  readonly firstDifferences: readonly string[]
  readonly ms: number
}

const { values } = parseArgs({ options: { sequences: { type: 'string', default: '100000' }, jobs: { type: 'string', default: '4' }, lanes: { type: 'string', default: '4' }, shard: { type: 'string' }, inline: { type: 'string', default: '0' } }, strict: true })
const count = (name: string, v: string | undefined, max: number): number => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name} must be an integer in [1, ${max}], not ${String(v)}`)
  return n
}
const sequences = count('sequences', values.sequences, 10_000_000)
const lanes = count('lanes', values.lanes, 64)
const inline = Number(values.inline)
const makeDir = (dir: string): string => {
  fs.mkdirSync(dir)
  return dir
}

if (values.shard !== undefined) {
  const [shard, shards] = values.shard.split('/').map(Number) as [number, number]
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-cf-long-'))
  const started = Date.now()
  const tally = new Tally()
  // Progress on stderr each minute: a long run cut short still says how far it got, and what it found.
  const progress = setInterval(() => process.stderr.write(`shard ${values.shard ?? ''}: ${tally.sequences} sequences in ${Math.round((Date.now() - started) / 1000)} s, ${tally.summary()}\n`), 60_000)
  try {
    const dirs = Array.from({ length: lanes }, (_, i) => makeDir(path.join(root, `lane${i}`)))
    const n = await runDifferential({ sequences, lanes, shard, shards, inlineWriteBytesMax: inline }, dirs, tally)
    const result: ShardResult = { shard: values.shard, sequences: n, compared: tally.compared, same: tally.same, known: Object.fromEntries(tally.known), differences: tally.failures.length, firstDifferences: tally.failures.slice(0, 5), ms: Date.now() - started }
    process.stdout.write(JSON.stringify(result) + '\n')
  } finally {
    clearInterval(progress)
    fs.rmSync(root, { recursive: true, force: true })
  }
} else {
  const jobs = count('jobs', values.jobs, 64)
  const started = Date.now()
  const self = fileURLToPath(import.meta.url)
  const results = await Promise.all(Array.from({ length: jobs }, (_, i) => new Promise<ShardResult>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', self, '--sequences', String(sequences), '--lanes', String(lanes), '--inline', String(inline), '--shard', `${i}/${jobs}`], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s))
    child.on('error', reject)
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`shard ${i}/${jobs} exited ${String(code)}`))
      process.stdout.write(out)
      resolve(JSON.parse(out) as ShardResult)
    })
  })))
  const known: Record<string, number> = {}
  for (const r of results) for (const [k, n] of Object.entries(r.known)) known[k] = (known[k] ?? 0) + n
  const sum = (f: (r: ShardResult) => number) => results.reduce((a, r) => a + f(r), 0)
  const total = { sequences: sum((r) => r.sequences), compared: sum((r) => r.compared), same: sum((r) => r.same), known, differences: sum((r) => r.differences), jobs, lanes, seconds: Math.round((Date.now() - started) / 1000) }
  process.stdout.write(`total ${JSON.stringify(total)}\n`)
  process.exitCode = total.differences === 0 ? 0 : 1
}
