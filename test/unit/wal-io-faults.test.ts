/**
 * The WAL against a disk that refuses: ENOSPC (transient: the group is
 * rejected, nothing of it ever surfaces, the log goes on), EIO on a write or
 * an fdatasync (G2: fail closed, never retry the sync, never acknowledge
 * again; reopening after a restart is the way out), the `interval` loss
 * window, and the refusals that need no disk at all (record too large, closed).
 * All on the simulated filesystem, with a manual clock and seeded randomness.
 */
import t from 'tap'
import { type WalFailedError } from '../../engine/index.js'
import { ManualClock, RecordType, SeededRandom, SimulatedFileSystem, Wal, type WalOptions } from '../../engine/testing.js'
import { macrotasks } from '../support/power-loss-scenario.js'

const DIR = '/data'
const SEGMENT_BYTES = 64 * 1024
/** Payload size that fills the first segment with 16 frames, leaving 960 bytes: the 17th needs a new segment. */
const FILLER_BYTES = 4000
const FRAMES_PER_SEGMENT = 16
/** Enough macrotasks for the background spare preparation (stat, create, zero-fill, sync) to finish. */
const SETTLE_TICKS = 30

function openWal(fs: SimulatedFileSystem, extra: Partial<WalOptions> = {}): Promise<Wal> {
  return Wal.open({ dir: DIR, fs, clock: new ManualClock(), random: new SeededRandom(7), segmentBytes: SEGMENT_BYTES, durability: 'sync', ...extra })
}

function payload(tag: number, size = 100): Buffer {
  const b = Buffer.alloc(size, tag & 0xff)
  if (size >= 4) b.writeUInt32LE(tag, 0)
  return b
}

async function readAll(wal: Wal): Promise<{ lsn: number; payload: Buffer }[]> {
  const out: { lsn: number; payload: Buffer }[] = []
  for await (const r of wal.read(1)) out.push({ lsn: r.lsn, payload: Buffer.from(r.payload) })
  return out
}

/** The log as a list of [lsn, tag] pairs: compact to compare. */
async function tags(wal: Wal): Promise<[number, number][]> {
  return (await readAll(wal)).map((r) => [r.lsn, r.payload.length >= 4 ? r.payload.readUInt32LE(0) : -1])
}

async function rejection(p: Promise<unknown>): Promise<{ code?: unknown; transient?: unknown } | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return err as { code?: unknown; transient?: unknown }
  }
}

async function appendAll(wal: Wal, tagList: readonly number[], size = 100): Promise<number[]> {
  return Promise.all(tagList.map((tag) => wal.append(RecordType.PUT, payload(tag, size))))
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

t.test('ENOSPC on a segment write rejects the group (transient); nothing of it ever surfaces; the log goes on', async (t) => {
  let surfacedAfterPowerLoss = 0
  for (const durability of ['sync', 'interval'] as const) {
    for (let seed = 1; seed <= 12; seed++) {
      const label = `${durability}, seed ${seed}`
      const sim = new SimulatedFileSystem(new SeededRandom(seed))
      const wal = await openWal(sim, { durability })
      t.same(await appendAll(wal, [1, 2, 3]), [1, 2, 3], `${label}: three records acknowledged`)
      await macrotasks(SETTLE_TICKS)
      sim.injectFault({ op: 'write', code: 'ENOSPC', pathIncludes: '.seg' })
      // Appended in one tick: one group, one write, which fails having landed a seeded prefix.
      const group = [101, 102, 103, 104].map((tag) => wal.append(RecordType.PUT, payload(tag, 700)))
      const errors = await Promise.all(group.map(rejection))
      t.ok(errors.every((e) => e?.code === 'WAL_WRITE_FAILED' && e.transient === true), `${label}: every append of the group rejects with transient WAL_WRITE_FAILED`)
      t.equal(wal.state.kind, 'open', `${label}: the log stays open`)
      t.equal(wal.lastLsn, 3, `${label}: the rejected group took no LSN`)
      t.same(await appendAll(wal, [4, 5]), [4, 5], `${label}: later appends succeed with contiguous LSNs`)
      t.same(await tags(wal), [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]], `${label}: the running log reads exactly the acknowledged records`)
      await wal.sync()
      await wal.close()

      // A process restart: the page cache is intact.
      const reopened = await openWal(sim, { durability })
      t.same(reopened.recovery.findings, [], `${label}: a reopen finds nothing to repair`)
      t.same(await tags(reopened), [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]], `${label}: reopened, exactly the acknowledged records`)
      t.same(await appendAll(reopened, [6]), [6], `${label}: and appends go on after them`)
      await reopened.close()

      // A power loss: whatever was not durable may vanish or tear, but the rejected group must not come back.
      sim.powerLoss()
      const restarted = await openWal(sim.restart(seed * 31), { durability })
      const after = await tags(restarted)
      if (after.some(([, tag]) => tag > 100)) surfacedAfterPowerLoss++
      t.same(after, [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6]], `${label}: after a power loss, exactly the acknowledged records`)
      t.ok(restarted.recovery.findings.every((f) => f.kind === 'torn-tail'), `${label}: recovery found at most a torn tail`)
      await restarted.close()
    }
  }
  t.equal(surfacedAfterPowerLoss, 0, 'no rejected record surfaced after any power loss')
})

/** Fills the first segment: FRAMES_PER_SEGMENT frames of FILLER_BYTES, acknowledged one by one; returns their LSNs. */
async function fillFirstSegment(wal: Wal, tagBase: number): Promise<number[]> {
  const lsns: number[] = []
  for (let i = 0; i < FRAMES_PER_SEGMENT; i++) lsns.push(await wal.append(RecordType.PUT, payload(tagBase + i, FILLER_BYTES)))
  return lsns
}

t.test('ENOSPC while preparing the next segment: appends that need it reject (transient); the log is usable once space returns', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(3))
  // First session: a log with one record, closed cleanly.
  const first = await openWal(sim)
  t.equal(await first.append(RecordType.PUT, payload(1, FILLER_BYTES)), 1)
  await first.close()
  // From now on no spare segment can be written: the background preparation fails, and so does every retry.
  sim.injectFault({ op: 'write', code: 'ENOSPC', pathIncludes: 'spare', times: Infinity })
  const wal = await openWal(sim)
  t.equal(wal.activeSegment, '00000000000000000001.seg', 'the reopened log appends to its segment (it has room)')
  for (let i = 1; i < FRAMES_PER_SEGMENT; i++) t.equal(await wal.append(RecordType.PUT, payload(1 + i, FILLER_BYTES)), 1 + i)
  await macrotasks(SETTLE_TICKS)

  const needsNewSegment = await rejection(wal.append(RecordType.PUT, payload(100, FILLER_BYTES)))
  t.equal(needsNewSegment?.code, 'WAL_WRITE_FAILED', 'an append that needs a new segment rejects with WAL_WRITE_FAILED')
  t.equal(needsNewSegment?.transient, true, '... marked transient')
  t.equal(wal.state.kind, 'open', 'the log stays open')
  const again = await rejection(wal.append(RecordType.PUT, payload(101, FILLER_BYTES)))
  t.equal(again?.code, 'WAL_WRITE_FAILED', 'so does the next one, while the disk is still full')
  t.equal(await wal.append(RecordType.PUT, payload(17, 200)), 17, 'a record that fits in the active segment is still acknowledged')
  t.equal(wal.activeSegment, '00000000000000000001.seg')

  sim.clearFaults() // space returns
  t.equal(await wal.append(RecordType.PUT, payload(18, FILLER_BYTES)), 18, 'an append that needs a new segment is acknowledged once space returns')
  t.equal(wal.activeSegment, '00000000000000000018.seg', 'in a new segment')
  t.same(await appendAll(wal, [19, 20], FILLER_BYTES), [19, 20])
  t.equal(wal.state.kind, 'open')

  sim.powerLoss()
  const restarted = await openWal(sim.restart(5))
  t.same(await tags(restarted), range(1, 20).map((n) => [n, n]), 'after a power loss: every acknowledged record, contiguous, none of the rejected')
  t.same(restarted.recovery.findings, [], 'nothing to repair')
  await restarted.close()
})

t.test('ENOSPC on the new segment header write: the appends that need it reject (transient); the next rotation works', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(4))
  const wal = await openWal(sim)
  await fillFirstSegment(wal, 1)
  await macrotasks(SETTLE_TICKS) // the spare is ready: the next rotation only writes its header, renames it and syncs the directory
  sim.injectFault({ op: 'write', code: 'ENOSPC', pathIncludes: 'spare' })
  const err = await rejection(wal.append(RecordType.PUT, payload(100, FILLER_BYTES)))
  t.equal(err?.code, 'WAL_WRITE_FAILED', 'the append that needed the new segment rejects with WAL_WRITE_FAILED')
  t.equal(err?.transient, true, '... marked transient')
  t.equal(wal.state.kind, 'open', 'the log stays open')
  t.equal(await wal.append(RecordType.PUT, payload(17, FILLER_BYTES)), 17, 'the next append rotates and is acknowledged')
  t.equal(wal.activeSegment, '00000000000000000017.seg')
  sim.powerLoss()
  const restarted = await openWal(sim.restart(6))
  t.same(await tags(restarted), range(1, 17).map((n) => [n, n]), 'after a power loss: exactly the acknowledged records')
  await restarted.close()
})

t.test('EIO on a write to an O_DSYNC segment fails the log closed (G2)', async (t) => {
  for (let seed = 1; seed <= 8; seed++) {
    const label = `seed ${seed}`
    const sim = new SimulatedFileSystem(new SeededRandom(seed))
    const failures: WalFailedError[] = []
    const wal = await openWal(sim, { onFailed: (e) => failures.push(e) })
    t.same(await appendAll(wal, [1, 2, 3]), [1, 2, 3])
    await macrotasks(SETTLE_TICKS)
    const syncsBefore = sim.stats.syncs
    const writesBefore = sim.stats.writes
    sim.injectFault({ op: 'write', code: 'EIO', pathIncludes: '.seg' })
    const failing = [101, 102, 103].map((tag) => wal.append(RecordType.PUT, payload(tag)))
    await Promise.resolve()
    await Promise.resolve()
    // Appended while the failing write is in flight: they wait in the next group.
    const waiting = [104, 105].map((tag) => wal.append(RecordType.PUT, payload(tag)))
    const errors = await Promise.all([...failing, ...waiting].map(rejection))
    t.ok(errors.every((e) => e?.code === 'WAL_FAILED'), `${label}: the failed group and every pending append reject with WAL_FAILED`)
    t.equal(wal.state.kind, 'failed', `${label}: state is failed`)
    t.equal(failures.length, 1, `${label}: onFailed was called once`)
    t.equal((await rejection(wal.append(RecordType.PUT, payload(106))))?.code, 'WAL_FAILED', `${label}: a later append rejects with WAL_FAILED`)
    t.equal((await rejection(wal.sync()))?.code, 'WAL_FAILED', `${label}: sync() rejects with WAL_FAILED`)
    await macrotasks(SETTLE_TICKS)
    t.equal(sim.stats.writes - writesBefore, 1, `${label}: the failed write was not retried, nor overwritten`)
    t.equal(sim.stats.syncs, syncsBefore, `${label}: no fdatasync after the failure`)
    t.equal(wal.lastLsn, 3, `${label}: nothing after LSN 3 was acknowledged`)
    await wal.close()
    t.equal(sim.stats.syncs, syncsBefore, `${label}: closing a failed log syncs nothing`)

    sim.powerLoss()
    const restarted = await openWal(sim.restart(seed + 100))
    t.same(await tags(restarted), [[1, 1], [2, 2], [3, 3]], `${label}: reopened after a restart, exactly the records acknowledged before the failure`)
    t.same(await appendAll(restarted, [4]), [4], `${label}: and the reopened log accepts writes again`)
    await restarted.close()
  }
})

t.test('EIO on fdatasync in interval durability fails the log closed, and the sync is never retried (fsyncgate)', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(11))
  const clock = new ManualClock()
  const wal = await openWal(sim, { durability: 'interval', syncIntervalMs: 100, clock })
  t.same(await appendAll(wal, [1, 2, 3]), [1, 2, 3])
  t.equal(wal.durableLsn, 0, 'acknowledged after the write, not yet synced')
  clock.advance(100)
  await macrotasks(SETTLE_TICKS)
  t.equal(wal.durableLsn, 3, 'the interval sync made them durable')
  t.same(await appendAll(wal, [4, 5]), [4, 5], 'two more acknowledged, unsynced')
  const syncsBefore = sim.stats.syncs
  sim.injectFault({ op: 'datasync', code: 'EIO', pathIncludes: '.seg' })
  clock.advance(100) // the timer asks for a sync: the pump starts it in a microtask
  await Promise.resolve()
  await Promise.resolve()
  const pending = wal.append(RecordType.PUT, payload(106)) // appended while the fdatasync is in flight: it waits behind it
  t.equal((await rejection(pending))?.code, 'WAL_FAILED', 'an append pending behind the failing sync rejects with WAL_FAILED')
  t.equal(wal.state.kind, 'failed', 'state is failed')
  t.equal(sim.stats.syncs, syncsBefore + 1, 'exactly one fdatasync was attempted')
  t.equal((await rejection(wal.append(RecordType.PUT, payload(107))))?.code, 'WAL_FAILED', 'a later append rejects with WAL_FAILED')
  t.equal((await rejection(wal.sync()))?.code, 'WAL_FAILED', 'sync() rejects with WAL_FAILED without syncing')
  clock.advance(1000)
  await macrotasks(SETTLE_TICKS)
  await wal.close()
  t.equal(sim.stats.syncs, syncsBefore + 1, 'no fdatasync was retried: not by sync(), the timer, nor close()')
  t.equal(wal.durableLsn, 3, 'durable LSN stays where the last good sync left it')

  // Linux may have dropped the dirty pages on EIO: after a restart only what the last good sync covered is there.
  sim.powerLoss()
  const restarted = await openWal(sim.restart(12), { durability: 'interval', clock })
  t.same(await tags(restarted), [[1, 1], [2, 2], [3, 3]], 'reopened: exactly the records durable before the failure; nothing appended after it')
  t.same(await appendAll(restarted, [4]), [4], 'the reopened log accepts writes')
  await restarted.close()
})

t.test('interval durability: a power loss may take the unsynced tail, never what the last sync covered', async (t) => {
  let lostSome = 0
  let keptSome = 0
  for (let seed = 1; seed <= 24; seed++) {
    const label = `seed ${seed}`
    const sim = new SimulatedFileSystem(new SeededRandom(seed))
    const clock = new ManualClock()
    const wal = await openWal(sim, { durability: 'interval', syncIntervalMs: 100, clock })
    const synced = await appendAll(wal, range(1, 6), 300)
    t.same(synced, range(1, 6), `${label}: six acknowledged`)
    t.ok(wal.durableLsn < 6, `${label}: not yet durable before the interval`)
    clock.advance(99)
    await macrotasks(SETTLE_TICKS)
    t.ok(wal.durableLsn < 6, `${label}: still not durable 1 ms before the interval`)
    clock.advance(1)
    await macrotasks(SETTLE_TICKS)
    t.equal(wal.durableLsn, 6, `${label}: the interval sync covered them`)
    const unsynced = []
    for (const tag of range(7, 12)) unsynced.push(await wal.append(RecordType.PUT, payload(tag, 300)))
    t.same(unsynced, range(7, 12), `${label}: six more acknowledged one at a time, not yet synced`)
    t.equal(wal.durableLsn, 6)
    sim.powerLoss()
    const restarted = await openWal(sim.restart(seed * 7), { durability: 'interval', clock })
    const got = await tags(restarted)
    const n = got.length
    t.ok(n >= 6 && n <= 12, `${label}: between 6 and 12 records survive (${n})`)
    t.same(got, range(1, n).map((x) => [x, x]), `${label}: the survivors are a contiguous prefix with their own bytes`)
    t.ok(restarted.recovery.findings.every((f) => f.kind === 'torn-tail'), `${label}: at most a torn tail`)
    if (n < 12) lostSome++
    if (n > 6) keptSome++
    await restarted.close()
  }
  t.ok(lostSome > 0, `the loss window is real: some seeds lost unsynced records (${lostSome}/24)`)
  t.ok(keptSome > 0, `and some kept part of them (${keptSome}/24)`)

  // sync() closes the window at once.
  const sim = new SimulatedFileSystem(new SeededRandom(99))
  const wal = await openWal(sim, { durability: 'interval', syncIntervalMs: 60_000 })
  await appendAll(wal, range(1, 10), 300)
  await wal.sync()
  t.equal(wal.durableLsn, 10, 'sync() makes everything acknowledged durable')
  sim.powerLoss()
  const restarted = await openWal(sim.restart(98), { durability: 'interval' })
  t.same(await tags(restarted), range(1, 10).map((x) => [x, x]), 'all of it survives a power loss')
  await restarted.close()
})

t.test('a record larger than recordBytesMax is refused with WAL_RECORD_TOO_LARGE and writes nothing', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(21))
  const wal = await openWal(sim)
  t.equal(await wal.append(RecordType.PUT, payload(1)), 1)
  await macrotasks(SETTLE_TICKS)
  const writes = sim.stats.writes
  const max = SEGMENT_BYTES - 64 - 40 - 32 // the default: the largest record that fits in an empty segment, behind its group marker
  const err = await rejection(wal.append(RecordType.PUT, Buffer.alloc(max + 1, 9)))
  t.equal(err?.code, 'WAL_RECORD_TOO_LARGE', 'one byte over the default maximum is refused')
  t.match((err as { details?: unknown } | undefined)?.details, { bytes: max + 1, max }, 'the error names the size and the limit')
  await macrotasks(SETTLE_TICKS)
  t.equal(sim.stats.writes, writes, 'nothing was written')
  t.equal(wal.lastLsn, 1, 'no LSN was taken')
  const big = Buffer.alloc(max, 7)
  big.writeUInt32LE(2, 0)
  t.equal(await wal.append(RecordType.PUT, big), 2, 'a record of exactly the maximum is acknowledged (in a segment of its own)')
  t.equal(await wal.append(RecordType.PUT, payload(3)), 3, 'and LSNs go on contiguously')
  sim.powerLoss()
  const restarted = await openWal(sim.restart(22))
  const records = await readAll(restarted)
  t.same(records.map((r) => r.lsn), [1, 2, 3], 'after a power loss: the acknowledged records, nothing of the refused one')
  t.equal(Buffer.compare(records[1]?.payload ?? Buffer.alloc(0), big), 0, 'the maximal record reads back byte for byte')
  await restarted.close()

  const small = await openWal(new SimulatedFileSystem(new SeededRandom(23)), { recordBytesMax: 1000 })
  t.equal((await rejection(small.append(RecordType.PUT, Buffer.alloc(1001))))?.code, 'WAL_RECORD_TOO_LARGE', 'a configured recordBytesMax is enforced')
  t.equal(await small.append(RecordType.PUT, Buffer.alloc(1000)), 1, 'up to and including the limit')
  await small.close()
})

t.test('after close, appends and sync reject with WAL_CLOSED; appends made before close are written', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(31))
  const wal = await openWal(sim)
  t.equal(await wal.append(RecordType.PUT, payload(1)), 1)
  const queued = wal.append(RecordType.PUT, payload(2)) // not awaited before close
  await wal.close()
  t.equal(await queued, 2, 'an append made before close() is acknowledged: close drains the queue')
  t.equal((await rejection(wal.append(RecordType.PUT, payload(3))))?.code, 'WAL_CLOSED', 'append after close rejects with WAL_CLOSED')
  t.equal(
    (await rejection(wal.appendRecord({ type: RecordType.PUT, op: { type: 'put', key: 'k', value: 1 } })))?.code,
    'WAL_CLOSED',
    'appendRecord after close rejects with WAL_CLOSED',
  )
  t.equal((await rejection(wal.sync()))?.code, 'WAL_CLOSED', 'sync after close rejects with WAL_CLOSED')
  await wal.close() // closing twice is harmless
  t.equal(wal.state.kind, 'closed')
  sim.powerLoss()
  const restarted = await openWal(sim.restart(32))
  t.same(await tags(restarted), [[1, 1], [2, 2]], 'after a power loss: both acknowledged records, nothing after close')
  await restarted.close()
})
