import type { Checksums } from '../../format/checksum.js'
import type { FileSystem } from '../../io/fs.js'
import { MemwalError } from '../../errors.js'
import { declaresGap, SEGMENT_HEADER_BYTES, type GroupMarker, type SegmentHeader } from '../../format/format.js'
import { listWal, type SegmentEntry } from '../segment-list.js'
import { framesOf, segmentsOf, type CursorSegment, type ScannedFrame } from '../segment-cursor.js'

/**
 * Verifies the whole log, or from the segment holding `verifyFromLsn`: every
 * segment header, every frame's checksums, LSN continuity within and across
 * segments. Pure reading; it changes nothing. What to do about what it finds
 * is the corruption policy's (wal-recovery.ts).
 */
export interface ScanOptions {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
  readonly recordBytesMax: number
  /** Segments wholly below this LSN get only their header checked. */
  readonly verifyFromLsn: number
  /**
   * The first LSN some sink has not applied (the lowest checkpoint + 1), which
   * the log must hold: a log that starts later is a `missing-lsns` problem.
   * Default `verifyFromLsn` (recovery at open verifies from there); fsck
   * verifies the whole log (verifyFromLsn 0) and gives it apart.
   */
  readonly heldFromLsn?: number
  /** Called for each segment as it is verified, with bytes read: for progress. */
  readonly onProgress?: (bytes: number) => void
  /** Reads the frames in this same pass: open's backlog, fsck's latest versions. */
  readonly frames?: FrameConsumer
}

/**
 * A reader of the frames the scan verifies, fed in the scan's own pass: no
 * second read of the log, no second checksum.
 */
export interface FrameConsumer {
  /**
   * Whether the consumer keeps views of a segment's bytes past the call
   * (open's backlog keeps payloads). True: each segment is read into bytes of
   * its own, never written again (the next one read ahead while one is
   * walked). False: one buffer serves every segment, and a view is valid
   * during the call only.
   */
  readonly keepsBytes: boolean
  /**
   * Every frame whose checksums verified, in file order, as the scan meets
   * it, with the bytes of its segment (the payload is a view of them).
   * `inLog`: the scan counts the frame as the log's and no damage in its
   * segment precedes it (a clean log's records, what open loads as the
   * backlog). The others are what a salvaging reader also meets: frames after
   * damage (it yields them) and LSNs that repeat or go back where the scan
   * reports a problem (it skips them, and so should the consumer).
   */
  onFrame(frame: ScannedFrame, segmentBytes: Uint8Array, inLog: boolean): void
}

export interface ScannedProblem {
  /** `damaged-marker`: a version 2 group marker that fails its checks, the records after it whole (no LSN is lost). */
  readonly kind: 'corrupt-frame' | 'corrupt-header' | 'missing-lsns' | 'lsn-sequence' | 'damaged-marker'
  readonly segmentIndex: number
  readonly offset: number
  readonly end?: number
  readonly lsnFirst?: number
  readonly lsnLast?: number
  readonly detail: string
  /** Invalid bytes in the last segment with no valid frame after them anywhere. */
  readonly atTail: boolean
  /** The LSN the log was due to hold next where the problem starts, when known. */
  readonly due?: number
  /**
   * `damaged-marker`: the marker a repair writes in its place: the LSN of the
   * frame after it, the bytes known to belong to its write (itself and that
   * frame), and its own offset as durable-from (the largest the lost value can
   * have been: damage after it is never taken for a torn write on its account).
   */
  readonly marker?: GroupMarker
}

export interface ScannedSegment {
  readonly entry: SegmentEntry
  readonly header?: SegmentHeader
  readonly fullyScanned: boolean
  /** File size: the capacity an append may use. */
  readonly size: number
  /** LSN of the first and last valid frames, when it has any. */
  readonly firstLsn?: number
  readonly lastLsn?: number
  readonly records: number
  /** Offset after the last valid frame. */
  readonly validEnd: number
  /** Offset after the last non-zero byte. */
  readonly dataEnd: number
}

export interface LogScan {
  readonly segments: readonly ScannedSegment[]
  readonly temps: readonly string[]
  readonly problems: readonly ScannedProblem[]
  readonly records: number
  readonly bytesScanned: number
  /** Highest LSN of any valid frame seen, 0 if none. */
  readonly maxLsn: number
}

export async function scanLog(o: ScanOptions): Promise<LogScan> {
  const listing = await listWal(o.fs, o.walDir)
  const entries = listing.segments
  const segments: ScannedSegment[] = []
  const problems: ScannedProblem[] = []
  let expected: number | undefined // next LSN the log should hold, when known
  let records = 0
  let bytesScanned = 0
  let maxLsn = 0
  // A consumer that keeps views gets each segment in bytes of its own, and the scan reads ahead as it holds them anyway.
  // Any other scan keeps nothing of a segment's bytes once it has walked them: one buffer serves.
  const kept = o.frames?.keepsBytes === true
  for await (const seg of segmentsOf({ ...o, listing, framesFromLsn: o.verifyFromLsn, readAhead: kept, reuseBuffer: !kept })) {
    const { entry, index: i, size, framesRead: full } = seg
    bytesScanned += seg.bytes.length
    const h = seg.header
    if (h.kind === 'unknown-version') {
      throw new MemwalError('WAL_UNKNOWN_VERSION', `segment ${entry.name} has format version ${h.version}; this memwal reads versions 1 and 2`, {
        details: { segment: entry.name, version: h.version },
      })
    }
    const headerProblem = h.kind === 'corrupt' ? h.reason : h.header.baseLsn !== entry.baseLsn ? `header base LSN ${h.header.baseLsn} differs from the file name` : undefined
    if (headerProblem !== undefined || h.kind !== 'header') {
      const next = entries[i + 1]
      problems.push({
        kind: 'corrupt-header', segmentIndex: i, offset: 0, end: size, lsnFirst: entry.baseLsn, ...(expected !== undefined ? { due: expected } : {}),
        ...(next ? { lsnLast: next.baseLsn - 1 } : {}),
        detail: headerProblem ?? 'bad header', atTail: false,
      })
      segments.push({ entry, fullyScanned: full, size, records: 0, validEnd: SEGMENT_HEADER_BYTES, dataEnd: size })
      expected = next?.baseLsn
      continue
    }
    const header = h.header
    // The oldest segment must reach back to the first record a sink still needs (verifyFromLsn: the lowest checkpoint + 1):
    // retention never deletes past it, so a log that starts later lost records that no sink holds. That is a store replaced
    // or emptied under its log (a restore without the store's files, LevelDB's CURRENT gone, a backend's tables dropped),
    // not a log to open as if whole: before, the engine opened it and silently lacked those records.
    const held = o.heldFromLsn ?? o.verifyFromLsn
    if (i === 0 && held > 0 && header.baseLsn > held && !declaresGap(header, held)) {
      problems.push({ kind: 'missing-lsns', segmentIndex: i, offset: 0, due: held, lsnFirst: held, lsnLast: header.baseLsn - 1, detail: `no segment holds LSNs ${held}-${header.baseLsn - 1}, which a sink has not applied (its checkpoint is ${held - 1}; the oldest segment starts at LSN ${header.baseLsn})`, atTail: false })
    }
    if (expected !== undefined && header.baseLsn !== expected) {
      if (!declaresGap(header, expected)) {
        problems.push(
          header.baseLsn > expected
            ? { kind: 'missing-lsns', segmentIndex: i, offset: 0, due: expected, lsnFirst: expected, lsnLast: header.baseLsn - 1, detail: `no segment holds LSNs ${expected}-${header.baseLsn - 1}`, atTail: false }
            : { kind: 'lsn-sequence', segmentIndex: i, offset: 0, due: expected, lsnFirst: header.baseLsn, lsnLast: expected - 1, detail: `segment starts at LSN ${header.baseLsn}, before LSN ${expected} that the previous one reached`, atTail: false },
        )
      }
    }
    if (!full) {
      segments.push({ entry, header, fullyScanned: false, size, records: 0, validEnd: SEGMENT_HEADER_BYTES, dataEnd: size })
      expected = undefined
      continue
    }
    const { afterDamage, ...s } = scanSegmentFrames(seg, header, o, problems)
    const { expected: next, tornFrom: _torn, ...kept } = i === entries.length - 1 ? trimTornGroup(s, i, problems, afterDamage) : s
    records += kept.records
    if (kept.lastLsn !== undefined) maxLsn = Math.max(maxLsn, kept.lastLsn)
    segments.push({ entry, header, fullyScanned: true, size, ...kept })
    expected = next
  }
  markTail(problems, segments)
  return { segments, temps: listing.temps, problems, records, bytesScanned, maxLsn }
}

interface FrameScan {
  readonly records: number
  readonly firstLsn?: number
  readonly lastLsn?: number
  readonly validEnd: number
  readonly dataEnd: number
  readonly tornFrom?: number
  readonly expected: number
}

/** A valid frame after damage in the same segment: where a torn final group's frames are. */
interface LateFrame {
  readonly offset: number
  readonly lsn: number
}

function scanSegmentFrames(seg: CursorSegment, header: SegmentHeader, o: ScanOptions, problems: ScannedProblem[]): FrameScan & { readonly afterDamage: readonly LateFrame[] } {
  const index = seg.index
  const frames = framesOf(seg, o, 'salvage')
  let expected = header.baseLsn
  let records = 0
  let firstLsn: number | undefined
  let lastLsn: number | undefined
  let validEnd = SEGMENT_HEADER_BYTES
  let openDamage: { offset: number; end: number; detail: string; lsn?: number } | undefined
  let damaged = false
  const afterDamage: LateFrame[] = []
  const closeDamage = (nextLsn: number | undefined, atTail: boolean): void => {
    if (!openDamage) return
    const known = nextLsn !== undefined && nextLsn > expected
    problems.push({
      kind: 'corrupt-frame', segmentIndex: index, offset: openDamage.offset, end: openDamage.end, lsnFirst: expected, due: expected,
      ...(known ? { lsnLast: nextLsn - 1 } : {}),
      detail: openDamage.detail, atTail,
    })
    openDamage = undefined
  }
  for (;;) {
    const step = frames.next()
    if (step.done) {
      closeDamage(undefined, true)
      const { dataEnd, tornFrom } = step.value
      return { records, ...(firstLsn !== undefined ? { firstLsn } : {}), ...(lastLsn !== undefined ? { lastLsn } : {}), validEnd, dataEnd, ...(tornFrom !== undefined ? { tornFrom } : {}), expected, afterDamage }
    }
    const ev = step.value
    if (ev.kind === 'damaged-marker' && ev.lsn === expected && !openDamage) {
      // Reported, never cut: the marker held no record and the frames after it verify (segment-cursor.ts);
      // unless it lies in a torn final write (trimTornGroup), whose frames are counted as after damage.
      damaged = true
      problems.push({
        kind: 'damaged-marker', segmentIndex: index, offset: ev.offset, end: ev.end, due: expected, atTail: false,
        marker: { lsn: expected, groupBytes: ev.frameEnd - ev.offset, durableFrom: ev.offset },
        detail: `damaged group marker (${ev.fault}); the records after it verify, LSN ${expected} on`,
      })
      continue
    }
    if (ev.kind !== 'frame') {
      damaged = true
      closeDamage(undefined, false)
      openDamage = { offset: ev.offset, end: ev.end, detail: `${ev.fault}${ev.lsn !== undefined ? ` (header names LSN ${ev.lsn})` : ''}` }
      if (ev.kind === 'damage' && !ev.resumed) closeDamage(undefined, true)
      continue
    }
    if (ev.lsn !== expected && !openDamage) {
      problems.push(
        ev.lsn > expected
          ? { kind: 'lsn-sequence', segmentIndex: index, offset: ev.offset, end: ev.next, due: expected, lsnFirst: expected, lsnLast: ev.lsn - 1, detail: `frame has LSN ${ev.lsn} where ${expected} was due`, atTail: false }
          : { kind: 'lsn-sequence', segmentIndex: index, offset: ev.offset, end: ev.next, due: expected, lsnFirst: ev.lsn, lsnLast: ev.lsn, detail: `frame has LSN ${ev.lsn}, already passed (${expected} was due)`, atTail: false },
      )
    } else if (openDamage && ev.lsn >= expected) {
      closeDamage(ev.lsn, false)
    }
    // A stale duplicate (an LSN already passed) is skipped: it moves nothing.
    const stale = ev.lsn < expected
    o.frames?.onFrame(ev, seg.bytes, !stale && !damaged)
    if (stale) continue
    records++
    if (damaged) afterDamage.push({ offset: ev.offset, lsn: ev.lsn })
    firstLsn ??= ev.lsn
    lastLsn = ev.lsn
    expected = ev.lsn + 1
    validEnd = ev.next
  }
}

/**
 * The last segment of a version 2 log: damage at or after its `tornFrom` lies
 * in a write that never completed (format.ts, group markers), so neither it
 * nor any frame after it was acknowledged. The segment is taken to end where
 * that damage starts: the frames after it are not counted as the log's, and
 * the problems from there on are its torn tail (markTail). Damage before
 * `tornFrom` is left as it is: a refusal under the default policy.
 */
function trimTornGroup(s: FrameScan, index: number, problems: ScannedProblem[], afterDamage: readonly LateFrame[]): FrameScan {
  const tornFrom = s.tornFrom
  if (tornFrom === undefined || afterDamage.length === 0) return s
  // A damaged marker there is the first piece of that write, not damage on disk: none of the write was acknowledged.
  const torn = problems.find((p) => p.segmentIndex === index && (p.kind === 'corrupt-frame' || p.kind === 'damaged-marker') && p.offset >= tornFrom)
  if (!torn || torn.due === undefined) return s
  // One finding for the whole torn group: from the damage to the end of the data, every LSN after it dropped.
  let droppedLast = torn.lsnLast ?? torn.due
  let dropped = 0
  for (const f of afterDamage) {
    if (f.offset <= torn.offset) continue
    droppedLast = Math.max(droppedLast, f.lsn)
    dropped++
  }
  // The scan is at the last segment: every problem from the torn one on is in it.
  const at = problems.indexOf(torn)
  const { marker: _marker, ...damage } = torn
  problems.splice(at, problems.length - at, {
    ...damage, kind: 'corrupt-frame', end: s.dataEnd, lsnFirst: torn.lsnFirst ?? torn.due, lsnLast: droppedLast, atTail: true,
    detail: `${torn.detail}; in a final group write that never completed (at or after offset ${tornFrom}, not yet durable when it was issued)`,
  })
  const keptLast = torn.due - 1
  const keepsFrames = s.firstLsn !== undefined && s.firstLsn <= keptLast
  return {
    records: s.records - dropped,
    ...(keepsFrames ? { firstLsn: s.firstLsn, lastLsn: keptLast } : {}),
    validEnd: torn.offset,
    dataEnd: s.dataEnd,
    tornFrom,
    expected: torn.due,
  }
}

/**
 * A problem is at the tail when it is damage in the last segment and no valid
 * frame follows it, or (version 2) when it lies in a torn final group
 * (trimTornGroup marked those).
 */
function markTail(problems: ScannedProblem[], segments: readonly ScannedSegment[]): void {
  const last = segments.length - 1
  for (let k = 0; k < problems.length; k++) {
    const p = problems[k] as ScannedProblem
    if (!p.atTail) continue
    const lastSeg = segments[p.segmentIndex]
    const tail = p.segmentIndex === last && lastSeg !== undefined && p.offset >= lastSeg.validEnd
    if (!tail) problems[k] = { ...p, atTail: false }
  }
}
