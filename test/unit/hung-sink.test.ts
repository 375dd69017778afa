/**
 * A sink call that never returns, on the real clock (the torture, on a
 * manual clock, leaves the apply timeout to this file): the timeout fires,
 * the breaker opens, and the engine stays responsive. Writes are still
 * acknowledged (the log does not wait for sinks), reads of pending keys are
 * answered (G4), a read the backend would have to answer fails typed instead
 * of hanging, flush with a timeout fails typed, health says what is wrong,
 * the hung call is never overlapped by a second one, and close returns.
 * After a reopen with a healthy backend, every acknowledged write is applied
 * exactly once. Reads that time out count toward the backend's health (the
 * engine is degraded), and the first read that works brings it back.
 *
 * No assertion is about time: each call that must not hang is given a
 * generous watchdog (WATCHDOG_MS) that only turns a hang into a failure.
 */
import t from 'tap'
import { MemWAL, isMemwalError, type Sink } from '../../engine/index.js'
import { tmpDir } from '../support/tmp-dir.js'
import { waitFor } from '../support/faulty-sink.js'

const WATCHDOG_MS = 10_000
const APPLY_TIMEOUT_MS = 100
const resilience = { retryDelayMsMin: 5, retryDelayMsMax: 40, breakerThreshold: 2, breakerHalfOpenMs: 150, applyTimeoutMs: APPLY_TIMEOUT_MS }

/** The engine's timers are unref'd by design: something must hold the event loop while a test waits on them. */
function keepAlive(t: { teardown(fn: () => unknown): void }): void {
  const timer = setInterval(() => undefined, 1000)
  t.teardown(() => clearInterval(timer))
}

/** Settles `p`, or fails with `what` after WATCHDOG_MS: a hang becomes a failure, not a stuck test. */
function settles<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not settle in ${WATCHDOG_MS} ms: the engine hung`)), WATCHDOG_MS)))
  return Promise.race([p, hang]).finally(() => clearTimeout(timer))
}

async function codeOf(p: Promise<unknown>, what: string): Promise<string> {
  try {
    await settles(p, what)
    return 'resolved'
  } catch (err) {
    return isMemwalError(err) ? err.code : `untyped: ${(err as Error).message}`
  }
}

interface Backend {
  /** Apply calls hang (never return) while set. */
  hangApply: boolean
  /** Reads hang while set. */
  hangGet: boolean
  /** Apply calls in progress now, and the most ever at once. */
  inFlight: number
  maxInFlight: number
  calls: number
  /** Per LSN, how many times the backend's storage took it. */
  applied: Map<number, number>
}

function hungBackend(b: Backend): <S extends Sink>(sink: S) => S {
  return <S extends Sink>(sink: S): S => {
    if (sink.name !== 'backend') return sink
    const hooks = sink as unknown as { _apply: (records: readonly { lsn: number }[], checkpoint: number, signal?: AbortSignal) => Promise<void>; get: (key: string) => Promise<unknown> }
    const apply = hooks._apply.bind(sink)
    hooks._apply = async (records, checkpoint, signal) => {
      b.calls++
      b.inFlight++
      b.maxInFlight = Math.max(b.maxInFlight, b.inFlight)
      try {
        if (b.hangApply) await new Promise<never>(() => undefined) // never returns, whatever the abort signal says
        await apply(records, checkpoint, signal)
        for (const r of records) b.applied.set(r.lsn, (b.applied.get(r.lsn) ?? 0) + 1)
      } finally {
        b.inFlight--
      }
    }
    const get = hooks.get.bind(sink)
    hooks.get = async (key) => {
      if (b.hangGet) await new Promise<never>(() => undefined)
      return get(key)
    }
    return sink
  }
}

t.test('a backend apply that never returns: timeout, breaker open, the engine stays responsive', async (t) => {
  keepAlive(t)
  const dir = tmpDir(t, 'memwal-hung-')
  const b: Backend = { hangApply: false, hangGet: false, inFlight: 0, maxInFlight: 0, calls: 0, applied: new Map() }
  let engine = await MemWAL.open({ dir, resilience, wrapSink: hungBackend(b), cacheBytes: 1, closeGraceMs: 200 })
  t.teardown(() => engine.close())
  await engine.put('before', { v: 0 })
  await settles(engine.flush(), 'flush with a healthy backend')

  b.hangApply = true
  const acked: number[] = []
  for (let i = 0; i < 20; i++) acked.push((await settles(engine.put(`k${i}`, { v: i }), `put k${i} while the backend hangs`)).lsn)
  t.equal(acked.length, 20, 'writes are acknowledged while the backend hangs: the log does not wait for sinks')

  await settles(waitFor(() => engine.health().sinks['backend']?.breaker === 'open', 'the backend breaker opens', WATCHDOG_MS), 'breaker open')
  const h = engine.health()
  t.equal(h.sinks['backend']?.lastError?.code, 'SINK_TIMEOUT', 'the hung call failed by timeout')
  t.equal(h.sinks['backend']?.breaker, 'open', 'the breaker opened')
  t.equal(h.state, 'degraded', 'health says degraded')
  t.match(h.reason ?? '', /backend/, 'and names the backend')
  // The breaker may open while the index is still applying the last writes (its own synced batches): it must get there, not stall behind the backend.
  await settles(waitFor(() => engine.health().sinks['index']?.checkpoint === h.wal.lastLsn, 'the index to apply every write', WATCHDOG_MS), 'index catching up')
  t.equal(engine.health().sinks['index']?.checkpoint, h.wal.lastLsn, 'the index, which does not hang, keeps up')

  t.same(await settles(engine.get('k7'), 'get of a pending key'), { v: 7 }, 'a pending key is answered from the overlay (G4)')
  t.equal(await codeOf(engine.get('before'), 'get of an applied key'), 'ENGINE_BACKEND_UNAVAILABLE', 'a key only the backend holds fails typed, never "not found"')
  t.equal(await codeOf(engine.flush({ timeoutMs: 300 }), 'flush with a timeout'), 'ENGINE_FLUSH_TIMEOUT', 'flush with a timeout fails typed')
  const q: string[] = []
  for await (const r of engine.query({ prefix: 'k1' })) q.push(r.key)
  t.same(q, ['k1', 'k10', 'k11', 'k12', 'k13', 'k14', 'k15', 'k16', 'k17', 'k18', 'k19'], 'a query over pending keys is answered')

  // Several half-open periods pass: the breaker stays open while the abandoned call runs, and no second call starts.
  const calls = b.calls
  await new Promise((resolve) => setTimeout(resolve, resilience.breakerHalfOpenMs * 3))
  t.equal(engine.health().sinks['backend']?.breaker, 'open', 'the breaker stays open while the abandoned call runs')
  t.equal(b.calls, calls, 'no probe while the abandoned call runs')
  t.equal(b.maxInFlight, 1, 'a hung call is never overlapped by a second one (the applier waits for the abandoned call)')

  await settles(engine.close(), 'close while a backend call hangs')
  t.pass('close returned while the call still hangs')

  // A new process (the hung call died with the old one): everything acknowledged is applied, exactly once.
  const b2: Backend = { hangApply: false, hangGet: false, inFlight: 0, maxInFlight: 0, calls: 0, applied: new Map() }
  engine = await MemWAL.open({ dir, resilience, wrapSink: hungBackend(b2) })
  await settles(engine.flush(), 'flush after reopen')
  for (let i = 0; i < 20; i++) t.same(await engine.get(`k${i}`), { v: i }, `k${i} reached the backend`)
  const twice = [...b.applied, ...b2.applied].filter(([lsn]) => acked.includes(lsn)).reduce((m, [lsn, n]) => m.set(lsn, (m.get(lsn) ?? 0) + n), new Map<number, number>())
  t.same([...twice.values()].filter((n) => n !== 1), [], 'every acknowledged record was applied exactly once over both runs')
  t.equal(twice.size, acked.length, 'and every one was applied')
})

t.test('a backend read that never returns: get fails typed instead of hanging', async (t) => {
  keepAlive(t)
  const dir = tmpDir(t, 'memwal-hung-get-')
  const b: Backend = { hangApply: false, hangGet: false, inFlight: 0, maxInFlight: 0, calls: 0, applied: new Map() }
  const engine = await MemWAL.open({ dir, resilience, wrapSink: hungBackend(b), cacheBytes: 1 })
  t.teardown(() => engine.close())
  await engine.put('a', { v: 1 })
  await settles(engine.flush(), 'flush')
  b.hangGet = true
  t.equal(await codeOf(engine.get('a'), 'get with a hung backend read'), 'ENGINE_BACKEND_UNAVAILABLE', 'the read fails typed after the timeout')
  t.equal(await codeOf(engine.getEntry('never-written'), 'getEntry of an unknown key with a hung backend read'), 'ENGINE_BACKEND_UNAVAILABLE', 'never "not found" by guess')
  await settles(engine.put('b', { v: 2 }), 'a write while backend reads hang')
  t.same(await settles(engine.get('b'), 'get of a pending key'), { v: 2 }, 'pending keys are still answered')
  t.equal(engine.health().state, 'degraded', 'the timed-out reads count toward the backend\'s health: the engine says so without any write failing')
  t.equal(engine.health().level, 'log-and-cache-reads', 'reads are served from the log and the cache only')
  b.hangGet = false
  t.same(await settles(engine.get('a'), 'get once reads answer again'), { v: 1 }, 'reads work again once the backend answers')
  t.equal(engine.health().state, 'open', 'and the read that worked brought the backend back')
})
