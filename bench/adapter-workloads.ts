/**
 * The adapters against the frameworks' own stores (issue 13 item 5), run by
 * the harness when `--only` names them (`--only langgraph-,cf-`):
 *
 * - LangGraph: a graph of 10 steps (one node looping, deterministic, no model
 *   calls) invoked again and again on 1 or 64 threads at once (thread_id),
 *   `durability: 'sync'`, checkpointed by MemwalSaver (its defaults: a put
 *   resolves once durable in the WAL) or by LangGraph's SqliteSaver
 *   (@langchain/langgraph-checkpoint-sqlite, journal_mode=WAL as it sets it,
 *   synchronous=FULL set here: durable when a put returns), and by
 *   LangGraph's MemorySaver, which stores nothing: the rate the graph
 *   runtime itself allows here. Figures: checkpoints (saver puts) per
 *   second, and each put's latency.
 * - claude-flow: store() of one agent-memory entry, one awaited writer and 64
 *   in flight, and query() of one namespace and without one (10 newest of
 *   1,000 entries in 10 namespaces), on MemwalMemoryBackend, on claude-flow's SQLiteBackend
 *   (better-sqlite3; synchronous=FULL set here, its default NORMAL is not
 *   durable at a power loss) and on its SqlJsBackend (in memory: its store
 *   writes nothing to disk, so its figure is not a durable one).
 *
 * - claude-flow under SIGKILL (bench/adapter-kill.ts): acknowledged stores
 *   lost by MemwalMemoryBackend and by SqlJsBackend, side by side.
 *
 * The frameworks are loaded only when a trial runs (optional peers).
 */
import { posix as path } from 'node:path'
import type { BaseCheckpointSaver } from '@langchain/langgraph-checkpoint'
import type { IMemoryBackend, MemoryEntry } from '../adapters/claude-flow/index.js'
import { timedTrial, type Timing } from './drive.js'
import { KILL_AFTER_MS, killTrial, type KillSystem } from './adapter-kill.js'
import { newSqlJsBackend, newSqliteBackend } from './peers/claude-flow-sqljs.js'
import { LatencyRecorder, trialResult, type TrialResult } from './stats.js'

export type AdapterSystem = 'langgraph-memwal' | 'langgraph-sqlite' | 'langgraph-memory' | 'cf-memwal' | 'cf-sqlite' | 'cf-sqljs'
type Kind = 'graph' | 'store' | 'query' | 'unscoped-query' | 'kill9'

export interface AdapterWorkload {
  readonly id: string
  readonly system: AdapterSystem
  readonly kind: Kind
  /** Graph threads, or stores in flight; 1 for an awaited loop. */
  readonly concurrency: number
}

export const ADAPTER_SYSTEM_LABELS: Readonly<Record<AdapterSystem, string>> = {
  'langgraph-memwal': 'MemwalSaver (memwal/langgraph)',
  'langgraph-sqlite': 'SqliteSaver (langgraph-checkpoint-sqlite, synchronous=FULL)',
  'langgraph-memory': 'MemorySaver (in memory: the graph\'s own ceiling, nothing stored)',
  'cf-memwal': 'MemwalMemoryBackend (memwal/claude-flow)',
  'cf-sqlite': 'claude-flow SQLiteBackend (synchronous=FULL)',
  'cf-sqljs': 'claude-flow SqlJsBackend (in memory, not durable)',
}

/** Steps of the benchmark graph, and the threads of the headline figure. */
export const GRAPH_STEPS = 10
export const GRAPH_THREADS = [1, 64] as const
const CF_IN_FLIGHT = 64
const CF_QUERY_ENTRIES = 1_000
const CF_QUERY_NAMESPACES = 10
const CF_QUERY_LIMIT = 10

export const ADAPTER_WORKLOADS: readonly AdapterWorkload[] = [
  ...GRAPH_THREADS.flatMap((n) => (['langgraph-memwal', 'langgraph-sqlite', 'langgraph-memory'] as const).map((system) => ({ id: `${system}/graph-${n}`, system, kind: 'graph' as const, concurrency: n }))),
  ...(['cf-memwal', 'cf-sqlite', 'cf-sqljs'] as const).flatMap((system) => [
    { id: `${system}/store-1`, system, kind: 'store' as const, concurrency: 1 },
    { id: `${system}/store-${CF_IN_FLIGHT}`, system, kind: 'store' as const, concurrency: CF_IN_FLIGHT },
    { id: `${system}/query`, system, kind: 'query' as const, concurrency: 1 },
    { id: `${system}/unscoped-query`, system, kind: 'unscoped-query' as const, concurrency: 1 },
  ]),
  ...(['cf-memwal', 'cf-sqljs'] as const).map((system) => ({ id: `${system}/kill9`, system, kind: 'kill9' as const, concurrency: 8 })),
]

export function adapterWorkloadLabel(w: AdapterWorkload): string {
  if (w.kind === 'kill9') return `SIGKILL after ${KILL_AFTER_MS.map((ms) => ms / 1000).join(', ')} s of stores (${w.concurrency} in flight): acknowledged stores lost`
  if (w.kind === 'graph') return `${GRAPH_STEPS}-step graph, ${w.concurrency} thread(s) at once (checkpoints/s)`
  if (w.kind === 'store') return w.concurrency === 1 ? 'store(), one awaited writer (entries/s)' : `store(), ${w.concurrency} in flight (entries/s)`
  if (w.kind === 'unscoped-query') return `query() without a namespace, ${CF_QUERY_LIMIT} newest of ${fmtInt(CF_QUERY_ENTRIES)} entries in ${CF_QUERY_NAMESPACES} namespaces (queries/s)`
  return `query() of one namespace, ${CF_QUERY_LIMIT} newest of ${fmtInt(CF_QUERY_ENTRIES)} entries (queries/s)`
}

const fmtInt = (n: number): string => n.toLocaleString('en-US')

/** A trial's figures (a kill trial: the stores acknowledged, `acked`, and how many a reopen did not find, `lost`). */
export async function adapterTrial(id: string, dir: string, timing: Timing): Promise<Record<string, number>> {
  const w = ADAPTER_WORKLOADS.find((x) => x.id === id)
  if (!w) throw new Error(`unknown adapter workload ${id}`)
  if (w.kind === 'kill9') {
    const { acked, lost, writeMs } = await killTrial(w.system as KillSystem, dir)
    return { ops: acked, elapsedMs: writeMs, opsPerSec: (acked * 1000) / writeMs, acked, lost }
  }
  return { ...(w.kind === 'graph' ? await graphTrial(w, dir, timing) : await cfTrial(w, dir, timing)) }
}

// ---- LangGraph ----

async function openSaver(system: AdapterSystem, dir: string): Promise<{ saver: BaseCheckpointSaver; close: () => Promise<void> }> {
  if (system === 'langgraph-memwal') {
    const { MemwalSaver } = await import('../adapters/langgraph/index.js')
    const saver = await MemwalSaver.open({ dir })
    return { saver, close: () => saver.close() }
  }
  if (system === 'langgraph-memory') {
    const { MemorySaver } = await import('@langchain/langgraph-checkpoint')
    return { saver: new MemorySaver(), close: async () => {} }
  }
  const { SqliteSaver } = await import('@langchain/langgraph-checkpoint-sqlite')
  const saver = SqliteSaver.fromConnString(path.join(dir, 'checkpoints.sqlite'))
  ;(saver as unknown as { db: { pragma(s: string): unknown } }).db.pragma('synchronous = FULL')
  return { saver, close: async () => (saver as unknown as { db: { close(): void } }).db.close() }
}

/**
 * `threads` loops, each invoking the graph on its own thread_id until the
 * time is up; every checkpoint put is timed where the graph calls the saver.
 */
async function graphTrial(w: AdapterWorkload, dir: string, timing: Timing): Promise<TrialResult & { cpuUsPerOp: number }> {
  const { Annotation, END, START, StateGraph } = await import('@langchain/langgraph')
  const State = Annotation.Root({
    next: Annotation<number>({ reducer: (_, b) => b, default: () => 0 }),
    done: Annotation<number[]>({ reducer: (a, b) => [...a, ...b], default: () => [] }),
  })
  const graph = new StateGraph(State)
    .addNode('work', (s) => ({ next: s.next + 1, done: [s.next] }))
    .addEdge(START, 'work')
    .addConditionalEdges('work', (s) => (s.next < GRAPH_STEPS ? 'work' : END))
  const { saver, close } = await openSaver(w.system, dir)
  let latencies = new LatencyRecorder()
  const put = saver.put.bind(saver)
  saver.put = async (...args) => {
    const started = performance.now()
    const out = await put(...args)
    latencies.record((performance.now() - started) * 1000)
    return out
  }
  const app = graph.compile({ checkpointer: saver })
  let runs = 0
  const drive = async (ms: number): Promise<{ elapsedMs: number }> => {
    const start = performance.now()
    const deadline = start + ms
    await Promise.all(Array.from({ length: w.concurrency }, async () => {
      while (performance.now() < deadline) await app.invoke({ next: 0 }, { configurable: { thread_id: `t${runs++}` }, recursionLimit: GRAPH_STEPS + 10, durability: 'sync' })
    }))
    return { elapsedMs: performance.now() - start }
  }
  try {
    await drive(timing.warmupMs)
    latencies = new LatencyRecorder()
    const cpu = process.cpuUsage()
    const { elapsedMs } = await drive(timing.measureMs)
    const used = process.cpuUsage(cpu)
    // The process's CPU (every thread) per checkpoint: what bounds checkpoints/s on a busy machine, and a figure
    // that other processes' load on the cores changes far less than the rate.
    return { ...trialResult(latencies.count, elapsedMs, latencies), cpuUsPerOp: (used.user + used.system) / latencies.count }
  } finally {
    await close()
  }
}

// ---- claude-flow ----

async function openBackend(system: AdapterSystem, dir: string): Promise<IMemoryBackend> {
  if (system === 'cf-memwal') {
    const { MemwalMemoryBackend } = await import('../adapters/claude-flow/index.js')
    const b = new MemwalMemoryBackend({ dir })
    await b.initialize()
    return b
  }
  if (system === 'cf-sqljs') {
    const b = await newSqlJsBackend({ autoPersistInterval: 0 })
    await b.initialize()
    return b
  }
  const b = await newSqliteBackend(path.join(dir, 'memory.db'))
  await b.initialize()
  b.db?.pragma('synchronous = FULL')
  return b
}

function cfEntry(i: number, namespace: string): MemoryEntry {
  const now = 1_700_000_000_000 + i
  return {
    id: `e${i}`, key: `k${i}`, content: `memory ${i}: the user prefers short answers and metric units`, type: 'semantic', namespace,
    tags: ['prefs', `t${i % 7}`], metadata: { source: 'bench', i }, accessLevel: 'private',
    createdAt: now, updatedAt: now, version: 1, references: [], accessCount: 0, lastAccessedAt: now,
    embedding: Float32Array.from({ length: 16 }, (_, d) => Math.sin(i + d)),
  }
}

async function cfTrial(w: AdapterWorkload, dir: string, timing: Timing): Promise<TrialResult> {
  const b = await openBackend(w.system, dir)
  try {
    let n = 0
    if (w.kind === 'store') {
      const store = (): Promise<void> => b.store(cfEntry(n++, `ns${n % CF_QUERY_NAMESPACES}`))
      return await timedTrial(store, w.concurrency === 1 ? { kind: 'awaited' } : { kind: 'inflight', depth: w.concurrency }, timing)
    }
    await b.bulkInsert(Array.from({ length: CF_QUERY_ENTRIES }, (_, i) => cfEntry(i, `ns${i % CF_QUERY_NAMESPACES}`)))
    const query = w.kind === 'unscoped-query'
      ? (): Promise<unknown> => b.query({ type: 'exact', limit: CF_QUERY_LIMIT })
      : (): Promise<unknown> => b.query({ type: 'exact', namespace: `ns${n++ % CF_QUERY_NAMESPACES}`, limit: CF_QUERY_LIMIT })
    return await timedTrial(query, { kind: 'awaited' }, timing)
  } finally {
    await b.shutdown()
  }
}
