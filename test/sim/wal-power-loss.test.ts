/**
 * G1 under power loss, on the simulated filesystem: seeded scenarios cut the
 * power at a seeded mutating operation (mid group write, during segment
 * rotation, during recovery itself), restart, reopen and check that every
 * acknowledged record reads back exactly (see test/support/power-loss-scenario.ts).
 *
 *   MEMWAL_SEED_BASE=<n>   first seed (default below)
 *   MEMWAL_SCENARIOS=<n>   how many scenarios (default 1000)
 *
 * A failing seed replays alone with `npx tsx test/tools/replay-power-loss.ts --seed N`.
 */
import t from 'tap'
import { ManualClock, RecordType, SeededRandom, SimulatedFileSystem, Wal } from '../../engine/testing.js'
import { replayCommand, runScenario, SCENARIO_DIR, SCENARIO_SEGMENT_BYTES } from '../support/power-loss-scenario.js'

const SEED_BASE_DEFAULT = 20_251_123
const SCENARIOS_DEFAULT = 1000

function envInt(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, not ${raw}`)
  return n
}

const seedBase = envInt('MEMWAL_SEED_BASE', SEED_BASE_DEFAULT)
const scenarios = envInt('MEMWAL_SCENARIOS', SCENARIOS_DEFAULT)

t.test(`${scenarios} seeded power-loss scenarios lose no acknowledged record`, async (t) => {
  const failures: { seed: number; violations: string[] }[] = []
  const sites = new Map<string, number>()
  let acknowledged = 0
  let appended = 0
  let lost = 0
  let tornTails = 0
  let tornGroups = 0
  let sectorScenarios = 0
  let secondCrashes = 0
  let secondCrashScenarios = 0
  let multiEpoch = 0
  let surfaced = 0
  let rotated = 0
  for (let i = 0; i < scenarios; i++) {
    const seed = (seedBase + i) >>> 0
    const r = await runScenario(seed)
    appended += r.appended
    acknowledged += r.acknowledged
    lost += r.lost
    tornTails += r.tornTails
    tornGroups += r.tornGroups
    if (r.tear === 'sectors') sectorScenarios++
    secondCrashes += r.secondCrashes
    if (r.secondCrashes > 0) secondCrashScenarios++
    if (r.epochs > 1) multiEpoch++
    if (r.segmentsMax > 1) rotated++
    surfaced += r.surfacedUnacked
    for (const s of r.crashSites) sites.set(s, (sites.get(s) ?? 0) + 1)
    if (!r.ok) failures.push({ seed, violations: r.violations })
  }
  for (const f of failures.slice(0, 20)) {
    t.fail(`seed ${f.seed}: ${f.violations.join(' | ')}\n  replay: ${replayCommand(f.seed)}`)
  }
  t.equal(lost, 0, 'no acknowledged record was lost or changed')
  t.equal(failures.length, 0, `every scenario held every invariant${failures[0] ? `; first failure: ${replayCommand(failures[0].seed)}` : ''}`)
  t.comment(
    `power loss: ${scenarios} scenarios from seed ${seedBase}: ${appended} appends, ${acknowledged} acknowledged, ${lost} lost; ` +
      `${tornTails} torn tails truncated (${tornGroups} of them torn final groups: valid frames after the damage), ${surfaced} unacknowledged records surfaced under their own LSN; ` +
      `${sectorScenarios} scenarios tore unsynced writes by 512-byte sectors in any subset, the others by prefix; ` +
      `${secondCrashScenarios} scenarios with a power cut during recovery; ${multiEpoch} multi-epoch; ${rotated} rotated segments`,
  )
  t.comment(`power cuts landed: ${[...sites].sort((a, b) => b[1] - a[1]).map(([s, n]) => `${s} ${n}`).join(', ')}`)
  // The run must have exercised what it claims to (a full-size run; a small MEMWAL_SCENARIOS may not reach every site).
  if (scenarios >= SCENARIOS_DEFAULT) {
    t.ok(acknowledged > scenarios * 10, 'the workload acknowledged records to lose')
    t.ok(tornTails > 0 && secondCrashes > 0 && multiEpoch > 0 && rotated > 0, 'torn tails, crashes during recovery, several epochs and rotations all happened')
    t.ok(tornGroups > 0, 'torn final groups (a later sector persisted, an earlier one not) happened and were truncated without refusal')
    for (const site of ['group write', 'spare zero-fill', 'spare sync', 'segment header write', 'segment header sync', 'segment rename', 'directory sync']) {
      t.ok((sites.get(`write: ${site}`) ?? 0) > 0, `a power cut landed on a ${site} while writing`)
    }
    t.ok((sites.get('recovery: torn-tail zeroing') ?? 0) + (sites.get('recovery: torn-tail zeroing sync') ?? 0) > 0, 'a power cut landed on recovery zeroing a torn tail')
  }
})

t.test('the checker notices a lost acknowledged record (it can fail)', async (t) => {
  // Keep only the first frame of the first segment after the power cut: everything acknowledged after LSN 1 is gone.
  const r = await runScenario(seedBase, {
    epochs: 1,
    secondCrashChance: 0,
    afterRestart: (sim) => {
      const first = `${SCENARIO_DIR}/wal/00000000000000000001.seg`
      const bytes = sim.peek(first)
      if (!bytes) return
      const cut = 64 + 32 + bytes.readUInt32LE(64 + 16)
      const damaged = Buffer.from(bytes)
      damaged.fill(0, cut)
      sim.poke(first, damaged)
      for (let lsn = 2; lsn < 1000; lsn++) sim.remove(`${SCENARIO_DIR}/wal/${String(lsn).padStart(20, '0')}.seg`)
    },
  })
  t.ok(r.acknowledged >= 2, `precondition: the scenario acknowledged several records (${r.acknowledged})`)
  t.equal(r.ok, false, 'the scenario reports a violation')
  t.ok(r.lost > 0, `and counts the lost records (${r.lost})`)
  t.match(r.violations.join('\n'), /acknowledged LSN \d+ \(epoch 1\) is missing/, 'naming the missing LSN')
})

t.test('records whose payload ends in zero bytes survive a power cut, also as the last frame of a segment', async (t) => {
  // Zeros after the last frame mark the end of the log: a scan must still take a frame's length from its header.
  const sim = new SimulatedFileSystem(new SeededRandom(1))
  const open = (fs: SimulatedFileSystem): Promise<Wal> =>
    Wal.open({ dir: SCENARIO_DIR, fs, clock: new ManualClock(), random: new SeededRandom(2), segmentBytes: SCENARIO_SEGMENT_BYTES })
  const wal = await open(sim)
  const payloads: Uint8Array[] = []
  // 4000-byte records fill the first segment with 16 frames; the 16th is the last frame of its segment.
  for (let i = 0; i < 17; i++) {
    const p = Buffer.alloc(4000, 0)
    p.writeUInt32LE(i + 1, 0) // non-zero head, 3996 zero bytes at the end
    payloads.push(p)
    t.equal(await wal.append(RecordType.PUT, p), i + 1)
  }
  const tail = Buffer.from([7, 0, 0, 0])
  payloads.push(tail)
  t.equal(await wal.append(RecordType.PUT, tail), 18)
  t.equal((await wal.segments()).length, 2, 'the log rotated once')
  sim.powerLoss()
  const again = await open(sim.restart(3))
  t.same(again.recovery.findings, [], 'no finding: nothing was torn')
  const read: Uint8Array[] = []
  for await (const r of again.read(1)) read.push(Buffer.from(r.payload))
  t.equal(read.length, payloads.length, 'every acknowledged record reads back')
  t.ok(read.every((b, i) => Buffer.compare(b, payloads[i] ?? Buffer.alloc(0)) === 0), 'byte for byte')
  await again.close()
})
