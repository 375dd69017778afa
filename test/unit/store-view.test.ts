/**
 * openStoreView (sinks/store-view.ts), the private copy of a store that
 * status and a dry-run fsck open: a copy that cannot be made under TMPDIR
 * says so, with its errno and what to do, rather than naming the store as if
 * it were damaged; a copy made while a live engine compacts the store is made
 * again, and is never an IO_ERROR naming the store (STORE_CHANGING once the
 * attempts are spent).
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { isMemwalError, MemWAL } from '../../engine/index.js'
import { openStoreView } from '../../engine/sinks/store-view.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'

async function smallStore(t: Parameters<typeof tmpDir>[0]): Promise<string> {
  const dir = path.join(tmpDir(t), 'data')
  const db = await MemWAL.open({ dir })
  for (let i = 0; i < 50; i++) await db.put(`k${i}`, { i })
  await db.close()
  return dir
}

t.test('a copy that cannot be made under TMPDIR is said to be the copy\'s, with its errno and what to do, not the store\'s', async (t) => {
  const dir = await smallStore(t)
  const work = tmpDir(t)
  const notADir = path.join(work, 'a-file')
  fs.writeFileSync(notADir, 'x')
  for (const [label, tmpRoot, errno] of [['a missing TMPDIR', path.join(work, 'missing'), 'ENOENT'], ['a TMPDIR that is a file', notADir, 'ENOTDIR']] as const) {
    const err: unknown = await openStoreView(new NodeFileSystem(), dir, tmpRoot).then(
      (v) => v.close().then(() => undefined),
      (e: unknown) => e,
    )
    t.ok(isMemwalError(err) && err.code === 'IO_ERROR', `${label}: IO_ERROR`)
    const message = (err as Error).message
    t.match(message, /private copy of the LevelDB store .*under TMPDIR/, `${label}: names the private copy under TMPDIR`)
    t.match(message, /free space there, or set TMPDIR to a filesystem with room/, `${label}: says what to do`)
    t.notMatch(message, /cannot open the LevelDB store at/, `${label}: not said as the store's failure`)
    t.match((err as { details?: unknown }).details, { errno, tmpRoot, store: path.join(dir, 'store') }, `${label}: the errno, TMPDIR and the store in details`)
  }
})

t.test('views opened while a live engine writes and compacts the store: each opens, or is STORE_CHANGING, never an IO_ERROR naming the store', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const tmpRoot = tmpDir(t)
  const db = await MemWAL.open({ dir })
  t.teardown(() => db.close())
  const value = 'v'.repeat(10000)
  let writing = true
  const writer = (async () => {
    for (let b = 0; writing; b++) {
      await db.batch(Array.from({ length: 200 }, (_, i) => ({ type: 'put' as const, key: `k${b % 50}-${i}`, value })))
      await db.flush()
    }
  })()
  const fsPort = new NodeFileSystem()
  const outcomes: string[] = []
  try {
    for (let i = 0; i < 40; i++) {
      try {
        const view = await openStoreView(fsPort, dir, tmpRoot)
        await view.store.readCheckpoint('index')
        await view.close()
        outcomes.push('opened')
      } catch (err) {
        outcomes.push(isMemwalError(err) ? `${err.code}: ${err.message}` : String(err))
      }
    }
  } finally {
    writing = false
    await writer
  }
  const other = outcomes.filter((o) => o !== 'opened' && !o.startsWith('STORE_CHANGING'))
  t.strictSame(other, [], 'no view failed but for STORE_CHANGING')
  t.ok(outcomes.includes('opened'), `views opened (${outcomes.filter((o) => o === 'opened').length} of 40)`)
  t.strictSame(fs.readdirSync(tmpRoot), [], 'every copy removed')
})
