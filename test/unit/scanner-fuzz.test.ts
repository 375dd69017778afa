/**
 * Fuzzing the segment scanner (engine/wal/segment-scanner.ts), the recovery
 * scan (engine/recovery/log-scan.ts) and Wal.open over random and mutated
 * segment images: the scan always terminates, moves strictly forward, never
 * yields a frame that was not written (G5) and allocates nothing beyond its
 * input; recovery refuses only with a typed error and every record it reads
 * back is the one written with that LSN.
 */
import t from 'tap'
import fc from 'fast-check'
import { createChecksums } from '../../engine/format/checksum.js'
import { mutateBytes, seededBytes } from '../support/byte-mutations.js'
import { checksumSpy } from '../support/checksum-spy.js'
import {
  dataEnd, encodeFrame, encodeSegmentHeader, FORMAT_VERSION, FRAME_HEADER_BYTES, FRAME_MAGIC_BYTES, SEGMENT_HEADER_BYTES, type RecordType,
} from '../../engine/format/format.js'
import { scanFrames, type ScanEvent } from '../../engine/log/segment-cursor.js'
import { scanLog } from '../../engine/log/recovery/log-scan.js'
import { MemwalError, type CorruptionPolicy, type ErrorCode } from '../../engine/index.js'
import { ManualClock, RecordType as RT, SeededRandom, SimulatedFileSystem, Wal } from '../../engine/testing.js'

const sums = await createChecksums()
/** FUZZ_SCALE=10 runs ten times as many cases (for a longer hunt than CI's). */
const runs = (n: number): number => Math.max(1, Math.round(n * Number(process.env.FUZZ_SCALE ?? 1)))

function countMagic(bytes: Uint8Array): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  let n = 0
  for (let at = b.indexOf(FRAME_MAGIC_BYTES, 0); at !== -1; at = b.indexOf(FRAME_MAGIC_BYTES, at + 1)) n++
  return n
}

interface Written {
  readonly type: RecordType
  readonly payload: Buffer
}

/**
 * Scans `bytes` and checks every invariant a caller relies on; throws naming
 * the first one broken. `written` maps each LSN ever framed with `salt` to its
 * record: anything else coming back is corruption returned as data.
 */
function checkedScan(bytes: Uint8Array, salt: number, recordBytesMax: number, written: ReadonlyMap<number, Written>): { frames: Map<number, number>; ranges: [number, number][]; damage: number } {
  const w = checksumSpy(sums)
  const frames = new Map<number, number>() // LSN -> offset
  const ranges: [number, number][] = [] // [offset, next) of every frame yielded
  let damage = 0
  let at = SEGMENT_HEADER_BYTES
  let steps = 0
  let lastFrameEnd = SEGMENT_HEADER_BYTES
  const gen = scanFrames({ bytes, salt, recordBytesMax, sums: w })
  let step: IteratorResult<ScanEvent, { readonly validEnd: number; readonly dataEnd: number }>
  for (step = gen.next(); !step.done; step = gen.next()) {
    const ev = step.value
    // Bounded: every event covers at least one byte, so there are fewer events than bytes.
    if (++steps > bytes.length) throw new Error('scan does not terminate')
    if (ev.offset !== at) throw new Error(`event at ${ev.offset} where ${at} was due: not strictly forward and contiguous`)
    if (ev.kind === 'frame') {
      const orig = written.get(ev.lsn)
      if (!orig) throw new Error(`scan yielded LSN ${ev.lsn} at ${ev.offset}, never written (G5)`)
      if (orig.type !== ev.type || Buffer.compare(orig.payload, ev.payload) !== 0) throw new Error(`scan yielded LSN ${ev.lsn} with other bytes than written (G5)`)
      const p = ev.payload
      if (p.buffer !== bytes.buffer || p.byteOffset !== bytes.byteOffset + ev.offset + FRAME_HEADER_BYTES || ev.next !== ev.offset + FRAME_HEADER_BYTES + p.length || ev.next > bytes.length) {
        throw new Error(`frame LSN ${ev.lsn} payload is not a view inside the input`)
      }
      if (p.length > recordBytesMax) throw new Error('payload beyond recordBytesMax')
      frames.set(ev.lsn, ev.offset)
      ranges.push([ev.offset, ev.next])
      at = ev.next
      lastFrameEnd = ev.next
    } else {
      if (ev.end <= ev.offset) throw new Error(`damage [${ev.offset}, ${ev.end}) does not move forward`)
      damage++
      at = ev.end
    }
  }
  // Nothing hashed beyond one header or one bounded payload: the checksum memory stays bounded by the input.
  if (w.maxInput > Math.max(FRAME_HEADER_BYTES, Math.min(recordBytesMax, bytes.length))) throw new Error(`hashed ${w.maxInput} bytes at once`)
  // Each frame magic in the input is tried at most twice (once while resynchronising, once as a frame).
  if (w.h32Calls > 2 * countMagic(bytes)) throw new Error(`${w.h32Calls} header checks for ${countMagic(bytes)} magics`)
  const end = dataEnd(bytes, SEGMENT_HEADER_BYTES)
  if (step.value.dataEnd !== end) throw new Error(`dataEnd ${step.value.dataEnd}, expected ${end}`)
  if (step.value.validEnd !== lastFrameEnd) throw new Error(`validEnd ${step.value.validEnd}, expected ${lastFrameEnd}`)
  return { frames, ranges, damage }
}

// ---- random segment images ----

type Chunk =
  | { readonly kind: 'frame'; readonly type: RecordType; readonly payload: Uint8Array }
  | { readonly kind: 'stale'; readonly salt: number; readonly payload: Uint8Array }
  | { readonly kind: 'lsn0'; readonly payload: Uint8Array }
  | { readonly kind: 'junk'; readonly length: number; readonly seed: number; readonly magics: number }
  | { readonly kind: 'zeros'; readonly length: number }
  | { readonly kind: 'cut'; readonly type: RecordType; readonly payload: Uint8Array; readonly keep: number }

const payloadArb = fc.oneof(fc.uint8Array({ maxLength: 48 }), fc.tuple(fc.integer({ min: 0, max: 2000 }), fc.integer()).map(([n, s]) => new Uint8Array(seededBytes(n, s))))
const typeArb = fc.constantFrom<RecordType>(1, 2, 3)
const chunkArb: fc.Arbitrary<Chunk> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('frame' as const), type: typeArb, payload: payloadArb }), weight: 4 },
  fc.record({ kind: fc.constant('stale' as const), salt: fc.integer({ min: 1, max: 0xffffffff }), payload: payloadArb }),
  fc.record({ kind: fc.constant('lsn0' as const), payload: payloadArb }),
  { arbitrary: fc.record({ kind: fc.constant('junk' as const), length: fc.integer({ min: 1, max: 300 }), seed: fc.integer(), magics: fc.nat({ max: 4 }) }), weight: 2 },
  fc.record({ kind: fc.constant('zeros' as const), length: fc.integer({ min: 1, max: 100 }) }),
  fc.record({ kind: fc.constant('cut' as const), type: typeArb, payload: payloadArb, keep: fc.nat() }),
)

interface Image {
  readonly bytes: Uint8Array
  readonly salt: number
  readonly written: Map<number, Written>
  /** The complete frames that verify with `salt`, with their place in `bytes`. */
  readonly whole: readonly { readonly lsn: number; readonly offset: number; readonly next: number }[]
}

/** A segment: header, then chunks of valid frames, junk, zeros, stale and cut-short frames; LSNs in random order. */
const imageArb: fc.Arbitrary<Image> = fc
  .record({ salt: fc.integer({ min: 0, max: 0xffffffff }), chunks: fc.array(chunkArb, { maxLength: 24 }), lsnSeed: fc.integer(), viewStart: fc.nat({ max: 8 }) })
  .map(({ salt, chunks, lsnSeed, viewStart }) => {
    const r = new SeededRandom(lsnSeed)
    const parts: Buffer[] = [Buffer.alloc(viewStart), encodeSegmentHeader({ version: FORMAT_VERSION, salt, baseLsn: 1, createdAtMs: 0, gapFromLsn: 0 }, sums)]
    const written = new Map<number, Written>()
    const whole: { lsn: number; offset: number; next: number }[] = []
    const at = (): number => parts.reduce((n, p) => n + p.length, 0) - viewStart
    const freshLsn = (): number => {
      for (;;) {
        const lsn = 1 + r.below(1_000_000)
        if (!written.has(lsn)) return lsn
      }
    }
    for (const c of chunks) {
      switch (c.kind) {
        case 'frame': {
          const lsn = freshLsn()
          written.set(lsn, { type: c.type, payload: Buffer.from(c.payload) })
          const f = encodeFrame({ lsn, type: c.type, payload: c.payload }, salt, sums)
          whole.push({ lsn, offset: at(), next: at() + f.length })
          parts.push(f)
          break
        }
        case 'stale': // a frame from another segment: must not verify here
          parts.push(encodeFrame({ lsn: freshLsn(), type: 1, payload: c.payload }, (salt ^ c.salt) >>> 0, sums))
          break
        case 'lsn0':
          parts.push(encodeFrame({ lsn: 0, type: 1, payload: c.payload }, salt, sums))
          break
        case 'junk': {
          const j = seededBytes(c.length, c.seed)
          for (let k = 0; k < c.magics && c.length >= 4; k++) FRAME_MAGIC_BYTES.copy(j, r.below(c.length - 3))
          parts.push(j)
          break
        }
        case 'zeros':
          parts.push(Buffer.alloc(c.length))
          break
        case 'cut': { // a torn write: a prefix of a frame; its LSN was written, its bytes never complete
          const lsn = freshLsn()
          written.set(lsn, { type: c.type, payload: Buffer.from(c.payload) })
          const f = encodeFrame({ lsn, type: c.type, payload: c.payload }, salt, sums)
          parts.push(f.subarray(0, c.keep % f.length))
          break
        }
      }
    }
    // Zeros after the data, as in a preallocated segment; the image is a view at a byteOffset.
    const all = Buffer.concat([...parts, Buffer.alloc(r.below(200))])
    return { bytes: all.subarray(viewStart), salt, written, whole }
  })

t.test('scanFrames over random segment images: terminates, strictly forward, yields only what was written, finds every whole frame', async (t) => {
  let frames = 0
  let damage = 0
  fc.assert(
    fc.property(imageArb, fc.integer({ min: 1, max: 4096 }), (img, recordBytesMax) => {
      const s = checkedScan(img.bytes, img.salt, recordBytesMax, img.written)
      frames += s.frames.size
      damage += s.damage
      // Every complete frame within recordBytesMax is found (salvage resynchronises on every magic),
      // unless a frame that verifies overlaps it: a frame cut short whose missing bytes the next one
      // happens to supply verifies (its bytes are all as written) and is trusted.
      for (const { lsn, offset, next } of img.whole) {
        const fits = (img.written.get(lsn)?.payload.length ?? 0) <= recordBytesMax
        const overlapped = s.ranges.some(([a, b]) => a !== offset && a < next && offset < b)
        if (fits && !overlapped && !s.frames.has(lsn)) throw new Error(`whole frame LSN ${lsn} not found`)
        if (!fits && s.frames.has(lsn)) throw new Error(`frame LSN ${lsn} beyond recordBytesMax returned`)
      }
      return true
    }),
    { numRuns: runs(1500) },
  )
  t.ok(frames > 0 && damage > 0, `scanned ${frames} frames and ${damage} damaged regions`)
})

t.test('frames whose payloads end in zero bytes are found, last in the segment too (zeros also mark the end)', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.array(fc.tuple(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 0, max: 64 })), { minLength: 1, maxLength: 6 }), fc.nat({ max: 100 }),
      (salt, specs, slack) => {
        const written = new Map<number, Written>()
        const parts: Buffer[] = [encodeSegmentHeader({ version: FORMAT_VERSION, salt, baseLsn: 1, createdAtMs: 0, gapFromLsn: 0 }, sums)]
        specs.forEach(([prefix, zeros], i) => {
          const payload = Buffer.concat([prefix, Buffer.alloc(zeros)])
          written.set(i + 1, { type: 1, payload })
          parts.push(encodeFrame({ lsn: i + 1, type: 1, payload }, salt, sums))
        })
        const bytes = Buffer.concat([...parts, Buffer.alloc(slack)])
        const s = checkedScan(bytes, salt, 4096, written)
        return s.damage === 0 && s.frames.size === specs.length
      }),
    { numRuns: runs(500) },
  )
  t.pass('every frame found, none taken for the end')
})

t.test('scanFrames over pure noise: never throws, never yields a frame', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 8192 }), fc.integer({ min: 0, max: 0xffffffff }), (noise, salt) => {
      const bytes = Buffer.concat([encodeSegmentHeader({ version: FORMAT_VERSION, salt, baseLsn: 1, createdAtMs: 0, gapFromLsn: 0 }, sums), noise])
      return checkedScan(bytes, salt, 4096, new Map()).frames.size === 0
    }),
    { numRuns: runs(500) },
  )
  t.pass('noise yields nothing')
})

// ---- mutated segments, written by the real WAL ----

const DIR = '/db'
const WAL_DIR = '/db/wal'
const SEGMENT_BYTES = 64 * 1024

interface Log {
  readonly sim: SimulatedFileSystem
  /** LSN -> the record as written. */
  readonly written: Map<number, Written>
  readonly lastLsn: number
}

function walOptions(fs: SimulatedFileSystem, seed: number, policy?: CorruptionPolicy, durableLsn?: number) {
  return {
    dir: DIR, fs, random: new SeededRandom(seed), clock: new ManualClock(), segmentBytes: SEGMENT_BYTES,
    ...(policy ? { corruptionPolicy: policy } : {}), ...(durableLsn !== undefined ? { durableLsn } : {}),
  }
}

/** Writes `count` records of up to `valueBytes` through the real WAL (in concurrent groups), closes it, and makes everything durable. */
async function writeLog(seed: number, count: number, valueBytes: number): Promise<Log> {
  const r = new SeededRandom(seed)
  const sim = new SimulatedFileSystem(new SeededRandom(seed ^ 0x5eed))
  const wal = await Wal.open(walOptions(sim, seed))
  for (let i = 0; i < count;) {
    const group: Promise<number>[] = []
    for (let g = 1 + r.below(8); g > 0 && i < count; g--, i++) {
      const value = seededBytes(r.below(valueBytes + 1), r.nextU32()).toString('base64')
      group.push(r.chance(0.8)
        ? wal.appendRecord({ type: RT.PUT, op: { type: 'put', key: `k${i}`, value: { i, value }, namespace: 'ns', tags: ['a'] } })
        : wal.appendRecord({ type: RT.DELETE, op: { type: 'del', key: `k${i}` } }))
    }
    await Promise.all(group)
  }
  const written = new Map<number, Written>()
  for await (const rec of wal.read(1)) written.set(rec.lsn, { type: rec.type, payload: Buffer.from(rec.payload) })
  const lastLsn = wal.lastLsn
  await wal.close()
  sim.snapshotDurable()
  if (written.size !== count || lastLsn !== count) throw new Error(`wrote ${count}, read back ${written.size}`)
  return { sim, written, lastLsn }
}

type FileMutation =
  | { readonly kind: 'flip'; readonly file: number; readonly at: number; readonly bit: number }
  | { readonly kind: 'overwrite'; readonly file: number; readonly at: number; readonly length: number; readonly seed: number; readonly zeros: boolean }
  | { readonly kind: 'splice'; readonly file: number; readonly from: number; readonly at: number; readonly length: number }
  | { readonly kind: 'cut'; readonly file: number; readonly at: number }
  | { readonly kind: 'header'; readonly file: number; readonly at: number; readonly seed: number }

const fileMutationArb: fc.Arbitrary<FileMutation> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('flip' as const), file: fc.nat(), at: fc.nat(), bit: fc.nat({ max: 7 }) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('overwrite' as const), file: fc.nat(), at: fc.nat(), length: fc.integer({ min: 1, max: 300 }), seed: fc.integer(), zeros: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('splice' as const), file: fc.nat(), from: fc.nat(), at: fc.nat(), length: fc.integer({ min: 1, max: 600 }) }), weight: 2 },
  fc.record({ kind: fc.constant('cut' as const), file: fc.nat(), at: fc.nat() }),
  fc.record({ kind: fc.constant('header' as const), file: fc.nat(), at: fc.nat({ max: SEGMENT_HEADER_BYTES - 1 }), seed: fc.integer() }),
)

/** Applies a mutation to one segment file, durably (a bit flip on the platter). Mutations land where data is. */
async function applyMutation(sim: SimulatedFileSystem, m: FileMutation): Promise<void> {
  const names = (await sim.readdir(WAL_DIR)).filter((n) => n.endsWith('.seg'))
  const name = names[m.file % names.length]
  if (name === undefined) return
  const file = `${WAL_DIR}/${name}`
  const bytes = Buffer.from(sim.peek(file) ?? Buffer.alloc(0))
  if (bytes.length === 0) return // already cut to nothing
  const span = Math.max(1, dataEnd(bytes, 0) + 64) // a little beyond the data, into the zeros
  const pos = (n: number): number => n % Math.min(span, bytes.length)
  switch (m.kind) {
    case 'flip':
    case 'overwrite':
    case 'splice':
      mutateBytes(bytes, m, pos)
      break
    case 'cut':
      sim.poke(file, bytes.subarray(0, pos(m.at)))
      return
    case 'header':
      bytes[m.at] = (bytes[m.at] ?? 0) ^ (1 + (m.seed & 0xfe))
      break
  }
  sim.poke(file, bytes)
}

const CORRUPTION_CODES: readonly ErrorCode[] = ['WAL_CORRUPT_FRAME', 'WAL_CORRUPT_HEADER', 'WAL_TORN_TAIL', 'WAL_HOLE', 'WAL_MISSING_SEGMENT', 'WAL_LSN_SEQUENCE', 'WAL_UNKNOWN_VERSION']

function expectTypedRefusal(err: unknown, what: string): void {
  if (!(err instanceof MemwalError) || !CORRUPTION_CODES.includes(err.code)) {
    throw new Error(`${what} threw something other than a corruption error: ${err instanceof MemwalError ? err.code : ''} ${String(err)}`, { cause: err })
  }
}

/** Reads the whole log; every record must be the one written with its LSN, in increasing LSN order. */
async function readAll(wal: Wal, written: ReadonlyMap<number, Written>): Promise<number[]> {
  const lsns: number[] = []
  for await (const rec of wal.read(1)) {
    const orig = written.get(rec.lsn)
    if (!orig) throw new Error(`read LSN ${rec.lsn}, never written`)
    if (orig.type !== rec.type || Buffer.compare(orig.payload, rec.payload) !== 0) throw new Error(`read LSN ${rec.lsn} with other bytes than written (G5)`)
    if (lsns.length > 0 && rec.lsn <= (lsns[lsns.length - 1] ?? 0)) throw new Error(`LSN ${rec.lsn} after ${lsns[lsns.length - 1]}`)
    lsns.push(rec.lsn)
  }
  return lsns
}

const logArb = fc.record({ seed: fc.integer({ min: 0, max: 0xffffffff }), count: fc.integer({ min: 1, max: 120 }), valueBytes: fc.constantFrom(16, 400, 1500) })

t.test('the recovery scan over mutated segments: never throws, reports places inside the files, counts only real records', async (t) => {
  let problems = 0
  await fc.assert(
    fc.asyncProperty(logArb, fc.array(fileMutationArb, { minLength: 1, maxLength: 4 }), async ({ seed, count, valueBytes }, mutations) => {
      const log = await writeLog(seed, count, valueBytes)
      for (const m of mutations) await applyMutation(log.sim, m)
      const scan = await scanLog({ fs: log.sim, sums, walDir: WAL_DIR, recordBytesMax: SEGMENT_BYTES - 96, verifyFromLsn: 0 })
      if (scan.records > count || scan.maxLsn > log.lastLsn) throw new Error(`scan counted ${scan.records} records up to LSN ${scan.maxLsn} of ${count}`)
      for (const p of scan.problems) {
        const seg = scan.segments[p.segmentIndex]
        if (!seg) throw new Error(`problem names segment #${p.segmentIndex} of ${scan.segments.length}`)
        if (p.offset < 0 || p.offset > seg.size || (p.end !== undefined && (p.end < p.offset || p.end > seg.size))) throw new Error(`problem [${p.offset}, ${p.end}) outside ${seg.entry.name} (${seg.size} bytes)`)
        if (p.lsnFirst !== undefined && p.lsnLast !== undefined && p.lsnLast < p.lsnFirst) throw new Error(`problem LSNs ${p.lsnFirst}-${p.lsnLast}`)
      }
      problems += scan.problems.length
      return true
    }),
    { numRuns: runs(200) },
  )
  t.ok(problems > 0, `${problems} problems reported`)
})

t.test('Wal.open over mutated segments, every policy: refuses only with a corruption code; what it reads back is what was written; it stays writable', async (t) => {
  const opened: Record<string, number> = {}
  let salvaged = 0
  await fc.assert(
    fc.asyncProperty(logArb, fc.array(fileMutationArb, { minLength: 0, maxLength: 4 }), async ({ seed, count, valueBytes }, mutations) => {
      const log = await writeLog(seed, count, valueBytes)
      for (const m of mutations) await applyMutation(log.sim, m)
      log.sim.snapshotDurable()
      // The strict policies twice: without a durable LSN (a log cut exactly at a frame boundary is then
      // indistinguishable from a shorter log), and told, as sinks' checkpoints would, that all were acknowledged.
      const variants = [['skip-corrupt'], ['tolerate-torn-tail'], ['tolerate-torn-tail', count], ['absolute'], ['absolute', count], ['point-in-time']] as const
      for (const [policy, durableLsn] of variants as readonly (readonly [CorruptionPolicy, number?])[]) {
        const variant = durableLsn === undefined ? policy : `${policy}, all durable`
        const fs = log.sim.restart(seed) // a fresh copy of the damaged disk for each policy
        let wal: Wal
        try {
          wal = await Wal.open(walOptions(fs, seed, policy, durableLsn))
        } catch (err) {
          expectTypedRefusal(err, `Wal.open(${variant})`)
          continue
        }
        opened[variant] = (opened[variant] ?? 0) + 1
        const lsns = await readAll(wal, log.written)
        if (policy !== 'skip-corrupt') {
          // The strict policies keep a contiguous prefix of the log.
          lsns.forEach((lsn, i) => { if (lsn !== i + 1) throw new Error(`${variant}: LSN ${lsn} at position ${i}`) })
        } else {
          salvaged += lsns.length
        }
        // A log that must hold every record it acknowledged opens only if it does (a hole is refused, never truncated).
        if (durableLsn !== undefined && lsns.length !== count) throw new Error(`${variant} opened but read ${lsns.length} of ${count} records`)
        // Recovery left a log that takes new records, numbered after everything it kept, and reopens cleanly.
        const payload = Buffer.from(`after-${variant}`)
        const lsn = await wal.append(RT.DELETE, payload)
        if (lsns.length > 0 && lsn <= (lsns[lsns.length - 1] ?? 0)) throw new Error(`${variant}: new LSN ${lsn} not after ${lsns[lsns.length - 1]}`)
        await wal.close()
        const after = new Map(log.written)
        after.set(lsn, { type: RT.DELETE, payload })
        let again: Wal
        try {
          again = await Wal.open(walOptions(fs, seed + 1, policy, durableLsn))
        } catch (err) {
          throw new Error(`${variant}: reopening the recovered log failed: ${String(err)}`, { cause: err })
        }
        const relsns = await readAll(again, after)
        await again.close()
        if (relsns.join() !== [...lsns, lsn].join()) throw new Error(`${variant}: reopened log reads [${relsns.join()}], expected [${[...lsns, lsn].join()}]`)
      }
      return true
    }),
    { numRuns: runs(250) },
  )
  t.ok((opened['skip-corrupt'] ?? 0) > 0 && salvaged > 0, `opened ${JSON.stringify(opened)}, salvaged ${salvaged} records`)
})
