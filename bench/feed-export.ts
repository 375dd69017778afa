/**
 * db.export alone, on a store of agent-memory records made once and kept, so
 * that two builds can be compared on the same store, alternating, in one run
 * (feed.ts measures export too, but after minutes of puts and watches):
 *
 *   node dist/bench/feed-export.js --store DIR [--records N] [--reps R] [--json]
 *
 * DIR is made (N records put, default 50,000, then flushed) when it does not
 * exist, and used as it is when it does. Each rep exports the whole store to
 * a file in DIR's parent, ndjson then msgpack; the figures are MB written per
 * second (issue 12's goal: >= 100 MB/s) and per CPU-second, medians of the
 * reps, with the load average at the end.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { MemWAL } from '../engine/index.js'
import { agentShape } from './records.js'
import { parseRunArgs, type RunOptions } from './run-args.js'
import { fmt, median, table } from './stats.js'

/** `--store DIR` (required), then feed.ts's options: `[--records N] [--reps R] [--json]`. */
function parseArgs(argv: readonly string[]): RunOptions & { readonly store: string } {
  const at = argv.indexOf('--store')
  const store = at >= 0 ? argv[at + 1] : undefined
  if (store === undefined) {
    process.stderr.write('bench/feed-export: --store DIR is required\nusage: feed-export --store DIR [--records N] [--reps R] [--json]\n')
    process.exit(16)
  }
  return { ...parseRunArgs('feed-export', [...argv.slice(0, at), ...argv.slice(at + 2)], { records: 50_000, reps: 3 }), store }
}

/** Puts records 0..n-1 at 256 in flight, then waits until every sink applied them (export reads the backend). */
async function makeStore(dir: string, n: number): Promise<void> {
  const shape = agentShape()
  const db = await MemWAL.open({ dir, maxBacklogBytes: 2 ** 30 })
  try {
    let next = 0
    const worker = async (): Promise<void> => {
      for (let i = next++; i < n; i = next++) await db.put(shape.key(i), shape.value(i), shape.labels(i))
    }
    await Promise.all(Array.from({ length: 256 }, worker))
    await db.flush({ timeoutMs: 600_000 })
  } finally {
    await db.close()
  }
}

/**
 * One export of the whole store into `target` (the file is removed): MB
 * written per second, and per second of the process's CPU time (every
 * thread's), which a busy machine disturbs less than the clock.
 */
async function exportOnce(db: MemWAL, target: string, format: 'ndjson' | 'msgpack'): Promise<{ mb: number; mbPerSec: number; mbPerCpuSec: number }> {
  const started = performance.now()
  const cpu = process.cpuUsage()
  await pipeline(db.export({ format }), fs.createWriteStream(target))
  const s = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  const mb = fs.statSync(target).size / 1e6
  fs.rmSync(target, { force: true })
  return { mb, mbPerSec: mb / s, mbPerCpuSec: mb / ((used.user + used.system) / 1e6) }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  if (!fs.existsSync(o.store)) await makeStore(o.store, o.records)
  const db = await MemWAL.open({ dir: o.store })
  const target = (format: string): string => path.join(path.dirname(path.resolve(o.store)), `${path.basename(o.store)}-export.${format}`)
  const rows = { ndjson: [] as number[], msgpack: [] as number[] }
  const cpu = { ndjson: [] as number[], msgpack: [] as number[] }
  let mb = { ndjson: 0, msgpack: 0 }
  try {
    for (let r = 0; r < o.reps; r++) {
      for (const format of ['ndjson', 'msgpack'] as const) {
        const x = await exportOnce(db, target(format), format)
        rows[format].push(x.mbPerSec)
        cpu[format].push(x.mbPerCpuSec)
        mb = { ...mb, [format]: x.mb }
      }
    }
  } finally {
    await db.close()
  }
  const result = {
    ndjsonMB: mb.ndjson, ndjsonMBPerSec: median(rows.ndjson), ndjsonMBPerCpuSec: median(cpu.ndjson),
    msgpackMB: mb.msgpack, msgpackMBPerSec: median(rows.msgpack), msgpackMBPerCpuSec: median(cpu.msgpack),
    reps: o.reps, loadavg: Math.round((os.loadavg()[0] ?? 0) * 100) / 100,
  }
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    return
  }
  process.stdout.write(`${table([
    ['export', 'MB written', 'MB/s (median)', 'MB per CPU-second', 'goal'],
    ['ndjson', fmt(result.ndjsonMB, 1), fmt(result.ndjsonMBPerSec, 1), fmt(result.ndjsonMBPerCpuSec, 1), '>= 100 MB/s'],
    ['msgpack', fmt(result.msgpackMB, 1), fmt(result.msgpackMBPerSec, 1), fmt(result.msgpackMBPerCpuSec, 1), '>= 100 MB/s'],
  ])}\n`)
}

await main()
