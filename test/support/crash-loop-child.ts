/**
 * A writer process for test/process/crash-loop.test.ts: MemWAL on a real data
 * directory (real disk, LevelDB), writing under load to a flaky backend,
 * until the parent kills it with SIGKILL.
 *
 *   node --import tsx test/support/crash-loop-child.ts <dir> <seed> <deletable-file> <writes-max>
 *
 * The backend sink is wrapped (`wrapSink`): it goes down and comes back on a
 * seeded schedule (every 5-40 ms), fails 15% of its calls transiently, and
 * makes 8% of them slow (30-150 ms, past the 60 ms apply timeout: the call
 * times out, yet completes later, and the applier must not apply it twice).
 *
 * Writes go in bursts of 1-12 concurrent calls (group commit); the next burst
 * starts when every write of the last one resolved; after `writes-max` writes
 * the child idles (its appliers still draining into the flaky backend) until
 * it is killed. Write number `c` of the child seeded `s` is
 * crashLoopWrite(s, c, deletable), a pure function, so the parent knows every
 * write that was in flight at the kill. Most writes put a key of their own
 * (`u/<seed>/<c>`, `u/<seed>/<c>/<i>` in batches), so that every acknowledged
 * write stays checkable for the whole run; some overwrite or delete one of a
 * few hot keys, some delete keys earlier rounds wrote (listed in the
 * deletable file by the parent).
 *
 * Lines on stdout, each written synchronously, so that a line the parent
 * reads is an event that happened before the kill:
 *   opening                    MemWAL.open is about to run (recovery follows)
 *   ready <pid> <lastLsn>      MemWAL is open
 *   burst <firstCounter> <n>   writes first..first+n-1 are about to be issued
 *   ack <lsn> <counter>        write <counter> was acknowledged under <lsn>
 *   applied <upToLsn>          a backend apply through <upToLsn> returned
 *   error <code> <message>     then exit 1
 */
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import { MemWAL, SeededRandom, isMemwalError, type BatchOp, type Op, type Sink } from '../../engine/index.js'

export const CRASH_LOOP_CHILD_FILE = fileURLToPath(import.meta.url)
export const CRASH_LOOP_NAMESPACES = ['n0', 'n1', 'n2'] as const
export const CRASH_LOOP_TAGS = ['red', 'green', 'blue'] as const
const HOT_KEYS = 8
const BURST_MAX = 12
const OUTAGE_FLIP_MS_MIN = 5
const OUTAGE_FLIP_MS_MAX = 40

/** Options the child and the parent open the data directory with (small segments: rotation and retention happen). */
export const crashLoopOptions = {
  segmentBytes: 128 * 1024,
  resilience: { retryDelayMsMin: 1, retryDelayMsMax: 20, breakerThreshold: 3, breakerHalfOpenMs: 15, applyTimeoutMs: 60 },
} as const

/** What every put of write (seed, counter) carries. */
export interface CrashLoopValue {
  readonly s: number
  readonly c: number
  readonly i: number
  readonly pad: string
}

/**
 * Write number `counter` of the child seeded `seed`, as the ops the engine
 * stores (tags deduplicated): a put of its own key, a batch of 2-5 puts of
 * its own keys (sometimes with a delete of a deletable key), a put or delete
 * of a hot key, or a delete of a deletable key.
 */
export function crashLoopWrite(seed: number, counter: number, deletable: readonly string[]): Op[] {
  const rng = new SeededRandom((Math.imul(seed, 0x9e3779b1) ^ Math.imul(counter + 1, 0x85ebca6b)) >>> 0)
  const value = (i: number): CrashLoopValue => ({ s: seed, c: counter, i, pad: 'v'.repeat(rng.chance(0.9) ? rng.below(100) : 400 + rng.below(2500)) })
  const put = (key: string, i: number): Op => {
    const namespace = rng.chance(0.6) ? CRASH_LOOP_NAMESPACES[rng.below(CRASH_LOOP_NAMESPACES.length)] : undefined
    const tags = rng.chance(0.4) ? CRASH_LOOP_TAGS.filter(() => rng.chance(0.5)) : undefined
    return { type: 'put', key, value: value(i), ...(namespace !== undefined ? { namespace } : {}), ...(tags ? { tags } : {}) }
  }
  const own = `u/${seed}/${counter}`
  const roll = rng.below(100)
  if (roll < 50 || (roll >= 80 && roll < 90 && deletable.length === 0)) return [put(own, 0)]
  if (roll < 65) {
    const n = 2 + rng.below(4)
    const ops = Array.from({ length: n }, (_, i) => put(`${own}/${i}`, i))
    if (deletable.length > 0 && rng.chance(0.3)) ops.splice(rng.below(n + 1), 0, { type: 'del', key: deletable[rng.below(deletable.length)] as string })
    return ops
  }
  if (roll < 80) return [put(`hot/${rng.below(HOT_KEYS)}`, 0)]
  if (roll < 90) return [{ type: 'del', key: deletable[rng.below(deletable.length)] as string }]
  return [{ type: 'del', key: `hot/${rng.below(HOT_KEYS)}` }]
}

function writeLine(line: string): void {
  const buf = Buffer.from(`${line}\n`)
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

function issue(engine: MemWAL, ops: Op[]): Promise<{ lsn: number }> {
  const [op] = ops
  if (ops.length > 1 || !op) return engine.batch(ops as BatchOp[])
  if (op.type === 'del') return engine.delete(op.key)
  return engine.put(op.key, op.value, { ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) })
}

async function run(dir: string, seed: number, deletable: readonly string[], writesMax: number): Promise<void> {
  const rng = new SeededRandom(seed)
  let outage = rng.chance(0.5)
  const flip = (): void => {
    outage = !outage
    setTimeout(flip, OUTAGE_FLIP_MS_MIN + rng.below(OUTAGE_FLIP_MS_MAX - OUTAGE_FLIP_MS_MIN + 1))
  }
  setTimeout(flip, OUTAGE_FLIP_MS_MIN + rng.below(OUTAGE_FLIP_MS_MAX - OUTAGE_FLIP_MS_MIN + 1))
  const flaky = new SeededRandom(seed ^ 0xf1a4)
  const wrapSink = <S extends Sink>(sink: S): S => {
    if (sink.name !== 'backend') return sink
    const apply = sink.apply.bind(sink)
    sink.apply = async (batch, signal) => {
      if (outage) throw new Error('simulated backend outage')
      if (flaky.chance(0.15)) throw new Error('simulated transient backend failure')
      if (flaky.chance(0.08)) await new Promise((resolve) => setTimeout(resolve, 30 + flaky.below(121)))
      await apply(batch, signal)
      writeLine(`applied ${batch.upToLsn}`)
    }
    return sink
  }
  writeLine('opening')
  const engine = await MemWAL.open({ ...crashLoopOptions, dir, wrapSink, random: new SeededRandom(seed ^ 0x51ed) })
  writeLine(`ready ${process.pid} ${engine.health().wal.lastLsn}`)
  let counter = 0
  while (counter < writesMax) {
    const n = Math.min(1 + rng.below(BURST_MAX), writesMax - counter)
    writeLine(`burst ${counter} ${n}`)
    const burst: Promise<void>[] = []
    for (let k = 0; k < n; k++) {
      const c = counter++
      burst.push(issue(engine, crashLoopWrite(seed, c, deletable)).then(({ lsn }) => writeLine(`ack ${lsn} ${c}`)))
    }
    await Promise.all(burst)
  }
  // Idle until killed: the appliers go on draining into the flaky backend.
}

if (process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(CRASH_LOOP_CHILD_FILE)) {
  const [dir, seed, deletableFile, writesMax] = process.argv.slice(2)
  if (!dir || !seed || !/^\d+$/.test(seed) || !deletableFile || !writesMax || !/^\d+$/.test(writesMax)) {
    writeLine('error USAGE crash-loop-child.ts <dir> <seed> <deletable-file> <writes-max>')
    process.exit(16)
  }
  const deletable = JSON.parse(fs.readFileSync(deletableFile, 'utf8')) as string[]
  run(dir, Number(seed), deletable, Number(writesMax)).catch(fail)
}
