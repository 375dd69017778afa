/**
 * A caller writing in a tight loop (await put, await put, ...) does not hold
 * the event loop: on the real filesystem small groups are written inline and
 * complete within microtasks, so without a macrotask turn now and then no
 * timer or I/O callback would run until the loop ends (measured before the
 * fix: 2,000 awaited puts, 6.3 s, not one 1 ms timer fired), starving the
 * health loop, the metrics endpoint, the sinks' apply timeouts and the host's
 * own server. Asserted: timers run during the loop, and the health endpoint
 * answers while it goes on. Nothing about speed is asserted.
 */
import t from 'tap'
import { MemWAL } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'

t.test('timers and the health endpoint run while a caller awaits put after put', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t), metricsPort: 0 })
  t.teardown(() => db.close())
  const address = db.metricsAddress
  if (!address) throw new Error('no endpoint')
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  let answeredAfter: number | undefined
  let puts = 0
  const health = fetch(`http://${address.host}:${address.port}/health`).then((r) => {
    answeredAfter = puts
    return r.status
  })
  // 300 puts, each a device flush (~130 us here at best): far longer than the few ms a run of inline writes may keep the loop.
  for (; puts < 300; puts++) await db.put(`k${puts}`, puts)
  clearInterval(timer)
  t.ok(answeredAfter !== undefined, `the health endpoint answered during the 300 puts (after ${answeredAfter})`)
  t.ok(ticks > 0, `a 1 ms timer fired ${ticks} times during them`)
  t.equal(await health, 200)
})

t.test('a clock the caller has frozen does not let put after put hold the event loop', async (t) => {
  // The turn is budgeted in real time: by the injected clock, which does not move here, one turn would have been the last.
  const db = await MemWAL.open({ dir: tmpDir(t), clock: new ManualClock(1_800_000_000_000) })
  t.teardown(() => db.close())
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  for (let i = 0; i < 300; i++) await db.put(`k${i}`, i)
  clearInterval(timer)
  t.ok(ticks > 0, `a 1 ms timer fired ${ticks} times during 300 awaited puts`)
})

t.test('writers with many puts in flight do not hold the event loop either', async (t) => {
  // The log's pump takes a turn when it is scheduled again after running dry: writers whose next puts came within the
  // microtasks of the last group's acknowledgements would keep it from ever running dry, and so from ever taking one.
  const db = await MemWAL.open({ dir: tmpDir(t), clock: new ManualClock(1_800_000_000_000) })
  t.teardown(() => db.close())
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  let next = 0
  const writer = async (): Promise<void> => {
    for (let i = next++; i < 3000; i = next++) await db.put(`k${i}`, i)
  }
  await Promise.all(Array.from({ length: 64 }, writer))
  clearInterval(timer)
  t.ok(ticks > 0, `a 1 ms timer fired ${ticks} times during 3,000 puts, 64 in flight`)
})

t.test('a put made after the event loop turned on its own does not wait for a turn of its own', async (t) => {
  // The hold is counted from the loop's last turn, whoever turned it: a caller whose puts are spaced by other
  // I/O (a LangGraph step reads between its writes) is not holding the loop, and its small write goes inline at
  // once. Counted from the writer's own last turn, every such put waited behind the callbacks queued for the
  // next turn (issue 13: a MemwalSaver put at 1 thread). Here: 200 immediates queued before the put; the put
  // must resolve before the first of them runs, after pauses longer than the 5 ms budget.
  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => db.close())
  await db.put('warm', 0)
  let early = 0
  for (let round = 0; round < 5; round++) {
    await new Promise((r) => setTimeout(r, 15))
    let immediatesRan = 0
    for (let i = 0; i < 200; i++) setImmediate(() => immediatesRan++)
    await db.put(`k${round}`, round)
    if (immediatesRan === 0) early++
    await new Promise((r) => setImmediate(r))
  }
  t.equal(early, 5, 'each put resolved before the immediates queued ahead of it ran')
})
