/**
 * FileSystem.rmdir and removeTree (what a failed backup or restore uses to
 * remove its partial directory), on the simulated filesystem: rmdir refuses a
 * directory that is not empty or not there; removeTree removes a nested tree
 * and nothing beside it, its parent synced, and a missing tree is no error.
 */
import t from 'tap'
import { removeTree } from '../../engine/io/file-ops.js'
import { SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'

t.test('rmdir refuses a non-empty or missing directory; removeTree removes a tree and nothing beside it', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(1))
  await sim.mkdirp('/r/b.partial-00000001/wal')
  await sim.mkdirp('/r/keep')
  for (const f of ['/r/b.partial-00000001/MEMWAL', '/r/b.partial-00000001/wal/1.seg', '/r/keep/x']) {
    const h = await sim.open(f, 'create')
    await h.write(Buffer.from('x'), 0)
    await h.close()
  }
  await t.rejects(sim.rmdir('/r/b.partial-00000001'), { code: 'ENOTEMPTY' })
  await t.rejects(sim.rmdir('/r/none'), { code: 'ENOENT' })
  await t.rejects(sim.rmdir('/r/keep/x'), { code: 'ENOTDIR' })
  await removeTree(sim, '/r/b.partial-00000001')
  t.strictSame(await sim.readdir('/r'), ['keep'], 'the tree is gone, its sibling kept')
  t.strictSame(await sim.readdir('/r/keep'), ['x'])
  await removeTree(sim, '/r/b.partial-00000001')
  t.pass('a missing tree is nothing to do')
  sim.powerLoss()
  const after = sim.restart(2)
  t.strictSame(await after.readdir('/r'), ['keep'], 'the removal is durable (its parent synced)')
})
