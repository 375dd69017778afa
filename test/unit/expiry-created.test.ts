/**
 * createdAt after an expired overwrite (issue 11): a put over an entry that
 * had expired by the put's write time (invisible, but not yet swept) makes a
 * new entry, so its createdAt is its own updatedAt; a put over a live entry
 * keeps the old createdAt. The rule is judged by the put record's stamp, so
 * every place that carries createdAt says the same: the pending overlay (over
 * a pending put and over a stored row, read from the cache or the backend),
 * the cache, the LevelDB row, a replay into a backend that was behind (both
 * puts in one apply), a batch, verify after it all, and verify's repair of
 * a stale row.
 */
import { MemoryLevel } from 'memory-level'
import t, { type Test } from 'tap'
import { MemWAL, type LevelDatabase, type MemwalOptions } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { keepsCreatedAt } from '../../engine/format/expiry-key.js'
import { identityOf } from '../../engine/format/identity.js'
import type { BackendSink } from '../../engine/sinks/sink.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'

const NOW = 1_700_000_000_000
const TTL = 100
/** No sweep round runs during a test: the expired version stays in the store. */
const NO_SWEEP = 3_600_000

interface Fixture {
  readonly db: MemWAL
  readonly clock: ManualClock
  readonly faults: SinkFaults
}

async function open(t: Test, extra: Partial<MemwalOptions> & { readonly targets?: readonly string[]; readonly dir?: string; readonly clock?: ManualClock } = {}): Promise<Fixture> {
  const { targets, dir, clock: given, ...options } = extra
  const clock = given ?? new ManualClock(NOW)
  // Not the cache: its reads are synchronous, which the fault wrapper's are not. Writes stay pending until every sink applied them.
  // A hung apply never times out (the manual clock moves past applyTimeoutMs): the backend's breaker stays closed, so reads answer.
  const faults = new SinkFaults({ targets: targets ?? ['backend', 'index'] })
  const db = await MemWAL.open({ dir: dir ?? tmpDir(t), clock, sweepIntervalMs: NO_SWEEP, resilience: { ...fastResilience, applyTimeoutMs: 600_000 }, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s), ...options })
  return { db, clock, faults }
}

/** The entry's createdAt and updatedAt as getEntry returns them. */
async function times(db: MemWAL, key: string, namespace = 'default'): Promise<{ createdAt?: number; updatedAt?: number } | undefined> {
  const e = await db.getEntry(key, { namespace })
  return e && { ...(e.createdAt !== undefined ? { createdAt: e.createdAt } : {}), updatedAt: e.updatedAt }
}

/** The backend's row of `key`, read from the backend itself (not the overlay or the cache). */
async function row(f: Fixture, key: string): Promise<{ createdAt: number; updatedAt: number } | undefined> {
  const r = await (f.faults.sink('backend') as BackendSink).get(identityOf('default', key))
  return r && { createdAt: r.createdAt, updatedAt: r.updatedAt }
}

interface Times {
  readonly createdAt: number
  readonly updatedAt: number
}

/** Once applied: getEntry's times and the backend row's of each key are the ones wanted. */
async function expectApplied(t: Test, f: Fixture, want: Readonly<Record<string, Times>>, when: string): Promise<void> {
  for (const [key, w] of Object.entries(want)) {
    t.strictSame(await times(f.db, key), w, `${when}: getEntry(${key})`)
    t.strictSame(await row(f, key), w, `${when}: the LevelDB row of ${key}`)
  }
  t.same((await f.db.verify()).findings, [], `${when}: verify finds nothing`)
}

t.test('the rule: an old version expiring at or before the put\'s write time does not carry its createdAt', async (t) => {
  t.equal(keepsCreatedAt(undefined, NOW), true, 'no expiry: carried')
  t.equal(keepsCreatedAt(NOW + 1, NOW), true, 'live at the write: carried')
  t.equal(keepsCreatedAt(NOW, NOW), false, 'expired at the write (expiresAt <= write time): started again')
  t.equal(keepsCreatedAt(NOW - 1, NOW), false)
})

t.test('both puts pending: the overlay starts createdAt again over an expired pending put, and keeps it over a live one', async (t) => {
  const f = await open(t)
  const { db, clock, faults } = f
  faults.hang()
  await db.put('k', 1, { ttlMs: TTL })
  clock.advance(TTL)
  await db.put('k', 2)
  const second = clock.nowMs()
  t.strictSame(await times(db, 'k'), { createdAt: second, updatedAt: second }, 'pending over an expired pending put: a new entry')
  await db.put('kept', 1, { ttlMs: TTL })
  const first = clock.nowMs()
  clock.advance(TTL - 1)
  await db.put('kept', 2)
  t.strictSame(await times(db, 'kept'), { createdAt: first, updatedAt: first + TTL - 1 }, 'over a put still live at the write: carried')
  // Over a put in a batch of several: the batch's earliest expiry is another op's, so the op itself is read to judge.
  const third = clock.nowMs()
  await db.batch([{ type: 'put', key: 'b1', value: 1, ttlMs: 10 }, { type: 'put', key: 'b2', value: 1, ttlMs: 50 }])
  clock.advance(10)
  await db.put('b1', 2)
  await db.put('b2', 2)
  t.strictSame(await times(db, 'b1'), { createdAt: third + 10, updatedAt: third + 10 }, 'over its expired op of a pending batch: a new entry')
  t.strictSame(await times(db, 'b2'), { createdAt: third, updatedAt: third + 10 }, 'over its live op of a pending batch whose other op expired: carried')
  faults.release()
  await db.flush()
  await expectApplied(t, f, { k: { createdAt: second, updatedAt: second }, kept: { createdAt: first, updatedAt: first + TTL - 1 }, b1: { createdAt: third + 10, updatedAt: third + 10 }, b2: { createdAt: third, updatedAt: third + 10 } }, 'applied')
  await db.close()
})

for (const cacheBytes of [undefined, 1]) {
  const where = cacheBytes === undefined ? 'the cache' : 'the backend (nothing cached)'
  t.test(`a pending put over an expired stored entry, read from ${where}: its own createdAt, before and after the apply and across a reopen`, async (t) => {
    const dir = tmpDir(t)
    const clock = new ManualClock(NOW)
    const f = await open(t, { dir, clock, ...(cacheBytes !== undefined ? { cacheBytes } : {}) })
    const { db, faults } = f
    await db.put('k', 1, { ttlMs: TTL })
    await db.put('kept', 1, { ttlMs: TTL })
    await db.flush()
    clock.advance(TTL - 1)
    faults.hang()
    await db.put('kept', 2)
    clock.advance(1)
    await db.put('k', 2)
    const second = clock.nowMs()
    t.strictSame(await times(db, 'k'), { createdAt: second, updatedAt: second }, 'pending: the stored version had expired')
    t.strictSame(await times(db, 'kept'), { createdAt: NOW, updatedAt: NOW + TTL - 1 }, 'pending: the stored version was live, carried')
    faults.release()
    await db.flush()
    const want = { k: { createdAt: second, updatedAt: second }, kept: { createdAt: NOW, updatedAt: NOW + TTL - 1 } }
    await expectApplied(t, f, want, 'applied')
    await db.close()
    const again = await open(t, { dir, clock })
    await expectApplied(t, again, want, 'after a reopen')
    await again.db.close()
  })
}

t.test('replay into a backend that was behind: both puts in one apply, the same createdAt', async (t) => {
  const dir = tmpDir(t)
  const clock = new ManualClock(NOW)
  const f = await open(t, { dir, clock, targets: ['backend'] })
  f.faults.down()
  await f.db.put('k', 1, { ttlMs: TTL })
  await f.db.put('kept', 1, { ttlMs: TTL })
  clock.advance(TTL - 1)
  await f.db.put('kept', 2)
  clock.advance(1)
  await f.db.put('k', 2)
  const second = clock.nowMs()
  t.strictSame(await times(f.db, 'k'), { createdAt: second, updatedAt: second }, 'pending')
  await f.db.close().catch(() => undefined)
  const again = await open(t, { dir, clock, targets: [] })
  await again.db.flush()
  const batches = again.faults.batches('backend')
  t.ok(batches.some((b) => b.length >= 4), `the backend replayed the four puts in one apply: ${JSON.stringify(batches)}`)
  await expectApplied(t, again, { k: { createdAt: second, updatedAt: second }, kept: { createdAt: NOW, updatedAt: NOW + TTL - 1 } }, 'replayed')
  await again.db.close()
})

t.test('in a batch: a batch put over an expired entry starts createdAt again, one over a live entry keeps it', async (t) => {
  const f = await open(t)
  const { db, clock, faults } = f
  await db.batch([{ type: 'put', key: 'k', value: 1, ttlMs: TTL }, { type: 'put', key: 'kept', value: 1 }])
  await db.flush()
  clock.advance(TTL)
  const second = clock.nowMs()
  faults.hang()
  await db.batch([{ type: 'put', key: 'k', value: 2 }, { type: 'put', key: 'kept', value: 2 }])
  t.strictSame(await times(db, 'k'), { createdAt: second, updatedAt: second }, 'pending')
  t.strictSame(await times(db, 'kept'), { createdAt: NOW, updatedAt: second })
  faults.release()
  await db.flush()
  await expectApplied(t, f, { k: { createdAt: second, updatedAt: second }, kept: { createdAt: NOW, updatedAt: second } }, 'applied')
  // Two puts of one key in one batch share one write time: the second carries the first's createdAt.
  clock.advance(TTL)
  await db.batch([{ type: 'put', key: 'k', value: 3, ttlMs: 1 }, { type: 'put', key: 'k', value: 4 }])
  t.strictSame(await times(db, 'k'), { createdAt: second, updatedAt: second + TTL }, 'k was live: carried')
  await db.flush()
  clock.advance(TTL)
  await db.batch([{ type: 'put', key: 'k', value: 5, ttlMs: 1 }])
  clock.advance(1)
  const third = clock.nowMs()
  faults.hang()
  await db.batch([{ type: 'put', key: 'k', value: 6, ttlMs: 1 }, { type: 'put', key: 'k', value: 7 }])
  t.strictSame(await times(db, 'k'), { createdAt: third, updatedAt: third }, 'over an expired entry; the second put of the batch carries the first\'s')
  faults.release()
  await db.flush()
  await expectApplied(t, f, { k: { createdAt: third, updatedAt: third } }, 'the batch applied')
  await db.close()
})

t.test('verify\'s repair of a stale row judges the row it replaces by the same rule', async (t) => {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
  const rows = db.sublevel<string, Uint8Array>('rows', { keyEncoding: 'utf8', valueEncoding: 'view' })
  const f = await open(t, { level: db as unknown as LevelDatabase, cacheBytes: 1, targets: [] })
  const { clock } = f
  await f.db.put('k', 1, { ttlMs: TTL })
  await f.db.put('kept', 1, { ttlMs: TTL })
  await f.db.flush()
  // The rows of the first puts, as LevelBackend wrote them: [value, tags, lsn, createdAt, updatedAt, expiresAt].
  const old = { k: await rows.get(identityOf('default', 'k')), kept: await rows.get(identityOf('default', 'kept')) }
  clock.advance(TTL - 1)
  await f.db.put('kept', 2)
  clock.advance(1)
  await f.db.put('k', 2)
  await f.db.flush()
  // The backend lost the second puts: it holds the first ones again.
  await rows.put(identityOf('default', 'k'), old.k as Uint8Array)
  await rows.put(identityOf('default', 'kept'), old.kept as Uint8Array)
  const r = await f.db.verify({ repair: true })
  t.strictSame(r.counts, { 'backend-stale': 2 })
  t.ok(r.findings.every((x) => x.repaired))
  await expectApplied(t, f, { k: { createdAt: NOW + TTL, updatedAt: NOW + TTL }, kept: { createdAt: NOW, updatedAt: NOW + TTL - 1 } }, 'repaired')
  await f.db.close()
})
