/**
 * Expiry end to end (issue 11 item 2), on the manual clock, against an
 * in-memory model where an entry whose expiresAt is at or before the clock is
 * absent:
 * - random puts with and without ttlMs / expiresAt (single and batched),
 *   deletes and clock advances; get, getEntry and query match the model at
 *   every check (values, expiry and createdAt, which a put over an expired,
 *   not yet swept entry starts again), while the writes are pending, once applied, after the sweep
 *   and across a reopen;
 * - the sweep deletes what expired through the log (the dump shows those
 *   deletes) and reads only the expired postings; verify and fsck are clean
 *   after it;
 * - an entry renewed between the sweep's judgement and its delete survives;
 * - the index holds one expiry posting per expiring entry; verify finds one
 *   missing or stray, and the rebuild (fsck --repair's) writes them again.
 */
import t, { type Test } from 'tap'
import { MemoryLevel } from 'memory-level'
import { dumpLog, fsck, MemWAL, type Entry, type LevelDatabase } from '../../engine/index.js'
import { ManualClock, SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'
import { expiryPosting } from '../../engine/format/expiry-key.js'
import type { ExpirySweeper } from '../../engine/expiry-sweep.js'
import type { ReadPath } from '../../engine/read-path.js'
import type { IndexSink } from '../../engine/sinks/index-sink.js'
import { identityOf } from '../../engine/format/identity.js'
import { tmpDir } from '../support/tmp-dir.js'

const NOW = 1_700_000_000_000
const KEYS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']
const NAMESPACES = ['n1', 'n2']
/** Each sweep round far in manual time: the model test runs rounds by hand (sweeper.round()), the cadence has its own test. */
const SWEEP_MS = 3_600_000

interface ModelEntry {
  readonly value: string
  readonly expiresAt?: number
  /** The first put's time, carried by a put over the entry while live; a put over it once expired (even unswept) starts again. */
  readonly createdAt: number
}

/** The createdAt of a put at `now` over `prev` (the model's own statement of the rule, not the engine's helper). */
function createdAtOf(prev: ModelEntry | undefined, now: number): number {
  return prev !== undefined && (prev.expiresAt === undefined || prev.expiresAt > now) ? prev.createdAt : now
}

function internals(db: MemWAL): { sweeper: ExpirySweeper; reads: ReadPath; index: IndexSink } {
  return db as unknown as { sweeper: ExpirySweeper; reads: ReadPath; index: IndexSink }
}

/** The model's answer at `now`: expired entries are absent. */
function visible(model: Map<string, ModelEntry>, now: number): Map<string, ModelEntry> {
  return new Map([...model].filter(([, e]) => e.expiresAt === undefined || e.expiresAt > now))
}

async function checkReads(t: Test, db: MemWAL, model: Map<string, ModelEntry>, clock: ManualClock, when: string): Promise<void> {
  const want = visible(model, clock.nowMs())
  for (const ns of NAMESPACES) {
    for (const key of KEYS) {
      const m = want.get(identityOf(ns, key))
      const got = await db.get(key, { namespace: ns })
      const entry = await db.getEntry(key, { namespace: ns })
      if (got !== m?.value || entry?.value !== m?.value || entry?.expiresAt !== m?.expiresAt || entry?.createdAt !== m?.createdAt) {
        t.fail(`${when}: ${ns}/${key} reads ${JSON.stringify(got)} / ${JSON.stringify(entry)}, the model says ${JSON.stringify(m)} at ${clock.nowMs()}`)
        return
      }
    }
  }
  const queried: Entry[] = []
  for await (const e of db.query()) queried.push(e)
  const got = queried.map((e) => [identityOf(e.namespace, e.key), e.value, e.expiresAt, e.createdAt])
  const expected = [...want].map(([id, e]) => [id, e.value, e.expiresAt, e.createdAt]).sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1))
  t.same(got, expected, `${when}: query returns exactly the live entries`)
}

for (const seed of [1, 2, 3]) {
  t.test(`model with the manual clock, seed ${seed}: expired is absent before and after the sweep, and across a reopen`, async (t) => {
    const dir = tmpDir(t)
    const clock = new ManualClock(NOW)
    const rnd = new SeededRandom(seed)
    const open = (): Promise<MemWAL> => MemWAL.open({ dir, clock, sweepIntervalMs: SWEEP_MS })
    let db = await open()
    const model = new Map<string, ModelEntry>()
    const pick = <T>(xs: readonly T[]): T => xs[rnd.below(xs.length)] as T
    const expiryOf = (): { ttlMs?: number; expiresAt?: number } => {
      const r = rnd.below(3)
      if (r === 0) return {}
      const ms = 1 + rnd.below(400)
      return r === 1 ? { ttlMs: ms } : { expiresAt: clock.nowMs() + ms }
    }
    /** Every identity a sweep round deleted, in order: the log must hold exactly these sweep deletes. */
    const swept: string[] = []
    let n = 0
    for (let step = 0; step < 200; step++) {
      const r = rnd.below(10)
      const ns = pick(NAMESPACES)
      const key = pick(KEYS)
      const id = identityOf(ns, key)
      if (r < 4) {
        const value = `v${n++}`
        const x = expiryOf()
        await db.put(key, value, { namespace: ns, ...x })
        const expiresAt = x.ttlMs !== undefined ? clock.nowMs() + x.ttlMs : x.expiresAt
        model.set(id, { value, ...(expiresAt !== undefined ? { expiresAt } : {}), createdAt: createdAtOf(model.get(id), clock.nowMs()) })
      } else if (r < 5) {
        await db.delete(key, { namespace: ns })
        model.delete(id)
      } else if (r < 6) {
        const ops = [0, 1, 2].map(() => ({ ns: pick(NAMESPACES), key: pick(KEYS), value: `v${n++}`, x: expiryOf() }))
        await db.batch(ops.map((o) => ({ type: 'put' as const, key: o.key, value: o.value, namespace: o.ns, ...o.x })))
        for (const o of ops) {
          const expiresAt = o.x.ttlMs !== undefined ? clock.nowMs() + o.x.ttlMs : o.x.expiresAt
          const id = identityOf(o.ns, o.key)
          model.set(id, { value: o.value, ...(expiresAt !== undefined ? { expiresAt } : {}), createdAt: createdAtOf(model.get(id), clock.nowMs()) })
        }
      } else if (r < 8) {
        clock.advance(rnd.below(150))
      } else if (r < 9) {
        await checkReads(t, db, model, clock, `step ${step}`)
      } else {
        await db.flush()
        await checkReads(t, db, model, clock, `step ${step}, applied`)
        const round = await internals(db).sweeper.round()
        const expiredNow = [...model].filter(([, e]) => e.expiresAt !== undefined && e.expiresAt <= clock.nowMs()).map(([id]) => id)
        t.equal(round.deleted, expiredNow.length, `step ${step}: the sweep deletes every expired entry, nothing else`)
        t.equal(round.examined, expiredNow.length, `step ${step}: it read the expired postings and no other`)
        for (const id of expiredNow) model.delete(id)
        swept.push(...expiredNow)
        await checkReads(t, db, model, clock, `step ${step}, swept`)
      }
      if (step === 100) {
        await db.close()
        db = await open()
        await checkReads(t, db, model, clock, 'after a reopen')
      }
    }
    await db.flush()
    clock.advance(1000) // everything with an expiry has expired
    await checkReads(t, db, model, clock, 'all expired')
    const last = await internals(db).sweeper.round()
    t.equal(last.more, false)
    const left = [...model].filter(([, e]) => e.expiresAt === undefined)
    t.equal(last.deleted, model.size - left.length, 'the last round deletes what expired since')
    for (const [id, e] of model) if (e.expiresAt !== undefined) swept.push(id)
    await db.flush()
    const postings: unknown[] = []
    for await (const p of internals(db).index.expired(Number.MAX_SAFE_INTEGER)) postings.push(p)
    t.same(postings, [], 'no expiry posting is left once the expired entries are deleted')
    t.same((await db.verify()).findings, [], 'verify finds nothing')
    await db.close()
    for (const id of [...model.keys()]) if (!left.some(([l]) => l === id)) model.delete(id)
    // The test deletes one entry at a time (DELETE records) and batches only puts: every batch of deletes is the sweep's.
    const logged: string[] = []
    for await (const e of dumpLog({ dir })) {
      if (e.kind !== 'record' || !('ops' in e.record)) continue
      const dels = e.record.ops.filter((op) => op.type === 'del')
      if (dels.length > 0) t.equal(dels.length, e.record.ops.length, 'a sweep batch holds deletes only')
      logged.push(...dels.map((op) => identityOf(op.namespace ?? 'default', op.key)))
    }
    t.ok(swept.length > 0, 'the random walk expired something')
    t.same([...logged].sort(), [...swept].sort(), 'the log holds the sweep\'s deletes, one for each expired entry')
    const report = await fsck({ dir, repair: false })
    t.same(report.findings, [], 'fsck is clean after the sweeps')
    db = await open()
    await checkReads(t, db, model, clock, 'reopened after the sweeps')
    await db.close()
  })
}

t.test('the sweep deletes through the log: the dump shows its batch of deletes, and a reopen replays it', async (t) => {
  const dir = tmpDir(t)
  const clock = new ManualClock(NOW)
  let db = await MemWAL.open({ dir, clock, sweepIntervalMs: 100 })
  await db.put('short', 1, { ttlMs: 50 })
  await db.put('long', 2, { ttlMs: 10_000 })
  await db.put('never', 3)
  await db.flush()
  const before = (await db.put('marker', 0)).lsn
  clock.advance(49)
  t.equal(await db.get('short'), 1, 'visible until its expiresAt')
  clock.advance(1)
  t.equal(await db.get('short'), undefined, 'invisible at its expiresAt, at once, before any sweep')
  t.equal(await db.getEntry('short'), undefined)
  t.same((await arrayOf(db.query())).map((e) => e.key), ['long', 'marker', 'never'])
  clock.advance(50) // the sweep's first round is due
  await internals(db).sweeper.round() // joins the round the timer started
  await db.close()
  const deletes: unknown[] = []
  for await (const e of dumpLog({ dir, fromLsn: before + 1 })) if (e.kind === 'record') deletes.push(e.record)
  t.match(deletes, [{ ops: [{ type: 'del', key: 'short', namespace: 'default' }] }], 'one logged batch deletes the expired entry')
  t.equal(deletes.length, 1)
  db = await MemWAL.open({ dir, clock, sweepIntervalMs: 100 })
  t.same([await db.get('short'), await db.get('long'), await db.get('never')], [undefined, 2, 3])
  t.same((await db.verify()).findings, [])
  await db.close()
  t.same((await fsck({ dir, repair: false })).findings, [], 'fsck agrees')
})

t.test('a put that renews an entry between the sweep\'s judgement and its delete survives', async (t) => {
  const dir = tmpDir(t)
  const clock = new ManualClock(NOW)
  const db = await MemWAL.open({ dir, clock, sweepIntervalMs: SWEEP_MS })
  t.teardown(() => db.close())
  for (const k of ['acked', 'inflight', 'gone']) await db.put(k, 'old', { ttlMs: 10 })
  await db.flush()
  clock.advance(20)
  const { reads, sweeper } = internals(db)
  const judge = reads.currentMany.bind(reads)
  const renewals: Promise<unknown>[] = []
  // The sweep has judged the entries expired; a put renews two of them before the sweep's delete is appended.
  reads.currentMany = async (ids) => {
    const seen = await judge(ids)
    if (ids.includes(identityOf('default', 'acked'))) await db.put('acked', 'new', { ttlMs: 10_000 })
    if (ids.includes(identityOf('default', 'inflight'))) renewals.push(db.put('inflight', 'new', { ttlMs: 10_000 }))
    return seen
  }
  const round = await sweeper.round()
  await Promise.all(renewals)
  t.equal(round.deleted, 1, 'only the entry nothing renewed is deleted')
  t.same([await db.get('acked'), await db.get('inflight'), await db.get('gone')], ['new', 'new', undefined])
  await db.flush()
  t.same((await db.verify()).findings, [])
})

t.test('put refuses bad ttlMs / expiresAt naming the field; batch names the operation', async (t) => {
  const dir = tmpDir(t)
  const clock = new ManualClock(NOW)
  const db = await MemWAL.open({ dir, clock })
  t.teardown(() => db.close())
  const refusals: [string, () => Promise<unknown>, string][] = [
    ['both', () => db.put('k', 1, { ttlMs: 5, expiresAt: NOW + 5 }), 'ttlMs'],
    ['ttlMs 0', () => db.put('k', 1, { ttlMs: 0 }), 'ttlMs'],
    ['ttlMs fraction', () => db.put('k', 1, { ttlMs: 1.5 }), 'ttlMs'],
    ['ttlMs string', () => db.put('k', 1, { ttlMs: '5' as unknown as number }), 'ttlMs'],
    ['expiresAt now', () => db.put('k', 1, { expiresAt: NOW }), 'expiresAt'],
    ['expiresAt in seconds', () => db.put('k', 1, { expiresAt: Math.floor(NOW / 1000) + 60 }), 'expiresAt'],
    ['expiresAt past the horizon', () => db.put('k', 1, { expiresAt: NOW + 200 * 365 * 86_400_000 }), 'expiresAt'],
    ['batch', () => db.batch([{ type: 'put', key: 'a', value: 1 }, { type: 'put', key: 'b', value: 1, ttlMs: -1 }]), 'ops[1].ttlMs'],
  ]
  for (const [what, fn, field] of refusals) await t.rejects(fn(), { code: 'INVALID_OPTIONS', details: { field } }, what)
  t.equal(await db.get('k'), undefined, 'nothing was written')
  t.equal(await db.get('a'), undefined)
  await db.put('k', 1, { ttlMs: 1000 })
  t.equal((await db.getEntry('k'))?.expiresAt, NOW + 1000, 'ttlMs resolves once, by the engine\'s clock')
  await t.rejects(MemWAL.open({ dir: tmpDir(t), sweepIntervalMs: 1 }), { code: 'INVALID_OPTIONS', details: { field: 'sweepIntervalMs' } })
  await t.rejects(MemWAL.open({ dir: tmpDir(t), sweepBatchOps: 20, batchOpsMax: 10 }), { code: 'INVALID_OPTIONS', details: { field: 'sweepBatchOps' } })
})

t.test('the index keeps an expiry posting per expiring entry; verify finds one missing or stray, and the rebuild writes them', async (t) => {
  const level = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
  const clock = new ManualClock(NOW)
  const db = await MemWAL.open({ dir: '/data', fs: new SimulatedFileSystem(new SeededRandom(3)), level: level as unknown as LevelDatabase, clock, sweepIntervalMs: SWEEP_MS })
  t.teardown(() => db.close())
  await db.put('a', 1, { ttlMs: 100 })
  await db.put('b', 2, { ttlMs: 200, tags: ['t'] })
  await db.put('c', 3)
  await db.put('d', 4, { ttlMs: 300 })
  await db.put('d', 5, { ttlMs: 400 }) // an overwrite moves its posting
  await db.delete('a')
  await db.put('a', 6, { ttlMs: 100 })
  await db.flush()
  const idx = level.sublevel<string, Uint8Array>('ix', { keyEncoding: 'utf8', valueEncoding: 'view' })
  const postings = async (): Promise<string[]> => arrayOf(idx.keys({ gte: 'x\u0000', lt: 'x\u0001' }))
  const id = (k: string): string => identityOf('default', k)
  const want = [expiryPosting(NOW + 100, id('a')), expiryPosting(NOW + 200, id('b')), expiryPosting(NOW + 400, id('d'))]
  t.same(await postings(), want, 'one posting per expiring entry, in expiry order')
  await idx.del(want[0] as string)
  await idx.put(expiryPosting(NOW + 50, id('c')), new Uint8Array(0))
  const r = await db.verify()
  t.strictSame(r.counts, { 'index-missing': 1, 'index-orphan': 1 }, 'a missing and a stray expiry posting are found')
  await db.verify({ repair: true })
  t.same((await db.verify()).findings, [], 'clean after the rebuild')
  t.same(await postings(), want, 'the rebuild writes the postings from the backend')
  clock.advance(250)
  const round = await internals(db).sweeper.round()
  t.match(round, { examined: 2, deleted: 2 }, 'the sweep reads the two expired postings only')
  await db.flush()
  t.same(await postings(), [want[2]])
  t.same([await db.get('a'), await db.get('b'), await db.get('c'), await db.get('d')], [undefined, undefined, 3, 5])
})

async function arrayOf<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}
