/**
 * MemWAL.listNamespaces and `memwal namespaces`:
 * - the namespaces holding entries with how many, in namespace order; a
 *   prefix lists it and those under it (`a/...`), not a sibling sharing its
 *   first letters (`ab`);
 * - while the index is down the counts come from the pending writes, and
 *   agree with what the index says once it applied them (the same numbers
 *   before and after a flush, and after a reopen); a namespace whose entries
 *   were all deleted is not listed;
 * - options not understood are refused.
 */
import t from 'tap'
import { MemWAL } from '../../engine/index.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'

const WRITES: [string, number][] = [['a', 3], ['a/b', 2], ['a/b/c', 1], ['ab', 4], ['b', 1], ['gone', 2]]

t.test('counts per namespace, pending and applied alike; prefixes follow the hierarchy', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['index'] })
  let db = await MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s) })
  faults.down() // the index applies nothing: every count below comes from the pending writes
  for (const [namespace, n] of WRITES) for (let i = 0; i < n; i++) await db.put(`k${i}`, i, { namespace })
  await db.batch([{ type: 'del', key: 'k0', namespace: 'gone' }, { type: 'del', key: 'k1', namespace: 'gone' }, { type: 'del', key: 'k0', namespace: 'ab' }])
  await db.put('k0', 'again', { namespace: 'a' }) // a second version of an entry counts once
  const expected = [
    { namespace: 'a', entries: 3 },
    { namespace: 'a/b', entries: 2 },
    { namespace: 'a/b/c', entries: 1 },
    { namespace: 'ab', entries: 3 },
    { namespace: 'b', entries: 1 },
  ]
  t.strictSame(await db.listNamespaces(), expected, 'pending: every namespace with entries, in order; gone (all deleted) is not listed')
  t.strictSame(await db.listNamespaces({ prefix: 'a' }), expected.slice(0, 3), 'prefix a: a, a/b, a/b/c, not ab')
  t.strictSame(await db.listNamespaces({ prefix: 'a/b' }), expected.slice(1, 3))
  t.strictSame(await db.listNamespaces({ limit: 2 }), expected.slice(0, 2), 'limit')
  faults.up()
  await db.flush({ timeoutMs: 10_000 })
  t.strictSame(await db.listNamespaces(), expected, 'applied: the index says the same')
  await db.delete('k0', { namespace: 'b' })
  t.strictSame((await db.listNamespaces()).map((n) => n.namespace), ['a', 'a/b', 'a/b/c', 'ab'], 'a pending delete of the last entry removes the namespace at once')
  await db.close()
  db = await MemWAL.open({ dir })
  t.teardown(() => db.close())
  t.strictSame(await db.listNamespaces(), expected.slice(0, 4), 'after a reopen')
  for (const [what, o] of [['an unknown field', { namespace: 'a' }], ['limit 0', { limit: 0 }], ['a fractional limit', { limit: 1.5 }], ['a prefix that is not a string', { prefix: 1 }]] as const) {
    await t.rejects(db.listNamespaces(o as never), { code: 'INVALID_OPTIONS' }, `${what} is refused`)
  }
  await t.rejects(db.listNamespaces({ prefix: 'a//b' }), { code: 'ENGINE_INVALID_VALUE' }, 'a prefix that is no namespace is refused')
})

t.test('clear: every entry of one namespace (or a key prefix in it) deleted through the log, in one record when it fits', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['index'] })
  let db = await MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s) })
  for (let i = 0; i < 30; i++) await db.put(`k${i}`, i, { namespace: 'a' })
  await db.flush({ timeoutMs: 10_000 }) // 30 applied...
  faults.down()
  for (let i = 30; i < 40; i++) await db.put(`k${i}`, i, { namespace: 'a' }) // ...and 10 only pending
  for (const ns of ['a/b', 'ab']) await db.put('k0', ns, { namespace: ns })
  await db.put('note/1', 1, { namespace: 'p' })
  await db.put('note/2', 2, { namespace: 'p' })
  await db.put('todo/1', 3, { namespace: 'p' })
  const before = db.health().wal.lastLsn
  const r = await db.clear({ namespace: 'a' })
  t.match(r, { deleted: 40, records: 1, lsn: before + 1 }, 'the 40 entries, applied and pending, in one record')
  t.equal(await db.get('k5', { namespace: 'a' }), undefined)
  t.equal(await db.get('k35', { namespace: 'a' }), undefined)
  t.strictSame((await db.listNamespaces()).map((n) => n.namespace), ['a/b', 'ab', 'p'], 'a is gone; a/b and ab are not touched')
  t.match(await db.clear({ namespace: 'p', prefix: 'note/' }), { deleted: 2, records: 1 }, 'a key prefix')
  t.strictSame(await db.get('todo/1', { namespace: 'p' }), 3, 'keys without the prefix stay')
  t.match(await db.clear({ namespace: 'nothing-here' }), { deleted: 0, records: 0 }, 'an empty namespace writes nothing')
  t.equal(db.health().wal.lastLsn, before + 2, 'no record for it')
  await t.rejects(db.clear({} as never), { code: 'INVALID_OPTIONS' }, 'the namespace is required')
  await t.rejects(db.clear({ namespace: 'a', keys: [] } as never), { code: 'INVALID_OPTIONS' }, 'an unknown field is refused')
  faults.up()
  await db.flush({ timeoutMs: 10_000 })
  await db.close()
  db = await MemWAL.open({ dir })
  t.teardown(() => db.close())
  t.strictSame(await db.listNamespaces(), [{ namespace: 'a/b', entries: 1 }, { namespace: 'ab', entries: 1 }, { namespace: 'p', entries: 1 }], 'after a reopen, as the sinks applied it')
})

t.test('clear of a namespace larger than one record: several records, every entry deleted', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t), recordBytesMax: 16 * 1024, segmentBytes: 64 * 1024 })
  t.teardown(() => db.close())
  for (let i = 0; i < 2000; i += 100) await db.batch(Array.from({ length: 100 }, (_, j) => ({ type: 'put' as const, key: `key-${String(i + j).padStart(6, '0')}`, value: i + j, namespace: 'big' })))
  const r = await db.clear({ namespace: 'big' })
  t.equal(r.deleted, 2000)
  t.ok(r.records > 1, `${r.records} records, each within recordBytesMax`)
  t.strictSame(await db.listNamespaces(), [], 'nothing left')
})
