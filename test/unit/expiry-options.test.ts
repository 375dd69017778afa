/**
 * Expiry options (engine/expiry-options.ts): ttlMs and expiresAt resolve to
 * one absolute expiresAt by the engine's clock; everything else is refused
 * with INVALID_OPTIONS naming the field. The sweep's options have defaults
 * and ranges. put and batch puts check expiresAt by these rules, on the
 * engine's clock, before anything is written.
 */
import t from 'tap'
import { resolveExpiry, resolveSweep } from '../../engine/expiry-options.js'
import { limits } from '../../engine/limits.js'
import { MemWAL } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'

const NOW = 1_700_000_000_000

t.test('ttlMs and expiresAt resolve to an absolute expiry', async (t) => {
  t.equal(resolveExpiry({}, NOW), undefined)
  t.equal(resolveExpiry({ ttlMs: 1 }, NOW), NOW + 1)
  t.equal(resolveExpiry({ ttlMs: 60_000 }, NOW), NOW + 60_000)
  t.equal(resolveExpiry({ ttlMs: limits.expiryHorizonMsMax }, NOW), NOW + limits.expiryHorizonMsMax)
  t.equal(resolveExpiry({ expiresAt: NOW + 1 }, NOW), NOW + 1)
  t.equal(resolveExpiry({ expiresAt: NOW + limits.expiryHorizonMsMax }, NOW), NOW + limits.expiryHorizonMsMax)
})

t.test('bad expiry is INVALID_OPTIONS naming the field', async (t) => {
  const cases: [Record<string, unknown>, string][] = [
    [{ ttlMs: 1000, expiresAt: NOW + 1000 }, 'ttlMs'],
    [{ ttlMs: 0 }, 'ttlMs'],
    [{ ttlMs: -5 }, 'ttlMs'],
    [{ ttlMs: 1.5 }, 'ttlMs'],
    [{ ttlMs: Number.NaN }, 'ttlMs'],
    [{ ttlMs: Number.POSITIVE_INFINITY }, 'ttlMs'],
    [{ ttlMs: '1000' }, 'ttlMs'],
    [{ ttlMs: 10n }, 'ttlMs'],
    [{ ttlMs: limits.expiryHorizonMsMax + 1 }, 'ttlMs'],
    [{ expiresAt: NOW }, 'expiresAt'],
    [{ expiresAt: NOW - 1 }, 'expiresAt'],
    [{ expiresAt: -1 }, 'expiresAt'],
    [{ expiresAt: NOW + 0.5 }, 'expiresAt'],
    [{ expiresAt: NOW + limits.expiryHorizonMsMax + 1 }, 'expiresAt'],
    [{ expiresAt: Number.MAX_SAFE_INTEGER }, 'expiresAt'],
    [{ expiresAt: new Date(NOW + 1000) }, 'expiresAt'],
    [{ expiresAt: null }, 'expiresAt'],
  ]
  for (const [o, field] of cases) {
    t.throws(() => resolveExpiry(o, NOW), { code: 'INVALID_OPTIONS', details: { field } }, JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)))
    t.throws(() => resolveExpiry(o, NOW, 'ops[3].'), { code: 'INVALID_OPTIONS', details: { field: `ops[3].${field}` } })
  }
})

t.test('the largest Date bounds an expiry however far the clock is', async (t) => {
  const late = limits.expiresAtMax - 10
  t.equal(resolveExpiry({ ttlMs: 10 }, late), limits.expiresAtMax)
  t.throws(() => resolveExpiry({ ttlMs: 11 }, late), { code: 'INVALID_OPTIONS', details: { field: 'ttlMs' } })
  t.throws(() => resolveExpiry({ expiresAt: limits.expiresAtMax + 1 }, late), { code: 'INVALID_OPTIONS', details: { field: 'expiresAt' } })
})

t.test('sweep options: defaults, and refusals naming the option', async (t) => {
  t.same(resolveSweep({}, 10_000), { intervalMs: limits.sweepIntervalMsDefault, entriesPerRound: limits.sweepEntriesPerRoundDefault, batchOps: limits.sweepBatchOpsDefault })
  t.equal(resolveSweep({}, 100).batchOps, 100, 'the default batch never exceeds the engine\'s batchOpsMax')
  t.same(resolveSweep({ sweepIntervalMs: 50, sweepEntriesPerRound: 7, sweepBatchOps: 3 }, 10_000), { intervalMs: 50, entriesPerRound: 7, batchOps: 3 })
  const bad: [Record<string, unknown>, string][] = [
    [{ sweepIntervalMs: 0 }, 'sweepIntervalMs'],
    [{ sweepIntervalMs: limits.sweepIntervalMsMax + 1 }, 'sweepIntervalMs'],
    [{ sweepIntervalMs: '5' }, 'sweepIntervalMs'],
    [{ sweepEntriesPerRound: 0 }, 'sweepEntriesPerRound'],
    [{ sweepEntriesPerRound: limits.sweepEntriesPerRoundMax + 1 }, 'sweepEntriesPerRound'],
    [{ sweepBatchOps: 1.5 }, 'sweepBatchOps'],
    [{ sweepBatchOps: 101 }, 'sweepBatchOps'],
  ]
  for (const [o, field] of bad) t.throws(() => resolveSweep(o, 100), { code: 'INVALID_OPTIONS', details: { field } }, JSON.stringify(o))
})

t.test('put and batch refuse an expiresAt the expiry rules refuse (INVALID_OPTIONS naming the field), writing nothing; a valid one is stored', async (t) => {
  const clock = new ManualClock(NOW)
  const db = await MemWAL.open({ dir: tmpDir(t, 'memwal-expires-'), clock })
  t.teardown(() => db.close())
  const last = db.health().wal.lastLsn
  const refused: [string, () => Promise<unknown>, string][] = [
    ['in the past', () => db.put('k', 1, { expiresAt: NOW - 1 }), 'expiresAt'],
    ['at the clock', () => db.put('k', 1, { expiresAt: NOW }), 'expiresAt'],
    ['seconds, not ms', () => db.put('k', 1, { expiresAt: Math.floor(NOW / 1000) + 60 }), 'expiresAt'],
    ['past the horizon', () => db.put('k', 1, { expiresAt: NOW + limits.expiryHorizonMsMax + 1 }), 'expiresAt'],
    ['negative', () => db.put('k', 1, { expiresAt: -5 }), 'expiresAt'],
    ['NaN', () => db.put('k', 1, { expiresAt: Number.NaN }), 'expiresAt'],
    ['Infinity', () => db.put('k', 1, { expiresAt: Number.POSITIVE_INFINITY }), 'expiresAt'],
    ['in a batch', () => db.batch([{ type: 'put', key: 'a', value: 1 }, { type: 'put', key: 'b', value: 1, expiresAt: 0 }]), 'ops[1].expiresAt'],
  ]
  for (const [what, call, field] of refused) await t.rejects(call(), { code: 'INVALID_OPTIONS', details: { field } }, what)
  t.equal(db.health().wal.lastLsn, last, 'nothing written')
  await db.put('k', 1, { expiresAt: NOW + 60_000 })
  await db.batch([{ type: 'put', key: 'b', value: 1, expiresAt: NOW + limits.expiryHorizonMsMax }])
  t.match(await db.getEntry('k'), { expiresAt: NOW + 60_000 }, 'a valid expiresAt is stored and returned')
  t.match(await db.getEntry('b'), { expiresAt: NOW + limits.expiryHorizonMsMax })
  clock.advance(120_000)
  await t.rejects(db.put('k', 1, { expiresAt: NOW + 60_000 }), { code: 'INVALID_OPTIONS' }, 'judged by the engine\'s clock, now later')
})
