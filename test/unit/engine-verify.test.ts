/**
 * The reconciler on an open engine, `engine.verify()` (DESIGN.md §8): clean
 * after writes and a flush; it finds a backend that lost or changed keys, a
 * cache entry that disagrees with the backend, and index entries that are
 * orphaned, wrong or missing, naming the key; `verify({ repair: true })`
 * repairs each (re-applies from the log, invalidates the cache entry,
 * rebuilds the index) and reads and queries are right again. A busy engine
 * (writes while verify runs) reports nothing that is not wrong.
 *
 * The store is a memory-level database the test keeps a handle to, so it can
 * change the backend and the index underneath the engine, with the sublevel
 * names and encodings of engine/sinks/level-store.ts and index-sink.ts.
 */
import path from 'node:path'
import { MemoryLevel } from 'memory-level'
import { Packr } from 'msgpackr'
import t, { type Test } from 'tap'
import { fsck, MemWAL, type LevelDatabase, type MemwalOptions, type ReconcileFinding, type VerifyReport } from '../../engine/index.js'
import { SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'
import { LevelStore } from '../../engine/sinks/level-store.js'
import { tmpDir } from '../support/tmp-dir.js'

const SEP = '\u0000'
const packr = new Packr({ useRecords: false, useToJSON: false, mapsAsObjects: true, moreTypes: false })
const NAMESPACES = ['notes', 'facts', 'plans'] as const
const KEYS = 120

function sublevels(db: MemoryLevel<string, Uint8Array>) {
  return {
    data: db.sublevel<string, Uint8Array>('rows', { keyEncoding: 'utf8', valueEncoding: 'view' }),
    idx: db.sublevel<string, Uint8Array>('ix', { keyEncoding: 'utf8', valueEncoding: 'view' }),
  }
}

type Fixture = { readonly engine: MemWAL; readonly db: MemoryLevel<string, Uint8Array> } & ReturnType<typeof sublevels>

const keyOf = (i: number): string => `k/${String(i).padStart(3, '0')}`
const valueOf = (i: number, round: number): { i: number; round: number; pad: string } => ({ i, round, pad: 'x'.repeat(40 + (i % 7) * 10) })
/** Each key lives in one namespace (identity is (namespace, key)): k/NNN in NAMESPACES[NNN % 3]. */
const nsOfKey = (key: string): string => NAMESPACES[Number(key.slice(2)) % NAMESPACES.length] as string
const namespaceOf = (i: number, _round: number): string => nsOfKey(keyOf(i))
const ns = (key: string): { namespace: string } => ({ namespace: nsOfKey(key) })
/** The store's key of an entry: its identity (engine/format/identity.ts). */
const idOf = (key: string): string => `${nsOfKey(key)}${SEP}${key}`
/** A layout-2 row: [value, tags, lsn, createdAt, updatedAt, expiresAt]. */
const row = (value: unknown, lsn: number): Uint8Array => packr.encode([value, null, lsn, 0, 0, null])
const tagsOf = (i: number): string[] => (i % 3 === 0 ? ['red'] : i % 3 === 1 ? ['red', 'blue'] : [])

/**
 * An engine on the simulated disk with a memory-level store, holding KEYS
 * keys written over two rounds (puts with namespaces and tags, a batch, some
 * deletes), flushed. The cache is small, so most keys are not cached.
 */
async function open(t: Test, extra: Partial<MemwalOptions> = {}): Promise<Fixture> {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
  const engine = await MemWAL.open({
    dir: '/data', fs: new SimulatedFileSystem(new SeededRandom(11)), level: db as unknown as LevelDatabase,
    segmentBytes: 64 * 1024, cacheBytes: 4096, resilience: { retryDelayMsMin: 1, retryDelayMsMax: 5 }, ...extra,
  })
  t.teardown(() => engine.close())
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < KEYS; i++) {
      const tags = tagsOf(i + round)
      await engine.put(keyOf(i), valueOf(i, round), { namespace: namespaceOf(i, round), ...(tags.length > 0 ? { tags } : {}) })
    }
  }
  await engine.batch([{ type: 'del', key: keyOf(5), ...ns(keyOf(5)) }, { type: 'put', key: keyOf(6), value: valueOf(6, 2), ...ns(keyOf(6)) }, { type: 'del', key: keyOf(7), ...ns(keyOf(7)) }])
  await engine.delete(keyOf(8), ns(keyOf(8)))
  await engine.flush()
  return { engine, db, ...sublevels(db) }
}

function kinds(r: VerifyReport): Record<string, number> {
  return r.counts as Record<string, number>
}

function byKey(r: VerifyReport): Map<string, ReconcileFinding[]> {
  const m = new Map<string, ReconcileFinding[]>()
  for (const f of r.findings) if (f.key !== undefined) m.set(f.key, [...(m.get(f.key) ?? []), f])
  return m
}

async function queryKeys(engine: MemWAL, q: { namespace?: string; tag?: string }): Promise<string[]> {
  const out: string[] = []
  for await (const r of engine.query({ ...q, limit: 100_000 })) out.push(r.key)
  return out
}

t.test('clean after writes and a flush: no findings, checkpoints at the last LSN, the whole log verified', async (t) => {
  const { engine } = await open(t)
  const last = engine.health().wal.lastLsn
  t.equal(last, 2 * KEYS + 2)
  const r = await engine.verify()
  t.equal(r.clean, true)
  t.strictSame(r.findings, [])
  t.strictSame(r.counts, {})
  t.equal(r.lastLsn, last)
  t.strictSame(r.checkpoints, { backend: last, index: last })
  t.equal(r.records, last, 'every record was read and verified')
  t.ok(r.bytesScanned > 0)
  const again = await engine.verify({ repair: true })
  t.equal(again.clean, true, 'repair on a clean engine finds and changes nothing')
  t.equal(again.repaired, 0)
})

t.test('a backend that lost a key and holds another one wrongly: found with the log\'s LSN, re-applied by repair', async (t) => {
  const { engine, data } = await open(t)
  // Keys written early: long evicted from the small cache, so only the backend answers for them.
  const lost = keyOf(10)
  const changed = keyOf(11)
  const deleted = keyOf(8)
  const want = { lost: await engine.getEntry(lost, ns(lost)), changed: await engine.getEntry(changed, ns(changed)) }
  t.ok(want.lost && want.changed)
  await data.del(idOf(lost))
  await data.put(idOf(changed), row({ tampered: true }, (want.changed?.version ?? 0) - KEYS))
  await data.put(idOf(deleted), row({ resurrected: true }, 1))

  const r = await engine.verify()
  t.equal(r.clean, false)
  const f = byKey(r)
  t.match(f.get(lost), [{ kind: 'backend-missing', sink: 'backend', namespace: nsOfKey(lost), lsnFirst: want.lost?.version, repaired: false }])
  t.match(f.get(changed)?.find((x) => x.kind === 'backend-stale'), { sink: 'backend', lsnFirst: want.changed?.version, repaired: false })
  t.match(f.get(deleted)?.find((x) => x.kind === 'backend-extra'), { sink: 'backend', repaired: false })
  t.equal(kinds(r)['backend-missing'], 1)
  t.equal(kinds(r)['backend-stale'], 1)
  t.equal(kinds(r)['backend-extra'], 1)
  t.equal(r.unrepaired, r.findings.length)

  const fixed = await engine.verify({ repair: true })
  t.ok(fixed.findings.filter((x) => x.sink === 'backend').every((x) => x.repaired), 'backend findings repaired')
  t.equal(fixed.unrepaired, 0, 'and nothing else is left (the index is rebuilt from the repaired backend)')
  t.strictSame(await engine.getEntry(lost, ns(lost)), want.lost, 'the lost key is back, as the log wrote it')
  t.strictSame(await engine.getEntry(changed, ns(changed)), want.changed)
  t.equal(await engine.get(deleted, ns(deleted)), undefined, 'the deleted key is gone again')
  t.equal((await engine.verify()).clean, true, 'clean after the repair')
})

t.test('a cache entry that disagrees with the backend: found, and invalidated by repair', async (t) => {
  const { engine, data } = await open(t)
  const key = keyOf(20)
  const real = await engine.getEntry(key, ns(key)) // read from the backend, now cached
  t.ok(real)
  // Evict it (a small cache: read other early keys), then have the backend answer one read wrongly, then put the backend right.
  for (let i = 30; i < 90; i++) await engine.get(keyOf(i), ns(keyOf(i)))
  const good = await data.get(idOf(key))
  t.ok(good)
  await data.put(idOf(key), row({ wrong: true }, 7777))
  t.strictSame(await engine.get(key, ns(key)), { wrong: true }, 'the wrong read fills the cache')
  await data.put(idOf(key), good as Uint8Array)
  t.strictSame(await engine.get(key, ns(key)), { wrong: true }, 'and the cache keeps answering it')

  const r = await engine.verify()
  t.strictSame(r.counts, { 'cache-stale': 1 }, 'only the cache is wrong')
  t.match(r.findings[0], { kind: 'cache-stale', sink: 'cache', key, lsnFirst: 7777, repaired: false })
  t.match(r.findings[0]?.detail, `backend has LSN ${real?.version}`)

  const fixed = await engine.verify({ repair: true })
  t.match(fixed.findings, [{ kind: 'cache-stale', key, repaired: true }])
  t.equal(fixed.unrepaired, 0)
  t.strictSame(await engine.getEntry(key, ns(key)), real, 'the cache entry was dropped: the read goes to the backend')
  t.equal((await engine.verify()).clean, true)
})

t.test('index problems (orphan, wrong labels, missing key, stray posting) are found per key and repaired by a rebuild', async (t) => {
  const { engine, idx } = await open(t)
  const wrongKey = keyOf(30)
  const missingKey = keyOf(31)
  const wrong = await engine.getEntry(wrongKey, ns(wrongKey))
  const missing = await engine.getEntry(missingKey, ns(missingKey))
  t.ok(wrong && missing)
  // The index (layout 2): forward entries f NUL id -> [tags], postings t NUL tag NUL id.
  const postings = (key: string, e: { tags?: readonly string[] }): string[] => (e.tags ?? []).map((tag) => `t${SEP}${tag}${SEP}${idOf(key)}`)
  const b = idx.batch()
  // An orphan: a key indexed that the backend does not hold.
  b.put(`f${SEP}notes${SEP}ghost`, packr.encode([null]))
  // Wrong labels for a live key (forward entry and postings agree with each other, not with the backend).
  for (const p of postings(wrongKey, wrong as object)) b.del(p)
  b.put(`f${SEP}${idOf(wrongKey)}`, packr.encode([['old']]))
  b.put(`t${SEP}old${SEP}${idOf(wrongKey)}`, new Uint8Array(0))
  // A live key not indexed at all.
  b.del(`f${SEP}${idOf(missingKey)}`)
  for (const p of postings(missingKey, missing as object)) b.del(p)
  // A tag posting for a live key that does not carry that tag.
  b.put(`t${SEP}green${SEP}${idOf(keyOf(32))}`, new Uint8Array(0))
  await b.write()

  t.notOk((await queryKeys(engine, { namespace: missing?.namespace as string })).includes(missingKey), 'the missing key drops out of queries')
  t.ok((await queryKeys(engine, { namespace: 'notes' })).includes('ghost') === false, 'a query never returns a key the backend does not hold')

  const r = await engine.verify()
  t.strictSame(r.counts, { 'index-orphan': 2, 'index-mismatch': 1, 'index-missing': 1 })
  const f = byKey(r)
  t.match(f.get('ghost'), [{ kind: 'index-orphan', sink: 'index', detail: 'indexed key not in the backend' }])
  t.match(f.get(wrongKey), [{ kind: 'index-mismatch', sink: 'index' }])
  t.match(f.get(missingKey), [{ kind: 'index-missing', sink: 'index' }])
  t.match(f.get(keyOf(32)), [{ kind: 'index-orphan', detail: 'tag entry "green" does not match the key\'s indexed entry' }])
  t.ok(r.findings.every((x) => !x.repaired))

  const fixed = await engine.verify({ repair: true })
  t.strictSame(fixed.counts, r.counts, 'the repair run reports the same findings')
  t.ok(fixed.findings.every((x) => x.repaired), 'all repaired')
  t.equal(fixed.unrepaired, 0)
  const after = await engine.verify()
  t.equal(after.clean, true, `clean after the rebuild: ${JSON.stringify(after.counts)}`)
  t.equal(after.checkpoints.index, engine.health().wal.lastLsn, 'the rebuilt index carries the backend\'s checkpoint')
  t.ok((await queryKeys(engine, { namespace: missing?.namespace as string })).includes(missingKey), 'the missing key is queryable again')
  t.notOk((await queryKeys(engine, { tag: 'old' })).length, 'no key under the wrong tag')
  t.strictSame(await queryKeys(engine, { tag: 'green' }), [], 'no stray tag posting')
  t.ok((await queryKeys(engine, { namespace: wrong?.namespace as string })).includes(wrongKey))
  // Writes after the rebuild are indexed as usual.
  await engine.put('after/rebuild', 1, { namespace: 'plans', tags: ['green'] })
  await engine.flush()
  t.strictSame(await queryKeys(engine, { tag: 'green' }), ['after/rebuild'])
  t.equal((await engine.verify()).clean, true)
})

t.test('an index entry whose valueBytes is not its stored value\'s size is found and repaired; one without a size is not a finding', async (t) => {
  const { engine, idx } = await open(t)
  const wrongKey = keyOf(40)
  const unsizedKey = keyOf(41)
  const forward = (key: string): string => `f${SEP}${idOf(key)}`
  // Forward entries (layout 3): [tags, expiresAt, valueBytes, updatedAt].
  const read = async (key: string): Promise<unknown[]> => packr.decode((await idx.get(forward(key))) as Uint8Array) as unknown[]
  const right = await read(wrongKey)
  t.type(right[2], 'number', 'the engine keeps the size')
  const statsBefore = await engine.stats()
  const b = idx.batch()
  b.put(forward(wrongKey), packr.encode([right[0], right[1], (right[2] as number) + 1000, right[3]]))
  // As indexed before sizes were kept: stats() reads the row; verify has nothing to compare.
  const unsized = await read(unsizedKey)
  b.put(forward(unsizedKey), packr.encode([unsized[0], unsized[1], null, unsized[3]]))
  await b.write()
  t.not((await engine.stats()).bytes, statsBefore.bytes, 'stats() sums the wrong size')

  const r = await engine.verify()
  t.strictSame(r.counts, { 'index-mismatch': 1 }, 'one finding: the wrong size, not the missing one')
  t.match(byKey(r).get(wrongKey), [{ kind: 'index-mismatch', sink: 'index', detail: `indexed valueBytes ${(right[2] as number) + 1000}, the stored value is ${right[2] as number} bytes` }])
  const fixed = await engine.verify({ repair: true })
  t.ok(fixed.findings.length === 1 && fixed.findings.every((x) => x.repaired), 'repaired by the rebuild')
  t.equal((await engine.verify()).clean, true)
  t.equal((await read(wrongKey))[2], right[2], 'the rebuilt entry holds the value\'s size')
  t.equal((await read(unsizedKey))[2], unsized[2], 'and the unsized one is sized again')
  t.strictSame(await engine.stats(), statsBefore, 'stats() as before')
})

t.test('fsck on a closed directory finds a wrong valueBytes too, and --repair rebuilds it', async (t) => {
  const dir = tmpDir(t)
  const e = await MemWAL.open({ dir })
  await e.put('k', { text: 'x'.repeat(100) }, { namespace: 'notes' })
  await e.put('j', 'small', { namespace: 'notes' })
  await e.close()
  t.equal((await fsck({ dir, repair: false })).clean, true, 'clean before')
  const store = await LevelStore.open(path.join(dir, 'store'))
  const key = `f${SEP}notes${SEP}k`
  const f = packr.decode((await store.index.get(key)) as Uint8Array) as unknown[]
  await store.index.put(key, packr.encode([f[0], f[1], 1, f[3]]))
  await store.close()
  const r = await fsck({ dir, repair: false })
  t.strictSame(r.counts, { 'index-mismatch': 1 })
  t.match(r.findings, [{ kind: 'index-mismatch', sink: 'index', namespace: 'notes', key: 'k', detail: `indexed valueBytes 1, the stored value is ${f[2] as number} bytes` }])
  const fixed = await fsck({ dir, repair: true })
  t.ok(fixed.findings.length === 1 && fixed.findings.every((x) => x.repaired), 'repaired')
  t.equal((await fsck({ dir, repair: false })).clean, true, 'clean after')
})

t.test('log damage is reported with its place and whether the backend had it, and left for fsck --repair', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(5))
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
  const engine = await MemWAL.open({ dir: '/data', fs: sim, level: db as unknown as LevelDatabase, segmentBytes: 64 * 1024 })
  t.teardown(() => engine.close())
  for (let i = 0; i < 200; i++) await engine.put(keyOf(i % KEYS), valueOf(i, 0))
  await engine.flush()
  const active = `/data/wal/${engine.health().wal.activeSegment}`
  // Flip a bit of a frame in the middle of the segment (valid frames follow it: not the writer's own tail).
  const bytes = Buffer.from(sim.peek(active) as Uint8Array)
  const at = 64 + 5000
  bytes[at] = (bytes[at] ?? 0) ^ 0x10
  sim.poke(active, bytes)
  const plain = await engine.verify()
  t.strictSame(plain.counts, { 'corrupt-frame': 1 }, 'verify names the damage')
  const r = await engine.verify({ repair: true })
  t.strictSame(r.counts, { 'corrupt-frame': 1 }, 'the damage, and nothing about the sinks (they agree with the log around it)')
  t.strictSame(plain.findings, r.findings, 'the same with and without repair')
  const f = r.findings[0]
  t.match(f, { kind: 'corrupt-frame', segment: engine.health().wal.activeSegment, alreadyApplied: true, repaired: false, detail: /memwal fsck --repair/ })
  t.ok(f?.offset !== undefined && f.offset <= at && f.offset > at - 200, `names the frame's offset (${f?.offset}, the flipped byte at ${at})`)
  t.ok(f?.lsnFirst !== undefined && f.lsnFirst === f.lsnLast && f.lsnFirst > 1 && f.lsnFirst < 200, `names its LSN (${f?.lsnFirst})`)
  t.equal(r.unrepaired, 1, 'an open engine does not repair its own log')
  await engine.put('still/writable', 1)
  t.equal(await engine.get('still/writable'), 1)
})

t.test('verify on a busy engine (writes while it runs) reports nothing that is not wrong', async (t) => {
  const { engine } = await open(t)
  let stop = false
  let round = 10
  const writer = (async () => {
    while (!stop) {
      round++
      const ops = []
      for (let i = 0; i < 8; i++) {
        const n = (round * 13 + i * 17) % KEYS
        ops.push(engine.put(keyOf(n), valueOf(n, round), { namespace: namespaceOf(n, round), ...(round % 2 === 0 ? { tags: ['busy'] } : {}) }))
      }
      if (round % 5 === 0) ops.push(engine.delete(keyOf((round * 7) % KEYS), ns(keyOf((round * 7) % KEYS))))
      await Promise.all(ops)
    }
  })()
  const reports: VerifyReport[] = []
  try {
    for (let i = 0; i < 30; i++) reports.push(await engine.verify())
  } finally {
    stop = true
    await writer
  }
  t.ok(round > 12, `writes went on meanwhile (${round - 10} rounds)`)
  for (const [i, r] of reports.entries()) t.strictSame(r.findings, [], `verify ${i + 1}: no findings`)
  await engine.flush()
  t.equal((await engine.verify()).clean, true)
})
