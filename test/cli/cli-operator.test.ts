/**
 * The operator's view of loss and rejection, through the `memwal` CLI on the
 * fixtures of fixtures/datadirs/ (issue 14 items 2 and 3): dump names LSNs
 * that no segment holds; status reports the damage of every damaged fixture;
 * declared gaps stay visible in status and fsck (a notice, exit 0) until
 * `fsck --ack-gaps`; dead letters are a notice, never re-applied by --repair,
 * and `memwal deadletter` lists, retries and drops them. (Apart from
 * cli.test.ts so that each file runs well within tap's timeout.)
 */
import path from 'node:path'
import t from 'tap'
import { MemWAL } from '../../engine/index.js'
import { segmentName } from '../../engine/format/segment-name.js'
import { CASES } from '../../fixtures/make-datadir-fixtures.js'
import { copyFixture, fsckReport, oneJson, runCli, type DumpDoc } from '../support/cli-run.js'
import { expectations, manifest } from '../support/fixture-expect.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'

t.jobs = 3


t.test('dump on a directory with a missing middle segment names the missing LSNs and exits 4; after the repair they are a declared gap (exit 0)', async (t) => {
  const m = manifest['missing-segment']
  const dir = copyFixture(t, 'missing-segment')
  const r = await runCli(['dump', dir, '--json'])
  t.equal(r.code, 4, 'missing LSNs are damage')
  const doc = oneJson<DumpDoc & { declaredGaps: number }>(r)
  t.equal(doc.damaged, 1)
  t.match(doc.entries.filter((e) => e.kind === 'missing'), [{ kind: 'missing', segment: segmentName((m.lsnLast as number) + 1), lsnFirst: m.lsnFirst, lsnLast: m.lsnLast, declared: false }])
  const text = await runCli(['dump', dir])
  t.match(text.stdout, `!! missing LSNs ${m.lsnFirst}-${m.lsnLast} before ${segmentName((m.lsnLast as number) + 1)}`)
  t.match(text.stderr, /1 damaged ranges/)
  t.equal((await runCli(['fsck', dir, '--repair'])).code, 1)
  const after = await runCli(['dump', dir, '--json'])
  t.equal(after.code, 0, 'a declared gap is on record, not damage')
  const d2 = oneJson<DumpDoc & { declaredGaps: number }>(after)
  t.match(d2, { damaged: 0, declaredGaps: 1 })
  t.match(d2.entries.filter((e) => e.kind === 'missing'), [{ lsnFirst: m.lsnFirst, lsnLast: m.lsnLast, declared: true }])
})

t.test('status reports the damage of every damaged fixture (a dry-run fsck of a small directory)', async (t) => {
  for (const name of CASES) {
    const r = await runCli(['status', copyFixture(t, name), '--json'])
    t.equal(r.code, 0, `${name}: ${r.stderr}`)
    const s = oneJson<{ verified: { clean?: boolean; counts?: Record<string, number>; findings?: string[]; skipped?: string } }>(r)
    t.equal(s.verified.clean, name === 'clean', `${name}: ${name === 'clean' ? 'clean' : 'damage reported'}`)
    t.strictSame(s.verified.counts, expectations(name).found, `${name}: what fsck finds`)
  }
  const text = await runCli(['status', copyFixture(t, 'bitflip-payload')])
  t.match(text.stdout, /verified\s+DAMAGED: corrupt-frame 1/)
})

t.test('declared gaps: status and fsck show them until memwal fsck --ack-gaps acknowledges them', async (t) => {
  const dir = copyFixture(t, 'corrupt-log-backend-down')
  t.equal((await runCli(['fsck', dir, '--repair'])).code, 1)
  type StatusDoc = { gaps: { open: { lsnFirst: number; lsnLast: number; by: string; alreadyApplied: boolean }[]; acknowledged: number }; verified: { clean: boolean } }
  const s1 = oneJson<StatusDoc>(await runCli(['status', dir, '--json']))
  t.match(s1.gaps, { open: [{ lsnFirst: 332, lsnLast: 332, by: 'fsck --repair', alreadyApplied: false }], acknowledged: 0 })
  t.equal(s1.verified.clean, true, 'a declared gap is not damage')
  const text = await runCli(['fsck', dir])
  t.equal(text.code, 0)
  t.match(text.stdout, /declared-gap LSN 332: dropped by fsck --repair/)
  t.match(text.stdout, /clean: the log, the backend and the index agree \(1 notices/)
  const ack = await runCli(['fsck', dir, '--ack-gaps', '--json'])
  t.equal(ack.code, 0, ack.stderr)
  t.match(fsckReport(t, ack), { clean: true, notices: 0, findings: [] })
  const s2 = oneJson<StatusDoc>(await runCli(['status', dir, '--json']))
  t.match(s2.gaps, { open: [], acknowledged: 1 })
  t.strictSame(fsckReport(t, await runCli(['fsck', dir, '--json'])).findings, [], 'acknowledged: no longer reported')
})

// ---- dead letters ----

t.test('deadletter list|retry|drop, and fsck: a dead letter is a notice (exit 0), never re-applied by --repair', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const faults = new SinkFaults({ targets: ['backend'] })
  faults.rejectKeys('poison', 'toxic')
  const db = await MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s) })
  let poison = 0
  let toxic = 0
  try {
    await db.put('ok/1', 1)
    poison = (await db.put('poison', { v: 1 }, { namespace: 'ns' })).lsn
    toxic = (await db.put('toxic', { v: 1 })).lsn
    await db.flush({ timeoutMs: 10_000 })
  } finally {
    await db.close()
  }

  const before = await runCli(['fsck', dir, '--json'])
  t.equal(before.code, 0, `fsck exits 0: dead letters are a known state (was 4: backend-missing + index-orphan); ${before.stderr}`)
  const r1 = fsckReport(t, before)
  t.strictSame(r1.counts, { 'dead-letter': 2 })
  t.match(r1, { clean: true, notices: 2, unrepaired: 0 })
  const repair = await runCli(['fsck', dir, '--repair', '--json'])
  t.equal(repair.code, 0, `nothing to repair; ${repair.stderr}`)
  t.equal(fsckReport(t, repair).repaired, 0)

  const list = await runCli(['deadletter', dir, 'list', '--json'])
  t.equal(list.code, 0, list.stderr)
  t.match(oneJson<{ open: { sink: string; lsn: number; keys: string[] }[] }>(list).open, [{ sink: 'backend', lsn: poison, keys: ['poison'] }, { sink: 'backend', lsn: toxic, keys: ['toxic'] }])
  const text = await runCli(['deadletter', dir, 'list'])
  t.match(text.stdout, `LSN ${poison}\tbackend\tput "poison" in "ns"`)
  t.equal((await runCli(['deadletter', dir, 'retry'])).code, 16, 'retry needs --lsn N or --all')
  t.equal((await runCli(['deadletter', dir, 'resend', '--all'])).code, 16, 'an unknown action is a usage error')
  t.equal((await runCli(['deadletter', dir, 'drop', '--lsn', '999'])).code, 8, 'no such dead letter')

  const drop = await runCli(['deadletter', dir, 'drop', '--lsn', String(toxic), '--json'])
  t.equal(drop.code, 0, drop.stderr)
  t.strictSame(oneJson(drop), { dropped: [toxic] })
  // The backend accepts it now (no fault injected in this process): retry writes it again and it is applied.
  const retry = await runCli(['deadletter', dir, 'retry', '--lsn', String(poison), '--json'])
  t.equal(retry.code, 0, retry.stderr)
  const rr = oneJson<{ retried: { lsn: number; newLsn: number }[]; superseded: number[]; rejectedAgain: unknown[] }>(retry)
  t.match(rr, { retried: [{ lsn: poison }], superseded: [], rejectedAgain: [] })
  t.strictSame(oneJson<{ open: unknown[] }>(await runCli(['deadletter', dir, 'list', '--json'])).open, [])

  const after = await runCli(['fsck', dir, '--json'])
  t.equal(after.code, 0, after.stderr)
  t.strictSame(fsckReport(t, after).findings, [], 'retried and dropped: nothing to report')
  const check = await MemWAL.open({ dir })
  try {
    t.match(await check.getEntry('poison', { namespace: 'ns' }), { value: { v: 1 }, version: rr.retried[0]?.newLsn, namespace: 'ns', key: 'poison' }, 'the retried record reached the backend')
    t.equal(await check.get('toxic'), undefined, 'the dropped one never did')
  } finally {
    await check.close()
  }
})
