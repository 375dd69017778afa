/**
 * Property-based tests of the pure on-disk format (engine/format/format.ts):
 * round trips, hostile bytes, and mutations of valid segments (G5: corruption
 * is detected, never returned as data).
 */
import t from 'tap'
import fc from 'fast-check'
import { createChecksums } from '../../engine/format/checksum.js'
import { mutateBytes, seededBytes, type ByteMutation } from '../support/byte-mutations.js'
import { checksumSpy } from '../support/checksum-spy.js'
import {
  decodeFrame, decodeSegmentHeader, encodeFrame, encodeFrameBodyInto, encodeFrameInto, encodeSegmentHeader, frameBytes, sealFrame,
  FORMAT_VERSION, FORMAT_VERSION_UNMARKED, FRAME_HEADER_BYTES, FRAME_MAGIC_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, type RecordType, type SegmentHeader,
} from '../../engine/format/format.js'
import { scanFrames, type ScanEvent } from '../../engine/log/segment-cursor.js'

const sums = await createChecksums()
/** FUZZ_SCALE=10 runs ten times as many cases (for a longer hunt than CI's). */
const runs = (n: number): number => Math.max(1, Math.round(n * Number(process.env.FUZZ_SCALE ?? 1)))
const RECORD_BYTES_MAX = 4 * 1024 * 1024

// ---- arbitraries ----

const lsnArb = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })
const typeArb = fc.constantFrom<RecordType>(1, 2, 3)
const saltArb = fc.integer({ min: 0, max: 0xffffffff })

/** Payloads of 0..64 KiB: small ones shrink well, large ones come from a seed. */
const payloadArb = fc.oneof(
  fc.uint8Array({ maxLength: 256 }),
  fc.tuple(fc.integer({ min: 0, max: 64 * 1024 }), fc.integer()).map(([n, seed]) => new Uint8Array(seededBytes(n, seed))),
  fc.constantFrom(new Uint8Array(0), new Uint8Array(64 * 1024), new Uint8Array(64 * 1024).fill(0xff)),
)

/** Bytes that look a little like frames: random, with frame magics and zero runs sprinkled in. */
function hostileBytes(maxLength: number): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ maxLength }),
    fc.tuple(fc.integer({ min: 0, max: maxLength }), fc.integer(), fc.array(fc.nat(), { maxLength: 8 }), fc.boolean()).map(([n, seed, magicAt, zeros]) => {
      const b = zeros ? Buffer.alloc(n) : seededBytes(n, seed)
      for (const at of magicAt) if (n >= 4) FRAME_MAGIC_BYTES.copy(b, at % (n - 3))
      return new Uint8Array(b)
    }),
  )
}

/** A frame header whose header checksum verifies for `salt` but whose fields are random: exercises every check after it. */
function forgedHeader(salt: number, fields: Uint8Array): Buffer {
  const b = Buffer.alloc(FRAME_HEADER_BYTES)
  FRAME_MAGIC_BYTES.copy(b, 0)
  b.set(fields.subarray(0, 24), 8)
  b.writeUInt32LE(sums.h32(b.subarray(8, 32), salt), 4)
  return b
}

const eq = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0

// ---- (a) round trips ----

t.test('a frame decodes to exactly what was encoded', async (t) => {
  fc.assert(
    fc.property(lsnArb, typeArb, payloadArb, saltArb, (lsn, type, payload, salt) => {
      const frame = encodeFrame({ lsn, type, payload }, salt, sums)
      if (frame.length !== frameBytes(payload.length)) return false
      const d = decodeFrame(frame, 0, salt, RECORD_BYTES_MAX, sums)
      return d.kind === 'frame' && d.lsn === lsn && d.type === type && d.flags === 0 && eq(d.payload, payload) && d.next === frame.length
    }),
    { numRuns: runs(300) },
  )
  t.pass('300 frames round-tripped')
})

t.test('a frame inside a larger buffer (and a view with a byteOffset) decodes at its offset', async (t) => {
  fc.assert(
    fc.property(lsnArb, typeArb, fc.uint8Array({ maxLength: 512 }), saltArb, fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 100 }), fc.nat({ max: 16 }),
      (lsn, type, payload, salt, before, after, viewStart) => {
        const whole = Buffer.alloc(viewStart + before.length + frameBytes(payload.length) + after.length)
        whole.set(before, viewStart)
        const end = encodeFrameInto(whole, viewStart + before.length, { lsn, type, payload }, salt, sums)
        whole.set(after, end)
        const view = whole.subarray(viewStart)
        const d = decodeFrame(view, before.length, salt, RECORD_BYTES_MAX, sums)
        return d.kind === 'frame' && d.lsn === lsn && d.type === type && eq(d.payload, payload) && d.next === end - viewStart
      }),
    { numRuns: runs(300) },
  )
  t.pass('framed at offsets')
})

t.test('encodeFrameBodyInto + sealFrame (even resealed) give the bytes encodeFrameInto gives', async (t) => {
  fc.assert(
    fc.property(lsnArb, lsnArb, typeArb, payloadArb, saltArb, saltArb, fc.nat({ max: 64 }), fc.integer(),
      (lsn1, lsn2, type, payload, salt1, salt2, offset, junkSeed) => {
        const size = offset + frameBytes(payload.length) + 8
        // Both buffers start with the same junk: nothing the encoder leaves unwritten may differ.
        const direct = seededBytes(size, junkSeed)
        const staged = seededBytes(size, junkSeed)
        const endDirect = encodeFrameInto(direct, offset, { lsn: lsn2, type, payload }, salt2, sums)
        const endBody = encodeFrameBodyInto(staged, offset, type, payload, sums)
        sealFrame(staged, offset, lsn1, salt1, sums) // sealed once for one place...
        sealFrame(staged, offset, lsn2, salt2, sums) // ...then for another: the writer may rebind a body
        return endDirect === endBody && endDirect === offset + frameBytes(payload.length) && eq(direct, staged)
      }),
    { numRuns: runs(200) },
  )
  t.pass('staged encoding is byte-identical')
})

const headerArb: fc.Arbitrary<SegmentHeader> = fc
  .record({
    salt: saltArb,
    baseLsn: lsnArb,
    createdAtMs: fc.oneof(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 })),
    gapPick: fc.double({ min: 0, max: 1, noNaN: true }),
    withGap: fc.boolean(),
  })
  .map(({ salt, baseLsn, createdAtMs, gapPick, withGap }) => ({
    version: FORMAT_VERSION,
    salt,
    baseLsn,
    createdAtMs,
    // 0, or an LSN in [1, baseLsn - 1]
    gapFromLsn: withGap && baseLsn > 1 ? 1 + Math.floor(gapPick * (baseLsn - 1)) % (baseLsn - 1) : 0,
  }))

t.test('segment header round trip, including gapFromLsn', async (t) => {
  fc.assert(
    fc.property(headerArb, (h) => {
      const bytes = encodeSegmentHeader(h, sums)
      const d = decodeSegmentHeader(bytes, sums)
      return bytes.length === SEGMENT_HEADER_BYTES && d.kind === 'header' &&
        d.header.version === h.version && d.header.salt === h.salt && d.header.baseLsn === h.baseLsn &&
        d.header.createdAtMs === h.createdAtMs && d.header.gapFromLsn === h.gapFromLsn
    }),
    { numRuns: runs(500) },
  )
  t.pass('headers round-tripped')
})

t.test('a header whose gap does not end before its base, or whose version is unknown, is refused', async (t) => {
  fc.assert(
    fc.property(headerArb, fc.nat(), (h, extra) => {
      const gapFromLsn = Math.min(Number.MAX_SAFE_INTEGER, h.baseLsn + (extra % 1000))
      return decodeSegmentHeader(encodeSegmentHeader({ ...h, gapFromLsn }, sums), sums).kind === 'corrupt'
    }),
    { numRuns: runs(200) },
  )
  fc.assert(
    fc.property(headerArb, fc.integer({ min: 0, max: 0xffff }).filter((v) => v !== FORMAT_VERSION && v !== FORMAT_VERSION_UNMARKED), (h, version) => {
      const d = decodeSegmentHeader(encodeSegmentHeader({ ...h, version }, sums), sums)
      return d.kind === 'unknown-version' && d.version === version
    }),
    { numRuns: runs(200) },
  )
  t.pass('refused')
})

t.test('any single bit flipped in a segment header makes it corrupt', async (t) => {
  fc.assert(
    fc.property(headerArb, fc.nat({ max: SEGMENT_HEADER_BYTES * 8 - 1 }), (h, bit) => {
      const bytes = encodeSegmentHeader(h, sums)
      bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) ^ (1 << (bit & 7))
      return decodeSegmentHeader(bytes, sums).kind === 'corrupt'
    }),
    { numRuns: runs(1000) },
  )
  t.pass('every flip detected')
})

// ---- (b) hostile bytes ----

function checkHostileDecode(bytes: Uint8Array, offset: number, salt: number, recordBytesMax: number): string | undefined {
  const w = checksumSpy(sums)
  let d
  try {
    d = decodeFrame(bytes, offset, salt, recordBytesMax, w)
  } catch (err) {
    return `threw ${String(err)}`
  }
  if (w.maxH64 > recordBytesMax) return `hashed ${w.maxH64} payload bytes, more than recordBytesMax ${recordBytesMax}`
  if (w.maxH32 > FRAME_HEADER_BYTES) return `hashed ${w.maxH32} header bytes`
  switch (d.kind) {
    case 'end':
      return undefined
    case 'invalid':
      if (d.lsn !== undefined && !(Number.isSafeInteger(d.lsn) && d.lsn >= 1)) return `invalid with lsn ${d.lsn}`
      return undefined
    case 'frame': {
      const p = d.payload
      if (p.length > recordBytesMax) return `payload ${p.length} > recordBytesMax`
      if (p.buffer !== bytes.buffer) return 'payload is not a view into the input'
      if (p.byteOffset !== bytes.byteOffset + offset + FRAME_HEADER_BYTES) return 'payload is not where the frame is'
      if (p.byteOffset + p.length > bytes.byteOffset + bytes.length) return 'payload extends past the input'
      if (d.next !== offset + FRAME_HEADER_BYTES + p.length || d.next > bytes.length) return `bad next ${d.next}`
      if (!(Number.isSafeInteger(d.lsn) && d.lsn >= 1) || ![1, 2, 3].includes(d.type)) return `bad fields lsn ${d.lsn} type ${d.type}`
      return undefined
    }
    default:
      return `unknown kind ${(d as { kind: string }).kind}`
  }
}

t.test('decodeFrame on hostile bytes at any offset never throws and never returns more than it was given', async (t) => {
  // Random bytes, or random bytes around a real frame (possibly cut short): with its salt, or another.
  const inputArb = fc.tuple(
    fc.oneof(
      hostileBytes(4096).map((bytes) => ({ bytes, salt: 0 })),
      fc.tuple(hostileBytes(64), lsnArb, typeArb, fc.uint8Array({ maxLength: 600 }), saltArb, hostileBytes(64), fc.nat({ max: 700 })).map(([before, lsn, type, payload, salt, after, cut]) => {
        const whole = Buffer.concat([before, encodeFrame({ lsn, type, payload }, salt, sums), after])
        return { bytes: new Uint8Array(whole.subarray(0, Math.max(0, whole.length - (cut % 40 === 0 ? cut : 0)))), salt, at: before.length }
      }),
    ),
    fc.nat({ max: 32 }), fc.nat({ max: 32 }), fc.boolean(), saltArb,
  ).map(([input, cutFront, cutBack, ownSalt, otherSalt]) => {
    // Sometimes a view into the middle of a larger buffer.
    const b = input.bytes
    const front = Math.min(cutFront, b.length, 'at' in input ? input.at : Infinity)
    return { bytes: b.subarray(front, Math.max(front, b.length - cutBack)), salt: ownSalt ? input.salt : otherSalt, at: 'at' in input ? input.at - front : undefined }
  })
  const kinds = { frame: 0, end: 0, invalid: 0 }
  fc.assert(
    fc.property(inputArb, fc.nat(), fc.boolean(), fc.integer({ min: 1, max: 8192 }), ({ bytes, salt, at }, offsetPick, atFrame, recordBytesMax) => {
      const offset = atFrame && at !== undefined ? at : offsetPick % (bytes.length + 40)
      const problem = checkHostileDecode(bytes, offset, salt, recordBytesMax)
      if (problem !== undefined) throw new Error(problem)
      kinds[decodeFrame(bytes, offset, salt, recordBytesMax, sums).kind]++
      return true
    }),
    { numRuns: runs(5000) },
  )
  t.ok(kinds.frame > 0 && kinds.end > 0 && kinds.invalid > 0, `every outcome exercised: ${JSON.stringify(kinds)}`)
})

t.test('a forged header that verifies, with random length/type/LSN, never leads to a huge or out-of-bounds read', async (t) => {
  fc.assert(
    fc.property(saltArb, fc.uint8Array({ minLength: 24, maxLength: 24 }), fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 1, max: 512 }), fc.boolean(),
      (salt, fields, rest, recordBytesMax, smallLength) => {
        const f = Buffer.from(fields)
        if (smallLength) f.writeUInt32LE(f.readUInt32LE(8) % 700, 8) // a length that may fit, to reach the payload check
        const bytes = Buffer.concat([forgedHeader(salt, f), rest])
        const problem = checkHostileDecode(bytes, 0, salt, recordBytesMax)
        if (problem !== undefined) throw new Error(problem)
        const d = decodeFrame(bytes, 0, salt, recordBytesMax, sums)
        // The header verified: whatever is wrong is named, with the LSN when it is safe to name.
        return d.kind !== 'end'
      }),
    { numRuns: runs(2000) },
  )
  t.pass('forged headers handled')
})

t.test('decodeSegmentHeader on arbitrary bytes never throws', async (t) => {
  const withMagic = fc.uint8Array({ minLength: 0, maxLength: 100 }).map((b) => {
    const out = Buffer.from(b)
    SEGMENT_MAGIC.copy(out, 0, 0, Math.min(8, out.length))
    return new Uint8Array(out)
  })
  // Magic and checksum right, fields random: reaches the range checks (u64 beyond 2^53, gap >= base, version, length).
  const checksummed = fc.uint8Array({ minLength: 64, maxLength: 64 }).map((b) => {
    const out = Buffer.from(b)
    SEGMENT_MAGIC.copy(out, 0)
    out.writeUInt32LE(sums.h32(out.subarray(0, 60), 0), 60)
    return new Uint8Array(out)
  })
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 100 }), withMagic, checksummed), fc.nat({ max: 8 }), (raw, start) => {
      const bytes = raw.subarray(Math.min(start, raw.length))
      const d = decodeSegmentHeader(bytes, sums)
      if (d.kind === 'header') {
        const h = d.header
        return h.version === FORMAT_VERSION && Number.isSafeInteger(h.baseLsn) && h.baseLsn >= 1 && Number.isSafeInteger(h.createdAtMs) &&
          Number.isSafeInteger(h.gapFromLsn) && h.gapFromLsn >= 0 && h.gapFromLsn < h.baseLsn && h.salt >= 0 && h.salt <= 0xffffffff
      }
      return d.kind === 'corrupt' || d.kind === 'unknown-version'
    }),
    { numRuns: runs(3000) },
  )
  t.pass('no arbitrary header broke the decoder')
})

// ---- (c) mutations of a valid segment ----

interface Original {
  readonly bytes: Buffer
  readonly salt: number
  readonly frames: readonly { readonly lsn: number; readonly type: RecordType; readonly payload: Buffer; readonly offset: number; readonly next: number }[]
  readonly framesEnd: number
}

const segmentArb: fc.Arbitrary<Original> = fc
  .record({
    salt: saltArb,
    baseLsn: fc.integer({ min: 1, max: 2 ** 40 }),
    frames: fc.array(fc.tuple(typeArb, fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.tuple(fc.integer({ min: 0, max: 3000 }), fc.integer()).map(([n, s]) => seededBytes(n, s)))), { minLength: 2, maxLength: 12 }),
    slack: fc.nat({ max: 256 }),
  })
  .map(({ salt, baseLsn, frames, slack }) => {
    const size = SEGMENT_HEADER_BYTES + frames.reduce((n, [, p]) => n + frameBytes(p.length), 0) + slack
    const bytes = Buffer.alloc(size)
    encodeSegmentHeader({ version: FORMAT_VERSION, salt, baseLsn, createdAtMs: 0, gapFromLsn: 0 }, sums).copy(bytes, 0)
    let at = SEGMENT_HEADER_BYTES
    const out = frames.map(([type, p], i) => {
      const offset = at
      at = encodeFrameInto(bytes, at, { lsn: baseLsn + i, type, payload: p }, salt, sums)
      return { lsn: baseLsn + i, type, payload: Buffer.from(p), offset, next: at }
    })
    return { bytes, salt, frames: out, framesEnd: at }
  })

const mutationArb: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('overwrite' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 200 }), seed: fc.integer(), zeros: fc.boolean() }),
  // A range of the segment copied elsewhere in it: stale duplicate frames, shifted headers.
  fc.record({ kind: fc.constant('splice' as const), from: fc.nat(), at: fc.nat(), length: fc.integer({ min: 1, max: 400 }) }),
)

/** Applies `m` to the frame bytes [64, framesEnd) of a copy; returns it and the offsets whose bytes changed. */
function mutate(o: Original, m: ByteMutation): { bytes: Buffer; changed: (from: number, to: number) => boolean } {
  const bytes = Buffer.from(o.bytes)
  const span = o.framesEnd - SEGMENT_HEADER_BYTES
  const inFrames = (n: number): number => SEGMENT_HEADER_BYTES + (n % span)
  mutateBytes(bytes, m, inFrames)
  return { bytes, changed: (from, to) => !o.bytes.subarray(from, to).equals(bytes.subarray(from, to)) }
}

/** Checks what a scan of `bytes` yields against the original frames; returns the LSNs yielded. */
function checkScan(o: Original, bytes: Uint8Array, salt: number): Set<number> & { overlaps(from: number, to: number): boolean } {
  const byLsn = new Map(o.frames.map((f) => [f.lsn, f]))
  const seen = new Set<number>()
  const events: ScanEvent[] = []
  const gen = scanFrames({ bytes, salt, recordBytesMax: RECORD_BYTES_MAX, sums })
  for (let step = gen.next(); !step.done; step = gen.next()) {
    events.push(step.value)
    if (events.length > bytes.length) throw new Error('scan does not terminate')
    const ev = step.value
    if (ev.kind !== 'frame') continue
    const orig = byLsn.get(ev.lsn)
    if (!orig) throw new Error(`scan returned LSN ${ev.lsn}, which the segment never held`)
    if (orig.type !== ev.type || !eq(orig.payload, ev.payload)) throw new Error(`scan returned LSN ${ev.lsn} with bytes other than written (G5)`)
    seen.add(ev.lsn)
  }
  // Events tile the scanned bytes from the header on, strictly forward.
  let at = SEGMENT_HEADER_BYTES
  for (const ev of events) {
    if (ev.offset !== at) throw new Error(`event at ${ev.offset}, expected ${at}`)
    const end = ev.kind === 'frame' ? ev.next : ev.end
    if (end <= ev.offset) throw new Error('event does not move forward')
    at = end
  }
  // Whether a frame the scan trusted covers part of [from, to) without starting there.
  const overlaps = (from: number, to: number): boolean => events.some((e) => e.kind === 'frame' && e.offset !== from && e.offset < to && from < e.next)
  return Object.assign(seen, { overlaps })
}

t.test('a mutated segment: corruption is detected, never returned as data (G5), and every untouched frame is still found', async (t) => {
  let detected = 0
  fc.assert(
    fc.property(segmentArb, mutationArb, (o, m) => {
      const { bytes, changed } = mutate(o, m)
      const seen = checkScan(o, bytes, o.salt)
      for (const f of o.frames) {
        const touched = changed(f.offset, f.next)
        // At its own offset, a changed frame is never returned as data.
        const d = decodeFrame(bytes, f.offset, o.salt, RECORD_BYTES_MAX, sums)
        if (d.kind === 'frame') {
          // Only a frame exactly as written may come back: a stale copy of another frame is the same data.
          const orig = o.frames.find((x) => x.lsn === d.lsn)
          if (!orig || orig.type !== d.type || !eq(orig.payload, d.payload)) throw new Error(`bytes at ${f.offset} decoded as LSN ${d.lsn} with bytes never written (G5)`)
          if (touched && d.lsn === f.lsn) throw new Error(`frame LSN ${f.lsn} changed but still decoded as itself`)
        }
        if (touched) detected++
        // Salvage: a frame whose bytes are intact is found by the scan.
        // (Unless a frame that verifies overlaps it: a stale copy whose last bytes this frame's first bytes happen to equal.)
        if (!touched && !seen.has(f.lsn) && !seen.overlaps(f.offset, f.next)) throw new Error(`intact frame LSN ${f.lsn} at ${f.offset} was not found after ${m.kind}`)
      }
      return true
    }),
    { numRuns: runs(1500) },
  )
  t.ok(detected > 0, `detected ${detected} damaged frames`)
})

t.test('a single bit flip in a frame makes exactly that frame invalid', async (t) => {
  fc.assert(
    fc.property(segmentArb, fc.nat(), fc.nat(), fc.nat({ max: 7 }), (o, which, pos, bit) => {
      const f = o.frames[which % o.frames.length]
      if (!f) return false
      const at = f.offset + (pos % (f.next - f.offset))
      const bytes = Buffer.from(o.bytes)
      bytes[at] = (bytes[at] ?? 0) ^ (1 << bit)
      if (decodeFrame(bytes, f.offset, o.salt, RECORD_BYTES_MAX, sums).kind !== 'invalid') return false
      const seen = checkScan(o, bytes, o.salt)
      return seen.size === o.frames.length - 1 && !seen.has(f.lsn)
    }),
    { numRuns: runs(1000) },
  )
  t.pass('every flip detected and confined to its frame')
})

t.test('under another salt every frame is invalid: a stale frame never verifies in another segment', async (t) => {
  fc.assert(
    fc.property(segmentArb, fc.integer({ min: 1, max: 0xffffffff }), (o, delta) => {
      const other = (o.salt ^ delta) >>> 0
      for (const f of o.frames) {
        const d = decodeFrame(o.bytes, f.offset, other, RECORD_BYTES_MAX, sums)
        if (d.kind !== 'invalid' || d.fault !== 'bad-header-checksum') return false
      }
      return checkScan(o, o.bytes, other).size === 0
    }),
    { numRuns: runs(300) },
  )
  t.pass('salt binds frames to their segment')
})
