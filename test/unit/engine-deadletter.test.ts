/**
 * Poison records: a record the backend rejects for good (PermanentSinkError)
 * is isolated from its apply batch, written to <dir>/deadletter/backend.log
 * (WAL-framed, readable with the segment format), announced with a
 * 'dead-letter' event naming its LSN, and the backend moves on: the other
 * records of the same batch are applied, exactly once, and flush resolves.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemWAL, type DeadLetterEvent, type MemwalOptions } from '../../engine/index.js'
import { RecordCodec, RecordType, type WalRecord } from '../../engine/testing.js'
import { createChecksums } from '../../engine/format/checksum.js'
import { decodeFrame, SEGMENT_HEADER_BYTES } from '../../engine/format/format.js'
import { fastResilience, SinkFaults, waitFor } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'


async function open(dir: string, faults: SinkFaults, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s), ...extra })
}

/** The frames of a dead-letter log: [lsn, record] in file order, checked frame by frame. */
async function readDeadLetters(file: string): Promise<[number, WalRecord][]> {
  const bytes = fs.readFileSync(file)
  const sums = await createChecksums()
  const codec = new RecordCodec()
  const salt = bytes.readUInt32LE(12)
  const out: [number, WalRecord][] = []
  let offset = SEGMENT_HEADER_BYTES
  for (;;) {
    const f = decodeFrame(bytes, offset, salt, 1 << 20, sums)
    if (f.kind === 'end') break
    if (f.kind !== 'frame') throw new Error(`dead-letter log ${file}: invalid frame at ${offset} (${f.fault})`)
    out.push([f.lsn, codec.decode(f.type, f.payload)])
    offset = f.next
  }
  return out
}

t.test('a poison record in a batch goes to the dead-letter log; the rest of the batch is applied', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend'] })
  faults.rejectKeys('poison')
  const engine = await open(dir, faults)
  t.teardown(() => engine.close())
  const dead: DeadLetterEvent[] = []
  engine.on('dead-letter', (e: DeadLetterEvent) => dead.push(e))

  // Held back by an outage so that the poison and its neighbours form one apply batch.
  faults.down()
  const lsn: Record<string, number> = {}
  for (const k of ['a', 'b']) lsn[k] = (await engine.put(k, `value-${k}`)).lsn
  lsn.poison = (await engine.put('poison', { bad: true }, { namespace: 'ns', tags: ['t1'] })).lsn
  lsn.c = (await engine.put('c', 'value-c')).lsn
  lsn.de = (await engine.batch([{ type: 'put', key: 'd', value: 'value-d' }, { type: 'put', key: 'e', value: 'value-e' }])).lsn
  lsn.delA = (await engine.delete('a')).lsn
  await waitFor(() => faults.failed('backend') >= 3, 'the outage is seen')
  faults.up()
  await engine.flush({ timeoutMs: 10_000 })

  const together = faults.batches('backend').find((b) => b.includes(lsn.poison as number) && b.length > 1)
  t.ok(together, `the poison record was first offered in a batch with others (${JSON.stringify(together)})`)
  t.equal(dead.length, 1, 'one dead-letter event')
  t.equal(dead[0]?.sink, 'backend')
  t.equal(dead[0]?.lsn, lsn.poison, 'the event names the poison LSN')
  t.equal((dead[0]?.error as { code?: string } | undefined)?.code, 'SINK_APPLY_FAILED', 'and carries the permanent error')

  const file = path.join(dir, 'deadletter', 'backend.log')
  t.ok(fs.existsSync(file), 'deadletter/backend.log exists')
  t.ok(fs.statSync(file).size > SEGMENT_HEADER_BYTES, 'and holds more than its header')
  const frames = await readDeadLetters(file)
  t.strictSame(frames.map(([l]) => l), [lsn.poison], 'it holds the poison record, under its own LSN')
  t.strictSame(frames[0]?.[1].type, RecordType.PUT)
  t.strictSame((frames[0]?.[1] as { op?: unknown }).op, { type: 'put', key: 'poison', value: { bad: true }, namespace: 'ns', tags: ['t1'] }, 'the whole record, as written')

  t.strictSame(await faults.backendContent(), new Map([['b', 'value-b'], ['c', 'value-c'], ['d', 'value-d'], ['e', 'value-e']]), 'every other record reached the backend')
  const applied = faults.applied('backend')
  t.equal(applied.get(lsn.poison as number), undefined, 'the poison record was never stored')
  for (const k of ['a', 'b', 'c', 'de', 'delA']) t.equal(applied.get(lsn[k] as number), 1, `LSN of ${k} applied exactly once`)
  const h = engine.health()
  t.equal(h.sinks.backend?.deadLetters, 1)
  t.equal(h.sinks.backend?.checkpoint, h.wal.lastLsn, 'the backend checkpoint moved past the poison')
  t.equal(h.backlog.records, 0)
  t.equal(h.state, 'open')

  // The sink moves on: later writes apply normally.
  await engine.put('after', 'fine')
  await engine.flush({ timeoutMs: 5000 })
  t.equal((await faults.backendContent()).get('after'), 'fine')
  await engine.close()

  // After reopen the poison is not retried, and a new one appends to the same log.
  const faults2 = new SinkFaults({ targets: ['backend'] })
  faults2.rejectKeys('poison')
  const again = await open(dir, faults2)
  t.teardown(() => again.close())
  const dead2: DeadLetterEvent[] = []
  again.on('dead-letter', (e: DeadLetterEvent) => dead2.push(e))
  t.equal(again.health().backlog.records, 0, 'nothing to replay: the checkpoint covers the poison')
  const { lsn: second } = await again.put('poison', 'again')
  await again.put('z', 'last')
  await again.flush({ timeoutMs: 5000 })
  t.strictSame(dead2.map((e) => e.lsn), [second])
  t.strictSame(faults2.applied('backend').get(second), undefined)
  t.equal(faults2.applied('backend').get(second + 1), 1, 'the record after it applied')
  await again.close()
  t.strictSame((await readDeadLetters(file)).map(([l]) => l), [lsn.poison, second], 'the dead-letter log keeps both, in order, readable')
})

t.test('a poison op inside a BATCH record dead-letters the whole record (a batch is all or nothing)', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend'] })
  faults.rejectKeys('bad')
  const engine = await open(dir, faults)
  t.teardown(() => engine.close())
  const dead: DeadLetterEvent[] = []
  engine.on('dead-letter', (e: DeadLetterEvent) => dead.push(e))
  await engine.put('before', 1)
  const { lsn } = await engine.batch([{ type: 'put', key: 'ok-1', value: 1 }, { type: 'put', key: 'bad', value: 2 }, { type: 'del', key: 'before' }])
  await engine.put('after', 3)
  await engine.flush({ timeoutMs: 5000 })
  t.strictSame(dead.map((e) => e.lsn), [lsn])
  t.strictSame(await faults.backendContent(), new Map<string, unknown>([['before', 1], ['after', 3]]), 'no op of the rejected batch reached the backend')
  const frames = await readDeadLetters(path.join(dir, 'deadletter', 'backend.log'))
  t.equal(frames.length, 1)
  t.equal(frames[0]?.[0], lsn)
  t.equal(frames[0]?.[1].type, RecordType.BATCH)
  await engine.close()
})
