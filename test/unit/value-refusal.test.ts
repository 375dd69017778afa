/**
 * Values outside the contract are refused, never changed: ENGINE_INVALID_VALUE
 * naming the place inside the value (`$.a[3].b`), and nothing written. A
 * generated refused thing (function, symbol, WeakMap, Promise, class
 * instance, lone surrogate, ...) at the end of a generated path of objects,
 * arrays and Map values must be named by exactly that path; and a table of
 * the edges the contract decides (cycles, depth, symbol keys, properties on
 * built-ins that would be lost).
 */
import fc from 'fast-check'
import t from 'tap'
import { isMemwalError, MemWAL } from '../../engine/index.js'
import { RecordCodec, RecordType } from '../../engine/testing.js'
import { VALUE_DEPTH_MAX } from '../../engine/format/value-codec.js'
import { tmpDir } from '../support/tmp-dir.js'
import { refusedValueArb } from '../support/values.js'

const codec = new RecordCodec()

/** The error encoding `value` throws, or undefined if it was accepted. */
function refusalOf(value: unknown): { code: string; path: unknown; message: string } | undefined {
  try {
    codec.encode({ type: RecordType.PUT, op: { type: 'put', key: 'k', value } })
    return undefined
  } catch (err) {
    if (!isMemwalError(err)) throw err
    return { code: err.code, path: err.details['path'], message: err.message }
  }
}

t.test('a generated refused thing anywhere in a value: ENGINE_INVALID_VALUE naming its path', async (t) => {
  let runs = 0
  fc.assert(
    fc.property(refusedValueArb, ({ value, path, what }) => {
      const r = refusalOf(value)
      if (r === undefined) throw new Error(`${what} at ${path} was accepted`)
      if (r.code !== 'ENGINE_INVALID_VALUE' || r.path !== path || !r.message.startsWith(`value at ${path}: `)) throw new Error(`${what} at ${path}: got ${JSON.stringify(r)}`)
      runs++
    }),
    { numRuns: 500, seed: 20261201 },
  )
  t.equal(runs, 500, 'every generated refusal named its path')
})

t.test('the edges the contract decides', async (t) => {
  const circular: Record<string, unknown> = { a: { b: [1] } }
  ;((circular.a as Record<string, unknown>).b as unknown[]).push(circular)
  const selfMap = new Map<string, unknown>()
  selfMap.set('me', selfMap)
  const tooDeep = Array.from({ length: VALUE_DEPTH_MAX }).reduce<unknown>((inner) => [inner], 1)
  class AppError extends Error {}
  const datedNote = Object.assign(new Date(0), { note: 'lost' })
  const namedSparse = Object.assign([1, , 3], { label: 'x' })
  const cases: [string, unknown, string, RegExp][] = [
    ['a cycle through an array', circular, '$.a.b[1]', /circular/],
    ['a Map that holds itself', { m: selfMap }, '$.m.get("me")', /circular/],
    [`nesting deeper than ${VALUE_DEPTH_MAX}`, { top: tooDeep }, '$.top[0][0][0][0][0][0][0][0][0][0][0]', /deeper than/],
    ['a symbol-keyed property', { a: { [Symbol('hidden')]: 1 } }, '$.a', /symbol-keyed/],
    ['an Error subclass', [new AppError('x')], '$[0]', /AppError/],
    ['a Date with an own property', { d: datedNote }, '$.d', /own properties \(note\)/],
    ['a resizable ArrayBuffer', { b: new (ArrayBuffer as unknown as new (n: number, o: object) => ArrayBuffer)(4, { maxByteLength: 8 }) }, '$.b', /resizable/],
    ['a named property on an array with holes', { s: namedSparse }, '$.s', /named property "label"/],
    ['a lone surrogate in a property name', { ok: { ['x\ud800']: 1 } }, '$.ok["x\\ud800"]', /property name/],
    ['a function as a Map key', new Map([[() => 1, 'v']]), '$.keys[0]', /function/],
    ['a symbol in a Set', new Set([1, Symbol('s')]), '$.values[1]', /symbol/],
    ['a function as an Error cause', new Error('e', { cause: () => 1 }), '$.cause', /function/],
    ['a getter that throws', { get boom(): number { throw new Error('getter') } }, '', /getter/],
  ]
  for (const [what, value, path, message] of cases) {
    let r: ReturnType<typeof refusalOf>
    try {
      r = refusalOf(value)
    } catch (err) {
      // A getter's own exception propagates (the engine maps it to ENGINE_INVALID_VALUE, tested below).
      t.match((err as Error).message, message, `${what}: its own error`)
      continue
    }
    t.equal(r?.code, 'ENGINE_INVALID_VALUE', `${what}: refused`)
    t.ok(typeof r?.path === 'string' && r.path.startsWith(path.slice(0, 40)), `${what}: at ${path} (got ${String(r?.path)})`)
    t.match(r?.message ?? '', message, `${what}: says why`)
  }
})

t.test('through the engine: put and batch refuse with the path, and write nothing', async (t) => {
  const dir = tmpDir(t)
  const engine = await MemWAL.open({ dir })
  t.teardown(() => engine.close())
  await engine.put('seed', 1)
  const samples = fc.sample(refusedValueArb, { numRuns: 40, seed: 7 })
  for (const { value, path, what } of [...samples, { value: undefined, path: '$', what: 'a top-level undefined' }]) {
    for (const [how, call] of [
      ['put', () => engine.put('bad', value)],
      ['batch', () => engine.batch([{ type: 'put', key: 'fine', value: 1 }, { type: 'put', key: 'bad', value }])],
    ] as const) {
      const err = await call().then(
        () => undefined,
        (e: unknown) => e,
      )
      t.ok(isMemwalError(err) && err.code === 'ENGINE_INVALID_VALUE', `${how} of ${what}: ENGINE_INVALID_VALUE`)
      t.ok(isMemwalError(err) && err.details['path'] === path && err.message.includes(`value at ${path}: `), `${how} of ${what}: names ${path}`)
    }
  }
  const getter = await engine.put('bad', { get boom(): number { throw new Error('getter') } }).catch((e: unknown) => e)
  t.ok(isMemwalError(getter) && getter.code === 'ENGINE_INVALID_VALUE', 'a getter that throws: ENGINE_INVALID_VALUE')
  t.equal(engine.health().wal.lastLsn, 1, 'no refused value was logged')
  t.equal(await engine.get('bad'), undefined, 'nothing under the refused key')
  t.equal(await engine.get('fine'), undefined, 'nothing of a refused batch')
})
