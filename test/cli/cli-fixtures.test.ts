/**
 * `memwal fsck` as a user runs it (a subprocess; DESIGN.md §9), on each of the
 * committed data-directory fixtures of fixtures/datadirs/ (see its README):
 * fsck finds the fixture's fault, names its kind and place (segment, offset,
 * LSNs, keys) and exits 4; fsck --repair fixes it and exits 1; fsck then exits
 * 0; and the repaired directory still holds every acknowledged value (repair
 * never takes back what the backend had applied). The other commands and the
 * CLI's errors are in cli.test.ts (split so each file stays well inside the
 * runner's per-file timeout on a loaded machine).
 */
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { MemWAL } from '../../engine/index.js'
import { RecordType, type Op, type PutOp } from '../../engine/testing.js'
import { segmentName } from '../../engine/format/segment-name.js'
import { CASES, RECORDS, recordFor, type CaseName } from '../../fixtures/make-datadir-fixtures.js'
import { copyFixture, fsckReport, oneJson, runCli, type DumpDoc, type FsckFinding } from '../support/cli-run.js'
import { expectations, manifest } from '../support/fixture-expect.js'

// Most of the time goes to starting subprocesses: run the tests (each in its own directory) a few at a time.
t.jobs = 3


// ---- the model: what the fixtures' log acknowledged (LSNs 1..RECORDS, all applied before the fault) ----

interface Version {
  readonly lsn: number
  readonly op: Op
}

function modelOf(records: number, dropped: ReadonlySet<number> = new Set()): Map<string, Version> {
  const latest = new Map<string, Version>()
  for (let i = 1; i <= records; i++) {
    if (dropped.has(i)) continue
    const r = recordFor(i)
    for (const op of r.type === RecordType.BATCH ? r.ops : [r.op]) latest.set(op.key, { lsn: i, op })
  }
  return latest
}

const MODEL = modelOf(RECORDS)
const liveKeys = (model: ReadonlyMap<string, Version>, pred: (op: PutOp) => boolean): string[] =>
  [...model.entries()].filter(([, v]) => v.op.type === 'put' && pred(v.op)).map(([k]) => k).sort()

/**
 * Opens the directory with the engine and checks that every key reads as the
 * model says (value, labels and the LSN that wrote it; deleted keys absent),
 * and that index queries by namespace and by tag find exactly the model's keys.
 */
async function expectModel(t: Test, dir: string, model: ReadonlyMap<string, Version> = MODEL): Promise<void> {
  const engine = await MemWAL.open({ dir })
  try {
    const wrong: string[] = []
    for (const [key, v] of model) {
      const found = await engine.getEntry(key, { namespace: v.op.namespace as string })
      const e = found && { value: found.value, lsn: found.version, namespace: found.namespace, ...(found.tags.length > 0 ? { tags: found.tags } : {}) }
      if (v.op.type === 'del') {
        if (e !== undefined) wrong.push(`${key}: deleted at LSN ${v.lsn}, reads ${JSON.stringify(e)}`)
        continue
      }
      const want = { value: v.op.value, lsn: v.lsn, ...(v.op.namespace !== undefined ? { namespace: v.op.namespace } : {}), ...(v.op.tags ? { tags: v.op.tags } : {}) }
      if (JSON.stringify(e) !== JSON.stringify(want)) wrong.push(`${key}: want LSN ${v.lsn} ${JSON.stringify(want).slice(0, 80)}, reads ${JSON.stringify(e)?.slice(0, 80)}`)
    }
    t.strictSame(wrong, [], 'every acknowledged key reads as the log wrote it (nothing the backend applied was taken back)')
    for (const namespace of ['notes', 'facts', 'plans']) {
      const got: string[] = []
      for await (const r of engine.query({ namespace, limit: 100_000 })) got.push(r.key)
      t.strictSame(got.sort(), liveKeys(model, (op) => op.namespace === namespace), `query namespace ${namespace}`)
    }
    for (const tag of ['red', 'green', 'blue', 'urgent', 'pinned', 'stale-tag']) {
      const got: string[] = []
      for await (const r of engine.query({ tag, limit: 100_000 })) got.push(r.key)
      t.strictSame(got.sort(), liveKeys(model, (op) => (op.tags ?? []).includes(tag)), `query tag ${tag}`)
    }
  } finally {
    await engine.close()
  }
}

// ---- per fixture: fsck, fsck --repair, fsck ----

/** The gap each log repair declares: [first LSN, last LSN, already in the backend]. */
const GAP_CASES: Partial<Record<CaseName, readonly [number, number, boolean]>> = {
  'corrupt-middle-segment': [332, 332, true],
  'bitflip-payload': [461, 461, true],
  'missing-segment': [223, 440, true],
  'corrupt-log-backend-down': [332, 332, false],
}

/** Checks the findings name the fixture's fault: kind, segment, offset, LSNs or keys. */
function expectPlaces(t: Test, name: CaseName, findings: readonly FsckFinding[], repairRun: boolean): void {
  const m = manifest[name]
  const e = expectations(name)
  const log = findings.filter((f) => f.segment !== undefined)
  switch (name) {
    case 'clean':
      t.strictSame(findings, [])
      return
    case 'torn-tail':
      t.match(log, [{ kind: 'torn-tail', segment: m.segment, offset: m.offset, lsnFirst: m.lsnFirst }])
      t.not(log[0]?.alreadyApplied, true, 'a torn write was never applied')
      return
    case 'corrupt-middle-segment':
    case 'bitflip-payload':
    case 'corrupt-log-backend-down': {
      const [first, last] = repairRun ? (e.cut as [number, number]) : [m.lsnFirst, m.lsnLast]
      const applied = name !== 'corrupt-log-backend-down'
      t.match(log, [{ kind: 'corrupt-frame', segment: m.segment, offset: m.offset, lsnFirst: first, lsnLast: last, alreadyApplied: applied }], repairRun ? 'the repair names the LSNs it cut from the log' : 'the damaged frame')
      // The dry run says what --repair will do, in the same words the repair run uses.
      const kept = `keeps LSNs ${(m.lsnLast as number) + 1}-${(m.lsnFirst as number) < 441 ? 440 : 480} (verified, after it) in a new segment ${segmentName((m.lsnLast as number) + 1)}`
      t.match(log[0]?.detail, `${repairRun ? 'repair' : '--repair'}: drops LSN ${m.lsnFirst} (the damaged bytes ${m.offset}-`)
      t.match(log[0]?.detail, kept)
      if (applied) t.notMatch(log[0]?.detail, /older value reads back/)
      else t.match(log[0]?.detail, /if a dropped record deleted a key .*, its older value reads back/, 'a dropped record not in the backend may have been a delete')
      return
    }
    case 'missing-segment':
      // Noticed at the next segment, whose base LSN the missing LSNs precede.
      t.match(log, [{ kind: 'missing-lsns', segment: segmentName((m.lsnLast as number) + 1), offset: 0, lsnFirst: m.lsnFirst, lsnLast: m.lsnLast, alreadyApplied: true }])
      t.equal(segmentName(m.lsnFirst as number), m.segment, 'the LSNs are those of the deleted segment')
      return
    case 'backend-behind': {
      const missing = findings.filter((f) => f.kind === 'backend-missing')
      t.strictSame(missing.map((f) => f.key).sort(), [...(m.keys ?? [])].sort(), 'the keys deleted from the backend')
      for (const f of missing) t.match(f, { sink: 'backend', lsnFirst: MODEL.get(f.key as string)?.lsn }, `${f.key}: the LSN of its latest put`)
      if (!repairRun) t.strictSame(findings.filter((f) => f.kind === 'index-orphan').map((f) => f.key).sort(), [...(m.keys ?? [])].sort())
      return
    }
    case 'stale-index':
    case 'orphan-index':
      t.strictSame(findings.map((f) => f.key).sort(), [...(m.keys ?? [])].sort(), 'the keys whose index entries are wrong')
      for (const f of findings) t.equal(f.sink, 'index')
  }
}

for (const name of CASES) {
  t.test(`fixture ${name}: fsck, fsck --repair, fsck`, async (t) => {
    const dir = copyFixture(t, name)
    const e = expectations(name)
    const m = manifest[name]
    const damaged = name !== 'clean'

    const first = await runCli(['fsck', dir, '--json'])
    t.equal(first.code, damaged ? 4 : 0, `fsck exits ${damaged ? 4 : 0}; stderr: ${first.stderr}`)
    const r1 = fsckReport(t, first, 'fsck')
    t.strictSame(r1.counts, e.found, 'counts per kind')
    t.equal(r1.clean, !damaged)
    t.equal(r1.unrepaired, r1.findings.length)
    t.ok(r1.findings.every((f) => !f.repaired), 'nothing is marked repaired without --repair')
    t.match(r1, { lastLsn: m.lastLsn, checkpoints: { backend: m.checkpoint, index: m.checkpoint }, segments: m.segments.length })
    expectPlaces(t, name, r1.findings, false)

    const repair = await runCli(['fsck', dir, '--repair', '--json'])
    t.equal(repair.code, damaged ? 1 : 0, `fsck --repair exits ${damaged ? 1 : 0}; stderr: ${repair.stderr}`)
    if (repair.code !== null && repair.code >= 4) return // the rest would only repeat the failure
    const r2 = fsckReport(t, repair, 'fsck --repair')
    // The gap a log repair declares is reported at once, as a notice (see below).
    const gapNotice = GAP_CASES[name] ? { 'declared-gap': 1 } : {}
    t.strictSame(r2.counts, { ...e.repaired, ...gapNotice }, 'counts per kind in the repair run')
    const damage = r2.findings.filter((f) => f.kind !== 'declared-gap')
    t.ok(damage.every((f) => f.repaired), 'every finding is marked repaired')
    t.equal(r2.unrepaired, 0)
    t.equal(r2.repaired, damage.length)
    t.equal(r2.notices, r2.findings.length - damage.length)
    expectPlaces(t, name, damage, true)
    const q = path.join(dir, 'quarantine')
    t.strictSame(fs.existsSync(q) ? fs.readdirSync(q).sort() : [], e.quarantined, 'evidence kept in quarantine/')
    const cut = e.cut
    if (cut) {
      // The frames after the damage were copied to a new segment named by the first of them; the log still ends at the last LSN.
      t.ok(fs.existsSync(path.join(dir, 'wal', segmentName(cut[1] + 1))), 'the salvaged frames are in a new segment')
      t.notOk(fs.existsSync(path.join(dir, 'wal', segmentName(m.lastLsn + 1))), 'the log was not cut short: nothing starts after its last LSN')
      const dumped = oneJson<DumpDoc>(await runCli(['dump', dir, '--json']))
      const kept = Array.from({ length: RECORDS }, (_, i) => i + 1).filter((l) => l < cut[0] || l > cut[1])
      t.strictSame(dumped.entries.filter((x) => x.kind === 'record').map((x) => x.lsn), kept, `the log keeps ${kept.length} of ${RECORDS} records: every one but the damaged frame`)
      t.equal(dumped.damaged, 0)
    }

    const again = await runCli(['fsck', dir, '--json'])
    t.equal(again.code, 0, `fsck after the repair exits 0; stderr: ${again.stderr}`)
    const r3 = fsckReport(t, again, 'fsck again')
    t.equal(r3.clean, true)
    // What the repair took out of the log stays visible, as a notice (exit 0), until acknowledged.
    const gap = GAP_CASES[name]
    t.strictSame(r3.findings.map((f) => [f.kind, f.lsnFirst, f.lsnLast, f.alreadyApplied]), gap ? [['declared-gap', ...gap]] : [], 'the declared gap, as a notice')
    t.equal(r3.notices, gap ? 1 : 0)
    t.equal(r3.unrepaired, 0)
    // Replay applied what the backend had not (corrupt-log-backend-down: everything but the dropped frame).
    t.match(r3.checkpoints, { backend: m.lastLsn, index: m.lastLsn })

    await expectModel(t, dir, name === 'corrupt-log-backend-down' ? modelOf(RECORDS, new Set([m.lsnFirst as number])) : MODEL)
  })
}
