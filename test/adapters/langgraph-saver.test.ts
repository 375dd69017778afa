/**
 * What the LangGraph validation suite does not cover: a checkpoint survives
 * closing and reopening the data directory, a saver can share a MemWAL it does
 * not own, weaker durability is refused, thread ids that contain the key
 * encoding's separator stay apart, and a closed saver refuses writes, typed.
 */
import t from 'tap'
import { emptyCheckpoint, uuid6, type Checkpoint } from '@langchain/langgraph-checkpoint'
import { MemWAL } from '../../engine/index.js'
import { MemwalSaver } from '../../adapters/langgraph/index.js'
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
