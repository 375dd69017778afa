/**
 * A child process for the real-process tests (kill -9, single-writer lock).
 * Run it with `node --import tsx test/support/writer-child.ts ...` (see
 * childArgs). Modes:
 *
 *   <dir> <seed>            prints `opening <pid>`, opens the WAL (sync durability,
 *                           256 KiB segments), prints `ready <pid> <lastLsn>`, then appends records
 *                           forever in bursts of 1..64 concurrent appends, and
 *                           prints `ack <lsn> <counter>` as each append resolves.
 *   --try-open <dir>        tries Wal.open once and prints one JSON line:
 *                           {"ok":true,"pid":...} or {"ok":false,"code":...,"message":...,"details":...}
 *   --hold <dir>            opens the WAL, prints `ready <pid> <lastLsn>`, holds it
 *                           until stdin ends, then closes it and prints `closed`.
 *   --exit-open <dir>       opens the WAL, appends one record, prints `ready ...`
 *                           and exits (process.exit(0)) without closing it.
 *
 * Every line goes out with a synchronous write, so a line the parent reads is
 * an event that happened before the process was killed.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
// The WAL's own modules rather than engine/index.js: the package entry also
// loads LevelDB and the apply path, which would double every child's start-up.
import { isMemwalError } from '../../engine/errors.js'
import { SeededRandom } from '../../engine/io/random.js'
import { RecordType } from '../../engine/format/format.js'
import type { Op, WalRecord } from '../../engine/format/record-codec.js'
import { Wal } from '../../engine/log/wal.js'
import { childEnv } from './child-env.js'

export const CHILD_FILE = fileURLToPath(import.meta.url)
export const CHILD_SEGMENT_BYTES = 256 * 1024

/** Arguments for child_process.spawn(process.execPath, childArgs(...)). */
export function childArgs(...args: string[]): string[] {
  return ['--import', 'tsx', CHILD_FILE, ...args]
}

const REPO_DIR = path.resolve(path.dirname(CHILD_FILE), '..', '..')

/** A running child, seen from the parent: its stdout as lines, and how it ended. */
export interface Child {
  readonly proc: ChildProcess
  readonly pid: number
  /** Resolves the first line (seen so far or later) that `match` accepts; rejects if the child ends first. */
  waitFor(match: (line: string) => boolean): Promise<string>
  /** Resolves when the child has exited and its output has been read to the end. */
  readonly ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr(): string
}

/**
 * Spawns writer-child.ts with `args`. `onLine` sees every stdout line in
 * order; lines are also kept for waitFor unless `keepLines` is false.
 */
export function spawnChild(args: string[], options: { onLine?: (line: string) => void; keepLines?: boolean } = {}): Child {
  const env = childEnv()
  const proc = spawn(process.execPath, childArgs(...args), { cwd: REPO_DIR, env, stdio: ['pipe', 'pipe', 'pipe'] })
  const pid = proc.pid
  if (pid === undefined) throw new Error('child did not start')
  const lines: string[] = []
  const waiters: { match: (line: string) => boolean; resolve: (line: string) => void; reject: (err: Error) => void }[] = []
  let partial = ''
  let err = ''
  let done = false
  const see = (line: string): void => {
    options.onLine?.(line)
    if (options.keepLines !== false) lines.push(line)
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]
      if (w && w.match(line)) {
        waiters.splice(i, 1)
        w.resolve(line)
      }
    }
  }
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) see(line)
  })
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (err.length < 64 * 1024) err += chunk
  })
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('close', (code, signal) => {
      done = true
      // A line cut short by the kill was never written whole: it is not an event.
      for (const w of waiters.splice(0)) w.reject(new Error(`child ${pid} ended (${String(code ?? signal)}) before the line awaited; stderr: ${err.slice(0, 2000)}`))
      resolve({ code, signal })
    })
  })
  return {
    proc,
    pid,
    ended,
    stderr: () => err,
    waitFor: (match) => {
      const seen = lines.find(match)
      if (seen !== undefined) return Promise.resolve(seen)
      if (done) return Promise.reject(new Error(`child ${pid} ended before the line awaited; stderr: ${err.slice(0, 2000)}`))
      return new Promise((resolve, reject) => waiters.push({ match, resolve, reject }))
    },
  }
}

/** The key prefix every record written by (seed, counter) starts with. */
export function keyFor(seed: number, counter: number, part = 0): string {
  return `s${seed}/c${counter}/p${part}`
}

/** Parses a key written by keyFor. */
export function parseKey(key: string): { seed: number; counter: number } | undefined {
  const m = /^s(\d+)\/c(\d+)\/p\d+$/.exec(key)
  return m ? { seed: Number(m[1]), counter: Number(m[2]) } : undefined
}

function valueBytes(rng: SeededRandom): Uint8Array {
  const roll = rng.below(100)
  const size = roll < 70 ? rng.below(200) : roll < 95 ? 200 + rng.below(1800) : 2000 + rng.below(14_000)
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = rng.below(256)
  return bytes
}

/**
 * The record number `counter` of the writer seeded `seed`: a pure function of
 * both, so the parent recomputes exactly what the child appended. Mostly puts,
 * some deletes and batches; every key carries (seed, counter).
 */
export function recordFor(seed: number, counter: number): WalRecord {
  const rng = new SeededRandom((Math.imul(seed, 0x9e3779b1) ^ Math.imul(counter + 1, 0x85ebca6b)) >>> 0)
  const roll = rng.below(10)
  if (roll === 0) return { type: RecordType.DELETE, op: { type: 'del', key: keyFor(seed, counter) } }
  if (roll === 1) {
    const ops: Op[] = []
    const n = 2 + rng.below(4)
    for (let i = 0; i < n; i++) {
      ops.push(rng.chance(0.25) ? { type: 'del', key: keyFor(seed, counter, i) } : { type: 'put', key: keyFor(seed, counter, i), value: valueBytes(rng) })
    }
    return { type: RecordType.BATCH, ops }
  }
  const tags = rng.chance(0.3) ? ['t' + String(rng.below(5))] : undefined
  return {
    type: RecordType.PUT,
    op: { type: 'put', key: keyFor(seed, counter), value: valueBytes(rng), namespace: 'kill9', ...(tags ? { tags } : {}) },
  }
}

function writeLine(line: string): void {
  const buf = Buffer.from(line + '\n')
  let done = 0
  while (done < buf.length) {
    try {
      done += fs.writeSync(1, buf, done, buf.length - done)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
    }
  }
}

function fail(err: unknown): never {
  const code = isMemwalError(err) ? err.code : (err as NodeJS.ErrnoException).code
  writeLine(`error ${String(code)} ${(err as Error).message.replace(/\n/g, ' ')}`)
  process.exit(1)
}

async function writeForever(dir: string, seed: number): Promise<void> {
  writeLine(`opening ${process.pid}`)
  const wal = await Wal.open({ dir, segmentBytes: CHILD_SEGMENT_BYTES })
  writeLine(`ready ${process.pid} ${wal.lastLsn}`)
  const rng = new SeededRandom(seed)
  let counter = 0
  for (;;) {
    const burst: Promise<void>[] = []
    const n = 1 + rng.below(64)
    for (let i = 0; i < n; i++) {
      const c = counter++
      burst.push(wal.appendRecord(recordFor(seed, c)).then((lsn) => writeLine(`ack ${lsn} ${c}`)))
    }
    await Promise.all(burst)
  }
}

async function tryOpen(dir: string): Promise<void> {
  try {
    const wal = await Wal.open({ dir, segmentBytes: CHILD_SEGMENT_BYTES })
    await wal.close()
    writeLine(JSON.stringify({ ok: true, pid: process.pid }))
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown; details?: unknown }
    writeLine(JSON.stringify({ ok: false, pid: process.pid, code: e.code, message: e.message, details: e.details }))
  }
}

async function hold(dir: string): Promise<void> {
  const wal = await Wal.open({ dir, segmentBytes: CHILD_SEGMENT_BYTES })
  writeLine(`ready ${process.pid} ${wal.lastLsn}`)
  await new Promise<void>((resolve) => {
    process.stdin.on('data', () => undefined)
    process.stdin.on('end', resolve)
  })
  await wal.close()
  writeLine('closed')
}

async function exitOpen(dir: string): Promise<void> {
  const wal = await Wal.open({ dir, segmentBytes: CHILD_SEGMENT_BYTES })
  await wal.appendRecord(recordFor(1, 0))
  writeLine(`ready ${process.pid} ${wal.lastLsn}`)
  process.exit(0)
}

async function main(argv: string[]): Promise<void> {
  const [a, b] = argv
  if (a === '--try-open' && b) return tryOpen(b)
  if (a === '--hold' && b) return hold(b)
  if (a === '--exit-open' && b) return exitOpen(b)
  if (a && b && /^\d+$/.test(b)) return writeForever(a, Number(b))
  writeLine('error USAGE writer-child.ts <dir> <seed> | --try-open <dir> | --hold <dir> | --exit-open <dir>')
  process.exit(16)
}

if (process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(CHILD_FILE)) {
  main(process.argv.slice(2)).catch(fail)
}
