/**
 * Backpressure (G6): the backlog (acknowledged, not yet applied everywhere)
 * never grows past maxBacklogBytes. With the backend down:
 * - policy 'reject': writes fail with ENGINE_BACKLOG_FULL once the next one
 *   would not fit; nothing of a refused write is logged; health() says
 *   'read-only' and why; 'backlog-high' fires; reads keep working; once the
 *   backend is back the backlog drains and writes are accepted again;
 * - policy 'wait': a write waits for room and succeeds when the backend comes
 *   back, or fails with ENGINE_BACKLOG_FULL after backlogWaitMsMax.
 */
import t from 'tap'
import { MemWAL, type MemwalOptions } from '../../engine/index.js'
import { fastResilience, SinkFaults, waitFor } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'


const MAX_BACKLOG_BYTES = 1000
const VALUE = 'x'.repeat(100)
/** Larger than any record fillBacklog wrote: it cannot fit once fillBacklog stopped. */
const BIG = 'y'.repeat(120)

async function open(dir: string, faults: SinkFaults, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 1000, maxBacklogBytes: MAX_BACKLOG_BYTES, wrapSink: (s) => faults.wrap(s), ...extra })
}

/** Puts equal-sized records with the backend down until the next would not fit; returns their count and the record size. */
async function fillBacklog(engine: MemWAL): Promise<{ n: number; recordBytes: number }> {
  await engine.put('k000', VALUE)
  const recordBytes = engine.health().backlog.bytes
  let n = 1
  while (engine.health().backlog.bytes + recordBytes <= MAX_BACKLOG_BYTES) {
    await engine.put(`k${String(n).padStart(3, '0')}`, VALUE)
    n++
  }
  return { n, recordBytes }
}

t.test("policy 'reject': ENGINE_BACKLOG_FULL at the limit, health read-only, nothing written, drains after recovery", async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await open(dir, faults)
  t.teardown(() => engine.close())
  const high: { bytes: number; maxBytes: number }[] = []
  engine.on('backlog-high', (e: { bytes: number; maxBytes: number }) => high.push(e))

  faults.down()
  const { n, recordBytes } = await fillBacklog(engine)
  t.ok(MAX_BACKLOG_BYTES % recordBytes !== 0, `records of ${recordBytes} bytes do not fill ${MAX_BACKLOG_BYTES} exactly (the limit is reached before the backlog equals it)`)
  t.equal(n, Math.floor(MAX_BACKLOG_BYTES / recordBytes), `${n} records fit`)
  const lastBefore = engine.health().wal.lastLsn
  const err = await engine.put('k999', BIG).then(() => undefined, (e: unknown) => e as { code: string; transient: boolean; details: Record<string, unknown> })
  t.equal(err?.code, 'ENGINE_BACKLOG_FULL', 'a put past the limit is refused')
  t.equal(err?.transient, true, 'the refusal is transient: retry later')
  t.equal(err?.details.maxBacklogBytes, MAX_BACKLOG_BYTES)
  await t.rejects(engine.batch([{ type: 'put', key: 'b1', value: BIG }]), { code: 'ENGINE_BACKLOG_FULL' }, 'and a batch')
  const h = engine.health()
  t.equal(h.wal.lastLsn, lastBefore, 'a refused write is not logged')
  t.ok(h.backlog.bytes <= MAX_BACKLOG_BYTES, `the backlog (${h.backlog.bytes} bytes) stays within maxBacklogBytes`)
  t.equal(h.backlog.records, n)
  t.equal(h.state, 'read-only', 'health says read-only while writes are refused')
  t.match(h.reason, /backlog/, `and why (${h.reason})`)
  t.equal(high.length, 1, 'backlog-high fired once')
  t.equal(high[0]?.maxBytes, MAX_BACKLOG_BYTES)
  t.ok((high[0]?.bytes ?? 0) >= 0.8 * MAX_BACKLOG_BYTES, 'when the backlog passed 80% of the limit')
  t.equal(await engine.get('k000'), VALUE, 'reads keep working (pending)')
  await t.rejects(engine.get('k999'), { code: 'ENGINE_BACKEND_UNAVAILABLE' }, 'the refused key was never written')
  for (let i = 0; i < 5; i++) await t.rejects(engine.put(`more-${i}`, BIG), { code: 'ENGINE_BACKLOG_FULL' })
  t.equal(engine.health().backlog.records, n, 'the backlog does not grow however many writes are refused')

  faults.up()
  await engine.flush({ timeoutMs: 10_000 })
  t.equal(engine.health().state, 'open', 'open again once the backlog drained')
  t.equal(engine.health().backlog.bytes, 0)
  await engine.put('k999', 'accepted now')
  await engine.flush({ timeoutMs: 5000 })
  t.equal(await engine.get('k999'), 'accepted now')
  const content = await faults.backendContent()
  t.equal(content.size, n + 1, 'the backend holds every accepted write and none of the refused')
  t.notOk(content.has('more-0'))
  await engine.close()
})

t.test('a record larger than maxBacklogBytes is refused at once, even with an empty backlog', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults()
  const engine = await open(dir, faults, { backlogPolicy: 'wait' })
  t.teardown(() => engine.close())
  await t.rejects(engine.put('huge', 'y'.repeat(MAX_BACKLOG_BYTES + 1)), { code: 'ENGINE_BACKLOG_FULL' })
  t.equal(engine.health().wal.lastLsn, 0, 'nothing logged')
  t.equal(engine.health().state, 'open', 'the engine is not read-only because of it')
  await engine.put('small', 1)
  t.equal(await engine.get('small'), 1)
  await engine.close()
})

t.test("policy 'wait': a write waits for room and succeeds when the backend comes back", async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await open(dir, faults, { backlogPolicy: 'wait', backlogWaitMsMax: 20_000 })
  t.teardown(() => engine.close())
  faults.down()
  const { n } = await fillBacklog(engine)
  const lastBefore = engine.health().wal.lastLsn
  let settled: string | undefined
  const waiting = engine.put('waiter', BIG).then(
    (r) => {
      settled = 'resolved'
      return r
    },
    (e: unknown) => {
      settled = 'rejected'
      throw e
    },
  )
  await waitFor(() => engine.health().state === 'read-only', 'read-only while a write waits')
  await new Promise((r) => setTimeout(r, 100))
  t.equal(settled, undefined, 'the write is waiting, neither acknowledged nor refused')
  t.equal(engine.health().wal.lastLsn, lastBefore, 'and not logged yet')
  t.equal(engine.health().backlog.records, n)

  faults.up()
  const { lsn } = await waiting
  t.equal(settled, 'resolved')
  t.equal(lsn, lastBefore + 1, 'acknowledged once there was room')
  t.equal(await engine.get('waiter'), BIG)
  await engine.flush({ timeoutMs: 10_000 })
  t.equal((await faults.backendContent()).get('waiter'), BIG)
  t.equal(engine.health().state, 'open')
  await engine.close()
})

t.test("policy 'wait': ENGINE_BACKLOG_FULL after backlogWaitMsMax if the backend stays down", async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await open(dir, faults, { backlogPolicy: 'wait', backlogWaitMsMax: 200 })
  t.teardown(() => engine.close())
  faults.down()
  const { n } = await fillBacklog(engine)
  const lastBefore = engine.health().wal.lastLsn
  await t.rejects(engine.put('waiter', BIG), { code: 'ENGINE_BACKLOG_FULL' }, 'refused once the wait is over')
  t.equal(engine.health().wal.lastLsn, lastBefore, 'nothing logged')
  t.equal(engine.health().backlog.records, n)
  // Several writers waiting at once are all refused, none is lost in between.
  const many = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => engine.put(`w${i}`, BIG)))
  t.strictSame(many.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok')), Array(5).fill('ENGINE_BACKLOG_FULL'))
  t.equal(engine.health().wal.lastLsn, lastBefore)

  // Waiters are released (refused) when the engine closes, not left hanging.
  const pending = engine.put('at-close', BIG)
  const closing = engine.close()
  await t.rejects(pending, { code: 'ENGINE_CLOSED' }, 'a write waiting at close is refused with ENGINE_CLOSED')
  await closing
})
