/**
 * A child process for test/process/engine-kill9.test.ts: MemWAL on a real data
 * directory (LevelDB store), writing puts, deletes and batches while its
 * backend goes down and comes back on a seeded schedule, until it is killed.
 *
 *   node --import tsx test/support/engine-child.ts <dir> <seed>
 *
 * The backend sink is wrapped (`wrapSink`) so that its apply rejects while
 * the outage flag is on; the flag flips every 5-45 ms (seeded). Writes go in
 * bursts of 1-12 concurrent calls (group commit); the next burst starts when
 * every write of the last one resolved. Write number `c` of the child seeded
 * `s` is writeFor(s, c), a pure function, so the parent knows the writes that
 * were in flight when the kill came.
 *
 * Lines on stdout, each written synchronously (fs.writeSync), so a line the
 * parent reads is an event that happened before the kill:
 *   ready <pid> <lastLsn>        MemWAL is open
 *   outage on|off                the backend went down / came back
 *   burst <firstCounter> <n>     writes first..first+n-1 are about to be issued
 *   ack <lsn> <json ops>         a write resolved: acknowledged under <lsn>
 *   applied <upToLsn>            a backend apply through <upToLsn> resolved
 *   error <code> <message>       then exit 1 (a write failed, or open did)
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { MemWAL, SeededRandom, isMemwalError, type BatchOp, type Op, type Sink } from '../../engine/index.js'
import { childEnv } from './child-env.js'

export const ENGINE_CHILD_FILE = fileURLToPath(import.meta.url)
const REPO_DIR = path.resolve(path.dirname(ENGINE_CHILD_FILE), '..', '..')
/** Small segments, so that the log rotates and retention purges while the child is killed. */
export const ENGINE_CHILD_SEGMENT_BYTES = 128 * 1024
export const ENGINE_CHILD_KEYS = 48
export const ENGINE_CHILD_NAMESPACES = ['n0', 'n1', 'n2'] as const
export const ENGINE_CHILD_TAGS = ['red', 'green', 'blue'] as const
const BURST_MAX = 12
const OUTAGE_FLIP_MS_MIN = 5
const OUTAGE_FLIP_MS_MAX = 45

/** Options both the child and the parent open the data directory with. */
export const engineChildOptions = {
  segmentBytes: ENGINE_CHILD_SEGMENT_BYTES,
  resilience: { retryDelayMsMin: 1, retryDelayMsMax: 20, breakerThreshold: 3, breakerHalfOpenMs: 15, applyTimeoutMs: 5_000 },
} as const

export function keyOf(i: number): string {
  return `key/${String(i).padStart(2, '0')}`
}

/** What every put of write (seed, counter) carries: it names its writer and place. */
export interface ChildValue {
  readonly s: number
  readonly c: number
  readonly i: number
  readonly pad: string
}

/**
 * Write number `counter` of the child seeded `seed`, as normalised ops: one
 * put, one delete, or a batch of 2-10 operations (keys may repeat within it).
 */
export function writeFor(seed: number, counter: number): Op[] {
  const rng = new SeededRandom((Math.imul(seed, 0x9e3779b1) ^ Math.imul(counter + 1, 0x85ebca6b)) >>> 0)
  const put = (i: number): Op => {
    const value: ChildValue = { s: seed, c: counter, i, pad: 'v'.repeat(rng.chance(0.9) ? rng.below(120) : 500 + rng.below(3000)) }
    const namespace = rng.chance(0.7) ? ENGINE_CHILD_NAMESPACES[rng.below(ENGINE_CHILD_NAMESPACES.length)] : undefined
    const tags = rng.chance(0.5) ? ENGINE_CHILD_TAGS.filter(() => rng.chance(0.5)) : undefined
    return { type: 'put', key: keyOf(rng.below(ENGINE_CHILD_KEYS)), value, ...(namespace !== undefined ? { namespace } : {}), ...(tags ? { tags } : {}) }
  }
  const del = (): Op => ({ type: 'del', key: keyOf(rng.below(ENGINE_CHILD_KEYS)) })
  const roll = rng.below(100)
  if (roll < 55) return [put(0)]
  if (roll < 75) return [del()]
  const n = 2 + rng.below(9)
  const ops: Op[] = []
  for (let i = 0; i < n; i++) ops.push(rng.chance(0.7) ? put(i) : del())
  return ops
}

// ---- parent side ----

export interface EngineChild {
  readonly proc: ChildProcess
  /** Resolves when the child has exited and its stdout has been read to the end. */
  readonly ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr(): string
}

/** Spawns the child on `dir` with `seed`; `onLine` sees every complete stdout line, in order. */
export function spawnEngineChild(dir: string, seed: number, onLine: (line: string) => void): EngineChild {
  const env = childEnv()
  const proc = spawn(process.execPath, ['--import', 'tsx', ENGINE_CHILD_FILE, dir, String(seed)], { cwd: REPO_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let partial = ''
  let err = ''
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) onLine(line)
  })
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (err.length < 64 * 1024) err += chunk
  })
  // A line cut short by the kill was never written whole: it is not an event, and is dropped.
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })))
  return { proc, ended, stderr: () => err }
}

// ---- child side ----

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
  writeLine(`error ${String(code)} ${String((err as Error)?.message).replace(/\n/g, ' ')}`)
  process.exit(1)
}

async function run(dir: string, seed: number): Promise<void> {
  const rng = new SeededRandom(seed)
  let outage = rng.chance(0.5)
  const wrapSink = <S extends Sink>(sink: S): S => {
    if (sink.name !== 'backend') return sink
    const apply = sink.apply.bind(sink)
    sink.apply = async (batch, signal) => {
      if (outage) throw new Error('simulated backend outage')
      await apply(batch, signal)
      writeLine(`applied ${batch.upToLsn}`)
    }
    return sink
  }
  const engine = await MemWAL.open({ ...engineChildOptions, dir, wrapSink, random: new SeededRandom(seed ^ 0x51ed) })
  writeLine(`ready ${process.pid} ${engine.health().wal.lastLsn}`)
  writeLine(`outage ${outage ? 'on' : 'off'}`)
  const flip = (): void => {
    outage = !outage
    writeLine(`outage ${outage ? 'on' : 'off'}`)
    setTimeout(flip, OUTAGE_FLIP_MS_MIN + rng.below(OUTAGE_FLIP_MS_MAX - OUTAGE_FLIP_MS_MIN + 1))
  }
  setTimeout(flip, OUTAGE_FLIP_MS_MIN + rng.below(OUTAGE_FLIP_MS_MAX - OUTAGE_FLIP_MS_MIN + 1))

  let counter = 0
  for (;;) {
    const n = 1 + rng.below(BURST_MAX)
    writeLine(`burst ${counter} ${n}`)
    const burst: Promise<void>[] = []
    for (let k = 0; k < n; k++) {
      const ops = writeFor(seed, counter++)
      burst.push(issue(engine, ops).then(({ lsn }) => writeLine(`ack ${lsn} ${JSON.stringify(ops)}`)))
    }
    await Promise.all(burst)
  }
}

function issue(engine: MemWAL, ops: Op[]): Promise<{ lsn: number }> {
  const [op] = ops
  if (ops.length > 1 || !op) return engine.batch(ops as BatchOp[])
  if (op.type === 'del') return engine.delete(op.key)
  return engine.put(op.key, op.value, { ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) })
}

if (process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(ENGINE_CHILD_FILE)) {
  const [dir, seed] = process.argv.slice(2)
  if (!dir || !seed || !/^\d+$/.test(seed)) {
    writeLine('error USAGE engine-child.ts <dir> <seed>')
    process.exit(16)
  }
  run(dir, Number(seed)).catch(fail)
}
