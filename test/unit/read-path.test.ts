/**
 * The read path's order and costs, as a caller relies on them:
 * - query returns pending and applied entries merged in the index's order
 *   (LevelDB compares UTF-8 bytes, i.e. code points), each identity once,
 *   even for keys around U+FFFF and above it (astral characters, which
 *   JavaScript's `<` would put before U+E000..U+FFFF);
 * - reads count the backend gets they cost, through a wrapped backend.
 */
import t from 'tap'
import { MemWAL, type BackendSink, type MemwalOptions, type QueryOptions, type Sink } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { namespaceRange, prefixEnd } from '../../engine/format/identity.js'
import { compareCodePoints } from '../../engine/query/match.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { IndexVisits } from '../support/index-visits.js'
import { tmpDir } from '../support/tmp-dir.js'

async function open(dir: string, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 1000, ...extra })
}

async function keysOf(e: MemWAL, q: QueryOptions = {}): Promise<string[]> {
  const out: string[] = []
  for await (const r of e.query(q)) out.push(r.key)
  return out
}

/** Keys a UTF-16 `<` and a code-point order disagree on: BMP characters from U+E000 up, astral ones, and mixes. */
const APPLIED = ['a', '\uE000x', '\uFFFF', '\u{1F600}', 'b\u{10000}', 'b\uFFFF', '\u{10FFFF}', '\u{10FFFF}z']
const PENDING = ['\uE000', '\uFFFE', '\uFFFFz', '\u{1F601}', '\u{1F600}', 'b\uFFFE', 'b\u{10001}', 'c']

t.test('query merges pending and applied entries in code-point order, each once', async (t) => {
  const dir = tmpDir(t, 'memwal-read-order-')
  // The index's applies fail: what is written after faults.down() stays pending (the overlay), the rest is indexed.
  const faults = new SinkFaults({ targets: ['index'] })
  const e = await open(dir, { wrapSink: (s) => faults.wrap(s) })
  t.teardown(() => e.close())
  for (const k of APPLIED) await e.put(k, `applied ${k}`)
  await e.flush({ timeoutMs: 10_000 })
  faults.down()
  for (const k of PENDING) await e.put(k, `pending ${k}`)
  const want = [...new Set([...APPLIED, ...PENDING])].sort(compareCodePoints)
  const got = await keysOf(e)
  t.strictSame(got, want, 'every key once, in code-point order')
  for (let n = 1; n <= want.length; n++) t.strictSame(await keysOf(e, { limit: n }), want.slice(0, n), `limit ${n}: the first ${n} in order, none lost or doubled`)
  t.strictSame(await keysOf(e, { namespace: 'default' }), want, 'a namespace query, U+10FFFF keys included')
  for (const prefix of ['b', '\uFFFF', '\u{10FFFF}']) {
    const inPrefix = want.filter((k) => k.startsWith(prefix))
    t.strictSame(await keysOf(e, { prefix }), inPrefix, `prefix ${JSON.stringify(prefix)}: in order`)
    t.strictSame(await keysOf(e, { namespace: 'default', prefix }), inPrefix, `prefix ${JSON.stringify(prefix)} in a namespace: in order`)
  }
  const values = new Map<string, unknown>()
  for await (const r of e.query({})) values.set(r.key, r.value)
  t.equal(values.get('\u{1F600}'), 'pending \u{1F600}', 'the pending version overrides the applied one')
  faults.up()
  await e.flush({ timeoutMs: 10_000 })
  t.strictSame(await keysOf(e), want, 'the same order once everything is applied')
})

t.test('a key range is exact: every string with the prefix, nothing else, whatever its characters', async (t) => {
  const units = ['a', '\u0000', '\u0001', '\uD7FF', '\uE000', '\uFFFF', '\u{10000}', '\u{1F600}', '\u{10FFFF}']
  const strings: string[] = ['']
  for (let len = 1; len <= 3; len++) for (const s of strings.filter((x) => [...x].length === len - 1)) for (const u of units) strings.push(s + u)
  let checked = 0
  for (const p of strings.filter((s) => s.length > 0)) {
    const end = prefixEnd(p)
    for (const s of strings) {
      const inRange = compareCodePoints(s, p) >= 0 && (end === undefined || compareCodePoints(s, end) < 0)
      if (inRange !== s.startsWith(p)) t.fail(`prefix ${JSON.stringify(p)}, string ${JSON.stringify(s)}: in range ${inRange}`)
      checked++
    }
  }
  t.equal(prefixEnd('\u{10FFFF}\u{10FFFF}'), undefined, 'nothing follows a run of U+10FFFF')
  t.equal(prefixEnd('a\uD7FF'), 'a\uE000', 'U+D7FF is followed by U+E000 (no surrogates)')
  t.strictSame(namespaceRange('ns', 'k\u{10FFFF}'), { gte: 'ns\u0000k\u{10FFFF}', lt: 'ns\u0000l' }, 'a namespace range with a prefix ending in U+10FFFF')
  t.ok(checked > 100_000, `${checked} (prefix, string) pairs`)
})

t.test('a prefix with a lone surrogate is refused, naming the field', async (t) => {
  const e = await open(tmpDir(t, 'memwal-read-surrogate-'))
  t.teardown(() => e.close())
  await t.rejects(keysOf(e, { prefix: 'a\uD83D' }), { code: 'ENGINE_INVALID_VALUE', details: { field: 'prefix' } })
  await t.rejects(keysOf(e, { namespace: 'n', prefix: '\uDE00' }), { code: 'ENGINE_INVALID_VALUE', details: { field: 'prefix' } })
})

/** Counts the backend's get calls (what a read costs the backend), through the wrapSink option. */
class GetCounter {
  gets = 0
  readonly wrap = <S extends Sink>(s: S): S => {
    if (s.name !== 'backend') return s
    const b = s as unknown as BackendSink
    const get = b.get.bind(b)
    b.get = (id) => {
      this.gets++
      return get(id)
    }
    return s
  }

  /** Backend gets made by `fn`. */
  async during(fn: () => Promise<unknown>): Promise<number> {
    const before = this.gets
    await fn()
    return this.gets - before
  }
}

t.test('a cached entry whose createdAt only the backend knew costs one backend get, not one per read', async (t) => {
  const counter = new GetCounter()
  const clock = new ManualClock(1_000_000)
  const e = await open(tmpDir(t, 'memwal-read-created-'), { wrapSink: counter.wrap, clock })
  t.teardown(() => e.close())
  await e.put('k', 'v1')
  const created = clock.nowMs()
  await e.flush({ timeoutMs: 10_000 })
  // The cache took the put from the log without knowing what the backend held before: createdAt is the backend's row's.
  const first = await counter.during(async () => t.match(await e.getEntry('k'), { value: 'v1', createdAt: created }))
  t.equal(first, 1, 'the first getEntry reads the backend row once')
  const more = await counter.during(async () => {
    for (let i = 0; i < 10; i++) t.match(await e.getEntry('k'), { value: 'v1', createdAt: created }, `getEntry ${i}`)
  })
  t.equal(more, 0, '10 more getEntry: no backend get')

  clock.advance(5_000)
  await e.put('k', 'v2')
  await e.flush({ timeoutMs: 10_000 })
  t.equal(await counter.during(async () => t.match(await e.getEntry('k'), { value: 'v2', createdAt: created, updatedAt: clock.nowMs() })), 0, 'an overwrite keeps the learnt createdAt: no backend get')

  for (let i = 0; i < 51; i++) await e.put(`q${i}`, i)
  await e.flush({ timeoutMs: 10_000 })
  const scan = async (): Promise<void> => {
    let n = 0
    for await (const r of e.query({ prefix: 'q' })) {
      n++
      t.equal(r.createdAt, created + 5_000, `createdAt of ${r.key}`)
    }
    t.equal(n, 51)
  }
  t.equal(await counter.during(scan), 51, 'the first query over 51 such entries reads each row once')
  t.equal(await counter.during(scan), 0, 'the second: no backend get')
})

t.test('query resolves the pending entries it returns, not every pending hit, before its first result', async (t) => {
  const counter = new GetCounter()
  // The index's applies fail: the batch below stays pending while the backend applies it, and reads of the backend work.
  const faults = new SinkFaults({ targets: ['index'] })
  // A slow apply of the big batch must not open the backend's breaker (reads would be refused, and cost no get).
  const e = await open(tmpDir(t, 'memwal-read-lazy-'), { wrapSink: (s) => counter.wrap(faults.wrap(s)), resilience: { ...fastResilience, applyTimeoutMs: 600_000 } })
  t.teardown(() => e.close())
  faults.down()
  const keys = Array.from({ length: 10_000 }, (_, i) => `p${String(i).padStart(5, '0')}`)
  await e.batch(keys.map((key, i) => ({ type: 'put' as const, key, value: i, ...(i % 2 === 1 ? { tags: ['odd'] } : {}) })))
  const got: string[] = []
  const gets = await counter.during(async () => {
    for await (const r of e.query({ prefix: 'p', limit: 10 })) {
      got.push(r.key)
      t.type(r.createdAt, 'number', `${r.key}: createdAt known (the backend answered)`)
    }
  })
  t.strictSame(got, keys.slice(0, 10), 'the first 10 pending hits, in order')
  t.ok(gets >= 1 && gets <= 10, `backend gets for 10 results out of 10,000 pending hits: ${gets} (at most one per result)`)
  const first: string[] = []
  const early = await counter.during(async () => {
    for await (const r of e.query({ prefix: 'p' })) {
      first.push(r.key)
      if (first.length === 3) break
    }
  })
  t.ok(early <= 3, `a caller that stops after 3 results caused ${early} backend gets`)
  // Later pending records change what the batch wrote: the latest version decides, for the tag too.
  await e.put(keys[1] as string, 'no tag now')
  await e.delete(keys[3] as string)
  await e.put(keys[4] as string, 'tagged now', { tags: ['odd'] })
  const odd: string[] = []
  const tagGets = await counter.during(async () => {
    for await (const r of e.query({ tag: 'odd', limit: 5 })) odd.push(r.key)
  })
  t.strictSame(odd, [keys[4], keys[5], keys[7], keys[9], keys[11]], 'a tag query over the pending batch and what overwrote it')
  t.ok(tagGets <= 5, `backend gets for 5 results of a tag query: ${tagGets}`)
})

t.test('a key prefix without a namespace reads one key per namespace and the matches, not the whole index', async (t) => {
  const visits = new IndexVisits()
  const e = await open(tmpDir(t, 'memwal-read-prefix-'), { wrapSink: visits.wrap })
  t.teardown(() => e.close())
  const namespaces = Array.from({ length: 20 }, (_, i) => `ns${String(i).padStart(2, '0')}`)
  const ops = namespaces.flatMap((namespace) => Array.from({ length: 100 }, (_, i) => ({ type: 'put' as const, namespace, key: `${i < 50 ? 'a' : 'b'}${String(i).padStart(3, '0')}`, value: i, tags: ['t'] })))
  await e.batch(ops)
  await e.flush({ timeoutMs: 10_000 })
  const want = (prefix: string): string[] => ops.filter((o) => o.key.startsWith(prefix)).map((o) => `${o.namespace}|${o.key}`)
  const measure = async (q: QueryOptions): Promise<{ got: string[]; visited: number }> => {
    const before = visits.visited
    const got: string[] = []
    for await (const r of e.query({ ...q, limit: 100_000 })) got.push(`${r.namespace}|${r.key}`)
    return { got, visited: visits.visited - before }
  }
  const whole = await measure({})
  t.equal(whole.got.length, 2000)
  t.equal(whole.visited, 2000, 'no criterion: the whole index, once')
  for (const prefix of ['b06', 'a', 'zz']) {
    for (const q of [{ prefix }, { prefix, tag: 't' }]) {
      const m = await measure(q)
      const matches = want(prefix).length
      t.strictSame(m.got, want(prefix), `${JSON.stringify(q)}: every match, in order`)
      // A query reads in batches that double while it reads on (from 4 after each jump to the next namespace): at most twice what it uses.
      t.ok(m.visited <= 2 * matches + 4 * namespaces.length, `${JSON.stringify(q)}: ${m.visited} index entries read for ${matches} matches in ${namespaces.length} namespaces (2,000 entries)`)
    }
  }
})

/**
 * G4 "never a wrong value": what get returns is the caller's own copy. A
 * caller that changes a value it read (`doc.count++` before writing it back)
 * must not change what the next reader gets before, or without, a write: the
 * pending overlay decodes a fresh copy per read, and the cache (filled by the
 * appliers, or by a backend read) must not hand out its own objects either.
 * (Moved from the engine model's test when the torture replaced the model.)
 */
t.test('a value read back is the caller\'s own: changing it never changes a later read (G4)', async (t) => {
  const dir = tmpDir(t, 'memwal-read-copy-')
  const faults = new SinkFaults({ targets: ['backend'] })
  let engine = await open(dir, { wrapSink: (s) => faults.wrap(s) })
  t.teardown(() => engine.close())
  faults.down()
  const stored = { count: 1, list: [1] }
  await engine.put('doc', stored)
  stored.count = 100 // the caller's object after the put: never stored

  const tamper = async (tier: string, key = 'doc'): Promise<void> => {
    const read = (await engine.get(key)) as { count: number; list: number[] }
    t.same(read, { count: 1, list: [1] }, `${tier}: get returns the value written`)
    read.count++
    read.list.push(9)
    t.same(await engine.get(key), { count: 1, list: [1] }, `${tier}: after the caller changed what it read, get still returns the value written`)
  }
  await tamper('pending overlay (backend down)')
  t.equal(engine.health().backlog.pendingKeys, 1, 'the key was pending throughout')
  // From a batch, a read copies its op out of the record the appliers share (pending-log.ts lookup): the copy must be the caller's.
  await engine.batch([{ type: 'put', key: 'in-batch', value: { count: 1, list: [1] } }, { type: 'put', key: 'other', value: 2 }])
  await tamper('pending overlay, one op of a batch', 'in-batch')
  t.equal(engine.health().backlog.pendingKeys, 3, 'the batch was pending throughout')
  faults.up()
  await engine.flush({ timeoutMs: 10_000 })
  await tamper('cache, filled by its applier')
  await engine.close()
  engine = await open(dir)
  await tamper('backend read (then cached)')
})
