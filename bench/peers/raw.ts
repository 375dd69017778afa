/**
 * The disk's own figure: `fs.writeSync` + `fs.fdatasyncSync` of one
 * frame-sized buffer (payload + 32-byte frame header) per record.
 *
 * - raw-append: appended to a file that grows, the loop issue 5 names; each
 *   fdatasync also commits the new size (an ext4 journal commit).
 * - raw-prealloc: the same loop over a file zero-filled and synced
 *   beforehand, as memwal lays out its segments: each fdatasync flushes data
 *   only, the physical floor for one record per flush on this disk.
 */
import fs from 'node:fs'
import { posix as path } from 'node:path'
import { timedTrial, type Timing } from '../drive.js'
import type { TrialResult } from '../stats.js'

function appendBuffer(bytes: number): Buffer {
  const b = Buffer.allocUnsafe(bytes)
  for (let i = 0; i < bytes; i++) b[i] = (i * 131 + 7) & 0xff
  return b
}

/** Zero-fills `file` to `bytes` and syncs it. */
function preallocate(file: string, bytes: number): void {
  const fd = fs.openSync(file, 'w', 0o600)
  try {
    const zeros = Buffer.alloc(1024 * 1024)
    for (let at = 0; at < bytes; at += zeros.length) fs.writeSync(fd, zeros, 0, Math.min(zeros.length, bytes - at), at)
    fs.fdatasyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The loop, appending `appendBytes` per record; `fileBytes` preallocates the
 * file before the clock starts (wrapping to its start when it fills), else
 * it grows.
 */
export async function rawTrial(dir: string, o: { readonly appendBytes: number; readonly fileBytes?: number }, timing: Timing): Promise<TrialResult> {
  const buf = appendBuffer(o.appendBytes)
  const file = path.join(dir, 'raw.log')
  const limit = o.fileBytes ?? Number.POSITIVE_INFINITY
  if (o.fileBytes !== undefined) preallocate(file, o.fileBytes)
  const fd = fs.openSync(file, o.fileBytes !== undefined ? 'r+' : 'w', 0o600)
  try {
    let position = 0
    return await timedTrial(() => {
      if (position + buf.length > limit) position = 0
      fs.writeSync(fd, buf, 0, buf.length, position)
      fs.fdatasyncSync(fd)
      position += buf.length
    }, { kind: 'awaited' }, timing)
  } finally {
    fs.closeSync(fd)
  }
}
