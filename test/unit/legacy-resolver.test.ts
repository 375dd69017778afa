/**
 * LegacyDeleteResolver (engine/format/record-codec.ts), which fsck and the
 * PostgreSQL log check run over every op of the log: a version-1 delete
 * deletes the key in every namespace seen so far, a version-1 put moves the
 * key; and what it remembers per key stays small, since it remembers every
 * distinct key of the log.
 */
import v8 from 'node:v8'
import vm from 'node:vm'
import t from 'tap'
import { LegacyDeleteResolver, type Op } from '../../engine/format/record-codec.js'

const put = (key: string, namespace?: string): Op => ({ type: 'put', key, value: 1, ...(namespace !== undefined ? { namespace } : {}) })

t.test('a v1 delete deletes the key in every namespace seen; a v1 put moves it', async (t) => {
  const r = new LegacyDeleteResolver()
  t.same(r.resolve(put('k', 'a')), [put('k', 'a')])
  t.same(r.resolve(put('k', 'a')), [put('k', 'a')], 'the same namespace again')
  t.same(r.resolve(put('k', 'b')), [put('k', 'b')])
  t.same(r.resolve({ type: 'del', key: 'k', legacy: true }), [{ type: 'del', key: 'k', namespace: 'a' }, { type: 'del', key: 'k', namespace: 'b' }])
  t.same(r.resolve({ type: 'del', key: 'k', legacy: true }), [], 'nothing left to delete')
  r.resolve(put('m', 'a'))
  r.resolve(put('m'))
  const moved = { type: 'put', key: 'm', value: 2, legacy: true } as const
  t.same(r.resolve(moved), [{ type: 'del', key: 'm', namespace: 'a' }, moved], 'a v1 put (default namespace) deletes the key elsewhere')
  t.same(r.resolve({ type: 'del', key: 'm', legacy: true }), [{ type: 'del', key: 'm', namespace: 'default' }])
  r.seed('s', ['x', 'y'])
  r.seed('o', ['x'])
  r.resolve(put('o', 'z'))
  t.same(r.resolve({ type: 'del', key: 's', legacy: true }).map((o) => o.namespace), ['x', 'y'], 'seeded namespaces')
  t.same(r.resolve({ type: 'del', key: 'o', legacy: true }).map((o) => o.namespace), ['x', 'z'])
})

t.test('a key seen in one namespace costs the resolver a map entry, not a set', async (t) => {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  const n = 200_000
  const ops = Array.from({ length: n }, (_, i) => put(`key-${i}`, 'ns'))
  let r: LegacyDeleteResolver | undefined = new LegacyDeleteResolver()
  for (const op of ops) r.resolve(op)
  t.same(r.resolve({ type: 'del', key: 'key-7', legacy: true }), [{ type: 'del', key: 'key-7', namespace: 'ns' }])
  gc()
  const held = process.memoryUsage().heapUsed
  r = undefined
  gc()
  // What the resolver held: the heap it gives back (the ops and their strings stay alive in `ops`).
  const perKey = (held - process.memoryUsage().heapUsed) / n
  t.equal(ops.length, n)
  // A Set per key made it about 200 bytes.
  t.ok(perKey < 80, `${perKey.toFixed(0)} bytes per distinct key`)
})
