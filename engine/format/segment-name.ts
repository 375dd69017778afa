/** Segment files are named by their base LSN, zero-padded to 20 digits, so names sort as LSNs do. */
const SEGMENT_RE = /^(\d{20})\.seg$/

export const SEGMENT_SUFFIX = '.seg'
/** A segment being prepared: never read, removed on open. */
export const TEMP_SUFFIX = '.tmp'

export function segmentName(baseLsn: number): string {
  return `${String(baseLsn).padStart(20, '0')}${SEGMENT_SUFFIX}`
}

/** The base LSN a file name stands for, or undefined if it is not a segment name. */
export function parseSegmentName(name: string): number | undefined {
  const m = SEGMENT_RE.exec(name)
  if (!m?.[1]) return undefined
  const n = Number(m[1])
  return Number.isSafeInteger(n) && n >= 1 ? n : undefined
}
