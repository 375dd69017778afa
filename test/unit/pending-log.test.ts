/**
 * The pending log's reads (engine/apply/pending-log.ts): a read of one
 * identity of a pending batch costs that op, not the batch. Reading every
 * entry of a batch of n ops right after it was acknowledged (a bulk insert,
 * then a query of what it wrote) once decoded the whole batch for each
 * identity, n x n op decodes: about a second per query of 100 entries after
 * claude-flow's 1,000-entry bulkInsert (issue 13).
 */
import v8 from 'node:v8'
import vm from 'node:vm'
import t from 'tap'
import { PendingLog } from '../../engine/apply/pending-log.js'
import { HLC_PER_MS } from '../../engine/format/record-codec.js'
import { RecordCodec, RecordType, type WalRecord } from '../../engine/testing.js'

/** A codec that counts the records it decodes. */
class CountingCodec extends RecordCodec {
  decodes = 0
  override decode(type: RecordType, payload: Uint8Array): WalRecord {
    this.decodes++
    return super.decode(type, payload)
  }

  override decodeForApply(type: RecordType, payload: Uint8Array): WalRecord {
    this.decodes++
    return super.decodeForApply(type, payload)
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

/** `n` single-put records of distinct keys, acknowledged in order from LSN 1 (some out of order, as acknowledgements resolve). */
function filled(codec: RecordCodec, n: number): PendingLog {
  const log = new PendingLog(codec, 1)
  const rec = (lsn: number): WalRecord => ({ type: RecordType.PUT, op: { type: 'put', namespace: 'ns', key: `key-${String(lsn).padStart(10, '0')}`, value: 'v'.repeat(300) }, hlc: lsn * HLC_PER_MS })
  for (let lsn = 1; lsn <= n; lsn += 2) {
    // Each pair acknowledged second first: held apart until the first arrives.
    if (lsn + 1 <= n) log.accept(lsn + 1, rec(lsn + 1), log.copy(codec.encode(rec(lsn + 1))), lsn + 1)
    log.accept(lsn, rec(lsn), log.copy(codec.encode(rec(lsn))), lsn)
  }
  return log
}

t.test('records across many column chunks read back, trim and free their keys in LSN order', async (t) => {
  const codec = new RecordCodec()
  const n = 10_001 // more than two chunks of 4,096
  const log = filled(codec, n)
  t.equal(log.records, n)
  t.equal(log.pendingKeys, n)
  for (const lsn of [1, 4096, 4097, 8192, 8193, n]) {
    t.match(log.recordAt(lsn), { lsn, record: { op: { key: `key-${String(lsn).padStart(10, '0')}` } } }, `record ${lsn}`)
    t.match(log.lookup(`ns\u0000key-${String(lsn).padStart(10, '0')}`), { kind: 'put', lsn, updatedAt: lsn, createdAt: lsn, createdFromStore: true })
  }
  t.equal(log.ackedAtAfter(4095), 4096, 'acknowledgement time of the oldest after an LSN')
  const bytes = log.bytes
  log.trimThrough(5000)
  t.equal(log.firstLsn, 5001)
  t.equal(log.records, n - 5000)
  t.equal(log.pendingKeys, n - 5000, 'the overlay forgot what was trimmed')
  t.ok(log.bytes < bytes)
  t.equal(log.recordAt(5000), undefined, 'a trimmed record is no longer held')
  t.equal(log.lookup('ns\u0000key-0000005000'), undefined)
  t.match(log.frameAt(5001), { type: RecordType.PUT })
  log.skipTo(n + 11)
  t.equal(log.recordAt(n + 5), null, 'a declared gap holds no record')
  log.trimThrough(n + 10)
  t.equal(log.records, 0)
  t.equal(log.pendingKeys, 0)
  t.equal(log.bytes, 0)
})

t.test('a later version of a key carries its createdAt; a delete starts it again', async (t) => {
  const codec = new RecordCodec()
  const log = new PendingLog(codec, 1)
  const put = (lsn: number): WalRecord => ({ type: RecordType.PUT, op: { type: 'put', namespace: 'ns', key: 'k', value: lsn }, hlc: lsn * HLC_PER_MS })
  const del: WalRecord = { type: RecordType.DELETE, op: { type: 'del', namespace: 'ns', key: 'k' }, hlc: 3 * HLC_PER_MS }
  for (const [lsn, r] of [[1, put(1)], [2, put(2)], [3, del], [4, put(4)]] as const) log.accept(lsn, r, log.copy(codec.encode(r)), 0)
  t.match(log.lookup('ns\u0000k'), { kind: 'put', lsn: 4, createdAt: 4, createdFromStore: false })
  log.trimThrough(3)
  t.match(log.lookup('ns\u0000k'), { kind: 'put', lsn: 4, createdAt: 4, createdFromStore: false })
  const log2 = new PendingLog(codec, 1)
  for (const [lsn, r] of [[1, put(1)], [2, put(2)]] as const) log2.accept(lsn, r, log2.copy(codec.encode(r)), 0)
  t.match(log2.lookup('ns\u0000k'), { kind: 'put', lsn: 2, updatedAt: 2, createdAt: 1, createdFromStore: true })
  t.same(log2.latest('ns\u0000k'), { lsn: 2, live: true })
})

t.test('a pending record costs the heap far less than its payload (a replayed backlog is held in memory)', async (t) => {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  const codec = new RecordCodec()
  const n = 50_000
  gc()
  const before = process.memoryUsage().heapUsed
  const log = filled(codec, n)
  gc()
  const perRecord = (process.memoryUsage().heapUsed - before) / n
  t.equal(log.records, n)
  // About 650 bytes with an object per record (and its payload view, key and flag arrays, boxed numbers, a rope for its key); 160 leaves room for the map.
  t.ok(perRecord < 160, `heap per pending record of a distinct key: ${perRecord.toFixed(0)} bytes (payloads lie in slabs outside the heap)`)
})
