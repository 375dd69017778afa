/**
 * The query language's parts that need no engine (engine/query/): a query is
 * checked field by field (anything not understood is INVALID_OPTIONS naming
 * the field, never ignored), matched against an entry by every criterion, and
 * continued by a cursor that only this store made for this query.
 */
import t from 'tap'
import { MemoryLevel } from 'memory-level'
import { parseQuery, queryFingerprint, type QuerySpec } from '../../engine/query/query-spec.js'
import { CursorSigner, loadCursorSecret } from '../../engine/query/cursor.js'
import { compareCodePoints, entryMatches } from '../../engine/query/match.js'
import { SeededRandom } from '../../engine/io/random.js'
import { LevelStore, type LevelDatabase } from '../../engine/sinks/level-store.js'
import { MemwalError } from '../../engine/errors.js'

const L = { keyBytesMax: 64, labelBytesMax: 16, tagsMax: 3, batchOpsMax: 10 }
const parse = (q: unknown): QuerySpec => parseQuery(q, L)

function refusal(f: () => unknown): { code: string; field: unknown; message: string } | undefined {
  try {
    f()
  } catch (e) {
    if (e instanceof MemwalError) return { code: e.code, field: e.details['field'], message: e.message }
    throw e
  }
  return undefined
}

t.test('a query is normalised: tags sorted and distinct, defaults written out', async (t) => {
  t.strictSame(parse(undefined), { key: {}, tagsAll: [], tagsAny: [], reverse: false, limit: 1000 })
  const s = parse({ namespacePrefix: 'agents', prefix: 'k', gte: 'k1', lt: 'k9', tags: { all: ['b', 'a', 'b'], any: ['z'] }, tag: 'c', since: new Date(5), until: 10, reverse: true, limit: 7, cursor: 'x' })
  t.strictSame(s, { namespacePrefix: 'agents', key: { prefix: 'k', gte: 'k1', lt: 'k9' }, tagsAll: ['a', 'b', 'c'], tagsAny: ['z'], since: 5, until: 10, reverse: true, limit: 7, cursor: 'x' })
})

t.test('every unknown field and wrong type is INVALID_OPTIONS naming the field', async (t) => {
  const cases: [string, unknown, string][] = [
    ['unknown field', { text: 'milk' }, 'text'],
    ['unknown field next to good ones', { namespace: 'a', ttl: 5 }, 'ttl'],
    ['tags.unknown', { tags: { all: ['a'], none: ['b'] } }, 'tags.none'],
    ['tags as an array', { tags: ['a'] }, 'tags'],
    ['tags.all not an array', { tags: { all: 'a' } }, 'tags.all'],
    ['a numeric tag', { tags: { any: ['a', 1] } }, 'tags.any[1]'],
    ['too many tags', { tags: { all: ['a', 'b', 'c', 'd'] } }, 'tags.all'],
    ['namespace a number', { namespace: 3 }, 'namespace'],
    ['namespace and namespacePrefix', { namespace: 'a', namespacePrefix: 'a' }, 'namespacePrefix'],
    ['prefix a number', { prefix: 3 }, 'prefix'],
    ['gt and gte', { gt: 'a', gte: 'a' }, 'gte'],
    ['lt and lte', { lt: 'a', lte: 'a' }, 'lte'],
    ['lt longer than a key can be', { lt: 'k'.repeat(65) }, 'lt'],
    ['since a string', { since: '2026-01-01' }, 'since'],
    ['since fractional', { since: 1.5 }, 'since'],
    ['until negative', { until: -1 }, 'until'],
    ['until an invalid Date', { until: new Date(NaN) }, 'until'],
    ['reverse a string', { reverse: 'yes' }, 'reverse'],
    ['limit 0', { limit: 0 }, 'limit'],
    ['limit fractional', { limit: 1.5 }, 'limit'],
    ['limit over the maximum', { limit: 100_001 }, 'limit'],
    ['limit a string', { limit: '10' }, 'limit'],
    ['cursor a number', { cursor: 5 }, 'cursor'],
    ['query an array', [], 'query'],
    ['query null', null, 'query'],
  ]
  for (const [what, q, field] of cases) {
    const r = refusal(() => parse(q))
    t.equal(r?.code, 'INVALID_OPTIONS', `${what}: INVALID_OPTIONS`)
    t.equal(r?.field, field, `${what}: names ${field}`)
    t.ok(r?.message.includes(field), `${what}: the message names ${field}`)
  }
  t.equal(refusal(() => parse(Object.create({ inherited: 1 }))), undefined, 'inherited properties are not fields')
})

t.test('namespaces and tags that could never be stored are refused as put refuses them', async (t) => {
  for (const q of [{ namespace: '' }, { namespacePrefix: 'a\u0000' }, { tag: 'x'.repeat(17) }, { tags: { any: ['\ud800'] } }]) {
    t.equal(refusal(() => parse(q))?.code, 'ENGINE_INVALID_VALUE', JSON.stringify(q))
  }
})

t.test('hostile strings are data, not fields', async (t) => {
  const s = parse(JSON.parse('{"namespace":"__proto__","prefix":"../","tags":{"all":["constructor"]}}'))
  t.equal(s.namespace, '__proto__')
  t.strictSame(s.tagsAll, ['constructor'])
  t.equal(refusal(() => parse(JSON.parse('{"__proto__":{"limit":1}}')))?.field, '__proto__', 'an own __proto__ field is unknown')
})

t.test('the fingerprint binds criteria and direction, not the limit or the cursor', async (t) => {
  const f = (q: object): string => queryFingerprint(parse(q))
  t.equal(f({ tags: { all: ['a', 'b'] }, limit: 5 }), f({ tags: { all: ['b', 'a'] }, limit: 9, cursor: 'c' }))
  t.equal(f({ tag: 'a' }), f({ tags: { all: ['a'] } }), 'the alias is the same query')
  t.not(f({ namespace: 'a' }), f({ namespacePrefix: 'a' }))
  t.not(f({ gt: 'a' }), f({ gte: 'a' }))
  t.not(f({}), f({ reverse: true }))
  t.not(f({ since: 1 }), f({ until: 1 }))
})

t.test('an entry matches when every criterion holds', async (t) => {
  const e = { namespace: 'agents/7', key: 'note/2', tags: ['todo', 'home'], updatedAt: 100 }
  const yes = [{}, { namespace: 'agents/7' }, { namespacePrefix: 'agents' }, { namespacePrefix: 'agents/7' }, { prefix: 'note/' }, { gt: 'note/1', lte: 'note/2' },
    { tags: { all: ['home', 'todo'] } }, { tags: { any: ['x', 'home'] } }, { since: 100, until: 101 }]
  const no = [{ namespace: 'agents' }, { namespacePrefix: 'agent' }, { namespacePrefix: 'agents/70' }, { prefix: 'notes' }, { gt: 'note/2' }, { lt: 'note/2' },
    { tags: { all: ['todo', 'work'] } }, { tags: { any: ['work'] } }, { since: 101 }, { until: 100 }]
  for (const q of yes) t.ok(entryMatches(parse(q), e), `matches ${JSON.stringify(q)}`)
  for (const q of no) t.notOk(entryMatches(parse(q), e), `does not match ${JSON.stringify(q)}`)
  t.notOk(entryMatches(parse({ since: 0 }), { key: 'k' }), 'a time bound needs a known time')
  t.notOk(entryMatches(parse({ namespacePrefix: 'a' }), { key: 'k' }), 'no namespace is under no prefix')
})

t.test('keys compare as the store orders them (UTF-8 bytes, by code point)', async (t) => {
  const words = ['', 'a', 'ab', 'b', '\u00e9', '\ue000', '\uffff', '\u{10000}', '\u{1f600}', 'a\u{1f600}', 'a\uffff']
  const byBytes = [...words].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  t.strictSame([...words].sort(compareCodePoints), byBytes)
})

t.test('a cursor continues the query it was made for, in the store that made it', async (t) => {
  const secret = (seed: number): Uint8Array => {
    const r = new SeededRandom(seed)
    const b = Buffer.alloc(32)
    for (let i = 0; i < 32; i += 4) b.writeUInt32BE(r.nextU32(), i)
    return b
  }
  const mine = new CursorSigner(secret(1))
  const theirs = new CursorSigner(secret(2))
  const f = queryFingerprint(parse({ namespace: 'a', tags: { all: ['t'] } }))
  const c = mine.make(f, 'a\u0000k/\u{1f600}')
  t.equal(mine.open(f, c), 'a\u0000k/\u{1f600}', 'reads back its position')
  t.equal(mine.open(queryFingerprint(parse({ namespace: 'a', tag: 't', limit: 3 })), c), 'a\u0000k/\u{1f600}', 'the same query with another limit')
  const code = (f2: () => unknown): string | undefined => refusal(f2)?.code
  t.equal(code(() => theirs.open(f, c)), 'QUERY_INVALID_CURSOR', 'from another store')
  t.equal(code(() => mine.open(queryFingerprint(parse({ namespace: 'b' })), c)), 'QUERY_INVALID_CURSOR', 'for another query')
  t.equal(code(() => mine.open(queryFingerprint(parse({ namespace: 'a', tag: 't', reverse: true })), c)), 'QUERY_INVALID_CURSOR', 'for the other direction')
  const [body, mac] = c.split('.') as [string, string]
  const forged = Buffer.from(JSON.stringify(JSON.parse(Buffer.from(body, 'base64url').toString()).with(2, 'a\u0000z'))).toString('base64url')
  t.equal(code(() => mine.open(f, `${forged}.${mac}`)), 'QUERY_INVALID_CURSOR', 'a position edited by hand')
  for (const junk of ['', '.', 'abc', `${body}.`, `${body}.${mac}x`, `${body}x.${mac}`, 'x'.repeat(9000)]) t.equal(code(() => mine.open(f, junk)), 'QUERY_INVALID_CURSOR', `junk ${junk.slice(0, 20)}`)
})

t.test('the cursor secret is made once per store, from the injected random source, and kept', async (t) => {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as LevelDatabase
  const store = await LevelStore.open('mem', db)
  const a = await loadCursorSecret(store, new SeededRandom(7))
  const b = await loadCursorSecret(store, new SeededRandom(8))
  t.strictSame(Buffer.from(b), Buffer.from(a), 'the second open reads the first secret')
  const other = await LevelStore.open('mem2', new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as LevelDatabase)
  t.notSame(Buffer.from(await loadCursorSecret(other, new SeededRandom(8))), Buffer.from(a), 'another store, another secret')
  await store.close()
  await other.close()
})
