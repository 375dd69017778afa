/**
 * Model-based property test of the whole engine on a simulated filesystem and
 * a memory-level store: seeded scenarios of writes, reads, queries, flushes,
 * sink faults, restarts and power cuts, each checked against a plain model
 * after every step (G1, G3, G4; see test/support/engine-model.ts).
 *
 * MEMWAL_MODEL_SCENARIOS sets the number of scenarios (default 200);
 * MEMWAL_SEED the first seed (scenario i runs seed + i). A failing seed is
 * printed with its replay command.
 */
import { randomInt } from 'node:crypto'
import { MemoryLevel } from 'memory-level'
import t from 'tap'
import { MemWAL, type LevelDatabase, type Sink } from '../../engine/index.js'
import { SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'
import { runEngineModelScenario, type ModelScenarioResult } from '../support/engine-model.js'

const SCENARIOS = Number(process.env['MEMWAL_MODEL_SCENARIOS'] ?? 200)
const SEED = Number(process.env['MEMWAL_SEED'] ?? randomInt(0, 2 ** 31))
/** Scenarios run concurrently (they share nothing; the simulated disk and timers interleave). */
const PARALLEL = 4
/** Violations reported in full before the rest are only counted. */
const REPORTED_MAX = 5

t.test(`engine model: ${SCENARIOS} seeded scenarios from seed ${SEED}`, async (t) => {
  t.comment(`MEMWAL_SEED=${SEED} MEMWAL_MODEL_SCENARIOS=${SCENARIOS}`)
  const results: ModelScenarioResult[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < SCENARIOS) {
      const seed = (SEED + next++) >>> 0
      results.push(await runEngineModelScenario(seed))
    }
  }
  await Promise.all(Array.from({ length: PARALLEL }, worker))

  const failed = results.filter((r) => !r.ok).sort((a, b) => a.seed - b.seed)
  for (const r of failed.slice(0, REPORTED_MAX)) {
    t.fail(`seed ${r.seed}: ${r.violations[0] ?? ''}\n  replay: npx tsx test/tools/replay-engine-model.ts --seed ${r.seed}`, { violations: r.violations.slice(0, 5) })
  }
  if (failed.length > REPORTED_MAX) t.fail(`${failed.length - REPORTED_MAX} more failing seeds: ${failed.slice(REPORTED_MAX).map((r) => r.seed).join(' ')}`)
  t.equal(results.length, SCENARIOS, 'every scenario ran')
  t.equal(failed.length, 0, 'every scenario kept G1, G3 and G4')

  const sum = (k: keyof ModelScenarioResult): number => results.reduce((n, r) => n + (r[k] as number), 0)
  // The scenarios exercised what they claim to (a generator that stopped crashing or writing would pass vacuously).
  t.ok(sum('acked') > SCENARIOS * 10, 'writes were acknowledged')
  t.ok(sum('crashes') > 0 && sum('restarts') > 0, 'engines crashed and restarted')
  t.ok(sum('flushes') > SCENARIOS, 'flushes converged')
  t.ok(sum('queries') > 0 && sum('reads') > 0, 'reads and queries ran')
  if (SCENARIOS >= 100) {
    t.ok(sum('inFlightAtCrash') > 0, 'some crashes caught writes in flight')
    t.ok(sum('surfacedUnacked') > 0, 'some unacknowledged writes reached the log before the cut (their outcome was unknown)')
    t.ok(sum('tornTails') > 0, 'some recoveries truncated a torn tail')
    t.ok(sum('typedReadErrors') > 0, 'some reads met a down backend and failed typed')
    t.ok(results.some((r) => r.segments > 1), 'some logs rotated to a new segment')
  }
  t.comment(`scenarios: ${results.length}, steps: ${sum('steps')}, writes: ${sum('writes')} (acknowledged ${sum('acked')}, refused for backlog ${sum('refused')})`)
  t.comment(`crashes: ${sum('crashes')} (writes in flight ${sum('inFlightAtCrash')}, of which surfaced after restart ${sum('surfacedUnacked')}), torn tails truncated: ${sum('tornTails')}, clean restarts: ${sum('restarts')}, sink faults: ${sum('faults')}`)
  t.comment(`flushes: ${sum('flushes')}, reads: ${sum('reads')}, queries: ${sum('queries')}, typed read errors (backend down): ${sum('typedReadErrors')}, highest LSN: ${Math.max(...results.map((r) => r.lastLsn))}, scenarios whose log rotated: ${results.filter((r) => r.segments > 1).length}`)
})

/**
 * G4 "never a wrong value": what get returns is the caller's own copy. A
 * caller that changes a value it read (`doc.count++` before writing it back)
 * must not change what the next reader gets before, or without, a write: the
 * pending overlay decodes a fresh copy per read, and the cache (filled by the
 * appliers, or by a backend read) must not hand out its own objects either.
 */
t.test('a value read back is the caller\'s own: changing it never changes a later read (G4)', async (t) => {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as LevelDatabase
  const sim = new SimulatedFileSystem(new SeededRandom(7))
  let backendDown = true
  const wrapSink = <S extends Sink>(sink: S): S => {
    if (sink.name !== 'backend') return sink
    const apply = sink.apply.bind(sink)
    sink.apply = async (batch, signal) => {
      if (backendDown) throw new Error('simulated backend outage')
      return apply(batch, signal)
    }
    return sink
  }
  const open = (): Promise<MemWAL> => MemWAL.open({ dir: '/data', fs: sim, level: db, wrapSink, segmentBytes: 64 * 1024, resilience: { retryDelayMsMin: 1, retryDelayMsMax: 5, breakerHalfOpenMs: 5 } })
  let engine = await open()
  t.teardown(() => engine.close())
  const stored = { count: 1, list: [1] }
  await engine.put('doc', stored)
  stored.count = 100 // the caller's object after the put: never stored

  const tamper = async (tier: string): Promise<void> => {
    const read = (await engine.get('doc')) as { count: number; list: number[] }
    t.same(read, { count: 1, list: [1] }, `${tier}: get returns the value written`)
    read.count++
    read.list.push(9)
    t.same(await engine.get('doc'), { count: 1, list: [1] }, `${tier}: after the caller changed what it read, get still returns the value written`)
  }
  await tamper('pending overlay (backend down)')
  t.equal(engine.health().backlog.pendingKeys, 1, 'the key was pending throughout')
  backendDown = false
  await engine.flush()
  await tamper('cache, filled by its applier')
  await engine.close()
  engine = await open()
  await tamper('backend read (then cached)')
})
