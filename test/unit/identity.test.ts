/**
 * Identity is (namespace, key) (issue 11 item 1): the same key in two
 * namespaces is two entries, through put, get, getEntry, delete and batch,
 * pending and applied, after a reopen, after a replay into a backend that was
 * down, and fsck finds the store clean. The default namespace is `default`.
 * Hostile namespace strings and option fields not understood are refused
 * with a typed error naming the field, and nothing is written.
 */
import t, { type Test } from 'tap'
import { fsck, MemWAL, type MemwalOptions } from '../../engine/index.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'

async function open(dir: string, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, resilience: fastResilience, ...extra })
}

async function codeOf(fn: () => Promise<unknown>): Promise<{ code?: string; field?: unknown }> {
  try {
    await fn()
    return {}
  } catch (err) {
    const e = err as { code?: string; details?: Record<string, unknown> }
    return { ...(e.code !== undefined ? { code: e.code } : {}), field: e.details?.['field'] }
  }
}

async function keysOf(e: MemWAL, q: Parameters<MemWAL['query']>[0]): Promise<string[]> {
  const out: string[] = []
  for await (const r of e.query(q)) out.push(`${r.namespace}|${r.key}`)
  return out
}

/** The same key in `a`, `b` and the default namespace, then `a`'s deleted, by single ops and by a batch. */
async function writeTwoNamespaces(e: MemWAL): Promise<void> {
  await e.put('k', 'in a', { namespace: 'a' })
  await e.put('k', 'in b', { namespace: 'b', tags: ['t'] })
  await e.put('k', 'in default')
  await e.delete('k', { namespace: 'a' })
  await e.batch([
    { type: 'put', key: 'j', value: 'j in a', namespace: 'a' },
    { type: 'put', key: 'j', value: 'j in b', namespace: 'b' },
    { type: 'del', key: 'j', namespace: 'b' },
    { type: 'put', key: 'j', value: 'j in default' },
  ])
}

async function expectTwoNamespaces(t: Test, e: MemWAL, when: string): Promise<void> {
  t.equal(await e.get('k', { namespace: 'a' }), undefined, `${when}: deleting k in a leaves the others`)
  t.equal(await e.get('k', { namespace: 'b' }), 'in b', `${when}: k in b`)
  t.equal(await e.get('k'), 'in default', `${when}: k in default`)
  t.equal(await e.get('k', { namespace: 'default' }), 'in default', `${when}: no namespace is the namespace default`)
  t.equal(await e.get('j', { namespace: 'a' }), 'j in a', `${when}: batch put in a`)
  t.equal(await e.get('j', { namespace: 'b' }), undefined, `${when}: batch delete in b only`)
  t.equal(await e.get('j'), 'j in default', `${when}: batch put in default`)
  t.match(await e.getEntry('k', { namespace: 'b' }), { namespace: 'b', key: 'k', value: 'in b', tags: ['t'], version: 2 }, `${when}: getEntry names the namespace and the version`)
  t.strictSame(await keysOf(e, {}), ['a|j', 'b|k', 'default|j', 'default|k'], `${when}: query lists each identity once, by namespace then key`)
  t.strictSame(await keysOf(e, { namespace: 'b' }), ['b|k'], `${when}: query by namespace`)
}

t.test('the same key in two namespaces is two entries: pending, applied, after reopen', async (t) => {
  const dir = tmpDir(t, 'memwal-identity-')
  const e = await open(dir)
  await writeTwoNamespaces(e)
  await expectTwoNamespaces(t, e, 'pending or applied')
  await e.flush()
  await expectTwoNamespaces(t, e, 'after flush')
  t.equal((await e.verify()).clean, true, 'verify is clean')
  await e.close()
  const again = await open(dir)
  await expectTwoNamespaces(t, again, 'after reopen')
  await again.close()
  const report = await fsck({ dir, repair: false })
  t.equal(report.clean, true, `fsck is clean: ${JSON.stringify(report.findings).slice(0, 300)}`)
})

t.test('the same key in two namespaces, written while the backend is down, replays into it by identity', async (t) => {
  const dir = tmpDir(t, 'memwal-identity-down-')
  const faults = new SinkFaults({ targets: ['backend', 'index'] })
  faults.down()
  const e = await open(dir, { wrapSink: (s) => faults.wrap(s) })
  await writeTwoNamespaces(e)
  await expectTwoNamespaces(t, e, 'pending with the backend down')
  await e.close()
  const again = await open(dir)
  await again.flush()
  await expectTwoNamespaces(t, again, 'replayed from the log')
  await again.close()
  t.equal((await fsck({ dir, repair: false })).clean, true, 'fsck is clean')
})

t.test('hostile namespaces: refused typed, or kept apart; nothing written by a refusal', async (t) => {
  const dir = tmpDir(t, 'memwal-identity-bad-')
  const e = await open(dir, { labelBytesMax: 64 })
  t.teardown(() => e.close())
  await e.put('k', 'proto', { namespace: '__proto__' })
  await e.put('k', 'constructor', { namespace: 'constructor' })
  t.equal(await e.get('k', { namespace: '__proto__' }), 'proto', '__proto__ is a namespace like any other')
  t.equal(await e.get('k'), undefined, 'and does not leak into default')
  t.equal(({} as Record<string, unknown>)['k'], undefined, 'Object.prototype untouched')
  const last = e.health().wal.lastLsn
  const refused: [string, unknown][] = [
    ['NUL', 'a\u0000b'], ['empty', ''], ['a//b', 'a//b'], ['../', '../'], ['leading /', '/a'], ['trailing /', 'a/'], ['only /', '/'],
    ['over labelBytesMax', 'n'.repeat(65)], ['a lone surrogate', 'a\ud800'],
  ]
  for (const [what, ns] of refused) {
    for (const [op, run] of [
      ['put', () => e.put('k', 1, { namespace: ns as string })],
      ['get', () => e.get('k', { namespace: ns as string })],
      ['delete', () => e.delete('k', { namespace: ns as string })],
      ['batch', () => e.batch([{ type: 'put', key: 'ok', value: 1 }, { type: 'del', key: 'k', namespace: ns as string }])],
    ] as const) {
      t.match(await codeOf(run), { code: 'ENGINE_INVALID_VALUE' }, `${op}: namespace ${what}`)
    }
  }
  t.match(await codeOf(() => e.put('k', 1, { namespace: 7 as never })), { code: 'INVALID_OPTIONS', field: 'namespace' }, 'a namespace that is not a string')
  t.equal(e.health().wal.lastLsn, last, 'no refused operation was logged')
  t.equal(await e.get('ok'), undefined, 'no op of a refused batch is visible')
  t.equal(await e.get('k', { namespace: 'a/b/c' }), undefined, 'a /-separated path is a valid namespace')
})

t.test('option fields not understood: INVALID_OPTIONS naming the field, nothing written', async (t) => {
  const dir = tmpDir(t, 'memwal-identity-opts-')
  const e = await open(dir)
  t.teardown(() => e.close())
  const last = e.health().wal.lastLsn
  const cases: [string, () => Promise<unknown>, string][] = [
    ['put: ttl', () => e.put('k', 1, { ttl: 5 } as never), 'ttl'],
    ['put: a misspelt namespace', () => e.put('k', 1, { namspace: 'a' } as never), 'namspace'],
    ['put: tags of the wrong type', () => e.put('k', 1, { tags: 'x' } as never), 'tags'],
    ['put: expiresAt not an integer', () => e.put('k', 1, { expiresAt: 1.5 }), 'expiresAt'],
    ['get: unknown field', () => e.get('k', { tag: 'x' } as never), 'tag'],
    ['getEntry: unknown field', () => e.getEntry('k', { version: 1 } as never), 'version'],
    ['delete: unknown field', () => e.delete('k', { force: true } as never), 'force'],
    ['delete: options not an object', () => e.delete('k', 'a' as never), 'delete options'],
    ['batch put: unknown field', () => e.batch([{ type: 'put', key: 'a', value: 1 }, { type: 'put', key: 'k', value: 1, ttl: 3 } as never]), 'ops[1].ttl'],
    ['batch del: a value', () => e.batch([{ type: 'del', key: 'k', value: 1 } as never]), 'ops[0].value'],
    ['query: unknown field', () => collect(e.query({ text: 'x' } as never)), 'text'],
    ['query: tags (plural)', () => collect(e.query({ tags: ['x'] } as never)), 'tags'],
    ['query: limit as a string', () => collect(e.query({ limit: '10' } as never)), 'limit'],
  ]
  for (const [what, run, field] of cases) t.match(await codeOf(run), { code: 'INVALID_OPTIONS', field }, what)
  t.equal(e.health().wal.lastLsn, last, 'nothing was logged')
  t.equal(await e.get('k'), undefined, 'nothing is visible')
})

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}
