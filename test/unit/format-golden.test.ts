/**
 * Pins on-disk format version 1 with a golden segment
 * (fixtures/format-v1/00000000000000000001.seg, made by
 * fixtures/make-format-fixtures.ts from fixtures/format-v1/records.json when
 * the writer wrote version 1; frozen since version 2, which
 * format-golden-v2.test.ts pins). Version 1 segments are still read, and
 * appended to, exactly as before.
 *
 * If a test here fails, the bytes memwal writes or the way it reads them
 * changed: segments already on users' disks are at stake. Either undo the
 * change, or make a new format version (keeping a reader for this one) and a
 * new fixture directory; never just regenerate this file.
 */
import { readFileSync } from 'node:fs'
import t from 'tap'
import { encodeVersion1, RecordCodec, RecordType } from '../../engine/testing.js'
import { createChecksums } from '../../engine/format/checksum.js'
import { decodeFrame, encodeFrame, encodeSegmentHeader, FORMAT_VERSION_UNMARKED, SEGMENT_HEADER_BYTES } from '../../engine/format/format.js'
import { scanFrames } from '../../engine/log/segment-cursor.js'
import { FIXTURE_DIR_V1, GOLDEN_SEGMENT_V1, asDecodedV1, loadFixture, openGoldenAsLog, SEGMENT_BYTES, toWalRecord } from '../../fixtures/make-format-fixtures.js'

const golden = readFileSync(GOLDEN_SEGMENT_V1)
const fixture = loadFixture(FIXTURE_DIR_V1)
/** The golden records are record codec version 1 (the payload): memwal writes version 2 and reads both (record-codec.ts). */
const expected = fixture.records.map((r) => asDecodedV1(toWalRecord(r)))

t.test('the fixture is what it claims to be', async (t) => {
  t.equal(FORMAT_VERSION_UNMARKED, 1, 'this fixture pins version 1')
  t.strictSame(fixture.records.map((r) => r.lsn), [1, 2, 3, 4, 5, 6], 'records at LSNs 1..6')
  t.strictSame(fixture.records.map((r) => r.type), ['PUT', 'PUT', 'PUT', 'DELETE', 'BATCH', 'PUT'], 'PUT, DELETE and BATCH records')
  t.equal(golden.length, 456, 'golden segment size: 64-byte header and six frames')
})

t.test('(a) encoding the fixture records gives the golden bytes exactly', async (t) => {
  const sums = await createChecksums()
  const codec = new RecordCodec()
  const parts = [encodeSegmentHeader({ version: 1, salt: fixture.segment.salt, baseLsn: 1, createdAtMs: fixture.segment.createdAtMs, gapFromLsn: 0 }, sums)]
  for (const r of fixture.records) {
    const w = toWalRecord(r)
    parts.push(encodeFrame({ lsn: r.lsn, type: w.type, payload: Buffer.from(encodeVersion1(codec, w)) }, fixture.segment.salt, sums))
  }
  const encoded = Buffer.concat(parts)
  t.equal(encoded.length, golden.length, 'same length')
  t.equal(firstDifference(encoded, golden), -1, 'same bytes (first difference at -1 means none)')
})

t.test('(b) the golden bytes, read by hand against the spec in format.ts', async (t) => {
  const sums = await createChecksums()
  const b = golden
  t.equal(b.subarray(0, 8).toString('latin1'), 'MEMWALSG', 'segment magic')
  t.equal(b.readUInt16LE(8), 1, 'format version')
  t.equal(b.readUInt16LE(10), 64, 'header length')
  t.equal(b.readUInt32LE(12), 0x12345678, 'salt')
  t.equal(b.readBigUInt64LE(16), 1n, 'base LSN')
  t.equal(b.readBigUInt64LE(24), 1_700_000_000_000n, 'created-at ms')
  t.equal(b.readBigUInt64LE(32), 0n, 'gap-from LSN: none')
  t.ok(b.subarray(40, 60).every((x) => x === 0), 'reserved bytes are zero')
  t.equal(b.readUInt32LE(60), sums.h32(b.subarray(0, 60), 0), 'header checksum: xxh32 seed 0 of bytes 0..59')

  const codec = new RecordCodec()
  let at = SEGMENT_HEADER_BYTES
  const offsets: number[] = []
  for (const [i, want] of expected.entries()) {
    const lsn = i + 1
    offsets.push(at)
    t.equal(b.readUInt32LE(at), 0x5246574d, `frame ${lsn} at ${at}: magic "MWFR"`)
    t.equal(b.readUInt32LE(at + 4), sums.h32(b.subarray(at + 8, at + 32), 0x12345678), `frame ${lsn}: header checksum, xxh32 of bytes 8..31 seeded with the salt`)
    t.equal(b.readBigUInt64LE(at + 8), BigInt(lsn), `frame ${lsn}: LSN`)
    const length = b.readUInt32LE(at + 16)
    t.equal(b[at + 20], want.type, `frame ${lsn}: type`)
    t.equal(b[at + 21], 0, `frame ${lsn}: flags`)
    t.equal(b.readUInt16LE(at + 22), 0, `frame ${lsn}: reserved`)
    const payload = b.subarray(at + 32, at + 32 + length)
    t.equal(b.readBigUInt64LE(at + 24), sums.h64(payload), `frame ${lsn}: payload checksum, xxh64 seed 0`)
    t.strictSame(codec.decode(want.type, payload), want, `frame ${lsn}: payload decodes to the record`)
    at += 32 + length
  }
  t.equal(at, b.length, 'frames are packed back to back to the end of the data')
  t.strictSame(offsets, [64, 155, 215, 287, 327, 414], 'frame offsets, as fixtures/README.md lists them')
  t.strictSame(expected.map((r) => r.type), [RecordType.PUT, RecordType.PUT, RecordType.PUT, RecordType.DELETE, RecordType.BATCH, RecordType.PUT])
})

t.test('(b) the golden segment decodes with the format module, and as a real segment through Wal.open', async (t) => {
  const sums = await createChecksums()
  const codec = new RecordCodec()
  const frames = [...scanFrames({ bytes: golden, salt: fixture.segment.salt, recordBytesMax: SEGMENT_BYTES, sums })]
  t.strictSame(frames.map((f) => (f.kind === 'frame' ? f.lsn : f.kind)), [1, 2, 3, 4, 5, 6], 'six valid frames, no damage')
  t.strictSame(frames.map((f) => (f.kind === 'frame' ? codec.decode(f.type, f.payload) : undefined)), expected, 'each decodes to its record')

  // As found on a disk: zero-padded to the segment size, under the strictest policy.
  const { findings, read, appendedLsn, after } = await openGoldenAsLog(golden)
  t.strictSame(findings, [], 'no findings')
  t.strictSame(read, expected.map((record, i) => ({ lsn: i + 1, record })), 'read back in order')
  t.equal(appendedLsn, 7, 'appends go on at LSN 7')
  // Appended in version 1 framing: the next frame follows the last at once, with no group marker.
  t.equal(firstDifference(after.subarray(0, golden.length), golden), -1, 'the golden bytes are untouched')
  const seventh = decodeFrame(after, golden.length, fixture.segment.salt, SEGMENT_BYTES, sums)
  t.equal(seventh.kind === 'frame' ? seventh.lsn : seventh.kind, 7, 'LSN 7 is a record frame right after LSN 6')
})

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.max(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return -1
}
