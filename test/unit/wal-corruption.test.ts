/**
 * The four corruption policies (DESIGN.md §7) against crafted damage, table
 * driven in the style of etcd's repair test: each row damages a clean log of
 * N records over four 64 KiB segments, and says for every policy exactly what
 * Wal.open must do: refuse with which code and place, or which records
 * survive, what the report finds, what lands in quarantine/, and what a
 * second open sees.
 */
import t from 'tap'
import { CORRUPTION_POLICIES, CorruptionError, isMemwalError, type CorruptionPolicy, type ErrorCode } from '../../engine/index.js'
import { type WalOptions } from '../../engine/testing.js'
import { decodeFrame } from '../../engine/format/format.js'
import {
  buildLog, bytesOf, craftFrame, definedOnly, findingsOf, flipBit, listDir, locate, openLog, pokeAt, QUARANTINE_DIR, range,
  readAll, recordFor, rewriteHeader, segmentAt, SEGMENT_BYTES, snapshotFiles, sums, WAL_DIR, zeroRange, type CraftedLog,
} from '../support/craft.js'

const N = 320

type Finding = Record<string, unknown>

interface Refused {
  readonly kind: 'refused'
  readonly code: ErrorCode
  /** What err.place (and err.details) must name; undefined for errors without a place. */
  readonly place?: Record<string, unknown>
  readonly details?: Record<string, unknown>
  readonly findings?: readonly Finding[]
}

interface Opened {
  readonly kind: 'opened'
  /** LSNs wal.read(1) returns, in order. */
  readonly survive: readonly number[]
  readonly findings: readonly Finding[]
  /** LSN the first new append gets. */
  readonly next: number
  /** Files in quarantine/ afterwards, and what each must equal (the damaged file as it was before open). */
  readonly quarantine: Readonly<Record<string, string>>
  /** What a second open (same options) reports: nothing, or the same damage again (skip-corrupt leaves it in place). */
  readonly reopen: 'clean' | 'same'
}

type Outcome = Refused | Opened

interface Case {
  readonly name: string
  /** Damages the log; returns what the expectations need to know (offsets, LSNs, names). */
  readonly damage: (log: CraftedLog) => Promise<Record<string, number | string>> | Record<string, number | string>
  readonly options?: Partial<WalOptions>
  readonly expect: (policy: CorruptionPolicy, x: Record<string, number | string>, log: CraftedLog) => Outcome
}

/** A finding as the report must hold it; alreadyApplied follows from the backend's checkpoint. */
function finding(kind: string, segment: string, offset: number, lsnFirst: number, lsnLast: number | undefined, action: string, appliedLsn = 0): Finding {
  return definedOnly({ kind, segment, offset, lsnFirst, lsnLast, alreadyApplied: lsnLast === undefined ? undefined : lsnLast <= appliedLsn, action })
}

function refused(code: ErrorCode, place: Record<string, unknown>, findings: readonly Finding[]): Refused {
  return { kind: 'refused', code, place: definedOnly(place), findings }
}

function opened(o: Omit<Opened, 'kind' | 'quarantine' | 'reopen'> & Partial<Pick<Opened, 'quarantine' | 'reopen'>>): Opened {
  return { kind: 'opened', quarantine: {}, reopen: 'clean', ...o }
}

function without(all: readonly number[], gone: readonly number[]): number[] {
  const g = new Set(gone)
  return all.filter((n) => !g.has(n))
}

const s = (log: CraftedLog, i: number): string => segmentAt(log, i).name
const ALL = range(1, N)

/**
 * Invalid bytes at the end of the last segment with nothing valid after them,
 * the first of them where LSN `lsn` was due: a torn write under every policy.
 */
function tornTail(policy: CorruptionPolicy, seg: string, offset: number, lsn: number): Outcome {
  const f = (action: string): Finding => finding('torn-tail', seg, offset, lsn, undefined, action)
  switch (policy) {
    case 'absolute':
      return refused('WAL_TORN_TAIL', { segment: seg, offset, lsnFirst: lsn }, [f('refused')])
    case 'point-in-time':
      return opened({ survive: range(1, lsn - 1), findings: [f('dropped')], next: lsn, quarantine: { [`${seg}.broken`]: seg } })
    case 'tolerate-torn-tail':
    case 'skip-corrupt':
      return opened({ survive: range(1, lsn - 1), findings: [f('truncated')], next: lsn })
  }
}

/**
 * One bad frame (LSN `lsn`, at `offset` of segment `seg`) with valid frames
 * after it. `later` are the whole segments after `seg`, which point-in-time
 * moves to quarantine.
 */
function badFrame(policy: CorruptionPolicy, seg: string, offset: number, lsn: number, later: readonly string[]): Outcome {
  switch (policy) {
    case 'absolute':
    case 'tolerate-torn-tail':
      return refused('WAL_CORRUPT_FRAME', { segment: seg, offset, lsnFirst: lsn, lsnLast: lsn }, [finding('corrupt-frame', seg, offset, lsn, lsn, 'refused')])
    case 'point-in-time':
      return opened({
        survive: range(1, lsn - 1),
        findings: [finding('corrupt-frame', seg, offset, lsn, N, 'dropped'), finding('corrupt-frame', seg, offset, lsn, lsn, 'dropped')],
        next: N + 1,
        quarantine: { [`${seg}.broken`]: seg, ...Object.fromEntries(later.map((n) => [n, n])) },
      })
    case 'skip-corrupt':
      return opened({ survive: without(ALL, [lsn]), findings: [finding('corrupt-frame', seg, offset, lsn, lsn, 'skipped')], next: N + 1, reopen: 'same' })
  }
}

/** A whole segment's LSNs [first, last] unreadable (missing file or bad header), found at `seg` offset 0. */
function lostSegment(policy: CorruptionPolicy, kind: 'missing-lsns' | 'corrupt-header', seg: string, first: number, last: number, quarantine: Record<string, string>): Outcome {
  const code: ErrorCode = kind === 'missing-lsns' ? 'WAL_MISSING_SEGMENT' : 'WAL_CORRUPT_HEADER'
  switch (policy) {
    case 'absolute':
    case 'tolerate-torn-tail':
      return refused(code, { segment: seg, offset: 0, lsnFirst: first, lsnLast: last }, [finding(kind, seg, 0, first, last, 'refused')])
    case 'point-in-time':
      return opened({ survive: range(1, first - 1), findings: [finding(kind, seg, 0, first, N, 'dropped'), finding(kind, seg, 0, first, last, 'dropped')], next: N + 1, quarantine })
    case 'skip-corrupt':
      return opened({ survive: without(ALL, range(first, last)), findings: [finding(kind, seg, 0, first, last, 'skipped')], next: N + 1, reopen: 'same' })
  }
}

const num = (v: number | string | undefined): number => {
  if (typeof v !== 'number') throw new Error(`expected a number, got ${String(v)}`)
  return v
}
const str = (v: number | string | undefined): string => String(v)

const cases: Case[] = [
  // (1) a write cut short: a prefix of the last frame, from inside its header to one byte short of its end.
  ...[1, 20, 32, 40, -1].map((keep): Case => ({
    name: `torn tail: ${keep < 0 ? 'all but the last byte' : `the first ${keep} bytes`} of the last frame`,
    damage(log) {
      const { segment, frame } = locate(log, N)
      const cut = keep < 0 ? frame.next + keep : frame.offset + keep
      zeroRange(log.sim, segment.path, cut, frame.next)
      return { seg: segment.name, offset: frame.offset }
    },
    expect: (policy, x) => tornTail(policy, str(x.seg), num(x.offset), N),
  })),

  // (2) a flipped payload bit with valid frames after it.
  {
    name: 'payload bit flip in the middle of a segment that is not the last',
    damage(log) {
      const lsn = num(segmentAt(log, 1).frames[49]?.lsn)
      const { segment, frame } = locate(log, lsn)
      flipBit(log.sim, segment.path, frame.offset + 100, 3)
      return { lsn, seg: segment.name, offset: frame.offset }
    },
    expect: (policy, x, log) => badFrame(policy, str(x.seg), num(x.offset), num(x.lsn), [s(log, 2), s(log, 3)]),
  },
  {
    name: 'payload bit flip in the last segment, valid frames after it',
    damage(log) {
      const lsn = num(segmentAt(log, -1).frames[10]?.lsn)
      const { segment, frame } = locate(log, lsn)
      flipBit(log.sim, segment.path, frame.next - 1, 0)
      return { lsn, seg: segment.name, offset: frame.offset }
    },
    expect: (policy, x) => badFrame(policy, str(x.seg), num(x.offset), num(x.lsn), []),
  },

  // (3) the length field: the header checksum catches it before the length is trusted.
  ...[0, 7].map((bit): Case => ({
    name: `length field bit ${bit + 24} flipped (${bit === 7 ? 'a length of 2 GiB' : 'one byte off'})`,
    damage(log) {
      const lsn = num(segmentAt(log, 1).frames[30]?.lsn)
      const { segment, frame } = locate(log, lsn)
      flipBit(log.sim, segment.path, frame.offset + 16 + 3, bit)
      return { lsn, seg: segment.name, offset: frame.offset }
    },
    expect: (policy, x, log) => badFrame(policy, str(x.seg), num(x.offset), num(x.lsn), [s(log, 2), s(log, 3)]),
  })),

  // (4) a middle segment file deleted.
  {
    name: 'missing middle segment',
    damage(log) {
      const gone = segmentAt(log, 1)
      log.sim.remove(gone.path)
      return { first: gone.header.baseLsn, last: segmentAt(log, 2).header.baseLsn - 1 }
    },
    expect: (policy, x, log) => lostSegment(policy, 'missing-lsns', s(log, 2), num(x.first), num(x.last), { [s(log, 2)]: s(log, 2), [s(log, 3)]: s(log, 3) }),
  },

  // (5) a frame with valid checksums whose LSN skips one: N + 2 after N.
  {
    name: 'out-of-sequence LSN (valid checksums, LSN skips ahead)',
    async damage(log) {
      const last = segmentAt(log, -1)
      pokeAt(log.sim, last.path, last.validEnd, await craftFrame(N + 2, recordFor(N + 2, 600), last.header.salt))
      return { seg: last.name, offset: last.validEnd }
    },
    expect(policy, x) {
      const seg = str(x.seg)
      const offset = num(x.offset)
      switch (policy) {
        case 'absolute':
        case 'tolerate-torn-tail':
          return refused('WAL_LSN_SEQUENCE', { segment: seg, offset, lsnFirst: N + 1, lsnLast: N + 1 }, [finding('lsn-sequence', seg, offset, N + 1, N + 1, 'refused')])
        case 'point-in-time':
          // Keeps 1..N; LSNs N+1..N+2 are dropped and never handed out again.
          return opened({
            survive: ALL,
            findings: [finding('lsn-sequence', seg, offset, N + 1, N + 2, 'dropped'), finding('lsn-sequence', seg, offset, N + 1, N + 1, 'dropped')],
            next: N + 3,
            quarantine: { [`${seg}.broken`]: seg },
          })
        case 'skip-corrupt':
          // Salvage: the frame verifies, so it is kept; the gap before it is reported.
          return opened({ survive: [...ALL, N + 2], findings: [finding('lsn-sequence', seg, offset, N + 1, N + 1, 'skipped')], next: N + 3, reopen: 'same' })
      }
    },
  },

  // (6) a log cut on a record boundary before an LSN known durable (a sink's checkpoint).
  {
    name: 'log cut on a record boundary before the durable LSN: a hole',
    damage(log) {
      const { segment, frame } = locate(log, N - 2)
      zeroRange(log.sim, segment.path, frame.groupStart, segment.validEnd)
      return { seg: segment.name, offset: frame.groupStart }
    },
    options: { durableLsn: N },
    expect(policy, x) {
      const seg = str(x.seg)
      const offset = num(x.offset)
      const hole = (action: string): Finding => finding('hole', seg, offset, N - 2, N, action)
      switch (policy) {
        case 'absolute':
        case 'tolerate-torn-tail':
          return refused('WAL_HOLE', { segment: seg, offset, lsnFirst: N - 2, lsnLast: N }, [hole('refused')])
        // The lossy policies open, say which known-durable LSNs are gone, and never hand them out again.
        case 'point-in-time':
          return opened({ survive: range(1, N - 3), findings: [hole('dropped')], next: N + 1 })
        case 'skip-corrupt':
          return opened({ survive: range(1, N - 3), findings: [hole('skipped')], next: N + 1 })
      }
    },
  },
  {
    name: 'every segment file gone while an LSN is known durable: a hole, not a fresh log',
    damage(log) {
      for (const seg of log.segments) log.sim.remove(seg.path)
      return {}
    },
    options: { durableLsn: N },
    expect(policy) {
      const hole = (action: string): Finding => finding('hole', '(no segment)', 0, 1, N, action)
      switch (policy) {
        case 'absolute':
        case 'tolerate-torn-tail':
          return refused('WAL_HOLE', { segment: '(no segment)', offset: 0, lsnFirst: 1, lsnLast: N }, [hole('refused')])
        case 'point-in-time':
          return opened({ survive: [], findings: [hole('dropped')], next: N + 1 })
        case 'skip-corrupt':
          return opened({ survive: [], findings: [hole('skipped')], next: N + 1 })
      }
    },
  },
  {
    name: 'log cut on a record boundary exactly at the durable LSN: not a hole',
    damage(log) {
      const { segment, frame } = locate(log, N - 2)
      zeroRange(log.sim, segment.path, frame.groupStart, segment.validEnd)
      return {}
    },
    options: { durableLsn: N - 3 },
    expect: () => opened({ survive: range(1, N - 3), findings: [], next: N - 2 }),
  },

  // (7) frames of segment 0, valid there, copied into the zeroed tail of the last segment right after its last frame.
  {
    name: 'stale frames from another segment after the last frame',
    async damage(log) {
      const a = segmentAt(log, 0)
      const b = segmentAt(log, -1)
      const stale = bytesOf(log.sim, a.path).subarray(num(a.frames[5]?.offset), num(a.frames[8]?.offset))
      // The premise: these bytes are valid frames under A's salt, and not under B's.
      const sumsNow = await sums()
      if (decodeFrame(stale, 0, a.header.salt, SEGMENT_BYTES, sumsNow).kind !== 'frame') throw new Error('stale bytes are not frames of A')
      if (decodeFrame(stale, 0, b.header.salt, SEGMENT_BYTES, sumsNow).kind === 'frame') throw new Error('stale frames verify under B')
      pokeAt(log.sim, b.path, b.validEnd, stale)
      return { seg: b.name, offset: b.validEnd }
    },
    expect: (policy, x) => tornTail(policy, str(x.seg), num(x.offset), N + 1),
  },

  // (8) a corrupted segment header.
  {
    name: 'segment header bit flip in a middle segment',
    damage(log) {
      flipBit(log.sim, segmentAt(log, 1).path, 13, 1)
      return { first: segmentAt(log, 1).header.baseLsn, last: segmentAt(log, 2).header.baseLsn - 1 }
    },
    expect: (policy, x, log) => lostSegment(policy, 'corrupt-header', s(log, 1), num(x.first), num(x.last), { [s(log, 1)]: s(log, 1), [s(log, 2)]: s(log, 2), [s(log, 3)]: s(log, 3) }),
  },
  {
    name: 'segment header bit flip in the last segment (durable LSN known)',
    damage(log) {
      flipBit(log.sim, segmentAt(log, -1).path, 20, 2)
      return { seg: segmentAt(log, -1).name, first: segmentAt(log, -1).header.baseLsn }
    },
    options: { durableLsn: N },
    expect(policy, x) {
      const seg = str(x.seg)
      const first = num(x.first)
      switch (policy) {
        case 'absolute':
        case 'tolerate-torn-tail':
          return refused('WAL_CORRUPT_HEADER', { segment: seg, offset: 0, lsnFirst: first }, [finding('corrupt-header', seg, 0, first, undefined, 'refused')])
        case 'point-in-time':
          return opened({
            survive: range(1, first - 1),
            findings: [finding('corrupt-header', seg, 0, first, N, 'dropped'), finding('corrupt-header', seg, 0, first, undefined, 'dropped')],
            next: N + 1,
            quarantine: { [seg]: seg },
          })
        case 'skip-corrupt':
          // The segment cannot be read without its salt: it goes to quarantine; LSNs up to the durable one are never reused.
          return opened({
            survive: range(1, first - 1),
            findings: [finding('corrupt-header', seg, 0, first, undefined, 'skipped'), finding('hole', seg, 0, first, N, 'skipped')],
            next: N + 1,
            quarantine: { [seg]: seg },
          })
      }
    },
  },

  // (9) a header of an unknown version, checksum valid: never guessed at, whatever the policy.
  ...[1, -1].map((index): Case => ({
    name: `unknown format version in the ${index === 1 ? 'second' : 'last'} segment's header`,
    async damage(log) {
      await rewriteHeader(log.sim, segmentAt(log, index), { version: 3 })
      return { seg: segmentAt(log, index).name }
    },
    expect: (_policy, x) => ({ kind: 'refused', code: 'WAL_UNKNOWN_VERSION', details: { segment: str(x.seg), version: 3 } }),
  })),

  // (10) zeros after the last frame, then non-zero bytes far away near the end of the preallocated file.
  {
    name: 'garbage far after the end of data in the last segment',
    damage(log) {
      const last = segmentAt(log, -1)
      pokeAt(log.sim, last.path, last.size - 100, Buffer.from('not a frame, just bytes'))
      return { seg: last.name, offset: last.validEnd }
    },
    expect: (policy, x) => tornTail(policy, str(x.seg), num(x.offset), N + 1),
  },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    for (const policy of CORRUPTION_POLICIES) {
      await t.test(policy, async (t) => {
        const log = await buildLog({ records: N })
        t.equal(log.segments.length, 4, 'the crafted log spans four segments')
        const x = await c.damage(log)
        await check(t, log, policy, c.options ?? {}, c.expect(policy, x, log))
      })
    }
  })
}

async function check(t: Tap, log: CraftedLog, policy: CorruptionPolicy, options: Partial<WalOptions>, want: Outcome): Promise<void> {
  const before = await snapshotFiles(log.sim)
  let wal
  try {
    wal = await openLog(log.sim, { policy, ...options })
  } catch (err) {
    if (want.kind !== 'refused') throw err
    return checkRefusal(t, log, err, want, before)
  }
  if (want.kind === 'refused') {
    await wal.close()
    t.fail(`open should have refused with ${want.code}`, { findings: findingsOf(wal.recovery) })
    return
  }
  t.strictSame(findingsOf(wal.recovery), want.findings, 'report findings')
  t.strictSame((await readAll(wal)).lsns, want.survive, 'records that survive, in order')
  const { keys } = await readAll(wal)
  t.ok(keys.every((k, i) => k === `key-${want.survive[i]}`), 'each surviving record holds what was written at its LSN')
  t.equal(wal.recovery.nextLsn, want.next, 'report: next LSN')

  // Quarantine holds the evidence, byte for byte.
  t.strictSame((await listDir(log.sim, QUARANTINE_DIR)).sort(), Object.keys(want.quarantine).sort(), 'quarantine/ contents')
  for (const [file, source] of Object.entries(want.quarantine)) {
    t.ok(bytesOf(log.sim, `${QUARANTINE_DIR}/${file}`).equals(before.get(`${WAL_DIR}/${source}`) ?? Buffer.alloc(0)), `quarantine/${file} is ${source} as it was`)
  }

  // New appends work and take the next LSN.
  t.equal(await wal.appendRecord(recordFor(want.next, 50)), want.next, 'first new append')
  await wal.close()

  const again = await openLog(log.sim, { policy, ...options })
  const reopened = findingsOf(again.recovery)
  if (want.reopen === 'clean') t.strictSame(reopened, [], 'second open finds nothing')
  else t.strictSame(reopened, want.findings.map((f) => ({ ...f })), 'second open reports the same persistent damage')
  t.strictSame((await readAll(again)).lsns, [...want.survive, want.next], 'second open reads the same records plus the new one')
  t.equal(await again.appendRecord(recordFor(want.next + 1, 50)), want.next + 1, 'appends go on after the second open')
  await again.close()

  if (want.reopen === 'clean') {
    // What recovery left is a fully valid log: even the strictest policy accepts it.
    const strict = await openLog(log.sim, { policy: 'absolute', ...options })
    t.strictSame(findingsOf(strict.recovery), [], 'the repaired log passes the absolute policy')
    await strict.close()
  }
}

async function checkRefusal(t: Tap, log: CraftedLog, err: unknown, want: Refused, before: Map<string, Buffer>): Promise<void> {
  t.ok(isMemwalError(err), 'a MemwalError')
  if (!isMemwalError(err)) throw err
  t.equal(err.code, want.code, `refused with ${want.code}`)
  if (want.place) {
    t.ok(err instanceof CorruptionError, 'a CorruptionError, with a place')
    t.strictSame(definedOnly({ ...(err as CorruptionError).place }), want.place, 'err.place names segment, offset and LSN range')
    t.match(err.details, want.place, 'err.details names the same place')
  }
  if (want.details) t.match(err.details, want.details, 'err.details')
  if (want.findings) {
    const got = (err.details.findings ?? []) as Parameters<typeof findingsOf>[0]['findings']
    t.strictSame(findingsOf({ findings: got }), want.findings, 'err.details.findings, each marked refused')
  }
  // A refusal changes nothing in the log: the evidence stays as it was.
  const after = await snapshotFiles(log.sim)
  for (const [file, bytes] of before) {
    if (file.endsWith('.tmp')) continue // a leftover spare is removed on open: it never held records
    t.ok(after.get(file)?.equals(bytes), `${file} untouched`)
  }
  t.strictSame(await listDir(log.sim, QUARANTINE_DIR), [], 'nothing quarantined')
}

/** A subtest's `t` (the last overload of t.test takes only the callback). */
type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

// ---- the premises and the backend's checkpoint ----

t.test('a flipped length bit is caught by the header checksum before the length is read', async (t) => {
  const log = await buildLog({ records: N })
  const { segment, frame } = locate(log, 150)
  flipBit(log.sim, segment.path, frame.offset + 16 + 3, 7)
  const d = decodeFrame(bytesOf(log.sim, segment.path), frame.offset, segment.header.salt, SEGMENT_BYTES, await sums())
  t.strictSame(d, { kind: 'invalid', fault: 'bad-header-checksum' }, 'bad header checksum, not a length past the end')
})

t.test('point-in-time: alreadyApplied follows the backend checkpoint', async (t) => {
  const lsn = 150
  for (const appliedLsn of [0, lsn - 1, lsn, lsn + 10, N, N + 5]) {
    await t.test(`appliedLsn ${appliedLsn}`, async (t) => {
      const log = await buildLog({ records: N })
      const { segment, frame } = locate(log, lsn)
      flipBit(log.sim, segment.path, frame.offset + 100, 3)
      const wal = await openLog(log.sim, { policy: 'point-in-time', appliedLsn })
      t.strictSame(findingsOf(wal.recovery), [
        finding('corrupt-frame', segment.name, frame.offset, lsn, N, 'dropped', appliedLsn),
        finding('corrupt-frame', segment.name, frame.offset, lsn, lsn, 'dropped', appliedLsn),
      ])
      const [dropped, frameFinding] = wal.recovery.findings
      t.equal(dropped?.alreadyApplied, N <= appliedLsn, `LSNs ${lsn}-${N} dropped: in the backend only if it reached ${N}`)
      t.equal(frameFinding?.alreadyApplied, lsn <= appliedLsn, `LSN ${lsn}: in the backend only if it reached ${lsn}`)
      await wal.close()
    })
  }
})

t.test('point-in-time and skip-corrupt: alreadyApplied on a hole', async (t) => {
  for (const policy of ['point-in-time', 'skip-corrupt'] as const) {
    for (const appliedLsn of [N - 1, N]) {
      const log = await buildLog({ records: N })
      const { segment, frame } = locate(log, N - 2)
      zeroRange(log.sim, segment.path, frame.groupStart, segment.validEnd)
      const wal = await openLog(log.sim, { policy, durableLsn: N, appliedLsn })
      t.strictSame(findingsOf(wal.recovery), [finding('hole', segment.name, frame.groupStart, N - 2, N, policy === 'point-in-time' ? 'dropped' : 'skipped', appliedLsn)], `${policy}, appliedLsn ${appliedLsn}`)
      await wal.close()
    }
  }
})
