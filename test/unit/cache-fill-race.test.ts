/**
 * A read that fills the cache from the backend must never cache a version
 * older than one already acknowledged. Found by the torture (seed 2008542 at
 * 8f40fd3): after a reopen with a backlog, the cache starts at the log's end
 * and never applies the backlog; a getEntry of a pending put reads the
 * backend's row (for its createdAt) while the backend still holds the older
 * version, the backlog is applied meanwhile and leaves the pending log, and
 * the read then cached the older version: every later read returned it.
 */
import t from 'tap'
import { MemWAL, type Sink } from '../../engine/index.js'
import { fastResilience, SinkFaults, waitFor } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'

type Get = (id: string) => Promise<unknown>

t.test('a backend read that began while a version was pending never caches the older row', async (t) => {
  const dir = tmpDir(t)
  // A version applied everywhere, then a second one left in the log only (the backend and index are down until close).
  const first = new SinkFaults({ targets: ['backend', 'index'] })
  const a = await MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 50, wrapSink: (s) => first.wrap(s) })
  await a.put('k', 'v1', { namespace: 'ns' })
  await a.flush()
  first.down()
  const v2 = await a.put('k', 'v2', { namespace: 'ns' })
  await a.close()

  // Reopen with the backend and index hung, so v2 is pending; the backend's get answers from what it holds
  // when called, but returns only when the test lets it (after the backlog has been applied).
  const faults = new SinkFaults({ targets: ['backend', 'index'] })
  faults.hang()
  let letGetReturn!: () => void
  const getMayReturn = new Promise<void>((r) => (letGetReturn = r))
  let heldGets = 0
  const wrap = <S extends Sink>(s: S): S => {
    const sink = faults.wrap(s)
    if (sink.name === 'backend') {
      const holder = sink as unknown as { get: Get }
      const get = holder.get.bind(sink) as Get
      holder.get = async (id) => {
        const row = await get(id)
        heldGets++
        await getMayReturn
        return row
      }
    }
    return sink
  }
  const b = await MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 50, wrapSink: wrap })
  t.teardown(() => b.close())
  t.equal(b.health().backlog.records, 1, 'v2 is pending at reopen')
  const reading = b.getEntry('k', { namespace: 'ns' })
  await waitFor(() => heldGets === 1, 'the read has reached the backend')
  faults.release()
  await waitFor(() => b.health().backlog.records === 0, 'the backlog is applied and leaves the pending log')
  letGetReturn()
  const during = await reading
  t.equal(during?.value, 'v2', 'the read that began while v2 was pending answers v2')

  const after = await b.getEntry('k', { namespace: 'ns' })
  t.equal(after?.value, 'v2', 'a later read answers v2, not the row the first read saw')
  t.equal(after?.version, v2.lsn, 'at the version that wrote it')
  t.equal(await b.get('k', { namespace: 'ns' }), 'v2')
})
