/**
 * A data directory whose LevelDB store lost its files is refused, never
 * opened short of records (found by a review, 2026-12-02: both cases below
 * opened without a word, one with 0 of 60,000 entries, one with 36,000).
 * - store/CURRENT gone, its tables and logs there (a copy or a backup cut
 *   short, a file deleted by hand): LevelDB would make a new database that
 *   replays its newest log and forgets every table, checkpoints included
 *   (sinks/store-dir.ts): STORE_DAMAGED, nothing written.
 * - store/ gone or replaced while the log was purged past what it held: the
 *   sinks' checkpoints (0) are below the log's oldest record
 *   (log/recovery/log-scan.ts): WAL_MISSING_SEGMENT under the default
 *   policy; `skip-corrupt` opens with the loss declared as a gap.
 * A store rebuilt from a log that holds every record, and a LevelDB create
 * cut short before it held anything, open as before. `fsck` reports the
 * hole (it said clean before) and `--repair` declares it.
 */
import fs from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { MemWAL, fsck } from '../../engine/index.js'
import { tmpDir } from '../support/tmp-dir.js'
import { openError } from '../support/open-error.js'

const N = 3000
const value = (i: number): { i: number; text: string } => ({ i, text: `memory ${i} `.padEnd(200, '.') })


const segmentsOf = (dir: string): string[] => fs.readdirSync(path.join(dir, 'wal')).filter((n) => n.endsWith('.seg')).sort()
const baseOf = (segment: string): number => Number(segment.slice(0, -'.seg'.length))

/** A closed store of N entries; `purged`: its log no longer starts at LSN 1 (retention ran). */
async function makeStore(dir: string, purged: boolean): Promise<void> {
  // Small segments roll (and so can be purged) within a few hundred records.
  const db = await MemWAL.open({ dir, ...(purged ? { segmentBytes: 65_536 } : {}) })
  for (let i = 0; i < N; i += 100) await db.batch(Array.from({ length: 100 }, (_, j) => ({ type: 'put' as const, key: `k${i + j}`, value: value(i + j), namespace: 'agents/1' })))
  await db.flush()
  if (purged) {
    // Retention purges once the store's group sync has made the checkpoints durable (100 ms): wait for it.
    for (let waited = 0; baseOf(segmentsOf(dir)[0] ?? '1.seg') <= 1 && waited < 10_000; waited += 50) {
      await sleep(50)
      await db.put('tick', waited) // a purge is looked for as checkpoints move
      await db.flush()
    }
  }
  await db.close()
}

t.test('store/CURRENT gone with its tables there: STORE_DAMAGED, nothing written, and the store whole again once CURRENT is back', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  await makeStore(dir, false)
  const store = path.join(dir, 'store')
  const current = fs.readFileSync(path.join(store, 'CURRENT'))
  fs.unlinkSync(path.join(store, 'CURRENT'))
  const before = fs.readdirSync(store).sort()
  const err = await openError({ dir })
  t.equal(err?.code, 'STORE_DAMAGED')
  t.match(err?.message, /has data files .* but no CURRENT file/)
  t.strictSame(fs.readdirSync(store).sort(), before, 'nothing written in the store')
  fs.writeFileSync(path.join(store, 'CURRENT'), current)
  const db = await MemWAL.open({ dir })
  t.teardown(() => db.close())
  t.equal(await db.count({ namespace: 'agents/1' }), N, 'every entry there')
  t.strictSame(await db.get(`k${N - 1}`, { namespace: 'agents/1' }), value(N - 1))
})

t.test('store/ gone while the log was purged: WAL_MISSING_SEGMENT naming the LSNs; skip-corrupt opens with them declared lost', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  await makeStore(dir, true)
  const base = baseOf(segmentsOf(dir)[0] ?? '')
  t.ok(base > 1, `the log starts at LSN ${base}`)
  fs.rmSync(path.join(dir, 'store'), { recursive: true })
  const err = await openError({ dir })
  t.equal(err?.code, 'WAL_MISSING_SEGMENT')
  t.match(err?.details, { lsnFirst: 1, lsnLast: base - 1 }, 'naming the LSNs no sink has and no segment holds')
  const db = await MemWAL.open({ dir, corruptionPolicy: 'skip-corrupt' })
  t.teardown(() => db.close())
  const gaps = db.health().gaps
  t.match(gaps, [{ lsnFirst: 1, lsnLast: base - 1, alreadyApplied: false }], 'the loss is declared, and visible until acknowledged')
  await db.flush()
  const count = await db.count({ namespace: 'agents/1' })
  t.ok(count > 0 && count < N, `what the log still held is there (${count} of ${N})`)
})

t.test('store/ gone while the log holds every record: rebuilt from the log, every entry there', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  await makeStore(dir, false)
  t.equal(baseOf(segmentsOf(dir)[0] ?? ''), 1, 'the log starts at LSN 1')
  fs.rmSync(path.join(dir, 'store'), { recursive: true })
  const db = await MemWAL.open({ dir })
  t.teardown(() => db.close())
  await db.flush()
  t.equal(await db.count({ namespace: 'agents/1' }), N)
})

t.test('a LevelDB create cut short (MANIFEST written, no CURRENT, no data): opens', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const db = await MemWAL.open({ dir })
  await db.put('a', 1)
  await db.close()
  const store = path.join(dir, 'store')
  // What LevelDB leaves when it stops between writing its first MANIFEST and renaming CURRENT into place.
  for (const name of fs.readdirSync(store)) if (name !== 'LOCK' && name !== 'LOG') fs.rmSync(path.join(store, name), { recursive: true })
  fs.writeFileSync(path.join(store, 'MANIFEST-000001'), Buffer.alloc(0))
  const again = await MemWAL.open({ dir })
  t.teardown(() => again.close())
  t.equal(await again.get('a'), 1, 'rebuilt from the log')
})

t.test('fsck finds the same hole: a missing-lsns finding (not clean), --repair declares it, then open passes with the gap visible', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  await makeStore(dir, true)
  const base = baseOf(segmentsOf(dir)[0] ?? '')
  fs.rmSync(path.join(dir, 'store'), { recursive: true })
  const dry = await fsck({ dir, repair: false })
  t.notOk(dry.clean, 'not clean (it said clean before: the log alone agreed with itself)')
  t.match(dry.findings, [{ kind: 'missing-lsns', lsnFirst: 1, lsnLast: base - 1, alreadyApplied: false, action: 'none' }])
  const repaired = await fsck({ dir, repair: true })
  t.match(repaired.findings.find((f) => f.kind === 'missing-lsns'), { lsnFirst: 1, lsnLast: base - 1, repaired: true })
  const again = await fsck({ dir, repair: false })
  t.strictSame(again.findings.map((f) => f.kind), ['declared-gap'], 'afterwards only the declared gap, as a notice')
  const db = await MemWAL.open({ dir })
  t.teardown(() => db.close())
  t.match(db.health().gaps, [{ lsnFirst: 1, lsnLast: base - 1, by: 'fsck --repair' }])
})
