/**
 * MemwalMemoryBackend against a model of IMemoryBackend's documented
 * behaviour (the semantics of claude-flow's SqlJsBackend 3.0.0-alpha.25
 * without its defects: its get of a missing id, its delete that always says
 * true, its LIMIT applied before the tag and metadata filters, its search
 * over the first 1,000 entries only). Seeded sequences of every operation,
 * compared answer by answer; the backend is shut down and reopened on the
 * same directory every 25 sequences, so every acknowledged write must have
 * been durable. CI runs MEMWAL_CF_SEQUENCES (default 150); the long run:
 *   MEMWAL_CF_SEQUENCES=100000 npx tap --disable-coverage test/adapters/claude-flow-backend.test.ts
 *
 * Why not claude-flow's own SqlJsBackend side by side: @claude-flow/memory
 * installs ~311 MB (agentdb and its dependencies) for an interface memwal
 * needs only the types of; the model encodes the same answers, defects left out.
 */
import t from 'tap'
import { MemWAL } from '../../engine/index.js'
import { SeededRandom } from '../../engine/testing.js'
import { MemwalMemoryBackend, type MemoryEntry, type MemoryQuery, type DistanceMetric } from '../../adapters/claude-flow/index.js'
import { tmpDir } from '../support/tmp-dir.js'

const SEQUENCES = Number(process.env['MEMWAL_CF_SEQUENCES'] ?? 150)
const STEPS = 12
const REOPEN_EVERY = 25
const TYPES = ['episodic', 'semantic', 'procedural'] as const

/** The documented behaviour, as a Map. */
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
  query(q: MemoryQuery): MemoryEntry[] {
    const hits = [...this.byId.values()].filter((e) => (!q.namespace || e.namespace === q.namespace) && (!q.memoryType || e.type === q.memoryType) && (!q.keyPrefix || e.key.startsWith(q.keyPrefix)) && (!q.tags || q.tags.every((x) => e.tags.includes(x))))
    hits.sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1))
    return hits.slice(q.offset ?? 0, (q.offset ?? 0) + q.limit)
  }
  search(v: Float32Array, k: number, metric: DistanceMetric, ns?: string): { id: string; score: number }[] {
    const out: { id: string; score: number }[] = []
    for (const e of this.byId.values()) {
      if (!e.embedding || (ns && e.namespace !== ns)) continue
      let dot = 0, na = 0, nb = 0, sq = 0
      e.embedding.forEach((y, i) => {
        const x = v[i] as number
        dot += x * y; na += x * x; nb += y * y; sq += (x - y) ** 2
      })
      const score = metric === 'dot' ? dot : metric === 'euclidean' ? 1 / (1 + Math.sqrt(sq)) : na && nb ? dot / Math.sqrt(na) / Math.sqrt(nb) : 0
      out.push({ id: e.id, score })
    }
    out.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1))
    return out.slice(0, k)
  }
  count(ns?: string): number {
    return [...this.byId.values()].filter((e) => !ns || e.namespace === ns).length
  }
  namespaces(): string[] {
    return [...new Set([...this.byId.values()].map((e) => e.namespace))].sort()
  }
}

const norm = (e: MemoryEntry | null) => (e ? { ...e, embedding: e.embedding ? Array.from(e.embedding) : undefined } : null)

t.test(`MemwalMemoryBackend answers as the model over ${SEQUENCES} seeded sequences, reopened every ${REOPEN_EVERY}`, async (t) => {
  const dir = tmpDir(t)
  let clock = 1_000_000
  const nowMs = () => clock
  const open = async () => {
    const db = await MemWAL.open({ dir })
    const b = new MemwalMemoryBackend({ db, nowMs })
    await b.initialize()
    return { b, db }
  }
  let { b: backend, db } = await open()
  const model = new Model()
  let compared = 0
  let mismatches = 0
  const check = (ok: boolean, what: string) => {
    compared++
    if (!ok) {
      mismatches++
      if (mismatches <= 10) t.fail(what)
    }
  }
  try {
    for (let seq = 1; seq <= SEQUENCES; seq++) {
      const rnd = new SeededRandom(seq)
      const pick = <T>(xs: readonly T[]): T => xs[rnd.below(xs.length)] as T
      const nss = [`s${seq % 7}a`, `s${seq % 7}b`]
      const ids = ['i1', 'i2', 'i3', 'i4'].map((i) => `${seq % 5}-${i}`)
      const entry = (): MemoryEntry => {
        clock += 1 + rnd.below(3)
        return {
          id: pick(ids), key: pick(['k1', 'k2', 'k3']), content: `c${rnd.below(100)}`, type: pick(TYPES), namespace: pick(nss),
          tags: [pick(['x', 'y']), ...(rnd.below(2) ? ['z'] : [])], metadata: { m: rnd.below(3) }, accessLevel: 'private',
          createdAt: clock, updatedAt: clock, version: 1, references: [], accessCount: 0, lastAccessedAt: clock,
          ...(rnd.below(4) ? { embedding: Float32Array.from([rnd.below(5) - 2, rnd.below(5) - 2, rnd.below(5), 1]) } : {}),
        }
      }
      for (let step = 0; step < STEPS; step++) {
        const at = `seq ${seq} step ${step}`
        switch (rnd.below(11)) {
          case 0: case 1: { const e = entry(); await backend.store(e); model.store(e); break }
          case 2: { const id = pick(ids); check(JSON.stringify(norm(await backend.get(id))) === JSON.stringify(norm(model.get(id))), `${at}: get ${id}`); break }
          case 3: { const ns = pick(nss), k = pick(['k1', 'k2', 'k3']); check(JSON.stringify(norm(await backend.getByKey(ns, k))) === JSON.stringify(norm(model.getByKey(ns, k))), `${at}: getByKey`); break }
          case 4: {
            const id = pick(ids)
            clock += 1
            const upd = { content: `u${rnd.below(9)}`, tags: [pick(['x', 'y'])] }
            const got = await backend.update(id, upd)
            const old = model.get(id)
            const want = old ? { ...old, ...upd, updatedAt: clock, version: old.version + 1 } : null
            if (want) model.store(want)
            check(JSON.stringify(norm(got)) === JSON.stringify(norm(want)), `${at}: update`)
            break
          }
          case 5: { const id = pick(ids); check((await backend.delete(id)) === model.delete(id), `${at}: delete`); break }
          case 6: {
            const q: MemoryQuery = { type: 'exact', limit: 1 + rnd.below(4), ...(rnd.below(2) ? { namespace: pick(nss) } : {}), ...(rnd.below(3) === 0 ? { tags: ['z'] } : {}), ...(rnd.below(3) === 0 ? { keyPrefix: 'k1' } : {}), ...(rnd.below(3) === 0 ? { memoryType: pick(TYPES) } : {}), ...(rnd.below(3) === 0 ? { offset: 1 } : {}) }
            check(JSON.stringify((await backend.query(q)).map(norm)) === JSON.stringify(model.query(q).map(norm)), `${at}: query ${JSON.stringify(q)}`)
            break
          }
          case 7: {
            const v = Float32Array.from([rnd.below(5) - 2, rnd.below(3), 1, rnd.below(2)])
            const metric = pick(['cosine', 'euclidean', 'dot'] as const)
            const ns = rnd.below(2) ? pick(nss) : undefined
            const got = (await backend.search(v, { k: 3, metric, ...(ns ? { filters: { type: 'semantic', namespace: ns, limit: 1000 } } : {}) })).map((r) => ({ id: r.entry.id, score: r.score }))
            const want = model.search(v, 3, metric, ns)
            check(got.length === want.length && got.every((g, i) => g.id === want[i]?.id && Math.abs(g.score - (want[i]?.score ?? NaN)) < 1e-9), `${at}: search ${metric} ${JSON.stringify(got)} vs ${JSON.stringify(want)}`)
            break
          }
          case 8: { const es = [entry(), entry()]; await backend.bulkInsert(es); es.forEach((e) => model.store(e)); break }
          case 9: { const del = [pick(ids), pick(ids)]; const want = new Set(del).size === 1 ? Number(model.delete(del[0] as string)) : del.filter((id) => model.delete(id)).length; check((await backend.bulkDelete(del)) === want, `${at}: bulkDelete`); break }
          default: {
            const ns = pick(nss)
            check((await backend.count(ns)) === model.count(ns), `${at}: count`)
            check(JSON.stringify(await backend.listNamespaces()) === JSON.stringify(model.namespaces()), `${at}: listNamespaces`)
            if (rnd.below(4) === 0) {
              const want = model.count(ns)
              for (const e of [...model.byId.values()]) if (e.namespace === ns) model.delete(e.id)
              check((await backend.clearNamespace(ns)) === want, `${at}: clearNamespace`)
            }
          }
        }
      }
      if (seq % REOPEN_EVERY === 0) {
        await backend.shutdown()
        await db.close()
        ;({ b: backend, db } = await open())
        check((await backend.count()) === model.count(), `after reopen ${seq}: count`)
      }
    }
  } finally {
    await backend.shutdown()
    await db.close()
  }
  t.equal(mismatches, 0, `${compared} answers compared, ${mismatches} different`)
  t.ok(compared > SEQUENCES * 4, 'the sequences compared answers')
})

t.test('refusals are typed', async (t) => {
  const backend = new MemwalMemoryBackend({ dir: tmpDir(t) })
  await t.rejects(backend.get('x'), { code: 'ENGINE_CLOSED' }, 'not initialized')
  await backend.initialize()
  t.teardown(() => backend.shutdown())
  await t.rejects(backend.query({ type: 'exact', limit: 5, colour: 'red' } as unknown as MemoryQuery), { code: 'ADAPTER_INVALID_ARGUMENT' }, 'unknown query field')
  await t.rejects(backend.search(Float32Array.from([1]), { k: 1, metric: 'manhattan' }), { code: 'ADAPTER_INVALID_ARGUMENT' }, 'unsupported metric')
  t.equal(await backend.get('missing'), null, 'a missing id is null, not an object of undefined fields')
  t.equal(await backend.delete('missing'), false, 'deleting a missing id says false')
  t.equal((await backend.healthCheck()).status, 'healthy')
})
