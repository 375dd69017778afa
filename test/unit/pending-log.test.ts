/**
 * The pending log's reads (engine/apply/pending-log.ts): a read of one
 * identity of a pending batch costs that op, not the batch. Reading every
 * entry of a batch of n ops right after it was acknowledged (a bulk insert,
 * then a query of what it wrote) once decoded the whole batch for each
 * identity, n x n op decodes: about a second per query of 100 entries after
 * claude-flow's 1,000-entry bulkInsert (issue 13).
 */
import t from 'tap'
import { PendingLog } from '../../engine/apply/pending-log.js'
import { RecordCodec, RecordType, type WalRecord } from '../../engine/testing.js'

/** A codec that counts the records it decodes. */
class CountingCodec extends RecordCodec {
  decodes = 0
  override decode(type: RecordType, payload: Uint8Array): WalRecord {
    this.decodes++
    return super.decode(type, payload)
  }
}

function accepted(codec: RecordCodec, record: WalRecord): PendingLog {
  const log = new PendingLog(codec, 1)
  log.accept(1, record, log.copy(codec.encode(record)), 0)
  return log
}

t.test('reading every identity of a pending batch decodes the batch once, not once per identity', async (t) => {
  const codec = new CountingCodec()
  const n = 1_000
  const ops = Array.from({ length: n }, (_, i) => ({ type: 'put' as const, namespace: 'ns', key: `k${i}`, value: { i, list: [i] }, tags: ['t'] }))
  const log = accepted(codec, { type: RecordType.BATCH, ops, hlc: 5_000_000 })
  codec.decodes = 0
  for (let i = 0; i < n; i++) {
    const v = log.lookup(`ns\u0000k${i}`)
    if (v?.kind !== 'put' || (v.op.value as { i: number }).i !== i) t.fail(`k${i} reads back as written`)
  }
  t.equal(codec.decodes, 1, `${n} reads of one batch's identities: one decode of the batch`)
  const a = log.lookup('ns\u0000k7')
  const b = log.lookup('ns\u0000k7')
  t.same(a?.kind === 'put' && a.op.value, { i: 7, list: [7] })
  t.not(a?.kind === 'put' && a.op.value, b?.kind === 'put' && b.op.value, 'each read gets its own copy of the value')
  t.not(a?.kind === 'put' && a.op.tags, b?.kind === 'put' && b.op.tags, 'and of the tags')
})

t.test('a delete in a batch reads as a delete', async (t) => {
  const log = accepted(new RecordCodec(), { type: RecordType.BATCH, ops: [{ type: 'put', namespace: 'ns', key: 'a', value: 1 }, { type: 'del', namespace: 'ns', key: 'b' }] })
  t.match(log.lookup('ns\u0000b'), { kind: 'del', lsn: 1 })
  t.match(log.lookup('ns\u0000a'), { kind: 'put', lsn: 1, op: { key: 'a', value: 1 } })
  t.equal(log.lookup('ns\u0000c'), undefined, 'nothing pending')
})
