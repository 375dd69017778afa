/**
 * The agent records of the query benchmarks (query.ts: memwal's local index
 * against better-sqlite3; pg-query.ts: memwal over PostgreSQL against the
 * bare SQL): N records over 20 namespaces, three independent tags each, write
 * times spread over 30 days of the loader's clock; the query; and
 * the timing helpers both use.
 */
import type { Clock, MemWAL, QueryOptions } from '../engine/index.js'
import { median } from './stats.js'

export const NAMESPACES = 20
const TOPICS = 10
const KINDS = 4
const PRIORITIES = 3
export const SPAN_MS = 30 * 24 * 3600 * 1000
export const START_MS = 1_800_000_000_000
/** Ops per batch while loading: well within batchOpsMax and recordBytesMax. */
const LOAD_BATCH = 256

/** A stable mix of i, so tags do not follow the namespace or the time. */
function mix(i: number, salt: number): number {
  let x = Math.imul(i ^ salt, 0x9e3779b1)
  x ^= x >>> 15
  x = Math.imul(x, 0x85ebca6b)
  return (x ^ (x >>> 13)) >>> 0
}

export interface AgentRecord {
  readonly namespace: string
  readonly key: string
  readonly tags: readonly string[]
  readonly value: { readonly n: number; readonly text: string }
  readonly atMs: number
}

export function record(i: number, n: number): AgentRecord {
  return {
    namespace: `agents/${i % NAMESPACES}`,
    key: `mem/${String(mix(i, 7)).padStart(10, '0')}/${i}`,
    tags: [`topic-${mix(i, 1) % TOPICS}`, `kind-${mix(i, 2) % KINDS}`, `priority-${mix(i, 3) % PRIORITIES}`],
    value: { n: i, text: `observation ${i}: the agent noted something worth keeping about topic ${mix(i, 1) % TOPICS}` },
    atMs: START_MS + Math.floor((i * SPAN_MS) / n),
  }
}

/** The query: one namespace, two tags, a write-time range (the last quarter of the span). */
export const QUERY = { namespace: 'agents/7', tags: { all: ['topic-3', 'kind-1'] }, since: START_MS + Math.floor(SPAN_MS * 0.75), until: START_MS + SPAN_MS } satisfies QueryOptions

export async function timed<T>(fn: () => Promise<T> | T): Promise<[number, T]> {
  const started = performance.now()
  const r = await fn()
  return [performance.now() - started, r]
}

export async function measure<T>(reps: number, fn: () => Promise<T> | T): Promise<{ ms: number; result: T }> {
  let [, result] = await timed(fn) // warm-up
  const times: number[] = []
  for (let i = 0; i < reps; i++) {
    const [ms, r] = await timed(fn)
    times.push(ms)
    result = r
  }
  return { ms: median(times), result }
}

/**
 * A clock whose time the loader sets (each record keeps its own write time,
 * spread over the span) and whose timers are real: the appliers, the flush
 * and the health loop run as they do in production.
 */
export class LoadClock implements Clock {
  at = START_MS
  nowMs(): number {
    return this.at
  }
  setTimer(ms: number, fn: () => void): () => void {
    const t = setTimeout(fn, ms)
    t.unref()
    return () => clearTimeout(t)
  }
}

/** Writes records 0..n-1 in batches, the clock moved to each batch's write time, and waits until every sink has them. */
export async function loadRecords(db: MemWAL, clock: LoadClock, n: number): Promise<void> {
  for (let from = 0; from < n; from += LOAD_BATCH) {
    const ops = []
    for (let i = from; i < Math.min(n, from + LOAD_BATCH); i++) {
      const r = record(i, n)
      ops.push({ type: 'put' as const, key: r.key, value: r.value, namespace: r.namespace, tags: r.tags })
    }
    // The clock moves to the batch's write time (never back): each record keeps its own.
    clock.at = Math.max(clock.at, record(from, n).atMs)
    await db.batch(ops)
  }
  await db.flush({ timeoutMs: 600_000 })
}
