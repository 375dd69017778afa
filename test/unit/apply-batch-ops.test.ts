/**
 * An apply batch is bounded by operations as well as by records and bytes
 * (limits.applyBatchOpsMax): records of many small operations (the expiry
 * sweep's deletes, batches of deletes) must not pile tens of thousands of
 * operations into one sink apply, which holds the acknowledging thread. A
 * record of more operations than the bound goes alone; nothing is skipped.
 */
import path from 'node:path'
import t from 'tap'
import { MemWAL, type Sink } from '../../engine/index.js'
import { limits } from '../../engine/limits.js'
import { RecordType } from '../../engine/format/format.js'
import type { ApplyBatch } from '../../engine/sinks/sink.js'
import { tmpDir } from '../support/tmp-dir.js'

t.test('apply batches hold at most applyBatchOpsMax operations, or one record', async (t) => {
  const dir = path.join(tmpDir(t, 'memwal-apply-ops-'), 'd')
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  const seen: { records: number; ops: number; lsns: number[] }[] = []
  const wrap = <S extends Sink>(sink: S): S => {
    if (sink.name !== 'index') return sink
    const apply = sink.apply.bind(sink)
    sink.apply = async (batch: ApplyBatch, signal?: AbortSignal) => {
      await gate
      const ops = batch.records.reduce((n, r) => n + (r.record.type === RecordType.BATCH ? r.record.ops.length : 1), 0)
      seen.push({ records: batch.records.length, ops, lsns: batch.records.map((r) => r.lsn) })
      return apply(batch, signal)
    }
    return sink
  }
  const db = await MemWAL.open({ dir, wrapSink: wrap, batchOpsMax: limits.applyBatchOpsMax * 2 })
  t.teardown(() => db.close())
  const big = limits.applyBatchOpsMax + 10
  const lsns: number[] = []
  // While the index's first apply waits: records of 300 operations, one larger than the bound, single puts between.
  for (let i = 0; i < 40; i++) {
    const n = i === 20 ? big : 300
    lsns.push((await db.batch(Array.from({ length: n }, (_, j) => ({ type: 'put' as const, key: `k${i}/${j}`, value: j, tags: ['t'] })))).lsn)
    lsns.push((await db.put(`single/${i}`, i)).lsn)
  }
  release()
  await db.flush()
  t.ok(seen.length > 2, `several applies (${seen.length})`)
  for (const b of seen) t.ok(b.ops <= limits.applyBatchOpsMax || b.records === 1, `an apply of ${b.records} records, ${b.ops} operations`)
  t.ok(seen.some((b) => b.records === 1 && b.ops === big), 'the record larger than the bound went alone')
  t.ok(seen.some((b) => b.records > 1 && b.ops > limits.applyBatchOpsMax / 2), 'batches still gather many records up to the bound')
  t.strictSame(seen.flatMap((b) => b.lsns), lsns, 'every record applied once, in order')
  t.equal(await db.count({ tags: { all: ['t'] } }), 39 * 300 + big, 'the index holds every put')
})
