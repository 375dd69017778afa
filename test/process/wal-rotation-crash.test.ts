/**
 * Power loss at every mutating step around a segment rotation (spare
 * zero-fill and its sync, header write and its sync, rename, directory sync,
 * the first write into the new segment, the last one into the old), then a
 * second power loss at every mutating step of the recovery that follows.
 * After each: every acknowledged record is back, LSNs run contiguously across
 * segments, and recovery found nothing but a torn tail.
 */
import t from 'tap'
import { SeededRandom, SimulatedFileSystem, type Wal } from '../../engine/testing.js'
import {
  describeSegments, openLog, readAll, recordFor, TracingFileSystem, type TracedOp,
} from '../support/craft.js'

/** Two rotations (at LSNs 101 and 200) besides the segment created at open. */
const RECORDS = 230
const VALUE_BYTES = 600
/** Appends in flight together: a group may straddle a rotation. */
const WAVE = 3
const FS_SEED = 11
const WAL_SEED = 7

/** Runs the workload until it ends or the power goes; returns the LSNs acknowledged. */
async function workload(fs: TracingFileSystem): Promise<number[]> {
  const acked: number[] = []
  let wal: Wal
  try {
    wal = await openLog(fs, { seed: WAL_SEED })
  } catch {
    return acked
  }
  let next = 1
  while (next <= RECORDS) {
    const wave: Promise<void>[] = []
    for (let i = 0; i < WAVE && next <= RECORDS; i++, next++) {
      const want = next
      wave.push(wal.appendRecord(recordFor(want, VALUE_BYTES)).then((lsn) => {
        if (lsn !== want) throw new Error(`append ${want} got LSN ${lsn}`)
        acked.push(lsn)
      }))
    }
    const results = await Promise.allSettled(wave)
    const odd = results.find((r) => r.status === 'rejected' && !String((r.reason as Error).message).match(/power loss|no more writes/))
    if (odd && odd.status === 'rejected') throw odd.reason
    if (results.some((r) => r.status === 'rejected')) break
  }
  await wal.close().catch(() => undefined)
  return acked
}

/** What each traced op is, in the words of the rotation protocol. */
function labels(trace: readonly TracedOp[]): string[] {
  const lastSpareWrite: { kind?: string } = {}
  return trace.map((op, i) => {
    const isSeg = op.file.endsWith('.seg')
    switch (op.op) {
      case 'create':
        return 'spare create'
      case 'write':
        if (!isSeg) {
          lastSpareWrite.kind = op.position === 0 && op.length === 64 ? 'header' : 'zero-fill'
          return lastSpareWrite.kind === 'header' ? 'header write' : 'spare zero-fill'
        }
        if (op.position === 64) return 'first write into a new segment'
        return trace.slice(i + 1).find((o) => o.op === 'write' && o.file.endsWith('.seg'))?.file !== op.file && trace.slice(i + 1).some((o) => o.op === 'rename')
          ? 'last write into the old segment'
          : 'append'
      case 'datasync':
        return isSeg ? 'segment datasync' : lastSpareWrite.kind === 'header' ? 'header datasync' : 'spare datasync'
      case 'rename':
        return 'rename into place'
      case 'syncDir':
        return 'directory sync'
      case 'unlink':
        return 'unlink'
      case 'truncate':
        return 'truncate'
    }
  })
}

/** Reopens after a crash and checks the log; returns what is wrong (nothing, if all is well). */
async function recoverAndCheck(fs: SimulatedFileSystem, acked: readonly number[]): Promise<string[]> {
  const problems: string[] = []
  const maxAcked = acked.length === 0 ? 0 : Math.max(...acked)
  let wal: Wal
  try {
    // The sinks would have checkpointed up to the last acknowledged LSN: the log must reach it.
    wal = await openLog(fs, { durableLsn: maxAcked, seed: WAL_SEED + 1 })
  } catch (err) {
    return [`open refused: ${(err as { code?: string }).code} ${(err as Error).message}`]
  }
  const odd = wal.recovery.findings.filter((f) => f.kind !== 'torn-tail')
  if (odd.length > 0) problems.push(`findings other than torn-tail: ${JSON.stringify(odd)}`)
  const { lsns, keys } = await readAll(wal)
  const last = lsns.length
  if (!lsns.every((lsn, i) => lsn === i + 1)) problems.push(`LSNs not contiguous from 1: ${lsns.join(',')}`)
  if (last < maxAcked) problems.push(`log ends at ${last}, before acknowledged LSN ${maxAcked}`)
  if (!keys.every((k, i) => k === `key-${i + 1}`)) problems.push('a record does not hold what was written at its LSN')
  const added = await wal.appendRecord(recordFor(last + 1, 50)).catch((err: unknown) => err)
  if (added !== last + 1) problems.push(`new append got ${String(added)}, not ${last + 1}`)
  await wal.close()

  // On disk: every segment clean, each starting where the previous one ended.
  try {
    let due = 1
    for (const seg of await describeSegments(fs)) {
      if (seg.header.baseLsn !== due) problems.push(`${seg.name} starts at ${seg.header.baseLsn}, ${due} was due`)
      for (const f of seg.frames) {
        if (f.lsn !== due) problems.push(`${seg.name} holds LSN ${f.lsn} where ${due} was due`)
        due = f.lsn + 1
      }
    }
    if (due !== last + 2) problems.push(`segments end at LSN ${due - 1}, not ${last + 1}`)
  } catch (err) {
    problems.push(`segment damage after recovery: ${(err as Error).message}`)
  }
  const again = await openLog(fs, { durableLsn: maxAcked, seed: WAL_SEED + 2 })
  if (again.recovery.findings.length > 0) problems.push(`second open found ${JSON.stringify(again.recovery.findings)}`)
  await again.close()
  return problems
}

/** Mutating ops a recovery (open, then close, which waits for the spare) makes on a copy of `fs`. */
async function recoveryOps(fs: SimulatedFileSystem, acked: readonly number[]): Promise<number> {
  const copy = fs.restart(1)
  const wal = await openLog(copy, { durableLsn: acked.length === 0 ? 0 : Math.max(...acked), seed: WAL_SEED + 1 })
  await wal.close()
  return copy.stats.mutatingOps
}

t.test('power loss around segment rotation, then again during recovery', async (t) => {
  const baseline = new TracingFileSystem(new SimulatedFileSystem(new SeededRandom(FS_SEED)))
  const all = await workload(baseline)
  t.equal(all.length, RECORDS, 'baseline: every record acknowledged')
  t.equal(baseline.trace.length, baseline.sim.stats.mutatingOps, 'the trace counts the ops the simulator counts')
  const names = labels(baseline.trace)
  t.equal(names.filter((n) => n === 'rename into place').length, 3, 'three segments installed: at open and two rotations')

  // Every op that is not an ordinary append in the middle of a segment.
  const points: number[] = []
  names.forEach((n, i) => {
    if (n !== 'append' || names[i - 1] === 'first write into a new segment') points.push(i + 1)
  })
  const covered = new Set(points.map((k) => names[k - 1]))
  for (const step of ['spare create', 'spare zero-fill', 'spare datasync', 'header write', 'header datasync', 'rename into place', 'directory sync', 'first write into a new segment', 'last write into the old segment']) {
    t.ok(covered.has(step), `the power is cut at: ${step}`)
  }

  let secondCrashes = 0
  for (const k of points) {
    const step = names[k - 1] ?? '?'
    await t.test(`op ${k}: ${step}`, async (t) => {
      const sim = new SimulatedFileSystem(new SeededRandom(FS_SEED))
      sim.cutPowerAtOp(k)
      const traced = new TracingFileSystem(sim)
      const acked = await workload(traced)
      t.ok(sim.isCrashed, 'the power went')
      t.strictSame(traced.trace[k - 1], baseline.trace[k - 1], `op ${k} is the ${step}`)
      t.ok(acked.every((lsn, i) => lsn === i + 1), 'acknowledged LSNs are a prefix 1..n')

      const afterCrash = sim.restart(1000 + k)
      t.strictSame(await recoverAndCheck(afterCrash.restart(1), acked), [], 'recovery after the crash')

      const ops = await recoveryOps(afterCrash, acked)
      t.ok(ops > 0, 'recovery makes mutating ops (at least the new spare)')
      const failures: string[] = []
      for (let j = 1; j <= ops; j++) {
        const during = afterCrash.restart(1)
        during.cutPowerAtOp(j)
        try {
          const wal = await openLog(during, { durableLsn: acked.length === 0 ? 0 : Math.max(...acked), seed: WAL_SEED + 1 })
          await wal.close()
        } catch (err) {
          if ((err as { code?: string }).code !== 'SIM_POWER_LOSS') failures.push(`recovery op ${j}: ${(err as Error).message}`)
        }
        if (!during.isCrashed) failures.push(`recovery op ${j}: the power did not go`)
        for (const p of await recoverAndCheck(during.restart(2000 + j), acked)) failures.push(`second crash at recovery op ${j}: ${p}`)
        secondCrashes++
      }
      t.strictSame(failures, [], `second crash at each of the ${ops} mutating ops of recovery`)
    })
  }
  t.ok(secondCrashes > points.length, `${points.length} crash points, ${secondCrashes} crashes during recovery`)
})
