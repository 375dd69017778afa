/**
 * MemwalMemoryBackend against claude-flow's own SqlJsBackend and a model of
 * IMemoryBackend, operation by operation (support/cf-differential.ts says
 * what is compared and which SqlJsBackend defects are predicted). CI runs
 * MEMWAL_CF_SEQUENCES (default 150) in MEMWAL_CF_LANES (4); the long run
 * (README) is support/cf-long-run.ts, which shards the seeds over processes.
 */
import t from 'tap'
import { MemwalMemoryBackend, type MemoryQuery } from '../../adapters/claude-flow/index.js'
import { KNOWN, Tally, runDifferential, type Known } from './support/cf-differential.js'
import { tmpDir } from '../support/tmp-dir.js'

const SEQUENCES = Number(process.env['MEMWAL_CF_SEQUENCES'] ?? 150)
const LANES = Number(process.env['MEMWAL_CF_LANES'] ?? 4)

t.test(`MemwalMemoryBackend against claude-flow's SqlJsBackend and the model: ${SEQUENCES} seeded sequences in ${LANES} lanes`, async (t) => {
  const tally = new Tally()
  const started = Date.now()
  const n = await runDifferential({ sequences: SEQUENCES, lanes: LANES, shard: 0, shards: 1 }, Array.from({ length: LANES }, () => tmpDir(t)), tally)
  for (const f of tally.failures.slice(0, 10)) t.fail(f)
  t.equal(tally.failures.length, 0, `${n} sequences in ${Date.now() - started} ms: ${tally.summary()}`)
  t.ok(tally.compared > n * 4, 'the sequences compared answers')
  // The defects this sequence mix must meet; a run that met none would prove nothing about telling them apart.
  if (n >= 100) for (const k of Object.keys(KNOWN) as Known[]) t.ok(tally.known.get(k), `SqlJsBackend's known defect met: ${KNOWN[k]}`)
})

t.test('refusals are typed', async (t) => {
  const backend = new MemwalMemoryBackend({ dir: tmpDir(t) })
  await t.rejects(backend.get('x'), { code: 'ENGINE_CLOSED' }, 'not initialized')
  await backend.initialize()
  t.teardown(() => backend.shutdown())
  await t.rejects(backend.query({ type: 'exact', limit: 5, colour: 'red' } as unknown as MemoryQuery), { code: 'ADAPTER_INVALID_ARGUMENT' }, 'unknown query field')
  await t.rejects(backend.search(Float32Array.from([1]), { k: 1, metric: 'manhattan' }), { code: 'ADAPTER_INVALID_ARGUMENT' }, 'unsupported metric')
  t.equal(await backend.get('missing'), null, 'a missing id is null, not an object of undefined fields')
  t.equal(await backend.delete('missing'), false, 'deleting a missing id says false')
  t.equal((await backend.healthCheck()).status, 'healthy')
})
