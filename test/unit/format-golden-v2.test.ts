/**
 * Pins on-disk format version 2 with a golden segment
 * (fixtures/format-v2/00000000000000000001.seg, made by
 * fixtures/make-format-fixtures.ts from fixtures/format-v2/records.json): the
 * records of format-v1, each appended and awaited alone, so every record
 * frame follows its own group marker.
 *
 * If a test here fails, the bytes memwal writes or the way it reads them
 * changed: segments already on users' disks are at stake. Either undo the
 * change, or make a new format version (keeping a reader for this one) and a
 * new fixture directory; never just regenerate this file.
 */
import { readFileSync } from 'node:fs'
import t from 'tap'
import { encodeVersion1, FORMAT_VERSION, RecordCodec } from '../../engine/testing.js'
import { createChecksums } from '../../engine/format/checksum.js'
import { encodeFrame, encodeGroupMarkerInto, encodeSegmentHeader, GROUP_MARKER_BYTES, SEGMENT_HEADER_BYTES } from '../../engine/format/format.js'
import { scanFrames } from '../../engine/log/segment-cursor.js'
import { GOLDEN_SEGMENT, asDecodedV1, loadFixture, SEGMENT_BYTES, openGoldenAsLog, toWalRecord, trim, writeWithWal } from '../../fixtures/make-format-fixtures.js'

const golden = readFileSync(GOLDEN_SEGMENT)
const fixture = loadFixture()
/** The golden records are record codec version 1 (the payload): memwal writes version 2 and reads both (record-codec.ts). */
const expected = fixture.records.map((r) => asDecodedV1(toWalRecord(r)))

t.test('the fixture is what it claims to be', async (t) => {
  t.equal(FORMAT_VERSION, 2, 'this fixture pins version 2, the version the writer writes')
  t.strictSame(fixture.records.map((r) => r.lsn), [1, 2, 3, 4, 5, 6], 'records at LSNs 1..6')
  t.equal(golden.length, 456 + 6 * GROUP_MARKER_BYTES, 'golden segment size: the version 1 bytes and six 40-byte group markers')
})

t.test('(a) encoding the fixture records, each behind its marker, gives the golden bytes exactly', async (t) => {
  const sums = await createChecksums()
  const codec = new RecordCodec()
  const salt = fixture.segment.salt
  const parts = [encodeSegmentHeader({ version: 2, salt, baseLsn: 1, createdAtMs: fixture.segment.createdAtMs, gapFromLsn: 0 }, sums)]
  let at = SEGMENT_HEADER_BYTES
  for (const r of fixture.records) {
    const w = toWalRecord(r)
    const frame = encodeFrame({ lsn: r.lsn, type: w.type, payload: Buffer.from(encodeVersion1(codec, w)) }, salt, sums)
    const marker = Buffer.alloc(GROUP_MARKER_BYTES)
    // One write in flight, each acknowledged before the next: everything before a write was durable when it was issued.
    encodeGroupMarkerInto(marker, 0, { lsn: r.lsn, groupBytes: GROUP_MARKER_BYTES + frame.length, durableFrom: at }, salt, sums)
    parts.push(marker, frame)
    at += GROUP_MARKER_BYTES + frame.length
  }
  t.equal(firstDifference(Buffer.concat(parts), golden), -1, 'same bytes (first difference at -1 means none)')
})

t.test('(a) the WAL writer produces the golden segment, zero-padded to its preallocated size', async (t) => {
  const written = await writeWithWal(fixture)
  t.equal(written.length, SEGMENT_BYTES, 'the segment file is preallocated')
  t.equal(firstDifference(trim(written), golden), -1, 'header, markers and frames equal the golden bytes')
  t.ok(written.subarray(golden.length).every((b) => b === 0), 'zeros after the last frame')
})

t.test('(b) the golden bytes, read by hand against the spec in format.ts', async (t) => {
  const sums = await createChecksums()
  const b = golden
  const salt = 0x12345678
  t.equal(b.readUInt16LE(8), 2, 'format version 2')
  t.equal(b.readUInt32LE(60), sums.h32(b.subarray(0, 60), 0), 'header checksum')
  const codec = new RecordCodec()
  let at = SEGMENT_HEADER_BYTES
  const markers: number[] = []
  for (const [i, want] of expected.entries()) {
    const lsn = i + 1
    markers.push(at)
    t.equal(b.readUInt32LE(at), 0x5246574d, `marker ${lsn} at ${at}: frame magic`)
    t.equal(b.readUInt32LE(at + 4), sums.h32(b.subarray(at + 8, at + 32), salt), `marker ${lsn}: header checksum`)
    t.equal(b.readUInt32LE(at + 8) + b.readUInt32LE(at + 12) * 2 ** 32, lsn, `marker ${lsn}: the LSN of the frame after it`)
    t.equal(b.readUInt32LE(at + 16), 8, `marker ${lsn}: payload length 8`)
    t.equal(b[at + 20], 4, `marker ${lsn}: type 4, GROUP`)
    t.equal(b.readBigUInt64LE(at + 24), sums.h64(b.subarray(at + 32, at + 40)), `marker ${lsn}: payload checksum`)
    const frameAt = at + 40
    const length = b.readUInt32LE(frameAt + 16)
    t.equal(b.readUInt32LE(at + 32), 40 + 32 + length, `marker ${lsn}: group bytes, the marker and its one frame`)
    t.equal(b.readUInt32LE(at + 36), at, `marker ${lsn}: durable-from, where this write starts (the one before it was durable)`)
    t.equal(b.readUInt32LE(frameAt + 8), lsn, `frame ${lsn}: LSN`)
    t.equal(b[frameAt + 20], want.type, `frame ${lsn}: type`)
    t.strictSame(codec.decode(want.type, b.subarray(frameAt + 32, frameAt + 32 + length)), want, `frame ${lsn}: payload decodes to the record`)
    at = frameAt + 32 + length
  }
  t.equal(at, b.length, 'markers and frames are packed back to back')
  t.strictSame(markers, [64, 195, 295, 407, 487, 614], 'marker offsets, as fixtures/README.md lists them')
})

t.test('(b) the golden segment decodes with the format module, and as a real segment through Wal.open', async (t) => {
  const sums = await createChecksums()
  const codec = new RecordCodec()
  const scan = scanFrames({ bytes: golden, salt: fixture.segment.salt, recordBytesMax: SEGMENT_BYTES, sums, version: 2 })
  const frames = [...scan]
  t.strictSame(frames.map((f) => (f.kind === 'frame' ? f.lsn : f.kind)), [1, 2, 3, 4, 5, 6], 'six record frames, no damage; markers are not records')
  t.strictSame(frames.map((f) => (f.kind === 'frame' ? codec.decode(f.type, f.payload) : undefined)), expected, 'each decodes to its record')
  const v1 = [...scanFrames({ bytes: golden, salt: fixture.segment.salt, recordBytesMax: SEGMENT_BYTES, sums, version: 1 })]
  t.ok(v1.some((e) => e.kind === 'damage' && e.fault === 'bad-type'), 'read as version 1, a marker is not a frame (type 4 is only valid in version 2)')

  // As found on a disk: zero-padded to the segment size, under the strictest policy.
  const { findings, read, appendedLsn, after } = await openGoldenAsLog(golden)
  t.strictSame(findings, [], 'no findings')
  t.strictSame(read, expected.map((record, i) => ({ lsn: i + 1, record })), 'read back in order')
  t.equal(appendedLsn, 7, 'appends go on at LSN 7')
  t.equal(after[golden.length + 20], 4, 'behind a group marker of its own')
  t.equal(after.readUInt32LE(golden.length + 36), golden.length, 'whose durable-from is where the reopened log went on')
})

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.max(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return -1
}
