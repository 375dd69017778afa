/**
 * Group-synced applies (issue 15 item 2): the backend's and the index's apply
 * batches reach LevelDB unsynced, the store is synced on a cadence (time,
 * bytes), and WAL retention purges only through each sink's durable
 * checkpoint (what a completed sync covered). On the simulated filesystem, a
 * manual clock and a memory-level store that loses its unsynced writes on a
 * power loss (test/support/power-loss-level.ts):
 * - a power loss that takes the store's unsynced applies leaves the log
 *   segments they covered: after reopening, every acknowledged record reads
 *   back (0 lost), and each durable sink takes each lost LSN once more and
 *   no kept one again (0 double applies);
 * - retention still frees what a sync covered;
 * - the cadence: a sync after storeSyncBytes without the clock moving, or
 *   storeSyncIntervalMs after the first unsynced write;
 * - close syncs: a power loss after a clean close loses nothing of the store;
 * - the options' bounds are refused with INVALID_OPTIONS naming the field.
 */
import t from 'tap'
import { MemWAL, isMemwalError, type AppliedRecord, type MemwalOptions, type Sink } from '../../engine/index.js'
import { ManualClock, SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'
import { PowerLossLevel } from '../support/power-loss-level.js'

const VALUE = 'v'.repeat(300)
/** A sync interval no test step reaches by itself (the tests that want a timed sync move the clock past a shorter one). */
const NEVER_MS = 60_000

class World {
  sim = new SimulatedFileSystem(new SeededRandom(7))
  readonly clock = new ManualClock()
  readonly store = new PowerLossLevel(() => this.sim.isCrashed)
  /** LSNs each durable sink's storage took, in this epoch. */
  applied = new Map<string, number[]>()

  options(extra: Partial<MemwalOptions> = {}): MemwalOptions {
    return {
      dir: '/data', fs: this.sim, level: this.store.db, clock: this.clock, random: new SeededRandom(11),
      segmentBytes: 64 * 1024, closeGraceMs: 1000, storeSyncIntervalMs: NEVER_MS, storeSyncBytes: 1024 * 1024 * 1024,
      wrapSink: <S extends Sink>(s: S): S => this.count(s),
      ...extra,
    }
  }

  /** Power off: the log keeps what was synced (and torn pieces), the store what its last sync covered. */
  async powerLoss(engine: MemWAL): Promise<void> {
    this.sim.powerLoss()
    await this.store.powerLoss()
    await engine.close()
    this.sim = this.sim.restart(13)
    this.applied = new Map()
  }

  private count<S extends Sink>(sink: S): S {
    if (sink.name !== 'backend' && sink.name !== 'index') return sink
    const hook = sink as unknown as { _apply(records: readonly AppliedRecord[], checkpoint: number): Promise<void> }
    const original = hook._apply.bind(sink)
    hook._apply = async (records, checkpoint) => {
      await original(records, checkpoint)
      const seen = this.applied.get(sink.name) ?? []
      for (const r of records) seen.push(r.lsn)
      this.applied.set(sink.name, seen)
    }
    return sink
  }
}

async function putRange(engine: MemWAL, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i += 64) {
    await Promise.all(Array.from({ length: Math.min(64, to - i) }, (_, j) => engine.put(`k${i + j}`, { i: i + j, pad: VALUE }, { namespace: 'ns', tags: ['t'] })))
  }
}

function durable(engine: MemWAL, sink: 'backend' | 'index'): number {
  return engine.health().sinks[sink]?.durableCheckpoint ?? -1
}

/** Retention looks at most once a second (of the engine's clock), when a checkpoint moves: move the clock, write, apply. */
async function nudgeRetention(w: World, engine: MemWAL, key: string): Promise<void> {
  w.clock.advance(1500)
  await engine.put(key, 0, { namespace: 'nudge' })
  await engine.flush({ timeoutMs: 10_000 })
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
}

async function firstSegment(w: World): Promise<number> {
  const names = (await w.sim.readdir('/data/wal')).filter((n) => n.endsWith('.seg')).sort()
  return Number((names[0] ?? '').slice(0, 20))
}

t.test('a power loss takes the store\'s unsynced applies: the log still holds them, 0 lost, 0 applied twice', async (t) => {
  const w = new World()
  // Longer than a retention nudge (1.5 s): only the advance below syncs the store.
  const engine = await MemWAL.open(w.options({ storeSyncIntervalMs: 5000 }))
  await putRange(engine, 0, 1000)
  await engine.flush({ timeoutMs: 10_000 })
  // The timed sync: the store's applies so far become durable.
  w.clock.advance(5000)
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
  const synced = Math.min(durable(engine, 'backend'), durable(engine, 'index'))
  t.equal(synced, 1000, 'a sync 5 s after the first unsynced write made both sinks\' checkpoints durable')
  // More applies, none synced: the clock moves on only by the nudge's 1.5 s.
  await putRange(engine, 1000, 2000)
  await engine.flush({ timeoutMs: 10_000 })
  t.equal(engine.health().sinks['backend']?.checkpoint, 2000, 'the backend applied everything')
  // Retention runs (clock past its once-a-second bound, a checkpoint moves) but only through the durable checkpoints.
  await nudgeRetention(w, engine, 'n1')
  const lastLsn = engine.health().wal.lastLsn
  const base = await firstSegment(w)
  t.ok(base > 1, `retention purged through what the sync covered (first segment now starts at LSN ${base})`)
  t.ok(base <= Math.min(durable(engine, 'backend'), durable(engine, 'index')) + 1, `no segment above the durable checkpoints was purged (first segment ${base}, durable ${durable(engine, 'backend')}/${durable(engine, 'index')})`)
  const keptBefore = w.store.syncedWrites
  await w.powerLoss(engine)
  t.ok(keptBefore < w.store.writes, 'the power loss dropped unsynced store writes')

  const again = await MemWAL.open(w.options())
  t.teardown(() => again.close())
  const h = again.health()
  t.equal(h.wal.lastLsn, lastLsn, 'the log kept every acknowledged record')
  const storeAt = Math.min(h.sinks['backend']?.checkpoint ?? -1, h.sinks['index']?.checkpoint ?? -1)
  t.ok(storeAt >= synced && storeAt < lastLsn, `the store came back at its synced prefix (checkpoints ${h.sinks['backend']?.checkpoint}/${h.sinks['index']?.checkpoint}), behind the log`)
  await again.flush({ timeoutMs: 10_000 })
  const lost: number[] = []
  for (let i = 0; i < 2000; i++) {
    const v = (await again.get(`k${i}`, { namespace: 'ns' })) as { i: number } | undefined
    if (v?.i !== i) lost.push(i)
  }
  t.strictSame(lost, [], 'every acknowledged record reads back (0 lost)')
  t.equal((await again.count({ namespace: 'ns', tags: { all: ['t'] } })), 2000, 'and the index finds all of them')
  for (const name of ['backend', 'index']) {
    const lsns = w.applied.get(name) ?? []
    const from = name === 'backend' ? (h.sinks['backend']?.checkpoint ?? 0) : (h.sinks['index']?.checkpoint ?? 0)
    t.strictSame(lsns, Array.from({ length: lastLsn - from }, (_, i) => from + 1 + i), `${name}: after the reopen, each LSN the store lost applied once, none it kept (0 double applies)`)
  }
})

t.test('the store syncs once storeSyncBytes were written, without waiting for the clock', async (t) => {
  const w = new World()
  const engine = await MemWAL.open(w.options({ storeSyncBytes: 64 * 1024 }))
  t.teardown(() => engine.close())
  await putRange(engine, 0, 600)
  await engine.flush({ timeoutMs: 10_000 })
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
  const d = durable(engine, 'backend')
  t.ok(d > 0 && d <= 600, `the backend's checkpoint became durable by bytes alone (durable ${d} of 600)`)
  t.ok(w.store.syncedWrites > 1, 'synced writes beyond the one at open')
})

t.test('with neither bound reached, nothing is trusted and nothing purged', async (t) => {
  const w = new World()
  const engine = await MemWAL.open(w.options())
  t.teardown(() => engine.close())
  await putRange(engine, 0, 1500)
  await engine.flush({ timeoutMs: 10_000 })
  await nudgeRetention(w, engine, 'n1')
  t.equal(durable(engine, 'backend'), 0, 'the backend\'s durable checkpoint stays at what it opened with')
  t.equal(durable(engine, 'index'), 0, 'the index\'s too')
  t.equal(engine.health().sinks['backend']?.checkpoint, 1501, 'though it applied everything')
  t.equal(await firstSegment(w), 1, 'no segment was purged')
})

t.test('close syncs the store: a power loss after a clean close loses nothing of it', async (t) => {
  const w = new World()
  const engine = await MemWAL.open(w.options())
  await putRange(engine, 0, 300)
  await engine.flush({ timeoutMs: 10_000 })
  await engine.close()
  await w.store.powerLoss()
  const again = await MemWAL.open(w.options())
  t.teardown(() => again.close())
  const h = again.health()
  t.equal(h.sinks['backend']?.checkpoint, 300, 'the backend\'s checkpoint survived')
  t.equal(h.sinks['index']?.checkpoint, 300, 'the index\'s too')
  t.equal(h.backlog.records, 0, 'nothing to replay')
})

t.test('store sync options out of bounds are refused, naming the field', async (t) => {
  const w = new World()
  const bad: [keyof MemwalOptions, unknown][] = [
    ['storeSyncIntervalMs', 0], ['storeSyncIntervalMs', -5], ['storeSyncIntervalMs', 60_001], ['storeSyncIntervalMs', Number.NaN], ['storeSyncIntervalMs', '100'],
    ['storeSyncBytes', 4095], ['storeSyncBytes', 1024 * 1024 * 1024 + 1], ['storeSyncBytes', Number.POSITIVE_INFINITY],
  ]
  for (const [field, value] of bad) {
    const err = await MemWAL.open({ ...w.options(), [field]: value }).then(async (e) => {
      await e.close()
      return undefined
    }, (e: unknown) => e)
    t.ok(isMemwalError(err) && err.code === 'INVALID_OPTIONS' && (err.details as { field?: string } | undefined)?.field === field, `${field} ${String(value)} is INVALID_OPTIONS naming ${field}`)
  }
})
