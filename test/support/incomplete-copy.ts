import fs from 'node:fs'
import path from 'node:path'
import type { Test } from 'tap'
import { checkDataDir, fsck, MemWAL, restoreBackup } from '../../engine/index.js'
import { codeOf } from './code-of.js'

/**
 * Checks that `dir`, holding the INCOMPLETE sentinel of an interrupted backup
 * or restore, is refused by everything that could take it for a store:
 * restore (into `scratch`/from-incomplete, which it must not make), open,
 * checkDataDir and fsck with repair; and that none of them changed it.
 */
export async function expectRefusedAsIncomplete(t: Test, dir: string, scratch: string): Promise<void> {
  const sentinel = path.join(dir, 'INCOMPLETE')
  const target = path.join(scratch, 'from-incomplete')
  const err = await restoreBackup(dir, target).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'BACKUP_INCOMPLETE', details: { path: dir, sentinel } }, 'a restore of it is refused, naming the sentinel')
  t.notOk(fs.existsSync(target), 'and makes nothing')
  t.equal(await codeOf(MemWAL.open({ dir })), 'BACKUP_INCOMPLETE', 'opening it is refused')
  t.equal(await codeOf(checkDataDir(dir)), 'BACKUP_INCOMPLETE', 'checkDataDir (status, dump, get) refuses it')
  t.equal(await codeOf(fsck({ dir, repair: true })), 'BACKUP_INCOMPLETE', 'fsck, even with repair, refuses it')
  t.ok(fs.existsSync(sentinel), 'the refusals left it as it was')
}
