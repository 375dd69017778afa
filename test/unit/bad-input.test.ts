/**
 * Bad input through the public API: every refusal is a typed error (matched
 * on `code`), and a refused call writes nothing: the log's last LSN, the
 * backlog and the sinks' checkpoints are what they were, the next valid write
 * takes the next LSN, and after a reopen the log holds exactly the accepted
 * writes. Keys, values, put options, batches, queries and open options are
 * covered; so are payloads with `__proto__`, `constructor` and `prototype`
 * keys (plain data, read back as written), none of which may pollute a
 * prototype; and a data directory that
 * cannot be one (a file in the way).
 *
 * Permission refusals (a directory owned by another user, mode 000) cannot be
 * shown here: the tests run as root, which no mode bit stops.
 */
import fs from 'node:fs'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import { MemWAL, isMemwalError, type MemwalOptions } from '../../engine/index.js'
import { tmpDir } from '../support/tmp-dir.js'

/** Small limits, so that "too large" is cheap to build. */
const limits = { keyBytesMax: 64, labelBytesMax: 16, tagsMax: 4, batchOpsMax: 8, recordBytesMax: 16 * 1024 } as const

interface Snapshot {
  readonly lastLsn: number
  readonly backlog: number
  readonly checkpoints: string
  readonly state: string
}

function snapshot(e: MemWAL): Snapshot {
  const h = e.health()
  return { lastLsn: h.wal.lastLsn, backlog: h.backlog.records, checkpoints: JSON.stringify(Object.values(h.sinks).map((s) => s.checkpoint)), state: h.state }
}

/** What a call threw: its code if typed, else a description that fails every expectation. */
async function refusal(call: () => unknown): Promise<string> {
  try {
    const r = call()
    if (r && typeof (r as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') for await (const _ of r as AsyncIterable<unknown>) void _
    else await r
    return 'accepted'
  } catch (err) {
    return isMemwalError(err) ? err.code : `untyped ${(err as Error)?.name}: ${(err as Error)?.message}`
  }
}

function circular(): unknown {
  const o: Record<string, unknown> = { a: 1 }
  o['self'] = o
  return o
}

function deep(n: number): unknown {
  let v: unknown = 'leaf'
  for (let i = 0; i < n; i++) v = [v]
  return v
}

t.test('refused input is a typed error and writes nothing', async (t) => {
  const dir = tmpDir(t)
  const engine = await MemWAL.open({ dir, ...limits })
  t.teardown(() => engine.close())
  await engine.put('seed', { ok: true })
  await engine.flush()

  const loneSurrogate = 'a\ud800b'
  const cases: [string, () => unknown, string][] = [
    // keys, for every call that takes one
    ...(['put', 'delete', 'get', 'getEntry'] as const).flatMap((m): [string, () => unknown, string][] => {
      const call = (k: unknown) => () => (m === 'put' ? engine.put(k as string, 1) : engine[m](k as string))
      return [
        [`${m}: empty key`, call(''), 'ENGINE_INVALID_KEY'],
        [`${m}: number key`, call(42), 'ENGINE_INVALID_KEY'],
        [`${m}: null key`, call(null), 'ENGINE_INVALID_KEY'],
        [`${m}: undefined key`, call(undefined), 'ENGINE_INVALID_KEY'],
        [`${m}: object key`, call({ toString: () => 'k' }), 'ENGINE_INVALID_KEY'],
        [`${m}: symbol key`, call(Symbol('k')), 'ENGINE_INVALID_KEY'],
        [`${m}: key over keyBytesMax`, call('k'.repeat(limits.keyBytesMax + 1)), 'ENGINE_INVALID_KEY'],
        [`${m}: key over keyBytesMax in UTF-8 only`, call('é'.repeat(limits.keyBytesMax / 2 + 1)), 'ENGINE_INVALID_KEY'],
        [`${m}: lone surrogate`, call(loneSurrogate), 'ENGINE_INVALID_KEY'],
      ]
    }),
    // values
    ['undefined value', () => engine.put('v', undefined), 'ENGINE_INVALID_VALUE'],
    ['function value', () => engine.put('v', () => 1), 'ENGINE_INVALID_VALUE'],
    ['symbol value', () => engine.put('v', Symbol('s')), 'ENGINE_INVALID_VALUE'],
    ['circular value', () => engine.put('v', circular()), 'ENGINE_INVALID_VALUE'],
    ['a class instance (a WeakMap)', () => engine.put('v', { m: new WeakMap() }), 'ENGINE_INVALID_VALUE'],
    ['a getter that throws', () => engine.put('v', { get boom(): never { throw new Error('getter') } }), 'ENGINE_INVALID_VALUE'],
    ['nested 100,000 deep', () => engine.put('v', deep(100_000)), 'ENGINE_INVALID_VALUE'],
    ['value over recordBytesMax', () => engine.put('v', 'x'.repeat(limits.recordBytesMax + 1)), 'WAL_RECORD_TOO_LARGE'],
    ['circular value in a batch', () => engine.batch([{ type: 'put', key: 'a', value: 1 }, { type: 'put', key: 'b', value: circular() }]), 'ENGINE_INVALID_VALUE'],
    // put options
    ['options not an object', () => engine.put('v', 1, 42 as never), 'INVALID_OPTIONS'],
    ['empty namespace', () => engine.put('v', 1, { namespace: '' }), 'ENGINE_INVALID_VALUE'],
    ['number namespace', () => engine.put('v', 1, { namespace: 7 as never }), 'INVALID_OPTIONS'],
    ['namespace with NUL', () => engine.put('v', 1, { namespace: 'a\u0000b' }), 'ENGINE_INVALID_VALUE'],
    ['namespace over labelBytesMax', () => engine.put('v', 1, { namespace: 'n'.repeat(limits.labelBytesMax + 1) }), 'ENGINE_INVALID_VALUE'],
    ['namespace with a lone surrogate', () => engine.put('v', 1, { namespace: loneSurrogate }), 'ENGINE_INVALID_VALUE'],
    ['tags not an array', () => engine.put('v', 1, { tags: 't' as never }), 'INVALID_OPTIONS'],
    ['a number tag', () => engine.put('v', 1, { tags: [1] as never }), 'INVALID_OPTIONS'],
    ['an empty tag', () => engine.put('v', 1, { tags: [''] }), 'ENGINE_INVALID_VALUE'],
    ['a tag over labelBytesMax', () => engine.put('v', 1, { tags: ['t'.repeat(limits.labelBytesMax + 1)] }), 'ENGINE_INVALID_VALUE'],
    ['more tags than tagsMax', () => engine.put('v', 1, { tags: ['a', 'b', 'c', 'd', 'e'] }), 'ENGINE_INVALID_VALUE'],
    // batches
    ['batch of a string', () => engine.batch('ops' as never), 'ENGINE_INVALID_VALUE'],
    ['batch of null', () => engine.batch(null as never), 'ENGINE_INVALID_VALUE'],
    ['empty batch', () => engine.batch([]), 'ENGINE_INVALID_VALUE'],
    ['batch over batchOpsMax', () => engine.batch(Array.from({ length: limits.batchOpsMax + 1 }, (_, i) => ({ type: 'put' as const, key: `b${i}`, value: i }))), 'ENGINE_INVALID_VALUE'],
    ['batch with a null op', () => engine.batch([{ type: 'put', key: 'a', value: 1 }, null as never]), 'ENGINE_INVALID_VALUE'],
    ['batch with an unknown op type', () => engine.batch([{ type: 'upsert', key: 'a', value: 1 } as never]), 'ENGINE_INVALID_VALUE'],
    ['batch whose last op has a bad key', () => engine.batch([{ type: 'put', key: 'a', value: 1 }, { type: 'del', key: '' }]), 'ENGINE_INVALID_KEY'],
    ['batch with a bad tag', () => engine.batch([{ type: 'put', key: 'a', value: 1, tags: [''] }]), 'ENGINE_INVALID_VALUE'],
    // queries
    ['query options not an object', () => engine.query(42 as never), 'INVALID_OPTIONS'],
    ['query limit 0', () => engine.query({ limit: 0 }), 'INVALID_OPTIONS'],
    ['query limit -1', () => engine.query({ limit: -1 }), 'INVALID_OPTIONS'],
    ['query limit 1.5', () => engine.query({ limit: 1.5 }), 'INVALID_OPTIONS'],
    ['query limit over the maximum', () => engine.query({ limit: 100_001 }), 'INVALID_OPTIONS'],
    ['query limit a string', () => engine.query({ limit: '5' as never }), 'INVALID_OPTIONS'],
    ['query namespace a number', () => engine.query({ namespace: 1 as never }), 'INVALID_OPTIONS'],
    ['query empty tag', () => engine.query({ tag: '' }), 'ENGINE_INVALID_VALUE'],
    ['query prefix a number', () => engine.query({ prefix: 1 as never }), 'INVALID_OPTIONS'],
    ['an unknown put option (ttl)', () => engine.put('v', 1, { ttl: 5 } as never), 'INVALID_OPTIONS'],
    ['an unknown query field (text)', () => engine.query({ text: 'x' } as never), 'INVALID_OPTIONS'],
    // the query language (issue 11 item 3): wrong types, hostile strings, huge values, forged cursors
    ['query field __proto__ (own, from JSON)', () => engine.query(JSON.parse('{"__proto__": {"limit": 1}}') as never), 'INVALID_OPTIONS'],
    ['query tags.__proto__ (own, from JSON)', () => engine.query({ tags: JSON.parse('{"__proto__": ["a"]}') as never }), 'INVALID_OPTIONS'],
    ['query namespace and namespacePrefix', () => engine.query({ namespace: 'a', namespacePrefix: 'a' }), 'INVALID_OPTIONS'],
    ['query namespacePrefix with NUL', () => engine.query({ namespacePrefix: 'a\u0000b' }), 'ENGINE_INVALID_VALUE'],
    ['query namespacePrefix a number', () => engine.query({ namespacePrefix: 7 as never }), 'INVALID_OPTIONS'],
    ['query gt and gte', () => engine.query({ gt: 'a', gte: 'b' }), 'INVALID_OPTIONS'],
    ['query lt an object', () => engine.query({ lt: {} as never }), 'INVALID_OPTIONS'],
    ['query lte over keyBytesMax', () => engine.query({ lte: 'k'.repeat(limits.keyBytesMax + 1) }), 'INVALID_OPTIONS'],
    ['query gte with a lone surrogate', () => engine.query({ gte: loneSurrogate }), 'ENGINE_INVALID_VALUE'],
    ['query tags an array', () => engine.query({ tags: ['a'] as never }), 'INVALID_OPTIONS'],
    ['query tags.all a string', () => engine.query({ tags: { all: 'a' as never } }), 'INVALID_OPTIONS'],
    ['query tags.any with a number', () => engine.query({ tags: { any: [1 as never] } }), 'INVALID_OPTIONS'],
    ['query tags.none (unknown)', () => engine.query({ tags: { none: ['a'] } as never }), 'INVALID_OPTIONS'],
    ['query tags.all with NUL', () => engine.query({ tags: { all: ['a\u0000'] } }), 'ENGINE_INVALID_VALUE'],
    ['query tags.all over tagsMax', () => engine.query({ tags: { all: ['a', 'b', 'c', 'd', 'e'] } }), 'INVALID_OPTIONS'],
    ['query since a string', () => engine.query({ since: '2026-01-01' as never }), 'INVALID_OPTIONS'],
    ['query since negative', () => engine.query({ since: -1 }), 'INVALID_OPTIONS'],
    ['query until NaN', () => engine.query({ until: Number.NaN }), 'INVALID_OPTIONS'],
    ['query until an invalid Date', () => engine.query({ until: new Date('nope') }), 'INVALID_OPTIONS'],
    ['query since past the largest Date', () => engine.query({ since: 8.64e15 + 1 }), 'INVALID_OPTIONS'],
    ['query reverse a string', () => engine.query({ reverse: 'yes' as never }), 'INVALID_OPTIONS'],
    ['query limit huge', () => engine.query({ limit: Number.MAX_SAFE_INTEGER }), 'INVALID_OPTIONS'],
    ['query limit Infinity', () => engine.query({ limit: Infinity }), 'INVALID_OPTIONS'],
    ['query cursor a number', () => engine.query({ cursor: 5 as never }), 'INVALID_OPTIONS'],
    ['query cursor forged', () => engine.query({ cursor: `${Buffer.from('[1,"x","default\u0000a"]').toString('base64url')}.AAAA` }), 'QUERY_INVALID_CURSOR'],
    ['query cursor with NUL', () => engine.query({ cursor: '\u0000.\u0000' }), 'QUERY_INVALID_CURSOR'],
    ['query cursor huge', () => engine.query({ cursor: 'c'.repeat(8193) }), 'QUERY_INVALID_CURSOR'],
    ['queryPage cursor __proto__', () => engine.queryPage({ cursor: '__proto__' }), 'QUERY_INVALID_CURSOR'],
    ['count with a limit', () => engine.count({ limit: 5 } as never), 'INVALID_OPTIONS'],
    ['count with a cursor', () => engine.count({ cursor: 'x' } as never), 'INVALID_OPTIONS'],
    ['count of a string', () => engine.count('all' as never), 'INVALID_OPTIONS'],
  ]

  for (const [what, call, code] of cases) {
    const before = snapshot(engine)
    t.equal(await refusal(call), code, `${what}: refused with ${code}`)
    t.same(snapshot(engine), before, `${what}: nothing written (last LSN, backlog, checkpoints, state unchanged)`)
  }
  const { lsn } = await engine.put('after', 'fine')
  t.equal(lsn, 2, 'the next valid write takes the next LSN: no refusal consumed one')
  t.same(await engine.get('seed'), { ok: true }, 'earlier data is intact')
  for (const k of ['v', 'a', 'b', 'b0']) t.equal(await engine.get(k), undefined, `nothing of a refused write under ${k}`)
  await engine.close()

  const again = await MemWAL.open({ dir, ...limits })
  t.teardown(() => again.close())
  t.equal(again.health().wal.lastLsn, 2, 'after a reopen the log holds exactly the two accepted writes')
  t.equal(again.recovery.findings.length, 0, 'and nothing damaged')
})

t.test('__proto__, constructor and prototype in payloads, keys and labels: refused or plain data, never a polluted prototype', async (t) => {
  const dir = tmpDir(t)
  let engine = await MemWAL.open({ dir })
  t.teardown(() => engine.close())
  const clean = (): boolean => {
    const probe = {} as Record<string, unknown>
    return ['polluted', 'polluted2', 'polluted3', 'polluted4', 'isAdmin', 'x'].every((k) => probe[k] === undefined && !(k in Object.prototype) && !(k in Array.prototype) && !(k in Function.prototype))
  }
  // Own properties named __proto__, as JSON.parse makes them (an object literal would set the prototype instead):
  // stored as data, read back as own properties of plain objects, never as a prototype.
  const protoPayloads: [string, unknown][] = [
    ['a top-level own __proto__ key', JSON.parse('{"__proto__": {"polluted": "yes", "isAdmin": true}, "ok": 1}')],
    ['a nested own __proto__ key', JSON.parse('{"a": [{"__proto__": {"polluted3": 1}}]}')],
    ['a Map with a __proto__ key', new Map([['__proto__', { polluted: 1 }]])],
  ]
  const checkProto = async (tier: string): Promise<void> => {
    for (const [i, [what, value]] of protoPayloads.entries()) {
      const back = await engine.get(`hostile${i}`)
      t.ok(isDeepStrictEqual(back, value), `${tier}: ${what} reads back as written`)
      t.equal(Object.getPrototypeOf(back), Object.getPrototypeOf(value), `${tier}: ${what}: the prototype is unchanged`)
    }
    const top = (await engine.get('hostile0')) as Record<string, unknown>
    t.ok(Object.hasOwn(top, '__proto__') && top['isAdmin'] === undefined, `${tier}: __proto__ is an own data property, not a prototype`)
    t.ok(clean(), `${tier}: no prototype polluted`)
  }
  for (const [i, [, value]] of protoPayloads.entries()) await engine.batch([{ type: 'put', key: `hostile${i}`, value }])

  const asText = (v: unknown): string => JSON.stringify(v)
  const ctor = JSON.parse('{"constructor": {"prototype": {"polluted2": "yes"}}, "prototype": {"x": 1}, "hasOwnProperty": "no", "toString": 5, "ok": 1}') as Record<string, unknown>
  const nested = JSON.parse('{"b": {"constructor": {"prototype": {"polluted4": 1}}}, "c": [{"prototype": null}]}') as Record<string, unknown>
  const lsns = new Map<string, number>()
  const check = async (tier: string): Promise<void> => {
    const v = (await engine.get('ctor')) as Record<string, unknown>
    t.equal(asText(v), asText(ctor), `${tier}: a value with constructor, prototype, hasOwnProperty and toString keys reads back as written`)
    t.equal(Object.getPrototypeOf(v), Object.prototype, `${tier}: its prototype is Object.prototype`)
    t.equal(asText(await engine.get('nested')), asText(nested), `${tier}: nested constructor/prototype keys read back as written`)
    for (const k of ['__proto__', 'constructor', 'prototype', 'hasOwnProperty']) t.match(await engine.getEntry(k, { namespace: '__proto__' }), { value: `v:${k}`, version: lsns.get(k), namespace: '__proto__', key: k, tags: ['constructor', '__proto__'] }, `${tier}: key ${k} is an ordinary key`)
    const byNs: string[] = []
    for await (const r of engine.query({ namespace: '__proto__' })) byNs.push(r.key)
    t.same(byNs, ['__proto__', 'constructor', 'hasOwnProperty', 'prototype'], `${tier}: namespace __proto__ is an ordinary namespace`)
    const byTag: string[] = []
    for await (const r of engine.query({ tag: 'constructor' })) byTag.push(r.key)
    t.same(byTag, ['__proto__', 'constructor', 'hasOwnProperty', 'prototype'], `${tier}: tag constructor is an ordinary tag`)
    t.ok(clean(), `${tier}: no prototype was polluted`)
  }
  await engine.put('ctor', ctor)
  await engine.put('nested', nested)
  for (const k of ['__proto__', 'constructor', 'prototype', 'hasOwnProperty']) lsns.set(k, (await engine.put(k, `v:${k}`, { namespace: '__proto__', tags: ['constructor', '__proto__'] })).lsn)
  // A batch op carrying an own __proto__ property: a field not understood, refused (never read as the op's prototype).
  const op = JSON.parse('{"type": "put", "key": "batch-op", "value": 1, "__proto__": {"type": "del", "namespace": "evil"}}') as { type: 'put'; key: string; value: unknown }
  const before = engine.health().wal.lastLsn
  await t.rejects(engine.batch([op]), { code: 'INVALID_OPTIONS', details: { field: 'ops[0].__proto__' } }, 'a batch op with an own __proto__ field is refused, naming it')
  t.equal(engine.health().wal.lastLsn, before, 'and nothing is written')
  t.equal(await engine.get('batch-op'), undefined)
  await check('pending overlay')
  await checkProto('pending overlay')
  await engine.flush()
  await check('cache and backend')
  await checkProto('cache and backend')
  await engine.close()
  engine = await MemWAL.open({ dir, cacheBytes: 1 })
  await check('backend after a reopen')
  await checkProto('backend after a reopen')
  // Open options parsed from JSON with an own __proto__: an option not understood, refused naming it; no pollution, nothing created.
  const opts = JSON.parse(`{"dir": ${JSON.stringify(path.join(dir, 'other'))}, "__proto__": {"durability": "none", "polluted": 1}}`) as MemwalOptions
  await t.rejects(MemWAL.open(opts), { code: 'INVALID_OPTIONS', details: { field: '__proto__' } }, 'open options with an own __proto__ are refused, naming it')
  t.notOk(fs.existsSync(path.join(dir, 'other')), 'and nothing is created')
  t.ok(clean() && ({} as Record<string, unknown>)['durability'] === undefined, 'open options with __proto__ pollute nothing')
})

t.test('open options and data directories that cannot be: typed errors', async (t) => {
  const root = tmpDir(t)
  const bad: [string, unknown, string][] = [
    ['no options', undefined, 'INVALID_OPTIONS'],
    ['options a string', '/tmp/x', 'INVALID_OPTIONS'],
    ['no dir', {}, 'INVALID_OPTIONS'],
    ['empty dir', { dir: '' }, 'INVALID_OPTIONS'],
    ['dir a number', { dir: 7 }, 'INVALID_OPTIONS'],
    ['negative keyBytesMax', { dir: path.join(root, 'o1'), keyBytesMax: -1 }, 'INVALID_OPTIONS'],
    ['NaN maxBacklogBytes', { dir: path.join(root, 'o2'), maxBacklogBytes: Number.NaN }, 'INVALID_OPTIONS'],
    ['unknown durability', { dir: path.join(root, 'o3'), durability: 'fast' }, 'INVALID_OPTIONS'],
    ['unknown corruption policy', { dir: path.join(root, 'o4'), corruptionPolicy: 'ignore' }, 'INVALID_OPTIONS'],
    ['segment too small', { dir: path.join(root, 'o5'), segmentBytes: 1024 }, 'INVALID_OPTIONS'],
    ['retry min above max', { dir: path.join(root, 'o6'), resilience: { retryDelayMsMin: 100, retryDelayMsMax: 10 } }, 'INVALID_OPTIONS'],
    ['unknown backlog policy', { dir: path.join(root, 'o7'), backlogPolicy: 'drop' }, 'INVALID_OPTIONS'],
  ]
  for (const [what, options, code] of bad) t.equal(await refusal(() => MemWAL.open(options as MemwalOptions)), code, `${what}: ${code}`)

  const file = path.join(root, 'a-file')
  fs.writeFileSync(file, 'not a directory')
  t.equal(await refusal(() => MemWAL.open({ dir: file })), 'DIR_NOT_MEMWAL', 'a file where the data directory should be')
  t.equal(await refusal(() => MemWAL.open({ dir: path.join(file, 'below') })), 'DIR_NOT_MEMWAL', 'a data directory below a file')
  const walFile = path.join(root, 'wal-is-a-file')
  fs.mkdirSync(walFile)
  fs.writeFileSync(path.join(walFile, 'wal'), 'not a directory')
  t.equal(await refusal(() => MemWAL.open({ dir: walFile })), 'DIR_NOT_MEMWAL', 'a file where wal/ should be')
  t.equal(fs.readFileSync(file, 'utf8'), 'not a directory', 'the file in the way is left alone')

  // Created 0700 (directories) and 0600 (the log's files), whatever the umask allows.
  const dir = path.join(root, 'fresh', 'data')
  const e = await MemWAL.open({ dir })
  await e.put('k', 1)
  await e.flush()
  const mode = (p: string): string => (fs.statSync(p).mode & 0o777).toString(8)
  t.equal(mode(dir), '700', 'the data directory is 0700')
  for (const d of ['wal', 'store']) t.equal(mode(path.join(dir, d)), '700', `${d}/ is 0700`)
  for (const f of fs.readdirSync(path.join(dir, 'wal'))) t.equal(mode(path.join(dir, 'wal', f)), '600', `wal/${f} is 0600`)
  await e.close()
})
