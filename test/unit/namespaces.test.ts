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
