/**
 * Small stores (issue 15 item 7): segments start at 1 MiB (or segmentBytes,
 * if smaller) and grow with the write rate up to segmentBytes
 * (engine/log/segment-sizing.ts). A store with three records takes a few MiB
 * on disk, LevelDB included; sustained writes still get preallocated segments
 * that double up to segmentBytes; a record larger than the planned segment
 * gets a segment that holds it.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemWAL } from '../../engine/index.js'
import { ManualClock, RecordType, SeededRandom, SimulatedFileSystem, Wal } from '../../engine/testing.js'
import { limits } from '../../engine/limits.js'
import { nextSegmentBytes, segmentBytesFor, SLOW_FACTOR } from '../../engine/log/segment-sizing.js'
import { tmpDir } from '../support/tmp-dir.js'

const MiB = 1024 * 1024

t.test('the rule: double when a segment filled within the window, halve when it took far longer, within [initial, max]', async (t) => {
  const s = { initialBytes: MiB, maxBytes: 64 * MiB, growWithinMs: 10_000 }
  t.equal(nextSegmentBytes(s, MiB, 500), 2 * MiB, 'filled in 0.5 s: twice the newest segment')
  t.equal(nextSegmentBytes(s, 32 * MiB, 500), 64 * MiB, 'up to the maximum')
  t.equal(nextSegmentBytes(s, 64 * MiB, 0), 64 * MiB, 'never past it')
  t.equal(nextSegmentBytes(s, 8 * MiB, 30_000), 8 * MiB, 'filled in 30 s: the same size')
  t.equal(nextSegmentBytes(s, 8 * MiB, 10_000 * SLOW_FACTOR + 1), 4 * MiB, 'far slower: half')
  t.equal(nextSegmentBytes(s, MiB, Infinity), MiB, 'never below the initial size')
  t.equal(segmentBytesFor(s, MiB, 3 * MiB), 4 * MiB, 'a 3 MiB write gets a 4 MiB segment')
  t.equal(segmentBytesFor(s, 2 * MiB, 100), 2 * MiB, 'a small write keeps the planned size')
  t.equal(segmentBytesFor(s, MiB, 100 * MiB), 64 * MiB, 'at most the maximum (limits guarantee a record fits it)')
})

t.test('a fresh log on the default segmentBytes: a 1 MiB segment and a 1 MiB spare; fast writes double the segments up to segmentBytes', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(1))
  const clock = new ManualClock()
  const segmentBytes = 8 * MiB
  const wal = await Wal.open({ dir: '/d', fs: sim, clock, random: new SeededRandom(2), segmentBytes })
  await wal.append(RecordType.PUT, Buffer.alloc(100, 1))
  await wal.sync()
  await settle(sim)
  const sizes = async (): Promise<number[]> => (await wal.segments()).map((s) => sim.peek(`/d/wal/${s.name}`)?.length ?? 0)
  t.strictSame(await sizes(), [MiB], 'the first segment is 1 MiB')
  t.equal(sim.peek('/d/wal/spare.tmp')?.length, MiB, 'and so is the spare')
  // Fast writes (the manual clock stands still): each rotation doubles the next spare.
  const payload = Buffer.alloc(60 * 1024, 7)
  while ((await wal.segments()).length < 6) {
    await wal.append(RecordType.PUT, payload)
    await settle(sim)
  }
  t.strictSame(await sizes(), [MiB, MiB, 2 * MiB, 4 * MiB, 8 * MiB, 8 * MiB], 'segments grow 1, 1 (the spare made at open), 2, 4, 8 MiB, then stay at segmentBytes')
  await wal.close()
})

t.test('slow writes keep segments small; a record larger than the planned segment gets one that holds it', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(3))
  const clock = new ManualClock()
  const wal = await Wal.open({ dir: '/d', fs: sim, clock, random: new SeededRandom(4), segmentBytes: 16 * MiB })
  const payload = Buffer.alloc(200 * 1024, 7)
  while ((await wal.segments()).length < 4) {
    clock.advance(limits.segmentGrowWithinMsDefault) // one segment's worth of records takes 50 s: not fast
    await wal.append(RecordType.PUT, payload)
    await settle(sim)
  }
  const sizes = (await wal.segments()).map((s) => sim.peek(`/d/wal/${s.name}`)?.length ?? 0)
  t.strictSame(sizes, [MiB, MiB, MiB, MiB], 'segments filled slowly stay at 1 MiB')
  const big = Buffer.alloc(3 * MiB, 9)
  const lsn = await wal.append(RecordType.PUT, big)
  const last = (await wal.segments()).at(-1)
  t.equal(last?.baseLsn, lsn, 'the 3 MiB record starts a new segment')
  t.equal(sim.peek(`/d/wal/${last?.name ?? ''}`)?.length, 4 * MiB, 'of 4 MiB')
  let read: Uint8Array | undefined
  for await (const r of wal.read(lsn)) read = r.payload
  t.ok(read && Buffer.compare(read, big) === 0, 'and it reads back whole')
  await wal.close()
})

t.test('a store with 3 records takes at most 8 MiB on disk, LevelDB included (real filesystem)', async (t) => {
  const dir = tmpDir(t)
  const db = await MemWAL.open({ dir })
  for (let i = 0; i < 3; i++) await db.put(`memory-${i}`, { text: `note ${i}`, tags: ['a'] })
  await db.close()
  const bytes = allocatedBytes(dir)
  t.ok(bytes <= 8 * MiB, `${(bytes / MiB).toFixed(2)} MiB allocated (du-style: blocks of every file) <= 8 MiB`)
  const again = await MemWAL.open({ dir })
  t.strictSame(await again.get('memory-2'), { text: 'note 2', tags: ['a'] }, 'and the records read back after a reopen')
  await again.close()
})

/** What `du` counts: allocated blocks of every file under `dir`. */
function allocatedBytes(dir: string): number {
  let total = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    total += fs.statSync(path.join(entry.parentPath, entry.name)).blocks * 512
  }
  return total
}

/** Lets the background spare preparation finish on the simulated disk. */
async function settle(sim: SimulatedFileSystem): Promise<void> {
  for (let i = 0; i < 200 && sim.peek('/d/wal/spare.tmp') === undefined; i++) await new Promise((r) => setImmediate(r))
  for (let i = 0; i < 40; i++) await new Promise((r) => setImmediate(r))
}
