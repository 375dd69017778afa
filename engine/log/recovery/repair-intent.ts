import { posix as path } from 'node:path'
import { assert } from '../../assert.js'
import { MemwalError } from '../../errors.js'
import type { Checksums } from '../../format/checksum.js'
import { decodeSegmentHeader, encodeSegmentHeader } from '../../format/format.js'
import { freeName, makeDirDurable, replaceFile, zeroRange } from '../../io/file-ops.js'
import type { FileSystem } from '../../io/fs.js'

/**
 * The redo record of a log repair that writes new segments (repair-executor.ts):
 * `wal/repair-intent.json`, committed (synced, renamed into place) once every
 * new segment is written under a temporary name and every evidence copy is in
 * quarantine/, and removed when the last step is done. Every step it names is
 * idempotent, so a crash anywhere is finished by rolling forward: open and
 * fsck call `resumeRepair` before they scan the log. Without an intent the
 * temporaries are leftovers of a repair that never committed, and the scan
 * removes them like any other `.tmp` file.
 */
export const INTENT_FILE = 'repair-intent.json'

export interface RepairIntent {
  /** [temporary name, segment name] in wal/. */
  readonly renames: readonly (readonly [string, string])[]
  /** Zero [offset, end) of the segment. */
  readonly cuts: readonly { readonly segment: string; readonly offset: number; readonly end: number }[]
  /** Move the segment to quarantine/ as `as`. */
  readonly moves: readonly { readonly segment: string; readonly as: string }[]
  /** Declare the gap from `fromLsn` in the segment's header. */
  readonly gaps: readonly { readonly segment: string; readonly fromLsn: number }[]
}

export interface IntentTarget {
  readonly fs: FileSystem
  readonly sums: Checksums
  readonly walDir: string
  readonly quarantineDir: string
}

export async function commitIntent(t: IntentTarget, intent: RepairIntent): Promise<void> {
  await replaceFile(t.fs, path.join(t.walDir, INTENT_FILE), Buffer.from(JSON.stringify(intent)))
}

/** Carries out every step of `intent` that is not done yet, then removes the intent file when it was `committed`. */
export async function finishIntent(t: IntentTarget, intent: RepairIntent, committed: boolean): Promise<void> {
  const at = (name: string) => path.join(t.walDir, name)
  for (const [temp, name] of intent.renames) if (await t.fs.stat(at(temp))) await t.fs.rename(at(temp), at(name))
  if (intent.renames.length > 0) await t.fs.syncDir(t.walDir)
  for (const c of intent.cuts) if (await t.fs.stat(at(c.segment))) await zeroRange(t.fs, at(c.segment), c.offset, c.end)
  let moved = false
  for (const m of intent.moves) {
    if (!(await t.fs.stat(at(m.segment)))) continue
    await makeDirDurable(t.fs, t.quarantineDir)
    await t.fs.rename(at(m.segment), await freeName(t.fs, t.quarantineDir, m.as))
    moved = true
  }
  if (moved) {
    await t.fs.syncDir(t.quarantineDir)
    await t.fs.syncDir(t.walDir)
  }
  for (const g of intent.gaps) if (await t.fs.stat(at(g.segment))) await declareGap(t, at(g.segment), g.fromLsn)
  if (committed) {
    await t.fs.unlink(at(INTENT_FILE))
    await t.fs.syncDir(t.walDir)
  }
}

/** Finishes a repair a crash interrupted after its intent was committed; nothing to do without one. */
export async function resumeRepair(t: IntentTarget): Promise<boolean> {
  const file = path.join(t.walDir, INTENT_FILE)
  if (!(await t.fs.stat(file))) return false
  await finishIntent(t, parseIntent(Buffer.from(await t.fs.readFile(file)).toString('utf8'), file), true)
  return true
}

function parseIntent(text: string, file: string): RepairIntent {
  const refuse = (why: string): never => {
    // Committed by rename after a sync: it is whole, or absent. Anything else was not written by memwal.
    throw new MemwalError('WAL_CORRUPT_HEADER', `${file} cannot be read (${why}): a log repair was interrupted; move the file aside only after checking the log by hand`, { details: { file } })
  }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    return refuse('not JSON')
  }
  const o = v as Partial<RepairIntent> | null
  if (!o || !Array.isArray(o.renames) || !Array.isArray(o.cuts) || !Array.isArray(o.moves) || !Array.isArray(o.gaps)) return refuse('missing fields')
  const safe = (n: unknown): n is string => typeof n === 'string' && n.length > 0 && !n.includes('/') && n !== '..' && n !== '.'
  const ok =
    o.renames.every((r) => Array.isArray(r) && safe(r[0]) && safe(r[1])) &&
    o.cuts.every((c) => safe(c.segment) && Number.isSafeInteger(c.offset) && Number.isSafeInteger(c.end)) &&
    o.moves.every((m) => safe(m.segment) && safe(m.as)) &&
    o.gaps.every((g) => safe(g.segment) && Number.isSafeInteger(g.fromLsn))
  return ok ? (o as RepairIntent) : refuse('a step is malformed')
}

/** Rewrites a segment's header with `gapFromLsn` (the lower one, if it declares a gap already): a synced copy renamed over the original. */
export async function declareGap(t: Pick<IntentTarget, 'fs' | 'sums'>, file: string, gapFromLsn: number): Promise<void> {
  const bytes = Buffer.from(await t.fs.readFile(file))
  const h = decodeSegmentHeader(bytes, t.sums)
  assert(h.kind === 'header', 'gap is declared in a valid segment')
  const existing = h.header.gapFromLsn
  const from = existing !== 0 ? Math.min(existing, gapFromLsn) : gapFromLsn
  if (from === existing) return
  assert(from < h.header.baseLsn, 'a gap ends before the segment that declares it')
  encodeSegmentHeader({ ...h.header, gapFromLsn: from }, t.sums).copy(bytes, 0)
  await replaceFile(t.fs, file, bytes)
}
