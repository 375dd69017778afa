/**
 * The store after a failed LevelDB write (level-store.ts writeBatch): LevelDB
 * goes on appending behind a partial record in its log and drops everything
 * behind it at its next recovery, so the store must not write again until it
 * has reopened LevelDB. The real failure (a full disk) is in disk-real.test.ts;
 * here a write is made to fail on demand, so each step is checked exactly:
 * - nothing reaches LevelDB between the failed write and the reopen, also for
 *   writes already queued behind the failing one;
 * - the next write reopens LevelDB (and its sublevels) first, then lands, and
 *   what was written before the failure is still there;
 * - a reopen that fails is IO_ERROR and leaves the store to try again;
 * - ready() reopens without a write (what health probes call).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { encodeLsn, LevelStore } from '../../engine/sinks/level-store.js'
import type { MemwalError } from '../../engine/errors.js'
import { ManualClock } from '../../engine/testing.js'
import { ClassicLevel } from 'classic-level'
import { MemWAL } from '../../engine/index.js'
import { waitFor } from '../support/wait-for.js'

interface Hooks {
  _batch(ops: unknown[], options: object): Promise<void>
  _open(options: object): Promise<void>
}

async function openStore(t: { teardown(fn: () => unknown): void }): Promise<{ store: LevelStore; hooks: Hooks; events: string[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-reopen-'))
  const store = await LevelStore.open(path.join(dir, 'store'))
  t.teardown(async () => {
    await store.close().catch(() => undefined)
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const events: string[] = []
  for (const e of ['open', 'closed']) store.db.on(e as 'open', () => events.push(e))
  return { store, hooks: store.db as unknown as Hooks, events }
}

const put = (store: LevelStore, key: string, value: string) => store.writeBatch([{ type: 'put', sublevel: store.data, key, value: Buffer.from(value) }])
const read = async (store: LevelStore, key: string) => {
  const v = await store.data.get(key)
  return v === undefined ? undefined : Buffer.from(v).toString()
}

t.test('after a failed write, nothing is written until LevelDB is reopened; then writes land and earlier data is kept', async (t) => {
  const { store, hooks, events } = await openStore(t)
  await put(store, 'before', 'kept')
  const real = hooks._batch.bind(store.db)
  const reached: string[] = []
  let failNext = true
  hooks._batch = async (ops, options) => {
    reached.push(String((ops[0] as { key: string }).key))
    if (failNext) {
      failNext = false
      throw Object.assign(new Error('IO error: No space left on device'), { code: 'LEVEL_IO_ERROR' })
    }
    return real(ops, options)
  }
  // Two writes at once: the second is queued behind the one that fails, and must not reach LevelDB before the reopen.
  const failing = put(store, 'a', '1')
  const queued = put(store, 'b', '2')
  await t.rejects(failing, { code: 'LEVEL_IO_ERROR' }, 'the failed write is reported')
  await queued
  t.strictSame(events, ['closed', 'open'], 'the queued write first closed and reopened LevelDB')
  t.equal(reached.length, 2, 'LevelDB saw the failed write and then only the queued one, after the reopen')
  t.equal(await read(store, 'b'), '2', 'the write after the reopen landed (sublevels reopened too)')
  t.equal(await read(store, 'before'), 'kept', 'what was written before the failure is still there')
  t.equal(await read(store, 'a'), undefined, 'the failed write is absent')
  await put(store, 'c', '3')
  t.strictSame(events, ['closed', 'open'], 'a healthy store does not reopen again')
})

t.test('a reopen that fails is IO_ERROR; the store tries again at the next write or ready()', async (t) => {
  const { store, hooks, events } = await openStore(t)
  const realBatch = hooks._batch.bind(store.db)
  const realOpen = hooks._open.bind(store.db)
  let failBatch = true
  hooks._batch = async (ops, options) => {
    if (failBatch) {
      failBatch = false
      throw new Error('IO error: No space left on device')
    }
    return realBatch(ops, options)
  }
  let opens = 0
  hooks._open = async (options) => {
    opens++
    if (opens === 1) throw new Error('IO error: No space left on device (recovering the log)')
    return realOpen(options)
  }
  await t.rejects(put(store, 'a', '1'), /No space left/)
  await t.rejects(put(store, 'b', '2'), { code: 'IO_ERROR', message: /cannot reopen the LevelDB store .* after a failed write/ }, 'the reopen failed: typed, with the reason')
  t.equal(opens, 1)
  await store.ready()
  t.equal(opens, 2, 'ready() reopened it, with no write')
  t.equal(events.at(-1), 'open')
  await put(store, 'c', '3')
  t.equal(await read(store, 'c'), '3')
  t.equal(opens, 2, 'no reopen once healthy')
})

t.test('group sync: a store that reopens without batches it had taken unsynced fails closed; one that kept them goes on', async (t) => {
  const open = async (): Promise<{ store: LevelStore; hooks: Hooks; lost: MemwalError[] }> => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-reopen-'))
    const store = await LevelStore.open(path.join(dir, 'store'), undefined, { clock: new ManualClock(), config: { intervalMs: 60_000, bytes: 1 << 30 } })
    t.teardown(async () => {
      await store.close().catch(() => undefined)
      fs.rmSync(dir, { recursive: true, force: true })
    })
    const lost: MemwalError[] = []
    store.onGroupSync({ synced: () => undefined, failed: () => undefined, lost: (err) => lost.push(err) })
    return { store, hooks: store.db as unknown as Hooks, lost }
  }
  const apply = (store: LevelStore, lsn: number) => store.applyBatch('backend', lsn, [
    { type: 'put', sublevel: store.data, key: `k${lsn}`, value: Buffer.from('v') },
    { type: 'put', sublevel: store.meta, key: 'checkpoint:backend', value: encodeLsn(lsn) },
  ])
  const failOnce = (hooks: Hooks, store: LevelStore): void => {
    const real = hooks._batch.bind(store.db)
    let failed = false
    hooks._batch = async (ops, options) => {
      if (failed) return real(ops, options)
      failed = true
      throw new Error('IO error: Input/output error')
    }
  }

  // Kept: the unsynced batches come back with the reopen (a full disk: the page cache has them).
  const kept = await open()
  await apply(kept.store, 5)
  failOnce(kept.hooks, kept.store)
  await t.rejects(apply(kept.store, 6), /Input\/output error/)
  await kept.store.ready()
  t.same(kept.lost, [], 'nothing lost: no failure')
  await apply(kept.store, 7)
  t.equal(await kept.store.readCheckpoint('backend'), 7, 'writes go on')

  // Lost: the reopened store is at checkpoint 3 although the sink wrote 5 (the log's unsynced pages dropped after EIO).
  const gone = await open()
  await apply(gone.store, 3)
  await gone.store.sync()
  await apply(gone.store, 5)
  failOnce(gone.hooks, gone.store)
  const realOpen = gone.hooks._open.bind(gone.store.db)
  const rawBatch = gone.hooks._batch
  gone.hooks._open = async (options) => {
    await realOpen(options)
    // What the disk kept: the synced checkpoint 3, not the unsynced 5.
    await (rawBatch as (ops: unknown[], o: object) => Promise<void>)([{ type: 'put', key: gone.store.meta.prefixKey('checkpoint:backend', 'utf8'), value: encodeLsn(3), keyEncoding: 'utf8', valueEncoding: 'view' }], { sync: true })
  }
  await t.rejects(apply(gone.store, 6), /Input\/output error/)
  const expected = { code: 'IO_ERROR', message: /came back from a failed write without batches it had taken \(sink backend: checkpoint 3, wrote 5\)/ }
  await t.rejects(gone.store.ready(), expected, 'the reopen finds the store behind: refused, typed, naming the sink and both checkpoints')
  t.equal(gone.lost.length, 1, 'the engine is told once (it fails closed: engine.ts)')
  t.match(gone.lost[0], { details: { sink: 'backend', stored: 3, written: 5 } })
  await t.rejects(apply(gone.store, 7), expected, 'every later write is refused: no checkpoint is written over the gap')
  t.equal(await gone.store.readCheckpoint('backend'), 3, 'the store stays at what it has, for the engine\'s reopen to replay from')
})

t.test('the engine: a store that comes back behind after a failed write fails the engine closed (ENGINE_FAILED); reopening replays every acknowledged write', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-reopen-engine-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  // The engine's own LevelDB (the reopen is for it alone), reached through classic-level's prototype: the test's hooks
  // stand for the disk. Group sync never fires by time or bytes here, so what the store holds after the first flush
  // stays unsynced until the reopen decides.
  const proto = ClassicLevel.prototype as unknown as Hooks
  const realBatch = proto._batch
  const realOpen = proto._open
  t.teardown(() => {
    proto._batch = realBatch
    proto._open = realOpen
  })
  const open = () => MemWAL.open({ dir, storeSyncIntervalMs: 60_000, storeSyncBytes: 1 << 30, closeGraceMs: 1000, resilience: { retryDelayMsMin: 1, retryDelayMsMax: 5 } })
  const engine = await open()
  const failed: unknown[] = []
  engine.on('wal-failed', (e) => failed.push(e))
  for (const k of ['a', 'b', 'c']) await engine.put(k, `v-${k}`, { namespace: 'ns', tags: ['t'] })
  await engine.flush()
  let failOnce = true
  proto._batch = async function (this: ClassicLevel, ops, options) {
    if (!failOnce) return realBatch.call(this, ops, options)
    failOnce = false
    throw Object.assign(new Error('IO error: Input/output error'), { code: 'LEVEL_IO_ERROR' })
  }
  proto._open = async function (this: ClassicLevel<string, Uint8Array>, options) {
    await realOpen.call(this, options)
    // What the disk kept after the EIO: the backend's checkpoint from before the three puts (their batches were never synced).
    await realBatch.call(this, [{ type: 'put', key: this.sublevel('meta').prefixKey('checkpoint:backend', 'utf8'), value: encodeLsn(0), keyEncoding: 'utf8', valueEncoding: 'view' }], {})
  }
  const acked = await engine.put('d', 'v-d', { namespace: 'ns' })
  await waitFor(() => failed.length === 1, 'the engine fails closed', 10_000)
  proto._batch = realBatch
  proto._open = realOpen
  t.equal(engine.health().state, 'failed', 'health says failed')
  await t.rejects(engine.put('e', 'v-e', { namespace: 'ns' }), { code: 'ENGINE_FAILED', message: /sink backend: checkpoint 0, wrote 3/ }, 'no write is acknowledged once the store is known behind; the refusal says why')
  await engine.close()
  const again = await open()
  t.teardown(() => again.close())
  await again.flush()
  for (const k of ['a', 'b', 'c', 'd']) t.equal(await again.get(k, { namespace: 'ns' }), `v-${k}`, `${k} (acknowledged) reads back after the reopen replayed the log`)
  t.equal((await again.getEntry('d', { namespace: 'ns' }))?.version, acked.lsn, 'at the version its put resolved with')
  t.equal(await again.get('e', { namespace: 'ns' }), undefined, 'the refused write is nowhere')
  t.ok((await again.verify()).clean, 'verify: log, store and index agree')
})
