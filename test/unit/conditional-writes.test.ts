/**
 * Conditional writes (issue 11 item 5): put with ifVersion or ifAbsent,
 * delete with ifVersion, and the same on batch operations (one failed
 * condition: the batch writes nothing). A refusal is VERSION_MISMATCH with
 * {namespace, key, expected, current} and nothing is appended. Decided at
 * append time in log order: of many concurrent writes conditioned on one
 * version, exactly one wins; after a crash a refused write left nothing in
 * the log; the backend is read only when neither the in-flight writes nor
 * the pending log know the version, also while the backend is behind.
 */
import t from 'tap'
import { MemWAL, type MemwalOptions } from '../../engine/index.js'
import { dumpLog } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'

async function open(dir: string, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, resilience: fastResilience, ...extra })
}

async function refusal(p: Promise<unknown>): Promise<{ code?: string; details?: Record<string, unknown> } | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return err as { code?: string; details?: Record<string, unknown> }
  }
}

t.test('ifVersion and ifAbsent on put and delete: written when they hold, VERSION_MISMATCH (nothing written) when not', async (t) => {
  const e = await open(tmpDir(t, 'memwal-cond-'))
  t.teardown(() => e.close())
  const v1 = (await e.put('k', 1, { namespace: 'a', ifAbsent: true })).lsn
  t.match(await refusal(e.put('k', 2, { namespace: 'a', ifAbsent: true })), { code: 'VERSION_MISMATCH', details: { namespace: 'a', key: 'k', expected: null, current: v1 } }, 'ifAbsent on a live entry')
  t.equal((await e.put('k', 1, { namespace: 'b', ifAbsent: true })).lsn, v1 + 1, 'the same key in another namespace is absent there')
  const last = e.health().wal.lastLsn
  t.match(await refusal(e.put('k', 3, { namespace: 'a', ifVersion: v1 + 1 })), { code: 'VERSION_MISMATCH', details: { expected: v1 + 1, current: v1 } }, 'ifVersion that is not the current version')
  t.equal(e.health().wal.lastLsn, last, 'a refusal appends nothing')
  const v2 = (await e.put('k', 3, { namespace: 'a', ifVersion: v1 })).lsn
  t.equal(await e.get('k', { namespace: 'a' }), 3, 'ifVersion that holds writes')
  t.match(await refusal(e.delete('k', { namespace: 'a', ifVersion: v1 })), { code: 'VERSION_MISMATCH', details: { expected: v1, current: v2 } }, 'delete with a stale version')
  await e.delete('k', { namespace: 'a', ifVersion: v2 })
  t.equal(await e.get('k', { namespace: 'a' }), undefined, 'delete with the current version deletes')
  t.match(await refusal(e.put('k', 4, { namespace: 'a', ifVersion: v2 })), { code: 'VERSION_MISMATCH', details: { expected: v2, current: null } }, 'current is null once deleted')
  t.ok((await refusal(e.put('k', 4, { namespace: 'a', ifAbsent: true }))) === undefined, 'absent again after the delete')
  t.match(await refusal(e.put('k', 5, { ifVersion: 1, ifAbsent: true })), { code: 'INVALID_OPTIONS', details: { field: 'ifAbsent' } }, 'both conditions at once are refused')
  t.match(await refusal(e.put('k', 5, { ifVersion: 0 })), { code: 'INVALID_OPTIONS', details: { field: 'ifVersion' } }, 'version 0 is no version')
  t.match(await refusal(e.delete('k', { ifAbsent: true } as never)), { code: 'INVALID_OPTIONS', details: { field: 'ifAbsent' } }, 'a delete takes no ifAbsent')
})

t.test('a batch with one failed condition writes nothing', async (t) => {
  const e = await open(tmpDir(t, 'memwal-cond-batch-'))
  t.teardown(() => e.close())
  const a = (await e.put('a', 1)).lsn
  await e.put('b', 1)
  const last = e.health().wal.lastLsn
  const err = await refusal(e.batch([
    { type: 'put', key: 'a', value: 2, ifVersion: a },
    { type: 'put', key: 'c', value: 1, ifAbsent: true },
    { type: 'del', key: 'b', ifVersion: a },
  ]))
  t.match(err, { code: 'VERSION_MISMATCH', details: { namespace: 'default', key: 'b', expected: a } }, 'names the operation whose condition failed')
  t.equal(e.health().wal.lastLsn, last, 'nothing appended')
  t.strictSame([await e.get('a'), await e.get('b'), await e.get('c')], [1, 1, undefined], 'no operation of it is visible')
  const ok = await e.batch([{ type: 'put', key: 'a', value: 2, ifVersion: a }, { type: 'put', key: 'c', value: 1, ifAbsent: true }])
  t.equal(ok.lsn, last + 1, 'every condition holds: one record')
  t.strictSame([await e.get('a'), await e.get('c')], [2, 1])
})

t.test('many concurrent conditional puts on one key: exactly one wins per version', async (t) => {
  const e = await open(tmpDir(t, 'memwal-cond-race-'))
  t.teardown(() => e.close())
  let version = (await e.put('counter', 0)).lsn
  for (let round = 1; round <= 5; round++) {
    const outcomes = await Promise.all(Array.from({ length: 40 }, (_, i) => e.put('counter', { round, i }, { ifVersion: version }).then((r) => r.lsn, (err: { code?: string; details?: { current?: number } }) => err)))
    const wins = outcomes.filter((o): o is number => typeof o === 'number')
    t.equal(wins.length, 1, `round ${round}: one of 40 writers conditioned on version ${version} wins`)
    const winner = wins[0] as number
    t.ok(outcomes.every((o) => typeof o === 'number' || (o.code === 'VERSION_MISMATCH' && o.details?.current === winner)), `round ${round}: every other is VERSION_MISMATCH naming the winner's version`)
    version = winner
  }
  const ifAbsent = await Promise.all(Array.from({ length: 20 }, (_, i) => e.put('once', i, { ifAbsent: true }).then(() => 'won', (err: { code?: string }) => err.code)))
  t.equal(ifAbsent.filter((o) => o === 'won').length, 1, 'of 20 concurrent ifAbsent puts, one wins')
  await e.flush()
  const unconditional = e.put('counter', 'plain')
  const racing = e.put('counter', 'conditional', { ifVersion: version })
  const [u, r] = await Promise.all([unconditional, refusal(racing)])
  t.match(r, { code: 'VERSION_MISMATCH', details: { current: u.lsn } }, 'a write appended but not yet acknowledged is the version a later conditional write sees')
})

t.test('the version comes from the backend when nothing is pending, and a write racing the read is seen', async (t) => {
  const dir = tmpDir(t, 'memwal-cond-store-')
  const first = await open(dir)
  const v = (await first.put('k', 1, { namespace: 'n' })).lsn
  await first.flush()
  await first.close()
  const e = await open(dir, { cacheBytes: 1 })
  t.teardown(() => e.close())
  t.match(await refusal(e.put('k', 2, { namespace: 'n', ifVersion: v + 5 })), { code: 'VERSION_MISMATCH', details: { current: v } }, 'the stored version, read from the backend')
  const [a, b] = await Promise.all([refusal(e.put('k', 'a', { namespace: 'n', ifVersion: v })), refusal(e.put('k', 'b', { namespace: 'n', ifVersion: v }))])
  t.equal([a, b].filter((x) => x === undefined).length, 1, 'two conditional puts that both read the backend: one wins')
})

t.test('with the backend down: a version only the backend knows is a typed refusal; a pending one decides', async (t) => {
  const dir = tmpDir(t, 'memwal-cond-down-')
  const first = await open(dir)
  const v = (await first.put('old', 1)).lsn
  await first.flush()
  await first.close()
  const faults = new SinkFaults({ targets: ['backend'] })
  const e = await open(dir, { cacheBytes: 1, wrapSink: (s) => faults.wrap(s) })
  t.teardown(() => e.close())
  faults.down()
  const p = (await e.put('new', 1)).lsn
  t.equal((await e.put('new', 2, { ifVersion: p })).lsn, p + 1, 'a pending version decides without the backend')
  const r = await refusal(e.put('old', 2, { ifVersion: v }))
  t.ok(r?.code === 'ENGINE_BACKEND_UNAVAILABLE' || r === undefined, `a version only the backend knows: refused typed while it is down, never guessed (${r?.code ?? 'written'})`)
})

t.test('a refused conditional write leaves nothing in the log, across a crash and a reopen', async (t) => {
  const dir = tmpDir(t, 'memwal-cond-crash-')
  const e = await open(dir)
  const v = (await e.put('k', 1)).lsn
  await refusal(e.put('k', 'refused', { ifVersion: v + 10 }))
  await refusal(e.batch([{ type: 'put', key: 'x', value: 'refused' }, { type: 'del', key: 'k', ifVersion: v + 10 }]))
  const acked = (await e.put('k', 'accepted', { ifVersion: v })).lsn
  // No close: the process is gone (the lock is taken over by the next open in this process).
  const records: unknown[] = []
  for await (const d of dumpLog({ dir })) if (d.kind === 'record') records.push(d.record)
  t.equal(records.length, 2, 'the log holds the two accepted writes only')
  t.notOk(JSON.stringify(records).includes('refused'), 'no refused value is in the log')
  await e.close()
  const again = await open(dir)
  t.teardown(() => again.close())
  t.match(await again.getEntry('k'), { value: 'accepted', version: acked })
  t.equal(await again.get('x'), undefined)
})

t.test('a write held at the gate is stamped after the writes appended before it: hlc order is log order', async (t) => {
  const dir = tmpDir(t, 'memwal-cond-stamp-')
  const e = await open(dir)
  t.teardown(() => e.close())
  const held = e.health().wal.lastLsn + 1
  // j's put is in flight when the batch reaches the gate: the batch waits for it; k's plain put, called after the batch, does not wait.
  const first = e.put('j', 1)
  const batch = e.batch([{ type: 'put', key: 'j', value: 2, ifVersion: held }, { type: 'put', key: 'k', value: 'batch' }])
  const plain = e.put('k', 'plain')
  const [f, b, p] = await Promise.all([first, batch, plain])
  t.equal(f.lsn, held)
  t.ok(p.lsn < b.lsn, `the plain put (LSN ${p.lsn}) was appended before the batch that waited at the gate (LSN ${b.lsn})`)
  t.equal(await e.get('k'), 'batch', 'the batch, appended last, holds k')
  // Many writes, some waiting at the gate, all at once: every stamp is greater than the one of the record before it.
  let version = b.lsn
  const writes = Array.from({ length: 60 }, (_, i) =>
    i % 3 === 0 ? e.put('j', i, { ifVersion: version }).then((r) => (version = r.lsn), () => undefined) : e.put(i % 2 === 0 ? 'j' : 'k', i))
  await Promise.all(writes)
  const stamps: { lsn: number; hlc: number }[] = []
  for await (const d of dumpLog({ dir })) if (d.kind === 'record') stamps.push({ lsn: d.lsn, hlc: d.record.hlc ?? 0 })
  t.equal(stamps.length, e.health().wal.lastLsn, 'every record read back')
  const behind = stamps.filter((s, i) => i > 0 && s.hlc <= (stamps[i - 1] as { hlc: number }).hlc)
  t.strictSame(behind, [], 'no record is stamped at or below the record before it in the log')
})

t.test('an expired entry is absent to a condition at once, pending or applied, swept or not', async (t) => {
  const clock = new ManualClock()
  const e = await open(tmpDir(t, 'memwal-cond-'), { clock, sweepIntervalMs: 3_600_000 })
  t.teardown(() => e.close())
  for (const applied of [false, true]) {
    const ns = applied ? 'applied' : 'pending'
    const v = (await e.put('k', 1, { namespace: ns, ttlMs: 100 })).lsn
    await e.put('d', 1, { namespace: ns, ttlMs: 100 })
    if (applied) await e.flush()
    clock.advance(100)
    t.match(await refusal(e.put('k', 2, { namespace: ns, ifVersion: v })), { code: 'VERSION_MISMATCH', details: { expected: v, current: null } }, `${ns}: ifVersion of the expired version is refused, current null`)
    t.match(await refusal(e.delete('d', { namespace: ns, ifVersion: v + 1 })), { code: 'VERSION_MISMATCH', details: { current: null } }, `${ns}: a delete too`)
    const w = (await e.put('k', 3, { namespace: ns, ifAbsent: true })).lsn
    t.match(await e.getEntry('k', { namespace: ns }), { value: 3, version: w }, `${ns}: ifAbsent writes over the expired entry`)
    await e.batch([{ type: 'put', key: 'd', value: 4, namespace: ns, ifAbsent: true }])
    t.equal(await e.get('d', { namespace: ns }), 4, `${ns}: in a batch too`)
  }
})
