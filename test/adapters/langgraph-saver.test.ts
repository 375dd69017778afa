/**
 * What the LangGraph validation suite does not cover: a checkpoint survives
 * closing and reopening the data directory, a saver can share a MemWAL it does
 * not own, weaker durability is refused, thread ids that contain the key
 * encoding's separator stay apart, and a closed saver refuses writes, typed;
 * and what each call reads (issue 13): putWrites nothing, getTuple the newest
 * checkpoint alone, list as far as its limit.
 */
import t from 'tap'
import { emptyCheckpoint, uuid6, type Checkpoint } from '@langchain/langgraph-checkpoint'
import { MemWAL } from '../../engine/index.js'
import { MemwalSaver } from '../../adapters/langgraph/index.js'
import { KeySpace } from '../../adapters/keyspace.js'
import type { RunnableConfig } from '@langchain/core/runnables'
import { tmpDir } from '../support/tmp-dir.js'

function checkpoint(values: Record<string, unknown>, version: number): Checkpoint {
  const c = emptyCheckpoint()
  c.id = uuid6(-1)
  c.channel_values = values
  c.channel_versions = Object.fromEntries(Object.keys(values).map((k) => [k, version]))
  return c
}

t.test('a checkpoint and its writes survive close and reopen', async (t) => {
  const dir = tmpDir(t)
  let saver = await MemwalSaver.open({ dir })
  const cp = checkpoint({ count: 3, log: ['a', 'b'] }, 1)
  const config = await saver.put({ configurable: { thread_id: 't1' } }, cp, { source: 'loop', step: 2, parents: {} }, { count: 1, log: 1 })
  await saver.putWrites(config, [['count', 4]], 'task-1', 'path-1')
  await saver.close()
  saver = await MemwalSaver.open({ dir })
  t.teardown(() => saver.close())
  const got = await saver.getTuple({ configurable: { thread_id: 't1' } })
  t.same(got?.checkpoint.channel_values, { count: 3, log: ['a', 'b'] })
  t.equal(got?.checkpoint.id, cp.id)
  t.same(got?.metadata, { source: 'loop', step: 2, parents: {} })
  t.same(got?.pendingWrites, [['task-1', 'count', 4]])
})

t.test('a saver on a shared MemWAL leaves it open when closed', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => db.close())
  const saver = new MemwalSaver(db)
  await saver.put({ configurable: { thread_id: 't' } }, checkpoint({ x: 1 }, 1), { source: 'input', step: -1, parents: {} }, { x: 1 })
  await saver.close()
  await t.rejects(saver.put({ configurable: { thread_id: 't' } }, checkpoint({}, 1), { source: 'input', step: -1, parents: {} }, {}), { code: 'ENGINE_CLOSED' })
  await db.put('other', 1)
  t.equal(await db.get('other'), 1, 'the MemWAL still takes writes')
  const again = new MemwalSaver(db)
  t.same((await again.getTuple({ configurable: { thread_id: 't' } }))?.checkpoint.channel_values, { x: 1 })
})

t.test('durability other than sync is refused', async (t) => {
  await t.rejects(MemwalSaver.open({ dir: tmpDir(t), durability: 'interval' }), { code: 'ADAPTER_INVALID_ARGUMENT' })
})

t.test('thread ids containing the key separator stay apart', async (t) => {
  const saver = await MemwalSaver.open({ dir: tmpDir(t) })
  t.teardown(() => saver.close())
  const meta = { source: 'input' as const, step: -1, parents: {} }
  for (const thread of ['a', 'a\u0000b', 'a\u0001', '\u0001\u0002']) {
    await saver.put({ configurable: { thread_id: thread } }, checkpoint({ who: thread }, 1), meta, { who: 1 })
  }
  await saver.deleteThread('a')
  t.equal(await saver.getTuple({ configurable: { thread_id: 'a' } }), undefined, 'deleted')
  for (const thread of ['a\u0000b', 'a\u0001', '\u0001\u0002']) {
    const got = await saver.getTuple({ configurable: { thread_id: thread } })
    t.same(got?.checkpoint.channel_values, { who: thread }, `thread ${JSON.stringify(thread)} kept`)
    t.equal(got?.config.configurable?.['thread_id'], thread)
  }
  const listed = []
  for await (const tuple of saver.list({})) listed.push(tuple.config.configurable?.['thread_id'])
  t.same(listed.sort(), ['a\u0000b', 'a\u0001', '\u0001\u0002'].sort(), 'list over all threads decodes every id')
  await t.rejects(saver.put({ configurable: {} }, checkpoint({}, 1), meta, {}), { code: 'ADAPTER_INVALID_ARGUMENT' })
})

/** Counts what the saver reads through `db`: get calls, and the entries each query yielded under a key space. */
function readsOf(db: MemWAL): { gets: number; yielded: Map<string, number> } {
  const counts = { gets: 0, yielded: new Map<string, number>() }
  const get = db.get.bind(db)
  db.get = (...a: Parameters<MemWAL['get']>) => {
    counts.gets++
    return get(...a)
  }
  const query = db.query.bind(db)
  db.query = (...a: Parameters<MemWAL['query']>) => {
    const it = query(...a)
    return (async function* () {
      for await (const r of it) {
        const space = r.key.slice(0, r.key.indexOf('\u0000'))
        counts.yielded.set(space, (counts.yielded.get(space) ?? 0) + 1)
        yield r
      }
    })()
  }
  return counts
}

t.test('putWrites reads nothing; a retried task keeps its first regular writes, its special ones are replaced', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => db.close())
  const saver = new MemwalSaver(db)
  const config = await saver.put({ configurable: { thread_id: 't' } }, checkpoint({ x: 1 }, 1), { source: 'loop', step: 0, parents: {} }, { x: 1 })
  const reads = readsOf(db)
  await saver.putWrites(config, [['x', 'first'], ['y', 'first-y']], 'task-1')
  await saver.putWrites(config, [['x', 'retried'], ['y', 'retried-y']], 'task-1')
  await saver.putWrites(config, [['__error__', 'e1']], 'task-2')
  await saver.putWrites(config, [['__error__', 'e2']], 'task-2')
  t.equal(reads.gets, 0, 'no get')
  t.same(reads.yielded, new Map(), 'no query')
  const got = await saver.getTuple(config)
  t.same(got?.pendingWrites, [['task-1', 'x', 'first'], ['task-1', 'y', 'first-y'], ['task-2', '__error__', 'e2']])
})

t.test('a regular write stored before writes had keys of their own (no attempt part) is kept over a retry', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => db.close())
  const saver = new MemwalSaver(db)
  const config = await saver.put({ configurable: { thread_id: 't' } }, checkpoint({ x: 1 }, 1), { source: 'loop', step: 0, parents: {} }, { x: 1 })
  const id = config.configurable?.['checkpoint_id'] as string
  // The layout before: lg.w [thread, ns, checkpointId, task, idx].
  const [type, bytes] = await saver.serde.dumpsTyped('old')
  await new KeySpace(db, 'lg.w').put(['t', '', id, 'task-1', '0'], { task: 'task-1', channel: 'x', v: [type, bytes], path: '' })
  await saver.putWrites(config, [['x', 'new']], 'task-1')
  t.same((await saver.getTuple(config))?.pendingWrites, [['task-1', 'x', 'old']])
})

t.test('getTuple reads the newest checkpoint alone, list reads as far as its limit, however many the thread holds', async (t) => {
  const db = await MemWAL.open({ dir: tmpDir(t) })
  t.teardown(() => db.close())
  const saver = new MemwalSaver(db)
  const ids: string[] = []
  let parent: RunnableConfig = { configurable: { thread_id: 't', checkpoint_ns: '' } }
  for (let i = 0; i < 40; i++) {
    const cp = checkpoint({ i }, i + 1)
    ids.push(cp.id)
    parent = await saver.put(parent, cp, { source: 'loop', step: i, parents: {} }, { i: i + 1 })
  }
  const newest = [...ids].reverse()
  const reads = readsOf(db)
  const got = await saver.getTuple({ configurable: { thread_id: 't' } })
  t.equal(got?.checkpoint.id, newest[0])
  t.same(got?.checkpoint.channel_values, { i: 39 })
  t.equal(reads.yielded.get('lg.cp'), 1, 'one checkpoint read')
  reads.yielded.clear()
  const listed: string[] = []
  for await (const tuple of saver.list({ configurable: { thread_id: 't', checkpoint_ns: '' } }, { limit: 3, before: { configurable: { checkpoint_id: newest[10] } } })) listed.push(tuple.checkpoint.id)
  t.same(listed, newest.slice(11, 14), 'the 3 before the one given, newest first')
  t.ok((reads.yielded.get('lg.cp') ?? 0) <= 4, `at most limit + 1 checkpoints read (${reads.yielded.get('lg.cp')})`)
  const all: string[] = []
  for await (const tuple of saver.list({ configurable: { thread_id: 't', checkpoint_ns: '' } })) all.push(tuple.checkpoint.id)
  t.same(all, newest, 'without a limit: every one, newest first')
})
