/**
 * MemWAL.stats() (issue 11 item 6) and what listNamespaces and export show
 * of expired entries (item 2), on the manual clock:
 * - against an in-memory model, over random puts (values of many sizes, with
 *   and without expiry, single and batched), deletes, clears, clock advances,
 *   index outages and sweeps: per namespace the entries and the bytes of
 *   their values as stored (the value codec's msgpack), and the totals, while
 *   the writes are pending, once applied and after a reopen; listNamespaces
 *   gives the same counts;
 * - an expired entry leaves stats, listNamespaces and export at once, by the
 *   clock, before the sweep deletes it;
 * - an entry indexed before sizes were kept (its forward entry without one)
 *   is sized from its row, and counted in sizedFromRows;
 * - `memwal stats` prints the same.
 */
import t, { type Test } from 'tap'
import { MemWAL } from '../../engine/index.js'
import { ManualClock, SeededRandom } from '../../engine/testing.js'
import { createPackr, packValue } from '../../engine/format/value-codec.js'
import { identityOf, splitIdentity } from '../../engine/format/identity.js'
import type { ExpirySweeper } from '../../engine/expiry-sweep.js'
import type { LevelStore } from '../../engine/sinks/level-store.js'
import { SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'
import { settle } from '../support/wait-for.js'
import { runCli } from '../support/cli-run.js'

const NOW = 1_700_000_000_000
const NAMESPACES = ['a', 'a/b', 'ab', 'b']
const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5']
/** Rounds run by hand (sweeper.round()): the cadence is far in manual time. */
const SWEEP_MS = 3_600_000
const resilience = { retryDelayMsMin: 10, retryDelayMsMax: 20, breakerThreshold: 100, breakerHalfOpenMs: 50, applyTimeoutMs: 5000 }

interface ModelEntry {
  readonly value: unknown
  readonly expiresAt?: number
}

const packr = createPackr()
const sizeOf = (v: unknown): number => packValue(packr, v).length

/** What stats must say of `model` at `nowMs`, for namespaces under `prefix`. */
function expectedStats(model: ReadonlyMap<string, ModelEntry>, nowMs: number, prefix?: string): { namespaces: { namespace: string; entries: number; bytes: number }[]; entries: number; bytes: number } {
  const per = new Map<string, { entries: number; bytes: number }>()
  for (const [id, e] of model) {
    if (e.expiresAt !== undefined && e.expiresAt <= nowMs) continue
    const { namespace } = splitIdentity(id)
    if (prefix !== undefined && namespace !== prefix && !namespace.startsWith(`${prefix}/`)) continue
    const s = per.get(namespace) ?? { entries: 0, bytes: 0 }
    per.set(namespace, { entries: s.entries + 1, bytes: s.bytes + sizeOf(e.value) })
  }
  const namespaces = [...per].sort(([a], [b]) => (a < b ? -1 : 1)).map(([namespace, s]) => ({ namespace, ...s }))
  return { namespaces, entries: namespaces.reduce((n, s) => n + s.entries, 0), bytes: namespaces.reduce((n, s) => n + s.bytes, 0) }
}

async function check(t: Test, db: MemWAL, model: ReadonlyMap<string, ModelEntry>, clock: ManualClock, when: string): Promise<void> {
  for (const prefix of [undefined, 'a']) {
    const want = expectedStats(model, clock.nowMs(), prefix)
    const got = await db.stats(prefix !== undefined ? { prefix } : undefined)
    t.strictSame(got, { ...want, sizedFromRows: 0 }, `${when}${prefix !== undefined ? ` (prefix ${prefix})` : ''}: stats match the model`)
    t.strictSame(await db.listNamespaces(prefix !== undefined ? { prefix } : undefined), want.namespaces.map(({ namespace, entries }) => ({ namespace, entries })), `${when}: listNamespaces agrees`)
  }
}

/** A value of a size drawn from `rnd`: strings, numbers, objects, arrays, bytes. */
function valueOf(rnd: SeededRandom, n: number): unknown {
  switch (rnd.below(5)) {
    case 0: return 'x'.repeat(rnd.below(300))
    case 1: return n * 1.5
    case 2: return { n, text: 'y'.repeat(rnd.below(50)), list: [1, 2, n] }
    case 3: return new Map([[n, 'z'.repeat(rnd.below(20))]])
    default: return Buffer.alloc(rnd.below(2000), n & 0xff)
  }
}

async function drain(db: MemWAL, clock: ManualClock): Promise<void> {
  let done = false
  const flushed = db.flush().then(() => (done = true))
  for (let i = 0; i < 1000 && !done; i++) {
    clock.advance(20)
    await settle()
  }
  await flushed
}

for (const seed of [1, 2, 3]) {
  t.test(`stats against a model, seed ${seed}: pending, applied, expired (before the sweep and after it), cleared, reopened`, async (t) => {
    const dir = tmpDir(t)
    const clock = new ManualClock(NOW)
    const rnd = new SeededRandom(seed)
    const faults = new SinkFaults({ targets: ['index'] })
    const open = (): Promise<MemWAL> => MemWAL.open({ dir, clock, sweepIntervalMs: SWEEP_MS, resilience, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s) })
    let db = await open()
    const model = new Map<string, ModelEntry>()
    const pick = <T>(xs: readonly T[]): T => xs[rnd.below(xs.length)] as T
    const ttl = (): { ttlMs?: number } => (rnd.below(3) === 0 ? { ttlMs: 1 + rnd.below(300) } : {})
    const entryOf = (value: unknown, x: { ttlMs?: number }): ModelEntry => ({ value, ...(x.ttlMs !== undefined ? { expiresAt: clock.nowMs() + x.ttlMs } : {}) })
    let n = 0
    for (let step = 0; step < 150; step++) {
      const r = rnd.below(20)
      const namespace = pick(NAMESPACES)
      const key = pick(KEYS)
      if (r < 7) {
        const value = valueOf(rnd, n++)
        const x = ttl()
        await db.put(key, value, { namespace, ...x })
        model.set(identityOf(namespace, key), entryOf(value, x))
      } else if (r < 9) {
        await db.delete(key, { namespace })
        model.delete(identityOf(namespace, key))
      } else if (r < 11) {
        const ops = [0, 1, 2].map(() => ({ namespace: pick(NAMESPACES), key: pick(KEYS), value: valueOf(rnd, n++), x: ttl() }))
        await db.batch(ops.map((o) => ({ type: 'put' as const, key: o.key, value: o.value, namespace: o.namespace, ...o.x })))
        for (const o of ops) model.set(identityOf(o.namespace, o.key), entryOf(o.value, o.x))
      } else if (r < 13) {
        clock.advance(rnd.below(200))
      } else if (r < 14) {
        await db.clear({ namespace })
        for (const id of [...model.keys()]) if (splitIdentity(id).namespace === namespace) model.delete(id)
      } else if (r < 15) {
        if (rnd.below(2) === 0) faults.down()
        else faults.up()
      } else if (r < 16) {
        await (db as unknown as { sweeper: ExpirySweeper }).sweeper.round().catch(() => undefined) // a down index fails a round: the next one sweeps
      } else {
        await check(t, db, model, clock, `step ${step}`)
      }
    }
    await check(t, db, model, clock, 'at the end, some writes pending')
    faults.up()
    await drain(db, clock)
    await check(t, db, model, clock, 'applied')
    await db.close()
    db = await open()
    t.teardown(() => db.close())
    await check(t, db, model, clock, 'after a reopen')
  })
}

t.test('an expired entry leaves stats, listNamespaces and export at once, before the sweep deletes it', async (t) => {
  const clock = new ManualClock(NOW)
  const db = await MemWAL.open({ dir: tmpDir(t), clock, sweepIntervalMs: SWEEP_MS })
  t.teardown(() => db.close())
  await db.put('short', 'x', { namespace: 'n', ttlMs: 100 })
  await db.put('long', 'y', { namespace: 'n', ttlMs: 10_000 })
  await db.put('only', 'z', { namespace: 'm', ttlMs: 100 })
  const exported = async (): Promise<string[]> => {
    const keys: string[] = []
    for await (const chunk of db.export()) {
      for (const line of chunk.toString('utf8').split('\n')) {
        const r = (line === '' ? {} : JSON.parse(line)) as { key?: string }
        if (r.key !== undefined) keys.push(r.key)
      }
    }
    return keys
  }
  for (const applied of [false, true]) {
    if (applied) await db.flush()
    t.strictSame(await db.listNamespaces(), [{ namespace: 'm', entries: 1 }, { namespace: 'n', entries: 2 }], `${applied ? 'applied' : 'pending'}: before the expiry`)
    t.strictSame(await exported(), ['only', 'long', 'short'])
  }
  clock.advance(100) // expired now, not swept (no round runs for an hour)
  const lsn = db.health().wal.lastLsn
  t.strictSame(await db.listNamespaces(), [{ namespace: 'n', entries: 1 }], 'listNamespaces: m is gone, n counts one')
  t.match(await db.stats(), { entries: 1, bytes: sizeOf('y'), namespaces: [{ namespace: 'n', entries: 1 }] }, 'stats: the same')
  t.strictSame(await exported(), ['long'], 'export: only the live entry')
  t.equal(db.health().wal.lastLsn, lsn, 'nothing was deleted yet: hidden by the clock alone')
})

t.test('an entry indexed before sizes were kept is sized from its row', async (t) => {
  const dir = tmpDir(t)
  const db = await MemWAL.open({ dir })
  t.teardown(() => db.close())
  const values = ['a'.repeat(100), { b: 2 }, Buffer.alloc(1000)]
  for (const [i, v] of values.entries()) await db.put(`k${i}`, v, { namespace: 'old', tags: ['t'] })
  await db.put('k', 'new', { namespace: 'new' })
  await db.flush()
  // The forward entries as a store indexed before sizes were kept has them: [tags, expiresAt].
  const store = (db as unknown as { parts: { store: LevelStore } }).parts.store
  for (let i = 0; i < values.length; i++) await store.index.put(`f\u0000${identityOf('old', `k${i}`)}`, store.packr.encode([['t'], null]))
  const bytes = values.reduce<number>((s, v) => s + sizeOf(v), 0)
  t.strictSame(await db.stats(), { namespaces: [{ namespace: 'new', entries: 1, bytes: sizeOf('new') }, { namespace: 'old', entries: 3, bytes }], entries: 4, bytes: bytes + sizeOf('new'), sizedFromRows: 3 })
  // Those rows cannot be read: stats fails typed and transient (a retry can answer), and answers once the backend does.
  const backend = (db as unknown as { backend: { get: (id: string) => Promise<unknown> } }).backend
  const get = backend.get
  backend.get = () => Promise.reject(Object.assign(new Error('injected EIO'), { code: 'EIO' }))
  await t.rejects(db.stats(), { code: 'ENGINE_BACKEND_UNAVAILABLE', transient: true }, 'a backend that cannot answer: ENGINE_BACKEND_UNAVAILABLE')
  t.strictSame(await db.listNamespaces(), [{ namespace: 'new', entries: 1 }, { namespace: 'old', entries: 3 }], 'listNamespaces reads no row: it still answers')
  backend.get = get
  t.match(await db.stats(), { entries: 4, sizedFromRows: 3 }, 'the backend back: stats answers')
  await db.put('k0', 'short', { namespace: 'old', tags: ['t'] })
  await db.flush()
  t.match(await db.stats(), { sizedFromRows: 2 }, 'an overwrite keeps the size in the index again')
  await t.rejects(db.stats({ limit: 0 }), { code: 'INVALID_OPTIONS' }, 'options are checked as listNamespaces checks them')
  await t.rejects(db.stats({ namespace: 'x' } as never), { code: 'INVALID_OPTIONS' }, 'a field not understood is refused')
})

t.test('memwal stats <dir>: per namespace and in all', async (t) => {
  const dir = tmpDir(t)
  const db = await MemWAL.open({ dir })
  await db.put('k', 'x'.repeat(40), { namespace: 'agents/1' })
  await db.put('k', 'y', { namespace: 'agents/2' })
  await db.close()
  const json = await runCli(['stats', dir, '--json'])
  t.equal(json.code, 0)
  t.strictSame(JSON.parse(json.stdout), { namespaces: [{ namespace: 'agents/1', entries: 1, bytes: sizeOf('x'.repeat(40)) }, { namespace: 'agents/2', entries: 1, bytes: sizeOf('y') }], entries: 2, bytes: sizeOf('x'.repeat(40)) + sizeOf('y'), sizedFromRows: 0 })
  const text = await runCli(['stats', dir, '--prefix', 'agents/2'])
  t.equal(text.code, 0)
  t.match(text.stdout, /agents\/2\s+1 entries\s+2 bytes/)
  t.match(text.stdout, /total\s+1 entries\s+2 bytes/)
})
