/**
 * Replays one seeded scenario of test/sim/engine-model.test.ts, verbosely: the
 * engine's configuration, every step, each write's LSN, the faults, where
 * power was cut and which in-flight writes survived, and every violated
 * invariant. Exits 1 on a violation, 2 on a usage error.
 *
 *   npx tsx test/tools/replay-engine-model.ts --seed 12345
 *   npx tsx test/tools/replay-engine-model.ts --seed 12345 --quiet
 *
 * The steps derive from the seed; the appliers' retry and breaker timers run
 * on real time, so interleavings may differ slightly between runs.
 */
import { parseArgs } from 'node:util'
import { runEngineModelScenario, type ModelScenarioOptions } from '../support/engine-model.js'

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: npx tsx test/tools/replay-engine-model.ts --seed N [--steps N] [--quiet]\n`)
  process.exit(2)
}

let values: { seed?: string; steps?: string; quiet?: boolean }
try {
  ;({ values } = parseArgs({ options: { seed: { type: 'string' }, steps: { type: 'string' }, quiet: { type: 'boolean' } } }))
} catch (err) {
  usage((err as Error).message)
}
if (values.seed === undefined || !/^\d+$/.test(values.seed)) usage('--seed N is required (an unsigned integer)')
const options: { -readonly [K in keyof ModelScenarioOptions]: ModelScenarioOptions[K] } = {}
if (values.steps !== undefined) {
  const steps = Number(values.steps)
  if (!Number.isInteger(steps) || steps < 2) usage('--steps must be an integer >= 2')
  options.steps = steps
}
if (values.quiet !== true) options.log = (line) => process.stdout.write(`${line}\n`)

const r = await runEngineModelScenario(Number(values.seed), options)
const { violations, ...summary } = r
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
for (const v of violations) process.stderr.write(`violation: ${v}\n`)
process.exitCode = r.ok ? 0 : 1
