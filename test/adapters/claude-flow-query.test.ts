/**
 * claude-flow's query() of one namespace on MemwalMemoryBackend (issue 13):
 * the newest `limit` entries after `offset`, as claude-flow's SQL backends
 * order them (createdAt descending, ties by id), read from the front of the
 * namespace's newest-first index (adapters/claude-flow/newest-first.ts). What
 * a caller relies on: the answer is the model's, and a limit-10 query costs
 * about 10 entries' reads, not the namespace's size (it read and sorted every
 * entry of the namespace: about a second per query of 100 entries after a
 * 1,000-entry bulkInsert on a loaded machine). A query without a namespace
 * merges the namespaces' newest-first walks: it reads about one entry per
 * namespace more, not every entry, and answers as the full scan did, on
 * random data. A store written before the index is indexed when a backend
 * initializes on it.
 */
import t, { type Test } from 'tap'
import { MemWAL, DEFAULT_NAMESPACE } from '../../engine/index.js'
import { SeededRandom } from '../../engine/testing.js'
import { MemwalMemoryBackend, type MemoryEntry, type MemoryQuery } from '../../adapters/claude-flow/index.js'
import { IndexVisits } from '../support/index-visits.js'
import { SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'

const BIG = 1_000

function entry(i: number, namespace: string, createdAt: number): MemoryEntry {
  return {
    id: `e${i}`, key: `k${i}`, content: `c${i}`, type: 'semantic', namespace, tags: i % 2 === 0 ? ['even'] : ['odd'], metadata: { i }, accessLevel: 'private',
    createdAt, updatedAt: createdAt, version: 1, references: [], accessCount: 0, lastAccessedAt: createdAt,
  }
}

/** What claude-flow answers: every match (of every namespace without one), newest first, ties by id (UTF-16 order), then offset and limit. */
function modelQuery(all: Iterable<MemoryEntry>, q: { namespace?: string; limit: number; offset?: number; tags?: string[] }): string[] {
  const hits = [...all].filter((e) => (q.namespace === undefined || e.namespace === q.namespace) && (q.tags ?? []).every((t) => e.tags.includes(t)))
  hits.sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1))
  const offset = q.offset ?? 0
  return hits.slice(offset, offset + q.limit).map((e) => e.id)
}

/** A MemWAL whose index reads and gets are counted, with a claude-flow backend on it. */
async function opened(t: Test, dir: string, faults?: SinkFaults): Promise<{ db: MemWAL; backend: MemwalMemoryBackend; visits: IndexVisits; gets: () => number }> {
  const visits = new IndexVisits()
  const db = await MemWAL.open({ dir, wrapSink: (s) => visits.wrap(faults ? faults.wrap(s) : s) })
  let gets = 0
  const get = db.get.bind(db)
  db.get = (...args) => {
    gets++
    return get(...args)
  }
  const backend = new MemwalMemoryBackend({ db })
  await backend.initialize()
  t.teardown(async () => {
    faults?.release()
    await backend.shutdown()
    await db.close()
  })
  return { db, backend, visits, gets: () => gets }
}

t.test(`a limit-10 query of a namespace of ${BIG} entries reads about 10 of them, and answers as claude-flow does`, async (t) => {
  const { db, backend, visits, gets } = await opened(t, tmpDir(t))
  const r = new SeededRandom(13)
  const model = new Map<string, MemoryEntry>()
  // Write times out of insertion order, some equal (ties go by id), and a second namespace around it.
  const all = Array.from({ length: BIG + 200 }, (_, i) => entry(i, i < BIG ? 'big' : 'small', 1_700_000_000_000 + r.below(BIG / 2)))
  await backend.bulkInsert(all)
  for (const e of all) model.set(e.id, e)
  // Moves: a newer createdAt, another namespace, and an entry replaced by another id with its (namespace, key).
  const moved = [{ ...(model.get('e5') as MemoryEntry), createdAt: 1_800_000_000_000 }, { ...(model.get('e6') as MemoryEntry), namespace: 'small' }, { ...entry(5000, 'big', 1_800_000_000_001), key: 'k7' }]
  for (const e of moved) await backend.store(e)
  for (const e of moved) model.set(e.id, e)
  model.delete('e7')
  await db.flush()

  const queries = [{ limit: 10 }, { limit: 10, offset: 20 }, { limit: 1 }, { limit: 5, tags: ['even'] }, { limit: 0 }]
  for (const q of queries) {
    const full = { namespace: 'big', ...q }
    const visitedBefore = visits.visited
    const getsBefore = gets()
    const got = (await backend.query({ type: 'exact', ...full } as MemoryQuery)).map((e) => e.id)
    const visited = visits.visited - visitedBefore
    const read = gets() - getsBefore
    t.strictSame(got, modelQuery(model.values(), full), `${JSON.stringify(q)}: claude-flow's answer`)
    // Entries the query needs before it can stop: offset + limit matches (every other entry matches a tag), and one to see the tie end.
    const need = ((q.offset ?? 0) + q.limit) * (q.tags ? 2 : 1) + 1
    // The engine's scan reads in batches that double from 4 while it reads on (4, 8, 16, ...): the last batch may hold
    // almost twice what came before it, so at most about four times what it used, plus the first batch.
    t.ok(visited <= 4 * need + 4, `${JSON.stringify(q)}: ${visited} index entries read, for ${need} needed (the namespace holds ${BIG})`)
    t.ok(read <= need + 2, `${JSON.stringify(q)}: ${read} entries read, for ${need} needed`)
  }
  t.equal(await backend.count('big'), [...model.values()].filter((e) => e.namespace === 'big').length, 'count of the namespace')
  t.equal(await backend.count(), model.size, 'count of everything')
})

t.test('with every write pending (the index applies nothing), the answer is the same', async (t) => {
  const faults = new SinkFaults({ targets: ['index'] })
  const { backend } = await opened(t, tmpDir(t), faults)
  faults.hang()
  const all = Array.from({ length: 300 }, (_, i) => entry(i, `ns${i % 3}`, 1_700_000_000_000 + ((i * 7919) % 300)))
  await backend.bulkInsert(all)
  for (const q of [{ namespace: 'ns1', limit: 10 }, { namespace: 'ns2', limit: 7, offset: 3 }, { namespace: 'ns0', limit: 4, tags: ['odd'] }]) {
    t.strictSame((await backend.query({ type: 'exact', ...q })).map((e) => e.id), modelQuery(all, q), JSON.stringify(q))
  }
})

t.test('a store written before the newest-first index is indexed when a backend initializes on it', async (t) => {
  const dir = tmpDir(t)
  const all = Array.from({ length: 50 }, (_, i) => entry(i, `ns${i % 2}`, 1_700_000_000_000 + ((i * 31) % 50)))
  {
    const db = await MemWAL.open({ dir })
    const backend = new MemwalMemoryBackend({ db })
    await backend.initialize()
    await backend.bulkInsert(all)
    // What the adapter wrote before the index existed: no `cf.t` slots, no `cf.m` marker.
    const keys: string[] = []
    for await (const r of db.query({ namespace: DEFAULT_NAMESPACE, prefix: 'cf.t\u0000', limit: 100_000 })) keys.push(r.key)
    t.equal(keys.length, all.length, 'a slot per entry')
    await db.batch([...keys, 'cf.m\u0000newest-first'].map((key) => ({ type: 'del' as const, key })))
    await backend.shutdown()
    await db.close()
  }
  const { backend } = await opened(t, dir)
  for (const q of [{ namespace: 'ns0', limit: 5 }, { namespace: 'ns1', limit: 100 }]) {
    t.strictSame((await backend.query({ type: 'exact', ...q })).map((e) => e.id), modelQuery(all, q), `${JSON.stringify(q)} after the index was built`)
  }
})

t.test('a createdAt that is not a finite number is refused, typed', async (t) => {
  const { backend } = await opened(t, tmpDir(t))
  for (const createdAt of [Number.NaN, Infinity, '1700000000000']) {
    await t.rejects(backend.store({ ...entry(1, 'ns', 0), createdAt } as unknown as MemoryEntry), { code: 'ADAPTER_INVALID_ARGUMENT' }, `createdAt ${String(createdAt)}`)
  }
})

t.test('a limit-10 query without a namespace reads about 10 entries and one per namespace, not every entry', async (t) => {
  const { db, backend, visits, gets } = await opened(t, tmpDir(t))
  const r = new SeededRandom(31)
  const namespaces = 20
  const all = Array.from({ length: BIG * 2 }, (_, i) => entry(i, `ns${i % namespaces}`, 1_700_000_000_000 + r.below(BIG)))
  await backend.bulkInsert(all)
  await db.flush()
  for (const q of [{ limit: 10 }, { limit: 10, offset: 30 }, { limit: 3, tags: ['odd'] }, { limit: 0 }]) {
    const visitedBefore = visits.visited
    const getsBefore = gets()
    t.strictSame((await backend.query({ type: 'exact', ...q })).map((e) => e.id), modelQuery(all, q), `${JSON.stringify(q)}: claude-flow's answer`)
    const need = ((q.offset ?? 0) + q.limit) * (q.tags ? 2 : 1) + 1
    const read = gets() - getsBefore
    const visited = visits.visited - visitedBefore
    t.ok(read <= need + 2, `${JSON.stringify(q)}: ${read} entries read, for ${need} needed (the store holds ${all.length})`)
    // A namespace's first slot (a query of one, which the engine reads in a batch of 4), then pages that double.
    t.ok(visited <= 4 * (namespaces + need) + 4, `${JSON.stringify(q)}: ${visited} index entries read, for ${need} needed in ${namespaces} namespaces`)
  }
})

t.test('without a namespace, the answer is the full scan\'s on random data, applied and pending', async (t) => {
  for (const seed of [1, 2, 3]) {
    const faults = new SinkFaults({ targets: ['index'] })
    const { backend, db } = await opened(t, tmpDir(t), faults)
    const r = new SeededRandom(seed)
    const model = new Map<string, MemoryEntry>()
    const namespaces = 1 + r.below(12)
    // createdAt from a narrow range: ties across namespaces; namespaces that start like another ('ns1', 'ns10').
    const write = async (n: number): Promise<void> => {
      const batch = Array.from({ length: n }, () => entry(r.below(400), `ns${r.below(namespaces)}`, 1_700_000_000_000 + r.below(50)))
      await backend.bulkInsert(batch)
      for (const e of batch) {
        // A (namespace, key) held by another id is taken over (keys are k<i>, so only the same id holds one here).
        model.set(e.id, e)
      }
      const gone = Array.from({ length: r.below(10) }, () => `e${r.below(400)}`)
      await backend.bulkDelete(gone)
      for (const id of gone) model.delete(id)
    }
    const check = async (when: string): Promise<void> => {
      for (let i = 0; i < 40; i++) {
        const q = { limit: r.below(25), ...(r.below(2) === 0 ? { offset: r.below(30) } : {}), ...(r.below(4) === 0 ? { tags: [r.below(2) === 0 ? 'even' : 'odd'] } : {}) }
        t.strictSame((await backend.query({ type: 'exact', ...q })).map((e) => e.id), modelQuery(model.values(), q), `seed ${seed}, ${when}: ${JSON.stringify(q)}`)
      }
    }
    await write(300)
    await db.flush()
    await check('applied')
    faults.hang()
    await write(150)
    await check('pending')
    faults.release()
    await db.flush()
    await check('applied again')
  }
})
