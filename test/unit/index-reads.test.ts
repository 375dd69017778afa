/**
 * The index as the engine reads it (engine/index-reads.ts): a seek that the
 * scan answers from what it holds is passed on as it is, one that reads goes
 * through the index applier's count, and a seek that fails, whether its
 * promise rejects or the jump throws at once, is ENGINE_BACKEND_UNAVAILABLE
 * (transient, the cause kept), counted as a failed read.
 */
import t from 'tap'
import type { Applier } from '../../engine/apply/applier.js'
import { countedIndexReads } from '../../engine/index-reads.js'
import type { IdRange, IndexSink, Seeked, SeekableIds } from '../../engine/sinks/index-sink.js'

function readsOver(seek: () => Seeked): { reads: ReturnType<typeof countedIndexReads>; counted: () => number; failed: string[] } {
  let counted = 0
  const failed: string[] = []
  const scan: SeekableIds = { seek, meta: () => ({ tagsKnown: false }), close: async () => {} }
  const index = { tagScan: (_t: string, _r: IdRange, _rev: boolean) => scan } as unknown as IndexSink
  const applier = {
    counted: async <T>(fn: () => Promise<T>): Promise<T> => {
      counted++
      return fn()
    },
  } as unknown as Applier
  return { reads: countedIndexReads(index, applier, (code) => failed.push(code)), counted: () => counted, failed }
}

t.test('a seek answered from what the scan holds is passed on at once, uncounted', async (t) => {
  const r = readsOver(() => 'ns\u0000k1')
  const s = r.reads.tagScan('x', {}, false).seek(undefined, false)
  t.equal(s, 'ns\u0000k1', 'the id itself, not a promise')
  t.equal(r.counted(), 0)
})

t.test('a seek that reads is counted and resolves to its id', async (t) => {
  const r = readsOver(async () => 'ns\u0000k2')
  const s = r.reads.tagScan('x', {}, false).seek(undefined, false)
  t.ok(s instanceof Promise)
  t.equal(await s, 'ns\u0000k2')
  t.equal(r.counted(), 1)
})

for (const [how, seek] of [
  ['whose read rejects', () => Promise.reject(Object.assign(new Error('EIO'), { code: 'LEVEL_IO_ERROR' }))],
  [
    'whose jump throws at once',
    () => {
      throw Object.assign(new Error('EIO'), { code: 'LEVEL_IO_ERROR' })
    },
  ],
] as const) {
  t.test(`a seek ${how} is ENGINE_BACKEND_UNAVAILABLE, counted as a failed read`, async (t) => {
    const r = readsOver(seek)
    const s = r.reads.tagScan('x', {}, false).seek('ns\u0000a', false, true)
    t.ok(s instanceof Promise, 'a promise, never a throw')
    await t.rejects(s as Promise<unknown>, { code: 'ENGINE_BACKEND_UNAVAILABLE', transient: true, cause: { code: 'LEVEL_IO_ERROR' } })
    t.strictSame(r.failed, ['LEVEL_IO_ERROR'])
    t.equal(r.counted(), 1)
  })
}
