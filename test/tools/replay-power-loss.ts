/**
 * Replays one seeded power-loss scenario of test/sim/wal-power-loss.test.ts,
 * verbosely: the workload, where each power cut landed, what recovery found,
 * and every violated invariant. Exits 1 on a violation, 2 on a usage error.
 *
 *   npx tsx test/tools/replay-power-loss.ts --seed 20251123
 *   npx tsx test/tools/replay-power-loss.ts --seed 7 --epochs 3 --quiet
 */
import { parseArgs } from 'node:util'
import { runScenario, type ScenarioOptions } from '../support/power-loss-scenario.js'

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: npx tsx test/tools/replay-power-loss.ts --seed N [--epochs 1..3] [--quiet]\n`)
  process.exit(2)
}

let values: { seed?: string; epochs?: string; quiet?: boolean }
try {
  ;({ values } = parseArgs({ options: { seed: { type: 'string' }, epochs: { type: 'string' }, quiet: { type: 'boolean' } } }))
} catch (err) {
  usage((err as Error).message)
}
if (values.seed === undefined || !/^\d+$/.test(values.seed)) usage('--seed N is required (an unsigned integer)')
const seed = Number(values.seed)
const options: { -readonly [K in keyof ScenarioOptions]: ScenarioOptions[K] } = {}
if (values.epochs !== undefined) {
  const epochs = Number(values.epochs)
  if (!Number.isInteger(epochs) || epochs < 1 || epochs > 3) usage('--epochs must be 1, 2 or 3')
  options.epochs = epochs
}
if (values.quiet !== true) options.log = (line) => process.stdout.write(`${line}\n`)

const r = await runScenario(seed, options)
const summary = {
  seed: r.seed, ok: r.ok, epochs: r.epochs, appended: r.appended, acknowledged: r.acknowledged, lost: r.lost,
  rejected: r.rejected, surfacedUnacked: r.surfacedUnacked, tornTails: r.tornTails, secondCrashes: r.secondCrashes,
  lastLsn: r.lastLsn, segmentsMax: r.segmentsMax, crashSites: r.crashSites,
}
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
for (const v of r.violations) process.stderr.write(`violation: ${v}\n`)
process.exitCode = r.ok ? 0 : 1
