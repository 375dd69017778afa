/**
 * One LevelDB write per apply group (issue 15 item 1): the backend's and the
 * index's apply batches of the same records go to the store as one atomic
 * batch (level-store.ts joinApplyGroup), each with its checkpoint.
 * - The store: a batch whose write's turn comes while the other sink's apply
 *   is under way waits for that sink's batch, and both land in one write; a
 *   sink whose apply hangs holds it only APPLY_GROUP_WAIT_MS (the injected
 *   clock's); a write that fails fails every apply in it and writes nothing;
 *   a store without group sync (a tool's) writes each batch at once.
 * - The engine: puts applied by both sinks take fewer LevelDB writes than
 *   the sinks made applies, every write holding both checkpoints, and every
 *   record reads back with its index entry.
 */
import t from 'tap'
import { MemoryLevel } from 'memory-level'
import { MemWAL, type AppliedRecord, type LevelDatabase, type Sink } from '../../engine/index.js'
import { LevelStore, encodeLsn } from '../../engine/sinks/level-store.js'
import { ManualClock, SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'

type Op = { readonly type: 'put' | 'del'; readonly key: string; readonly value?: Uint8Array }

/** A memory-level database whose batches are recorded (keys as the store prefixes them), and can be made to fail. */
function recordingDb(): { db: LevelDatabase; writes: Op[][]; failNext: () => void } {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as LevelDatabase
  const writes: Op[][] = []
  let fail = false
  const hooks = db as unknown as { _batch(ops: Op[], options: object): Promise<void> }
  const original = hooks._batch.bind(db)
  hooks._batch = async (ops, options) => {
    if (fail) {
      fail = false
      throw new Error('EIO: simulated write failure')
    }
    writes.push(ops.map((o) => ({ type: o.type, key: String(o.key) })))
    return original(ops, options)
  }
  return { db, writes, failNext: () => (fail = true) }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

function batchOf(store: LevelStore, sink: string, key: string, lsn: number) {
  return [
    { type: 'put' as const, sublevel: sink === 'backend' ? store.data : store.index, key, value: new Uint8Array([1]) },
    { type: 'put' as const, sublevel: store.meta, key: `checkpoint:${sink}`, value: encodeLsn(lsn) },
  ]
}

const checkpointsIn = (ops: readonly Op[]): string[] => ops.filter((o) => o.key.includes('checkpoint:')).map((o) => o.key.slice(o.key.indexOf('checkpoint:') + 'checkpoint:'.length)).sort()

async function groupStore(db: LevelDatabase, clock: ManualClock): Promise<LevelStore> {
  const store = await LevelStore.open('mem', db, { clock, config: { intervalMs: 60_000, bytes: 1 << 30 } })
  await store.openCheckpoint('backend')
  await store.openCheckpoint('index')
  return store
}

t.test('the store: a batch waits for the apply under way on the other sink, and both land in one write', async (t) => {
  const { db, writes } = recordingDb()
  const store = await groupStore(db, new ManualClock())
  const before = writes.length
  store.beginApply('backend')
  store.beginApply('index')
  let backendDone = false
  const backend = store.applyBatch('backend', 5, batchOf(store, 'backend', 'k1', 5)).then(() => (backendDone = true))
  for (let i = 0; i < 5; i++) await turn()
  t.equal(writes.length, before, 'nothing written while the index is still applying the same records')
  t.notOk(backendDone, 'the backend apply waits for its write')
  await Promise.all([backend, store.applyBatch('index', 5, batchOf(store, 'index', 'k1', 5))])
  t.equal(writes.length, before + 1, 'one LevelDB write for both batches')
  t.same(checkpointsIn(writes[before]!), ['backend', 'index'], 'holding both sinks checkpoints')
  t.equal(await store.readCheckpoint('backend'), 5)
  t.equal(await store.readCheckpoint('index'), 5)
  await store.close()
})

t.test('the store: a sink whose apply hangs holds the other sink write only until the clock passes the wait bound', async (t) => {
  const { db, writes } = recordingDb()
  const clock = new ManualClock()
  const store = await groupStore(db, clock)
  const before = writes.length
  store.beginApply('index') // begun, never gives its batch
  store.beginApply('backend')
  let done = false
  const backend = store.applyBatch('backend', 3, batchOf(store, 'backend', 'k', 3)).then(() => (done = true))
  for (let i = 0; i < 5; i++) await turn()
  t.notOk(done, 'waiting for the index batch')
  clock.advance(19)
  for (let i = 0; i < 5; i++) await turn()
  t.notOk(done, 'still waiting before the bound')
  clock.advance(1)
  await backend
  t.equal(writes.length, before + 1, 'written alone once the bound passed')
  t.same(checkpointsIn(writes[before]!), ['backend'])
  store.endApply('index')
  await store.close()
})

t.test('the store: an apply that fails before giving its batch lets the group go at once', async (t) => {
  const { db, writes } = recordingDb()
  const store = await groupStore(db, new ManualClock())
  const before = writes.length
  store.beginApply('index')
  store.beginApply('backend')
  const backend = store.applyBatch('backend', 2, batchOf(store, 'backend', 'k', 2))
  await turn()
  store.endApply('index') // its reads failed: the sink's finally
  await backend
  t.equal(writes.length, before + 1)
  t.equal(await store.readCheckpoint('backend'), 2)
  t.equal(await store.readCheckpoint('index'), 0, 'the failed sink wrote nothing')
  await store.close()
})

t.test('the store: a failed write fails every apply in it, and neither batch is written', async (t) => {
  const { db, failNext } = recordingDb()
  const store = await groupStore(db, new ManualClock())
  store.beginApply('backend')
  store.beginApply('index')
  failNext()
  const results = await Promise.allSettled([store.applyBatch('backend', 7, batchOf(store, 'backend', 'k', 7)), store.applyBatch('index', 7, batchOf(store, 'index', 'k', 7))])
  t.same(results.map((r) => r.status), ['rejected', 'rejected'], 'both applies fail (each applier retries its own)')
  t.equal(await store.readCheckpoint('backend'), 0)
  t.equal(await store.readCheckpoint('index'), 0)
  t.equal(await store.data.get('k'), undefined, 'no data of the failed write')
  // The retry lands.
  store.beginApply('backend')
  await store.applyBatch('backend', 7, batchOf(store, 'backend', 'k', 7))
  t.equal(await store.readCheckpoint('backend'), 7)
  await store.close()
})

t.test('the store: without group sync (a tool\'s store) each batch is written at once', async (t) => {
  const { db, writes } = recordingDb()
  const store = await LevelStore.open('mem', db)
  store.beginApply('index')
  const before = writes.length
  await store.applyBatch('backend', 1, batchOf(store, 'backend', 'k', 1))
  t.equal(writes.length, before + 1, 'written without waiting for the index')
  await store.close()
})

t.test('the engine: both sinks apply in fewer LevelDB writes than applies, each write holding both checkpoints', async (t) => {
  const { db, writes } = recordingDb()
  const applies = new Map<string, number>()
  const engine = await MemWAL.open({
    dir: '/data', fs: new SimulatedFileSystem(new SeededRandom(3)), level: db, clock: new ManualClock(), random: new SeededRandom(4),
    segmentBytes: 256 * 1024, storeSyncIntervalMs: 60_000,
    wrapSink: <S extends Sink>(sink: S): S => {
      if (sink.name !== 'backend' && sink.name !== 'index') return sink
      const hook = sink as unknown as { _apply(records: readonly AppliedRecord[], checkpoint: number): Promise<void> }
      const original = hook._apply.bind(sink)
      hook._apply = async (records, checkpoint) => {
        await original(records, checkpoint)
        applies.set(sink.name, (applies.get(sink.name) ?? 0) + 1)
      }
      return sink
    },
  })
  const first = writes.length
  const N = 2000
  for (let i = 0; i < N; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => engine.put(`k${i + j}`, { i: i + j }, { namespace: 'ns', tags: ['a', `t${(i + j) % 7}`] })))
  }
  await engine.flush({ timeoutMs: 10_000 })
  const applyWrites = writes.slice(first).filter((w) => checkpointsIn(w).length > 0)
  const sinkApplies = (applies.get('backend') ?? 0) + (applies.get('index') ?? 0)
  t.ok(applyWrites.length < sinkApplies, `fewer writes (${applyWrites.length}) than sink applies (${sinkApplies})`)
  const both = applyWrites.filter((w) => checkpointsIn(w).length === 2).length
  t.ok(both >= applyWrites.length / 2, `most writes hold both sinks' batches (${both} of ${applyWrites.length})`)
  for (const i of [0, 777, N - 1]) t.same(await engine.get(`k${i}`, { namespace: 'ns' }), { i })
  t.equal(await engine.count({ namespace: 'ns', tags: { all: ['a'] } }), N, 'every entry indexed')
  await engine.close()
})
