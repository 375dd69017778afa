/**
 * Open loads the backlog (records some sink has not applied) in recovery's
 * own scan of the log (engine/apply/backlog-load.ts): each segment is read
 * once, and the backlog applies exactly as logged. When recovery ends with
 * anything but a clean log or a torn tail, or a frame does not decode, open
 * reads the backlog from the recovered log as it always did, with the same
 * outcome (records kept, errors raised).
 */
import fs from 'node:fs'
import { posix as path } from 'node:path'
import t, { type Test } from 'tap'
import { MemWAL, type MemwalOptions } from '../../engine/index.js'
import { NodeFileSystem, RecordCodec, RecordType } from '../../engine/testing.js'
import { BacklogLoad } from '../../engine/apply/backlog-load.js'
import { FRAME_MAGIC_BYTES } from '../../engine/format/format.js'
import type { RecoveryReport } from '../../engine/log/recovery/wal-recovery.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { ForwardingFileSystem } from '../support/forwarding-fs.js'
import { tmpDir } from '../support/tmp-dir.js'

/** Counts whole-file reads per file; fails the reads of one file when told to. */
class CountingFs extends ForwardingFileSystem {
  readonly reads = new Map<string, number>()
  failing: string | undefined

  override async readFile(p: string): Promise<Uint8Array> {
    this.reads.set(path.basename(p), (this.reads.get(path.basename(p)) ?? 0) + 1)
    if (this.failing !== undefined && path.basename(p) === this.failing) throw Object.assign(new Error(`EIO: injected, reading ${p}`), { code: 'EIO' })
    return super.readFile(p)
  }
}

const RECORDS = 600
const value = (i: number): unknown => ({ i, text: `record ${i} `.repeat(20) })
const options = (dir: string, extra: Partial<MemwalOptions> = {}): MemwalOptions => ({ dir, segmentBytes: 64 * 1024, resilience: fastResilience, closeGraceMs: 200, ...extra })

/** A directory whose log holds RECORDS puts that neither the backend nor the index applied (both down), over many segments. */
async function backlogDir(t: Test, dir: string): Promise<void> {
  const faults = new SinkFaults({ targets: ['backend', 'index'] })
  faults.down()
  const engine = await MemWAL.open(options(dir, { wrapSink: (s) => faults.wrap(s) }))
  for (let i = 0; i < RECORDS; i++) await engine.put(`k${i}`, value(i))
  t.equal(engine.health().backlog.records, RECORDS, 'every put is in the backlog')
  await engine.close()
}

const segmentFiles = (dir: string): string[] => fs.readdirSync(path.join(dir, 'wal')).filter((n) => n.endsWith('.seg'))

/** Opens `dir`, counting the segment reads of the open alone; then checks that the backlog applies and reads back. */
async function reopenAndDrain(t: Test, dir: string, expected: number, afterOpen?: () => void): Promise<Map<string, number>> {
  const counting = new CountingFs(new NodeFileSystem())
  const engine = await MemWAL.open(options(dir, { fs: counting }))
  const reads = new Map(counting.reads)
  afterOpen?.()
  t.teardown(() => engine.close())
  t.equal(engine.health().backlog.records, expected, 'the backlog is loaded at open')
  await engine.flush({ timeoutMs: 30_000 })
  const h = engine.health()
  t.equal(h.backlog.records, 0, 'and applied')
  t.equal(h.sinks['backend']?.checkpoint, h.wal.lastLsn, 'the backend reached the last LSN')
  for (const i of [0, 1, Math.floor(expected / 2), expected - 1]) t.strictSame(await engine.get(`k${i}`), value(i), `k${i} reads back as written`)
  const next = await engine.put('after', 1)
  t.equal(next.lsn, h.wal.lastLsn + 1, 'the log goes on after the backlog')
  return reads
}


t.test('open reads each segment of a backlog once, and the backlog applies as logged', async (t) => {
  const dir = tmpDir(t)
  await backlogDir(t, dir)
  const segments = segmentFiles(dir)
  t.ok(segments.length >= 4, `the log spans several segments (${segments.length})`)
  const reads = await reopenAndDrain(t, dir, RECORDS)
  const readTwice = [...reads].filter(([name, n]) => name.endsWith('.seg') && n > 1)
  t.strictSame(readTwice, [], 'no segment is read twice at open (recovery verifies and loads in one pass)')
  t.ok(segments.every((s) => reads.get(s) === 1), 'every segment holding the backlog is read')
})

t.test('a torn tail: the records before it are loaded in the same pass, the torn bytes are not', async (t) => {
  const dir = tmpDir(t)
  await backlogDir(t, dir)
  const last = segmentFiles(dir).at(-1) as string
  const file = path.join(dir, 'wal', last)
  const bytes = fs.readFileSync(file)
  let end = bytes.length
  while (end > 0 && bytes[end - 1] === 0) end--
  // The start of a frame that never completed: its magic and half a header, then nothing.
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, Buffer.concat([FRAME_MAGIC_BYTES, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])]), 0, 12, end)
  fs.closeSync(fd)
  const reads = await reopenAndDrain(t, dir, RECORDS, () => {
    t.ok(fs.readFileSync(file).subarray(end, end + 12).every((b) => b === 0), 'recovery zeroed the torn bytes')
  })
  t.equal(reads.get(last), 1, 'the torn segment is read once')
})

t.test('a segment that cannot be read fails open with its error, read ahead or not', async (t) => {
  const dir = tmpDir(t)
  await backlogDir(t, dir)
  const third = segmentFiles(dir)[2] as string
  const counting = new CountingFs(new NodeFileSystem())
  counting.failing = third
  await t.rejects(MemWAL.open(options(dir, { fs: counting })), { code: 'EIO' }, 'the read error of a later segment fails the open')
  // The directory is whole: a later open loads the backlog.
  await reopenAndDrain(t, dir, RECORDS)
})

/** A recovery report as BacklogLoad.result reads it. */
const report = (lastLsn: number, findings: RecoveryReport['findings'] = []): RecoveryReport => ({ policy: 'tolerate-torn-tail', segments: 1, records: lastLsn, lastLsn, nextLsn: lastLsn + 1, bytesScanned: 0, findings, removedTemps: [] })

t.test('what the scan handed over is the backlog only if it is exactly what the log holds after recovery', async (t) => {
  const codec = new RecordCodec()
  const frames = [1, 2, 3].map((lsn) => ({ kind: 'frame' as const, lsn, type: RecordType.PUT, offset: 64 * lsn, next: 64 * lsn + 64, payload: Buffer.from(codec.encode({ type: RecordType.PUT, op: { type: 'put', key: `k${lsn}`, value: lsn }, hlc: 1000 * lsn })) }))
  const segment = new Uint8Array(1 << 20)
  const loaded = (): BacklogLoad => {
    const l = new BacklogLoad(codec, 2, 0)
    for (const f of frames) l.onFrame(f, segment, true)
    return l
  }
  const clean = loaded().result(report(3), 5)
  t.equal(clean?.firstLsn, 2, 'a clean log: loaded from the first unapplied LSN')
  t.equal(clean?.nextLsn, 6, 'through the log\'s last LSN (LSNs past its last record hold none)')
  t.equal(clean?.frameAt(3)?.payload.buffer.byteLength, 1 << 20, 'a payload in a segment that is mostly zeros is copied (a small backlog holds no large segment)')
  t.ok(clean?.frameAt(3)?.payload.buffer !== segment.buffer)
  t.equal(loaded().hlcOf(3), 3000, 'the last record\'s clock stamp')
  t.equal(loaded().hlcOf(4), undefined, 'none for an LSN it did not load')
  t.ok(loaded().result(report(3, [{ kind: 'torn-tail', detail: 'torn', action: 'truncated' }]), 3), 'a torn tail: loaded')
  t.equal(loaded().result(report(3, [{ kind: 'damaged-marker', detail: 'marker', action: 'none' }]), 3), undefined, 'any other finding: read again')
  t.equal(loaded().result(report(4), 4), undefined, 'a log that holds more than the scan handed over: read again')
  t.equal(loaded().result(report(2), 2), undefined, 'a log cut before what the scan handed over: read again')
  const afterDamage = new BacklogLoad(codec, 2, 0)
  frames.forEach((f) => afterDamage.onFrame(f, segment, f.lsn < 3))
  t.equal(afterDamage.result(report(3), 3), undefined, 'a frame the scan does not count as the log\'s (after damage, or stale) is not loaded: read again')
  const bad = new BacklogLoad(codec, 1, 0)
  bad.onFrame({ ...(frames[0] as (typeof frames)[0]), payload: Buffer.from([0xc1]) }, segment, true)
  t.equal(bad.result(report(1), 1), undefined, 'a frame that does not decode: read again (which raises its error where open always did)')
  const full = new BacklogLoad(codec, 1, 0)
  const packed = Buffer.concat(frames.map((f) => f.payload))
  let at = 0
  for (const f of frames) {
    full.onFrame({ ...f, offset: at, payload: packed.subarray(at, at + f.payload.length) }, packed, true)
    at += f.payload.length
  }
  t.equal(full.result(report(3), 3)?.frameAt(2)?.payload.buffer, packed.buffer, 'a segment the backlog fills is kept as it is, not copied')
})
