/**
 * Declared gaps stay visible (issue 14 item 2): LSNs that recovery dropped
 * (here `skip-corrupt` on a damaged middle frame the backend never applied) are recorded durably in
 * `gaps.json`, shown by `health().gaps` and as a `declared-gap` notice of
 * `verify()` (not damage), across reopens (once, however often the same damage
 * is met), until `acknowledgeGaps()`.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemWAL } from '../../engine/index.js'
import { DATADIRS } from '../support/cli-run.js'
import { tmpDir } from '../support/tmp-dir.js'

const manifest = JSON.parse(fs.readFileSync(path.join(DATADIRS, 'manifest.json'), 'utf8')) as Record<string, { lsnFirst?: number }>

t.test('a gap skip-corrupt declared: in health() and verify() until acknowledged, once across reopens', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  fs.cpSync(path.join(DATADIRS, 'corrupt-log-backend-down'), dir, { recursive: true })
  const lsn = manifest['corrupt-log-backend-down']?.lsnFirst as number
  let db = await MemWAL.open({ dir, corruptionPolicy: 'skip-corrupt' })
  try {
    t.match(db.health().gaps, [{ lsnFirst: lsn, lsnLast: lsn, by: 'open (corruptionPolicy skip-corrupt)', alreadyApplied: false }])
    const v = await db.verify()
    t.match(v.findings.filter((f) => f.kind === 'declared-gap'), [{ lsnFirst: lsn, lsnLast: lsn, action: 'none' }])
    t.equal(v.notices, 1)
  } finally {
    await db.close()
  }
  t.equal(JSON.parse(fs.readFileSync(path.join(dir, 'gaps.json'), 'utf8')).gaps.length, 1, 'recorded on disk')
  db = await MemWAL.open({ dir, corruptionPolicy: 'skip-corrupt' })
  try {
    t.equal(db.health().gaps.length, 1, 'the same damage met again is the same gap')
    t.equal(await db.acknowledgeGaps(), 1)
    t.strictSame(db.health().gaps, [])
    t.equal(await db.acknowledgeGaps(), 0, 'nothing left to acknowledge')
  } finally {
    await db.close()
  }
  db = await MemWAL.open({ dir, corruptionPolicy: 'skip-corrupt' })
  try {
    t.strictSame(db.health().gaps, [], 'acknowledged for good: reopening meets the damage again, and does not raise it anew')
    t.equal((await db.verify()).notices, 0)
  } finally {
    await db.close()
  }
})

t.test('a clean directory declares nothing and writes no gaps.json', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const db = await MemWAL.open({ dir })
  try {
    await db.put('a', 1)
    t.strictSame(db.health().gaps, [])
  } finally {
    await db.close()
  }
  t.notOk(fs.existsSync(path.join(dir, 'gaps.json')))
})
