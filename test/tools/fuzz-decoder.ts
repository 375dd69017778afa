/**
 * Long-run fuzzer for the frame decoder and the segment scanner.
 *
 *   npx tsx test/tools/fuzz-decoder.ts --inputs 1000000 --seed 42 [--json]
 *   npx tsx test/tools/fuzz-decoder.ts --seed 42 --replay 123456   (one input, described)
 *
 * Each input is derived from (seed, index), so a violation is replayed exactly
 * with --replay. Half the inputs are valid segments (real frames from
 * format.ts) damaged by 1-4 mutations (bit flips, random or zero overwrites,
 * copies of other parts of the segment, truncation); the rest are random
 * segment images: junk, frame magics, zeros, frames under another salt, frames
 * cut short, frames with LSN 0, and valid frames. Every input goes through
 * scanFrames and through decodeFrame at each original frame offset and at
 * random offsets.
 *
 * A violation is: anything thrown; a frame whose (LSN, type, payload) was never
 * written (G5: corruption returned as data); a payload that is not a view inside
 * the input or exceeds recordBytesMax; a scan event that does not move strictly
 * forward from where the last one ended; a scan longer than its input; a
 * checksum taken over more than one header or one bounded payload; a frame
 * whose bytes were left intact that the scan did not find. Exit code 0 when
 * clean, 1 on any violation, 16 on a usage error.
 */
import { parseArgs } from 'node:util'
import { createChecksums, type Checksums } from '../../engine/format/checksum.js'
import {
  dataEnd, decodeFrame, encodeFrameInto, encodeSegmentHeader, frameBytes, FORMAT_VERSION, FRAME_HEADER_BYTES, FRAME_MAGIC_BYTES,
  SEGMENT_HEADER_BYTES, type RecordType,
} from '../../engine/format/format.js'
import { scanFrames } from '../../engine/log/segment-cursor.js'
import { SeededRandom } from '../../engine/io/random.js'

interface Frame {
  readonly lsn: number
  readonly type: RecordType
  readonly offset: number
  readonly next: number
  /** The frame's bytes as written: its payload is bytes[32..]. */
  readonly bytes: Buffer
}

interface Input {
  readonly kind: 'mutated-segment' | 'random-image'
  readonly bytes: Uint8Array
  readonly salt: number
  readonly recordBytesMax: number
  /** Every frame ever written with `salt` in this input, by LSN. */
  readonly written: ReadonlyMap<number, Frame>
  readonly mutations: readonly string[]
}

interface Totals {
  inputs: number
  bytes: number
  framesFound: number
  damageRegions: number
  decodes: { frame: number; end: number; invalid: number }
  maxHashedBytes: number
}

class Violation extends Error {}

// ---- input generation ----

function fill(r: SeededRandom, b: Buffer, from = 0, to = b.length): Buffer {
  let i = from
  for (; i + 4 <= to; i += 4) b.writeUInt32LE(r.nextU32(), i)
  for (; i < to; i++) b[i] = r.nextU32() & 0xff
  return b
}

function payloadLength(r: SeededRandom): number {
  const p = r.below(100)
  return p < 10 ? 0 : p < 85 ? r.below(256) : p < 98 ? r.below(2048) : r.below(16 * 1024)
}

function recordBytesMaxFor(r: SeededRandom): number {
  const p = r.below(10)
  return p < 6 ? 4 * 1024 * 1024 : p < 8 ? 1024 : 1 + r.below(300)
}

const RECORD_TYPES: readonly RecordType[] = [1, 2, 3]

function frameBuffer(lsn: number, type: RecordType, payload: Buffer, salt: number, sums: Checksums): Buffer {
  const f = Buffer.alloc(frameBytes(payload.length))
  encodeFrameInto(f, 0, { lsn, type, payload }, salt, sums)
  return f
}

function header(salt: number, baseLsn: number, sums: Checksums): Buffer {
  return encodeSegmentHeader({ version: FORMAT_VERSION, salt, baseLsn, createdAtMs: 0, gapFromLsn: 0 }, sums)
}

/** A valid segment with 0-16 frames, then 1-4 mutations of its bytes. */
function mutatedSegment(r: SeededRandom, sums: Checksums): Input {
  const salt = r.nextU32()
  const baseLsn = 1 + r.below(2 ** 32)
  const count = r.below(17)
  const frames: Frame[] = []
  const parts: Buffer[] = [header(salt, baseLsn, sums)]
  let at = SEGMENT_HEADER_BYTES
  for (let i = 0; i < count; i++) {
    const type = RECORD_TYPES[r.below(3)] ?? 1
    const bytes = frameBuffer(baseLsn + i, type, fill(r, Buffer.alloc(payloadLength(r))), salt, sums)
    frames.push({ lsn: baseLsn + i, type, offset: at, next: at + bytes.length, bytes })
    parts.push(bytes)
    at += bytes.length
  }
  parts.push(Buffer.alloc(r.below(512))) // the preallocated zeros after the data
  let bytes = Buffer.concat(parts)
  const original = Buffer.from(bytes)
  const mutations: string[] = []
  for (let m = 1 + r.below(4); m > 0 && bytes.length > 0; m--) {
    // Mostly inside the frames, sometimes in the header or the zeros after them.
    const inFrames = r.chance(0.85) && Math.min(at, bytes.length) > SEGMENT_HEADER_BYTES
    const lo = inFrames ? SEGMENT_HEADER_BYTES : 0
    const hi = inFrames ? Math.min(at, bytes.length) : bytes.length
    const pos = (): number => lo + r.below(hi - lo)
    const kind = r.below(6)
    if (kind <= 1) {
      const p = pos()
      const bit = r.below(8)
      bytes[p] = (bytes[p] ?? 0) ^ (1 << bit)
      mutations.push(`flip bit ${bit} at ${p}`)
    } else if (kind === 2) {
      const p = pos()
      const n = Math.min(1 + r.below(200), bytes.length - p)
      fill(r, bytes, p, p + n)
      mutations.push(`random bytes at [${p}, ${p + n})`)
    } else if (kind === 3) {
      const p = pos()
      const n = Math.min(1 + r.below(200), bytes.length - p)
      bytes.fill(0, p, p + n)
      mutations.push(`zeros at [${p}, ${p + n})`)
    } else if (kind === 4) {
      const from = r.below(bytes.length)
      const p = pos()
      const n = Math.min(1 + r.below(600), bytes.length - from, bytes.length - p)
      original.copy(bytes, p, from, from + n) // stale copies of frames, shifted headers
      mutations.push(`copy of [${from}, ${from + n}) to ${p}`)
    } else {
      const n = pos()
      bytes = bytes.subarray(0, n)
      mutations.push(`cut at ${n}`)
    }
  }
  return { kind: 'mutated-segment', bytes, salt, recordBytesMax: recordBytesMaxFor(r), written: new Map(frames.map((f) => [f.lsn, f])), mutations }
}

/** A segment header followed by chunks of junk, magics, zeros, valid, stale, cut and LSN-0 frames. */
function randomImage(r: SeededRandom, sums: Checksums): Input {
  const salt = r.nextU32()
  const parts: Buffer[] = [header(salt, 1, sums)]
  const written = new Map<number, Frame>()
  let at = SEGMENT_HEADER_BYTES
  const push = (b: Buffer): void => {
    parts.push(b)
    at += b.length
  }
  for (let c = r.below(20); c > 0; c--) {
    const kind = r.below(8)
    if (kind <= 1) {
      const lsn = 1 + r.below(2 ** 40)
      if (written.has(lsn)) continue
      const type = RECORD_TYPES[r.below(3)] ?? 1
      const bytes = frameBuffer(lsn, type, fill(r, Buffer.alloc(payloadLength(r))), salt, sums)
      written.set(lsn, { lsn, type, offset: at, next: at + bytes.length, bytes })
      push(bytes)
    } else if (kind === 2) {
      const j = fill(r, Buffer.alloc(1 + r.below(400)))
      for (let k = r.below(4); k > 0 && j.length >= 4; k--) FRAME_MAGIC_BYTES.copy(j, r.below(j.length - 3))
      push(j)
    } else if (kind === 3) {
      push(Buffer.alloc(1 + r.below(100)))
    } else if (kind === 4) {
      push(frameBuffer(1 + r.below(1000), 1, fill(r, Buffer.alloc(payloadLength(r))), (salt ^ (1 + r.below(2 ** 31))) >>> 0, sums))
    } else if (kind === 5) {
      push(frameBuffer(0, 1, fill(r, Buffer.alloc(r.below(64))), salt, sums))
    } else if (kind === 6) {
      const lsn = 1 + r.below(2 ** 40)
      if (written.has(lsn)) continue
      const type = RECORD_TYPES[r.below(3)] ?? 1
      const full = frameBuffer(lsn, type, fill(r, Buffer.alloc(1 + payloadLength(r))), salt, sums)
      written.set(lsn, { lsn, type, offset: -1, next: -1, bytes: full }) // written, but only a prefix landed
      push(full.subarray(0, r.below(full.length)))
    } else {
      // A header that verifies, with random length, type and LSN fields.
      const h = fill(r, Buffer.alloc(FRAME_HEADER_BYTES))
      FRAME_MAGIC_BYTES.copy(h, 0)
      h.writeUInt32LE(sums.h32(h.subarray(8, 32), salt), 4)
      push(h)
    }
  }
  push(Buffer.alloc(r.below(256)))
  return { kind: 'random-image', bytes: Buffer.concat(parts), salt, recordBytesMax: recordBytesMaxFor(r), written, mutations: [] }
}

function makeInput(seed: number, index: number, sums: Checksums): Input {
  const r = new SeededRandom((Math.imul(seed, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0)
  return r.chance(0.5) ? mutatedSegment(r, sums) : randomImage(r, sums)
}

// ---- checks ----

function watched(inner: Checksums): Checksums & { max: number } {
  const w = {
    max: 0,
    h32(bytes: Uint8Array, seed: number): number {
      if (bytes.length > w.max) w.max = bytes.length
      return inner.h32(bytes, seed)
    },
    h64(bytes: Uint8Array): bigint {
      if (bytes.length > w.max) w.max = bytes.length
      return inner.h64(bytes)
    },
    h32of24(dv: DataView, offset: number, seed: number): number {
      if (24 > w.max) w.max = 24
      if (offset < 0 || offset + 24 > dv.byteLength) throw new Violation(`header checksum over [${offset}, ${offset + 24}) outside the input`)
      return inner.h32of24(dv, offset, seed)
    },
  }
  return w
}

function checkFrame(input: Input, lsn: number, type: number, payload: Uint8Array, offset: number, next: number, where: string): void {
  const orig = input.written.get(lsn)
  if (!orig) throw new Violation(`${where}: frame with LSN ${lsn} at ${offset}, never written`)
  if (orig.type !== type || Buffer.compare(orig.bytes.subarray(FRAME_HEADER_BYTES), payload) !== 0) throw new Violation(`${where}: LSN ${lsn} at ${offset} with bytes other than written`)
  const b = input.bytes
  if (payload.buffer !== b.buffer || payload.byteOffset !== b.byteOffset + offset + FRAME_HEADER_BYTES || next !== offset + FRAME_HEADER_BYTES + payload.length || next > b.length) {
    throw new Violation(`${where}: payload of LSN ${lsn} is not a view inside the input`)
  }
  if (payload.length > input.recordBytesMax) throw new Violation(`${where}: payload of ${payload.length} bytes > recordBytesMax ${input.recordBytesMax}`)
}

function checkInput(input: Input, sums: Checksums, t: Totals, r: SeededRandom): void {
  const w = watched(sums)
  const bytes = input.bytes
  // The scan: strictly forward, contiguous, bounded, only frames as written.
  const found = new Set<number>()
  const ranges: [number, number][] = []
  let at = SEGMENT_HEADER_BYTES
  let steps = 0
  const gen = scanFrames({ bytes, salt: input.salt, recordBytesMax: input.recordBytesMax, sums: w })
  for (let step = gen.next(); ; step = gen.next()) {
    if (step.done) {
      if (step.value.dataEnd !== dataEnd(bytes, SEGMENT_HEADER_BYTES)) throw new Violation(`scan: dataEnd ${step.value.dataEnd} wrong`)
      break
    }
    const ev = step.value
    if (++steps > bytes.length) throw new Violation('scan: more events than bytes: does not terminate')
    if (ev.offset !== at) throw new Violation(`scan: event at ${ev.offset} where ${at} was due`)
    if (ev.kind === 'frame') {
      checkFrame(input, ev.lsn, ev.type, ev.payload, ev.offset, ev.next, 'scan')
      found.add(ev.lsn)
      ranges.push([ev.offset, ev.next])
      t.framesFound++
      at = ev.next
    } else {
      if (ev.end <= ev.offset || ev.end > bytes.length) throw new Violation(`scan: damage [${ev.offset}, ${ev.end}) does not move forward`)
      t.damageRegions++
      at = ev.end
    }
  }
  // Salvage: every frame whose bytes are intact where they were written is found, unless a frame
  // that verifies overlaps it (a frame cut short whose missing bytes the next frame happens to supply).
  for (const f of input.written.values()) {
    if (f.offset < 0 || f.bytes.length - FRAME_HEADER_BYTES > input.recordBytesMax) continue
    const overlapped = ranges.some(([a, b]) => a !== f.offset && a < f.next && f.offset < b)
    if (f.next <= bytes.length && Buffer.compare(f.bytes, bytes.subarray(f.offset, f.next)) === 0 && !found.has(f.lsn) && !overlapped) {
      throw new Violation(`scan: intact frame LSN ${f.lsn} at ${f.offset} not found`)
    }
  }
  // Direct decodes at every original frame offset and at random ones (past the end too).
  const offsets = [...input.written.values()].filter((f) => f.offset >= 0).map((f) => f.offset)
  for (let k = 0; k < 4; k++) offsets.push(r.below(bytes.length + 40))
  for (const offset of offsets) {
    const d = decodeFrame(bytes, offset, input.salt, input.recordBytesMax, w)
    t.decodes[d.kind]++
    if (d.kind === 'frame') checkFrame(input, d.lsn, d.type, d.payload, offset, d.next, `decodeFrame(${offset})`)
    else if (d.kind === 'invalid' && d.lsn !== undefined && !(Number.isSafeInteger(d.lsn) && d.lsn >= 1)) throw new Violation(`decodeFrame(${offset}): invalid names LSN ${d.lsn}`)
  }
  if (w.max > Math.max(FRAME_HEADER_BYTES, Math.min(input.recordBytesMax, bytes.length))) throw new Violation(`hashed ${w.max} bytes at once`)
  if (w.max > t.maxHashedBytes) t.maxHashedBytes = w.max
}

// ---- main ----

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: npx tsx test/tools/fuzz-decoder.ts --inputs N --seed S [--json] | --seed S --replay INDEX\n`)
  process.exit(16)
}

function intArg(v: string | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}`)
  return n
}

async function main(): Promise<void> {
  let args
  try {
    args = parseArgs({ options: { inputs: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean', default: false }, replay: { type: 'string' } }, strict: true })
  } catch (err) {
    usage((err as Error).message)
  }
  const seed = intArg(args.values.seed, 'seed', 0) ?? (Date.now() % 2 ** 31)
  const replay = intArg(args.values.replay, 'replay', 0)
  const inputs = intArg(args.values.inputs, 'inputs', 1) ?? (replay === undefined ? usage('--inputs is required') : 1)
  const sums = await createChecksums()
  const totals: Totals = { inputs: 0, bytes: 0, framesFound: 0, damageRegions: 0, decodes: { frame: 0, end: 0, invalid: 0 }, maxHashedBytes: 0 }
  const violations: { input: number; kind: string; message: string; mutations: readonly string[] }[] = []
  let maxHeapBytes = 0
  let maxRssBytes = 0
  const sample = (): void => {
    const m = process.memoryUsage()
    maxHeapBytes = Math.max(maxHeapBytes, m.heapUsed)
    maxRssBytes = Math.max(maxRssBytes, m.rss)
  }
  const progress = process.stderr.isTTY && !args.values.json
  const started = process.hrtime.bigint()
  const first = replay ?? 0
  for (let i = first; i < first + inputs; i++) {
    let input: Input | undefined
    try {
      input = makeInput(seed, i, sums)
      totals.inputs++
      totals.bytes += input.bytes.length
      checkInput(input, sums, totals, new SeededRandom(i ^ seed))
      if (replay !== undefined) process.stderr.write(`input ${i}: ${input.kind}, ${input.bytes.length} bytes, salt ${input.salt}, recordBytesMax ${input.recordBytesMax}, ${input.written.size} frames written; ${input.mutations.join('; ')}\n`)
    } catch (err) {
      violations.push({ input: i, kind: input?.kind ?? '?', message: err instanceof Violation ? err.message : `threw: ${(err as Error)?.stack ?? String(err)}`, mutations: input?.mutations ?? [] })
      if (violations.length >= 20) break
    }
    if (i % 1000 === 0) sample()
    if (i % 10_000 === 0) await new Promise((resolve) => setImmediate(resolve)) // let signals and output through
    if (progress && i % 50_000 === 0 && i > first) process.stderr.write(`\r${i - first}/${inputs} inputs, ${violations.length} violations`)
  }
  sample()
  if (progress) process.stderr.write('\n')
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6
  const report = {
    seed,
    inputs: totals.inputs,
    inputBytes: totals.bytes,
    framesFound: totals.framesFound,
    damageRegions: totals.damageRegions,
    decodes: totals.decodes,
    invalid: totals.damageRegions + totals.decodes.invalid,
    maxHashedBytes: totals.maxHashedBytes,
    maxHeapUsedBytes: maxHeapBytes,
    maxRssBytes,
    elapsedMs: Math.round(elapsedMs),
    inputsPerSecond: Math.round(totals.inputs / (elapsedMs / 1000)),
    violations,
  }
  if (args.values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  } else {
    const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`
    process.stdout.write([
      `seed ${seed}: ${report.inputs} inputs (${mib(report.inputBytes)}) in ${(elapsedMs / 1000).toFixed(1)} s (${report.inputsPerSecond}/s)`,
      `frames found by scans: ${report.framesFound}; damaged regions: ${report.damageRegions}`,
      `direct decodes: ${report.decodes.frame} frame, ${report.decodes.end} end, ${report.decodes.invalid} invalid`,
      `largest checksum input: ${report.maxHashedBytes} bytes; max heap used: ${mib(maxHeapBytes)}; max RSS: ${mib(maxRssBytes)}`,
      `violations: ${violations.length}`,
      ...violations.map((v) => `  input ${v.input} (${v.kind}; replay with --seed ${seed} --replay ${v.input}): ${v.message}${v.mutations.length ? ` [${v.mutations.join('; ')}]` : ''}`),
      '',
    ].join('\n'))
  }
  process.exitCode = violations.length > 0 ? 1 : 0
}

await main()
