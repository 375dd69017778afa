/**
 * The expiry sweep (engine/expiry-sweep.ts) and its append-time condition
 * (engine/write-watch.ts, WritePath.deleteUnchanged), on the manual clock:
 * - a round deletes what is still expired as readers see it, in batches of
 *   batchOps, at most entriesPerRound per round, and says when more is left;
 * - an entry gone, no longer expired, or written after it was watched is
 *   kept;
 * - rounds run on the clock's cadence, never overlap, go on after a failed
 *   round, and stop;
 * - through a real engine, the delete is a logged batch that a reopen
 *   replays, and a version written after the watch (before or after the
 *   sweep's append, acknowledged or still in flight) survives, as does one
 *   whose append began before the watch and is still in flight when the
 *   sweep decides (the read before could not see it).
 */
import t from 'tap'
import { ExpirySweeper, type ExpiredPosting, type SweepPorts } from '../../engine/expiry-sweep.js'
import { resolveSweep } from '../../engine/expiry-options.js'
import { dumpLog, MemWAL } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import type { WritePath } from '../../engine/write-path.js'
import { WriteWatches, type WriteWatch } from '../../engine/write-watch.js'
import { tmpDir } from '../support/tmp-dir.js'
import { settle } from '../support/wait-for.js'
import { identityOf } from '../../engine/format/identity.js'
import { NodeFileSystem } from '../../engine/io/node-fs.js'
import { HoldingFs } from '../support/holding-fs.js'

const NOW = 1_700_000_000_000

/** A store of entries with expiries, and the write path's rule for deleteUnchanged, in memory. */
class FakeStore {
  readonly entries = new Map<string, number | undefined>()
  readonly watches = new WriteWatches()
  readonly batches: string[][] = []
  postingsRead = 0

  write(id: string, expiresAt?: number): void {
    this.watches.note(id)
    this.entries.set(id, expiresAt)
  }

  ports(clock: ManualClock, o: Parameters<typeof resolveSweep>[0], failed: unknown[] = []): SweepPorts {
    return {
      clock,
      config: resolveSweep(o, 10_000),
      watches: this.watches,
      expired: (now) => this.expired(now),
      currentMany: async (ids) => ids.map((id) => (this.entries.has(id) ? { expiresAt: this.entries.get(id) } : undefined)),
      deleteUnchanged: async (ids: readonly string[], watch: WriteWatch) => {
        const deleted = ids.filter((id) => watch.unchanged(id))
        if (deleted.length === 0) return undefined
        this.batches.push(deleted)
        for (const id of deleted) this.entries.delete(id)
        return { deleted }
      },
      failed: (err) => failed.push(err),
    }
  }

  private async *expired(now: number): AsyncIterable<ExpiredPosting> {
    const postings = [...this.entries].filter((e): e is [string, number] => e[1] !== undefined && e[1] <= now).sort((a, b) => a[1] - b[1])
    for (const [identity, expiresAt] of postings) {
      this.postingsRead++
      yield { identity, expiresAt }
    }
  }
}

t.test('a round deletes the expired entries in bounded batches, and only them', async (t) => {
  const clock = new ManualClock(NOW)
  const s = new FakeStore()
  for (let i = 0; i < 25; i++) s.write(`old${i}`, NOW - 100 + i)
  for (let i = 0; i < 10; i++) s.write(`young${i}`, NOW + 1000)
  s.write('forever')
  const sweeper = new ExpirySweeper(s.ports(clock, { sweepEntriesPerRound: 20, sweepBatchOps: 8 }))
  const first = await sweeper.round()
  t.same(first, { examined: 20, deleted: 20, skipped: 0, more: true })
  t.same(s.batches.map((b) => b.length), [8, 8, 4], 'batches of at most batchOps')
  t.same(s.batches.flat(), Array.from({ length: 20 }, (_, i) => `old${i}`), 'in expiry order')
  const second = await sweeper.round()
  t.same(second, { examined: 5, deleted: 5, skipped: 0, more: false })
  t.same([...s.entries.keys()].sort(), [...Array.from({ length: 10 }, (_, i) => `young${i}`), 'forever'].sort(), 'what has not expired stays')
  t.equal(s.postingsRead, 26, 'a round reads only expired postings (plus the one past its limit)')
  t.equal(s.watches.size, 0, 'the round ended its watch')
})

t.test('an entry gone, given a later expiry, or written after it was watched is kept', async (t) => {
  const clock = new ManualClock(NOW)
  const s = new FakeStore()
  for (const id of ['a', 'b', 'c', 'd']) s.write(id, NOW - 10)
  const ports = s.ports(clock, { sweepBatchOps: 100 })
  const sweeper = new ExpirySweeper({
    ...ports,
    // The index still has the postings; readers see: a deleted, b rewritten with a later expiry, c rewritten (same old expiry) after the watch began.
    currentMany: async (ids) =>
      ids.map((id) => {
        if (id === 'a') return undefined
        if (id === 'b') return { expiresAt: NOW + 5000 }
        if (id === 'c') s.write('c', NOW - 10)
        return { expiresAt: s.entries.get(id) }
      }),
  })
  t.same(await sweeper.round(), { examined: 4, deleted: 1, skipped: 3, more: false })
  t.same(s.batches, [['d']])
  t.ok(s.entries.has('c'), 'the version written after the watch survives')
})

t.test('rounds follow the clock, never overlap, survive a failed round, and stop', async (t) => {
  const clock = new ManualClock(NOW)
  const s = new FakeStore()
  const failed: unknown[] = []
  const base = s.ports(clock, { sweepIntervalMs: 1000 }, failed)
  let calls = 0
  let failNext = false
  const sweeper = new ExpirySweeper({
    ...base,
    expired: (now) => {
      calls++
      if (failNext) {
        failNext = false
        throw new Error('index down')
      }
      return base.expired(now)
    },
  })
  sweeper.start()
  clock.advance(999)
  await settle()
  t.equal(calls, 0, 'nothing before one interval')
  s.write('k', NOW + 1500)
  clock.advance(1)
  await settle()
  t.equal(calls, 1)
  t.ok(s.entries.has('k'), 'not yet expired at the first round')
  clock.advance(1000)
  await settle()
  t.equal(calls, 2)
  t.notOk(s.entries.has('k'), 'deleted by the round after it expired')
  failNext = true
  clock.advance(1000)
  await settle()
  t.equal(failed.length, 1, 'a failed round is reported')
  clock.advance(1000)
  await settle()
  t.equal(calls, 4, 'the next round runs after a failed one')
  const a = sweeper.round()
  const b = sweeper.round()
  t.equal(a, b, 'a round asked for while one runs joins it')
  await a
  await sweeper.stop()
  clock.advance(10_000)
  await settle()
  t.equal(calls, 5, 'no round after stop')
})

t.test('a watch is bounded and cannot be used after it ended', async (t) => {
  const w = new WriteWatches().begin(2)
  w.watch('a')
  w.watch('a')
  w.watch('b')
  t.throws(() => w.watch('c'), { code: 'ASSERTION_FAILED' })
  w.end()
  t.throws(() => w.watch('d'), { code: 'ASSERTION_FAILED' })
})

t.test('deleteUnchanged through the engine: a logged batch that replays; newer versions survive', async (t) => {
  const dir = tmpDir(t)
  const clock = new ManualClock(NOW)
  let db = await MemWAL.open({ dir, clock })
  const writes = (db as unknown as { writes: WritePath }).writes
  for (const k of ['a', 'b', 'c', 'd', 'e']) await db.put(k, `${k}1`)
  const watch = writes.watches.begin(10)
  // Entries are named by identity (engine/format/identity.ts): these keys live in the default namespace.
  const id = (k: string): string => identityOf('default', k)
  for (const k of ['a', 'b', 'c', 'd', 'e']) watch.watch(id(k))
  await db.put('b', 'b2') // acknowledged after the watch began
  const inFlight = db.put('c', 'c2') // appended concurrently, before the sweep's append
  const r = await writes.deleteUnchanged(['a', 'b', 'c', 'd'].map(id), watch)
  const after = db.put('d', 'd2') // after the sweep's append: a later LSN, so it wins anyway
  await Promise.all([inFlight, after])
  t.same(r?.deleted, ['a', 'd'].map(id), 'only what nothing wrote since the watch began, up to the sweep\'s append (d was written after it)')
  t.equal(await db.get('a'), undefined)
  t.same([await db.get('b'), await db.get('c'), await db.get('d'), await db.get('e')], ['b2', 'c2', 'd2', 'e1'])
  t.equal(await writes.deleteUnchanged([id('b')], watch), undefined, 'nothing left: nothing appended')
  watch.end()
  await db.close()
  const logged: unknown[] = []
  for await (const e of dumpLog({ dir, fromLsn: r?.lsn ?? 0, toLsn: r?.lsn ?? 0 })) if (e.kind === 'record') logged.push(e.record)
  t.match(logged, [{ ops: [{ type: 'del', key: 'a' }, { type: 'del', key: 'd' }] }], 'the dump shows the sweep\'s one batch of deletes')
  db = await MemWAL.open({ dir, clock })
  t.same([await db.get('a'), await db.get('b'), await db.get('c'), await db.get('d'), await db.get('e')], [undefined, 'b2', 'c2', 'd2', 'e1'], 'a reopen agrees')
  const report = await db.verify()
  t.same(report.findings, [], 'verify finds nothing')
  await db.close()
})

t.test('deleteUnchanged keeps an entry whose write was appended before the watch began and is still in flight when it decides', async (t) => {
  const dir = tmpDir(t)
  const fs = new HoldingFs(new NodeFileSystem())
  const db = await MemWAL.open({ dir, clock: new ManualClock(NOW), fs })
  t.teardown(() => db.close())
  const writes = (db as unknown as { writes: WritePath }).writes
  const id = identityOf('default', 'f')
  await db.put('f', 'f1')
  // f's second put is appended, then held: in flight, not acknowledged, so a read made now sees f1.
  const held = fs.hold('f2-marker')
  const second = db.put('f', 'f2-marker')
  await held
  t.equal(await db.get('f'), 'f1', 'a read now sees the old version')
  const watch = writes.watches.begin(10)
  watch.watch(id)
  const sweep = writes.deleteUnchanged([id], watch)
  setImmediate(() => fs.release()) // the sweep decided synchronously before its append, which queues behind the held write
  const [r] = await Promise.all([sweep, second])
  watch.end()
  t.equal(r, undefined, 'nothing deleted: f had a write in flight')
  t.equal(await db.get('f'), 'f2-marker', 'the newer version survives')
})
