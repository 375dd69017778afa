/**
 * The claude-flow differential run (test/adapters/claude-flow-backend.test.ts
 * runs it under tap in CI; cf-long-run.ts shards the long run over processes):
 * MemwalMemoryBackend against claude-flow's own SqlJsBackend (3.0.0-alpha.25,
 * vendor/claude-flow-memory/) and against a model of IMemoryBackend's
 * documented behaviour, on the same seeded sequences, operation by operation:
 * - memwal must answer exactly as the model (the documented answer);
 * - SqlJsBackend must answer as memwal, or as the model with one of its
 *   known defects applied (KNOWN below, each predicted, not just tolerated):
 *   any other difference fails. So the model is checked against the real
 *   claude-flow, and memwal against the model where claude-flow is wrong.
 * Not compared: accessCount and lastAccessedAt (SqlJsBackend writes them on
 * every read; memwal does not: README), null against absent fields.
 *
 * Sequences run in `lanes` concurrent lanes, each its own memwal directory,
 * SqlJsBackend (in memory) and model; a lane's memwal is shut down and
 * reopened every REOPEN_EVERY of its sequences and must then hold exactly the
 * model's entries (so every acknowledged write was durable).
 */
import { MemWAL } from '../../../engine/index.js'
import { SeededRandom } from '../../../engine/testing.js'
import { MemwalMemoryBackend, type MemoryEntry, type MemoryQuery, type DistanceMetric, type IMemoryBackend } from '../../../adapters/claude-flow/index.js'
import { newSqlJsBackend } from '../../../bench/peers/claude-flow-sqljs.js'

const STEPS = 12
const REOPEN_EVERY = 25
const TYPES = ['episodic', 'semantic', 'procedural'] as const
/** SqlJsBackend's search reads this many entries when filters.limit is not given. */
const SQLJS_SEARCH_ENTRIES = 1_000

/** SqlJsBackend's defects, each a difference the test predicts exactly. */
export const KNOWN = {
  phantomGet: 'get of a missing id returns an object of undefined fields, not null',
  phantomThrows: 'getByKey of a missing key, and update of a missing id, throw (the phantom entry\'s undefined id is bound to SQL)',
  deleteTrue: 'delete says true, and bulkDelete counts, ids that were not there',
  limitBeforeTags: 'query applies LIMIT and OFFSET before the tag filter',
  searchScope: 'search is cosine over the first filters.limit || 1,000 entries by creation, whatever the metric and namespace filter',
} as const
export type Known = keyof typeof KNOWN

/** The documented behaviour, as a Map, and what SqlJsBackend answers instead where it is known to be wrong. */
class Model {
  readonly byId = new Map<string, MemoryEntry>()
  store(e: MemoryEntry): void {
    for (const [id, o] of this.byId) if (o.namespace === e.namespace && o.key === e.key && id !== e.id) this.byId.delete(id)
    this.byId.set(e.id, structuredClone(e))
  }
  get(id: string): MemoryEntry | null {
    return this.byId.get(id) ?? null
  }
  getByKey(ns: string, key: string): MemoryEntry | null {
    return [...this.byId.values()].find((e) => e.namespace === ns && e.key === key) ?? null
  }
  delete(id: string): boolean {
    return this.byId.delete(id)
  }
  private newestFirst(q: MemoryQuery): MemoryEntry[] {
    const hits = [...this.byId.values()].filter((e) => (!q.namespace || e.namespace === q.namespace) && (!q.memoryType || e.type === q.memoryType) && (!q.keyPrefix || e.key.startsWith(q.keyPrefix)))
    return hits.sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1))
  }
  query(q: MemoryQuery): MemoryEntry[] {
    const offset = q.offset ?? 0
    return this.newestFirst(q).filter((e) => hasTags(e, q.tags)).slice(offset, offset + q.limit)
  }
  /** KNOWN.limitBeforeTags. */
  queryLimitFirst(q: MemoryQuery): MemoryEntry[] {
    const offset = q.offset ?? 0
    return this.newestFirst(q).slice(offset, offset + q.limit).filter((e) => hasTags(e, q.tags))
  }
  search(v: Float32Array, k: number, metric: DistanceMetric, ns?: string): Scored[] {
    const out = [...this.byId.values()].filter((e) => e.embedding && (!ns || e.namespace === ns)).map((e) => ({ id: e.id, score: score(metric, v, e.embedding as Float32Array) }))
    out.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1))
    return out.slice(0, k)
  }
  /** KNOWN.searchScope: cosine over the newest `entries`, ties left in that order (a stable sort). */
  searchFirstEntries(v: Float32Array, k: number, entries: number): Scored[] {
    const out = this.newestFirst({ type: 'hybrid', limit: entries }).slice(0, entries).filter((e) => e.embedding).map((e) => ({ id: e.id, score: score('cosine', v, e.embedding as Float32Array) }))
    return out.sort((a, b) => b.score - a.score).slice(0, k)
  }
  count(ns?: string): number {
    return [...this.byId.values()].filter((e) => !ns || e.namespace === ns).length
  }
  namespaces(): string[] {
    return [...new Set([...this.byId.values()].map((e) => e.namespace))].sort()
  }
}

interface Scored { readonly id: string; readonly score: number }

function hasTags(e: MemoryEntry, tags: readonly string[] | undefined): boolean {
  return !tags || tags.every((x) => e.tags.includes(x))
}

function score(metric: DistanceMetric, v: Float32Array, e: Float32Array): number {
  let dot = 0, na = 0, nb = 0, sq = 0
  e.forEach((y, i) => {
    const x = v[i] as number
    dot += x * y; na += x * x; nb += y * y; sq += (x - y) ** 2
  })
  return metric === 'dot' ? dot : metric === 'euclidean' ? 1 / (1 + Math.sqrt(sq)) : na && nb ? dot / (Math.sqrt(na) * Math.sqrt(nb)) : 0
}

/** An answer as compared: entries without access tracking, null and undefined fields, keys sorted; a throw as { threw }. */
function canon(x: unknown): string {
  const norm = (v: unknown, top: boolean): unknown => {
    if (v instanceof Float32Array) return Array.from(v)
    if (Array.isArray(v)) return v.map((y) => norm(y, top))
    if (typeof v !== 'object' || v === null) return v
    const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] != null && !(top && (k === 'accessCount' || k === 'lastAccessedAt'))).sort()
    return Object.fromEntries(keys.map((k) => [k, norm((v as Record<string, unknown>)[k], false)]))
  }
  return JSON.stringify(norm(x, true))
}

const sameScores = (a: readonly Scored[], b: readonly Scored[]) => a.length === b.length && a.every((x, i) => x.id === b[i]?.id && Math.abs(x.score - (b[i]?.score ?? NaN)) < 1e-9)

async function settle<T>(p: Promise<T>): Promise<T | { threw: string }> {
  try {
    return await p
  } catch (err) {
    return { threw: String(err) }
  }
}

/**
 * Runs `f` with Date.now frozen at one real instant, one caller at a time:
 * SqlJsBackend.update stamps updatedAt with Date.now() and memwal's backend
 * with its clock (Date.now here), so both must read the same instant. The
 * instant is the real time, so the engines reading the clock meanwhile see
 * time stand still for a moment, never go back.
 */
let instantGate: Promise<void> = Promise.resolve()
async function atOneInstant<T>(f: (now: number) => Promise<T>): Promise<T> {
  const before = instantGate
  let release = () => {}
  instantGate = new Promise((r) => (release = r))
  await before
  const realNow = Date.now
  const now = realNow()
  Date.now = () => now
  try {
    return await f(now)
  } finally {
    Date.now = realNow
    release()
  }
}

/** What the lanes found, summed. */
export class Tally {
  sequences = 0
  compared = 0
  same = 0
  readonly known = new Map<Known, number>()
  readonly failures: string[] = []
  summary(): string {
    const known = [...this.known].map(([k, n]) => `${k} ${n}`).join(', ')
    return `${this.compared} answers compared, ${this.same} the same on both, known SqlJsBackend defects: ${known || 'none'}, ${this.failures.length} other differences`
  }
  fail(what: string): void {
    this.failures.push(what)
  }
  /** memwal against the model's answer, then SqlJsBackend against memwal or the defect predicted for this operation. */
  check(at: string, memwal: string, want: string, sqljs: string, defect?: { readonly kind: Known; readonly predicted: (s: string) => boolean }): void {
    this.compared++
    if (memwal !== want) this.fail(`${at}: memwal ${memwal} where the model says ${want}`)
    if (sqljs === memwal) this.same++
    else if (defect && defect.predicted(sqljs)) this.known.set(defect.kind, (this.known.get(defect.kind) ?? 0) + 1)
    else this.fail(`${at}: SqlJsBackend ${sqljs} where memwal says ${memwal}, not a known defect`)
  }
}

interface Lane {
  readonly dir: string
  readonly model: Model
  readonly sqljs: IMemoryBackend
  memwal: MemwalMemoryBackend
  db: MemWAL
  clock: number
}

async function openMemwal(dir: string, inlineWriteBytesMax: number): Promise<{ db: MemWAL; memwal: MemwalMemoryBackend }> {
  const db = await MemWAL.open({ dir, inlineWriteBytesMax })
  const memwal = new MemwalMemoryBackend({ db, nowMs: () => Date.now() })
  await memwal.initialize()
  return { db, memwal }
}

/** One seeded sequence of STEPS operations on both backends and the model. */
async function runSequence(lane: Lane, seq: number, tally: Tally): Promise<void> {
  const { model, sqljs } = lane
  const rnd = new SeededRandom(seq)
  const pick = <T>(xs: readonly T[]): T => xs[rnd.below(xs.length)] as T
  const nss = [`s${seq % 7}a`, `s${seq % 7}b`]
  const ids = ['i1', 'i2', 'i3', 'i4'].map((i) => `${seq % 5}-${i}`)
  const entry = (): MemoryEntry => {
    lane.clock += 1 + rnd.below(3)
    const clock = lane.clock
    return {
      id: pick(ids), key: pick(['k1', 'k2', 'k3']), content: `c${rnd.below(100)}`, type: pick(TYPES), namespace: pick(nss),
      tags: [pick(['x', 'y']), ...(rnd.below(2) ? ['z'] : [])], metadata: { m: rnd.below(3) }, accessLevel: 'private',
      createdAt: clock, updatedAt: clock, version: 1, references: [], accessCount: 0, lastAccessedAt: clock,
      ...(rnd.below(4) ? { embedding: Float32Array.from([rnd.below(5) - 2, rnd.below(5) - 2, rnd.below(5), 1]) } : {}),
    }
  }
  const both = async (f: (b: IMemoryBackend) => Promise<unknown>): Promise<[string, string]> => [canon(await settle(f(lane.memwal))), canon(await settle(f(sqljs)))]
  const threw = (s: string) => s.startsWith('{"threw":')
  for (let step = 0; step < STEPS; step++) {
    const at = `seq ${seq} step ${step}`
    switch (rnd.below(11)) {
      case 0: case 1: { const e = entry(); await lane.memwal.store(e); await sqljs.store(e); model.store(e); break }
      case 2: {
        const id = pick(ids)
        const [m, s] = await both((b) => b.get(id))
        tally.check(`${at}: get ${id}`, m, canon(model.get(id)), s, { kind: 'phantomGet', predicted: (x) => !model.get(id) && x !== 'null' && !x.includes('"id":') })
        break
      }
      case 3: {
        const ns = pick(nss), k = pick(['k1', 'k2', 'k3'])
        const [m, s] = await both((b) => b.getByKey(ns, k))
        tally.check(`${at}: getByKey ${ns} ${k}`, m, canon(model.getByKey(ns, k)), s, { kind: 'phantomThrows', predicted: (x) => !model.getByKey(ns, k) && threw(x) })
        break
      }
      case 4: {
        const id = pick(ids)
        const upd = { content: `u${rnd.below(9)}`, tags: [pick(['x', 'y'])] }
        const [m, s, want] = await atOneInstant(async (now) => {
          const old = model.get(id)
          const next = old ? { ...old, ...upd, updatedAt: now, version: old.version + 1 } : null
          if (next) model.store(next)
          return [canon(await settle(lane.memwal.update(id, upd))), canon(await settle(sqljs.update(id, upd))), canon(next)] as const
        })
        tally.check(`${at}: update ${id}`, m, want, s, { kind: 'phantomThrows', predicted: (x) => want === 'null' && threw(x) })
        break
      }
      case 5: {
        const id = pick(ids)
        const [m, s] = await both((b) => b.delete(id))
        tally.check(`${at}: delete ${id}`, m, canon(model.delete(id)), s, { kind: 'deleteTrue', predicted: (x) => x === 'true' })
        break
      }
      case 6: {
        const q: MemoryQuery = { type: 'exact', limit: 1 + rnd.below(4), ...(rnd.below(2) ? { namespace: pick(nss) } : {}), ...(rnd.below(3) === 0 ? { tags: ['z'] } : {}), ...(rnd.below(3) === 0 ? { keyPrefix: 'k1' } : {}), ...(rnd.below(3) === 0 ? { memoryType: pick(TYPES) } : {}), ...(rnd.below(3) === 0 ? { offset: 1 } : {}) }
        const [m, s] = await both((b) => b.query(q))
        tally.check(`${at}: query ${JSON.stringify(q)}`, m, canon(model.query(q)), s, { kind: 'limitBeforeTags', predicted: (x) => x === canon(model.queryLimitFirst(q)) })
        break
      }
      case 7: {
        const v = Float32Array.from([rnd.below(5) - 2, rnd.below(3), 1, rnd.below(2)])
        const metric = pick(['cosine', 'euclidean', 'dot'] as const)
        const ns = rnd.below(2) ? pick(nss) : undefined
        const opts = { k: 3, metric, ...(ns ? { filters: { type: 'semantic' as const, namespace: ns, limit: SQLJS_SEARCH_ENTRIES } } : {}) }
        const scored = async (b: IMemoryBackend) => (await b.search(v, opts)).map((r) => ({ id: r.entry.id, score: r.score }))
        const m = await scored(lane.memwal), s = await scored(sqljs)
        const want = model.search(v, 3, metric, ns)
        tally.check(`${at}: search ${metric} ${ns ?? ''} ${JSON.stringify(v)}`, sameScores(m, want) ? 'model' : JSON.stringify(m), 'model', sameScores(s, m) ? 'model' : JSON.stringify(s), { kind: 'searchScope', predicted: () => sameScores(s, model.searchFirstEntries(v, 3, SQLJS_SEARCH_ENTRIES)) })
        break
      }
      case 8: { const es = [entry(), entry()]; await lane.memwal.bulkInsert(es); await sqljs.bulkInsert(es); es.forEach((e) => model.store(e)); break }
      case 9: {
        const del = [pick(ids), pick(ids)]
        const [m, s] = await both((b) => b.bulkDelete(del))
        const want = new Set(del).size === 1 ? Number(model.delete(del[0] as string)) : del.filter((id) => model.delete(id)).length
        tally.check(`${at}: bulkDelete ${del.join(',')}`, m, canon(want), s, { kind: 'deleteTrue', predicted: (x) => x === String(del.length) })
        break
      }
      default: {
        const ns = pick(nss)
        const [mc, sc] = await both((b) => b.count(ns))
        tally.check(`${at}: count ${ns}`, mc, canon(model.count(ns)), sc)
        const [ml, sl] = await both((b) => b.listNamespaces())
        tally.check(`${at}: listNamespaces`, ml, canon(model.namespaces()), sl)
        if (rnd.below(4) === 0) {
          const want = model.count(ns)
          for (const e of [...model.byId.values()]) if (e.namespace === ns) model.delete(e.id)
          const [m, s] = await both((b) => b.clearNamespace(ns))
          tally.check(`${at}: clearNamespace ${ns}`, m, canon(want), s)
        }
      }
    }
  }
}

/** After a reopen, memwal holds exactly the model: every entry whole, nothing else. */
async function checkReopened(lane: Lane, seq: number, tally: Tally): Promise<void> {
  tally.compared++
  const all = await lane.memwal.query({ type: 'exact', limit: 100_000 })
  const want = canon(lane.model.query({ type: 'exact', limit: 100_000 }))
  if (canon(all) === want) tally.same++
  else tally.fail(`after reopen at seq ${seq}: memwal holds ${canon(all)} where the model holds ${want}`)
}

/** The run's shape: which seeds (1..sequences, those with seed % shards === shard), in how many lanes. */
export interface DifferentialRun {
  readonly sequences: number
  readonly lanes: number
  readonly shard: number
  readonly shards: number
  /**
   * The engine's inlineWriteBytesMax: its default writes a small group on the
   * event loop (fast alone, but the lanes then wait for each other's syncs);
   * 0 writes every group through the thread pool. Durable either way.
   */
  readonly inlineWriteBytesMax?: number
}

/** Runs the sequences of `run`, lane i in laneDirs[i] (empty directories), adding what it finds to `tally`. */
export async function runDifferential(run: DifferentialRun, laneDirs: readonly string[], tally: Tally): Promise<number> {
  const seqs = Array.from({ length: run.sequences }, (_, i) => i + 1).filter((s) => s % run.shards === run.shard)
  await Promise.all(laneDirs.slice(0, run.lanes).map((dir, lane) => runLane(dir, seqs.filter((_, i) => i % run.lanes === lane), run.inlineWriteBytesMax ?? 8192, tally)))
  return seqs.length
}

async function runLane(dir: string, seqs: readonly number[], inline: number, tally: Tally): Promise<void> {
  const sqljs = await newSqlJsBackend({ autoPersistInterval: 0 })
  await sqljs.initialize()
  const lane: Lane = { dir, model: new Model(), sqljs, clock: 1_000_000, ...(await openMemwal(dir, inline)) }
  try {
    for (const [i, seq] of seqs.entries()) {
      await runSequence(lane, seq, tally)
      tally.sequences++
      if ((i + 1) % REOPEN_EVERY === 0) {
        await lane.memwal.shutdown()
        await lane.db.close()
        Object.assign(lane, await openMemwal(dir, inline))
        await checkReopened(lane, seq, tally)
      }
    }
  } finally {
    await lane.memwal.shutdown()
    await lane.db.close()
    await sqljs.shutdown()
  }
}

