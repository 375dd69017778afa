/**
 * A power cut during the expiry sweep's delete (WritePath.deleteUnchanged) on
 * the simulated filesystem, at every mutating operation of the append: after
 * the restart, every acknowledged write reads back; the sweep's batch of
 * deletes is all or nothing (gone if it was acknowledged; otherwise either
 * whole or absent, never a part); and a concurrent acknowledged put survives.
 */
import t from 'tap'
import { MemoryLevel } from 'memory-level'
import { MemWAL, type LevelDatabase } from '../../engine/index.js'
import { SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'
import type { WritePath } from '../../engine/write-path.js'

const KEYS = ['a', 'b', 'c', 'd', 'e']
const SWEPT = ['a', 'b', 'c']

async function settled<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p
  } catch {
    return undefined
  }
}

for (let cut = 0; cut < 4; cut++) {
  t.test(`power cut at mutating operation ${cut} of the sweep's append`, async (t) => {
    let sim = new SimulatedFileSystem(new SeededRandom(11 + cut))
    const level = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
    const open = (): Promise<MemWAL> => MemWAL.open({ dir: '/data', fs: sim, level: level as unknown as LevelDatabase, segmentBytes: 64 * 1024, closeGraceMs: 500 })
    let db = await open()
    for (const k of KEYS) await db.put(k, `${k}1`)
    await db.flush()
    const writes = (db as unknown as { writes: WritePath }).writes
    const watch = writes.watches.begin(KEYS.length)
    for (const k of SWEPT) watch.watch(k)
    sim.cutPowerAtOp(cut)
    const sweep = settled(writes.deleteUnchanged(SWEPT, watch))
    const put = settled(db.put('f', 'f1'))
    const [swept, putAck] = await Promise.all([sweep, put])
    watch.end()
    sim.powerLoss()
    await settled(db.close())
    sim = sim.restart()
    db = await open()
    const got = Object.fromEntries(await Promise.all([...KEYS, 'f'].map(async (k) => [k, await db.get(k)] as const)))
    for (const k of ['d', 'e']) t.equal(got[k], `${k}1`, `${k}: acknowledged, untouched by the sweep, reads back`)
    if (putAck) t.equal(got['f'], 'f1', 'the concurrent put was acknowledged and survives')
    const present = SWEPT.filter((k) => got[k] !== undefined)
    t.comment(`sweep acknowledged: ${swept !== undefined}, put acknowledged: ${putAck !== undefined}, swept keys present: ${present.length}`)
    if (swept) t.same(present, [], 'the acknowledged sweep stays done')
    else t.ok(present.length === 0 || present.length === SWEPT.length, `the unacknowledged sweep batch is whole or absent (present: ${present.join(',')})`)
    for (const k of present) t.equal(got[k], `${k}1`)
    t.same((await db.verify()).findings.map((f) => f.kind), [], 'verify finds nothing')
    await db.close()
  })
}
