/**
 * What a new user meets first (issue 14 items 12 and 14): an open refused for
 * its options names the option and the range it must be in, and leaves
 * nothing behind on disk; a value too large for the log is
 * WAL_RECORD_TOO_LARGE, whatever the backlog; a permission refusal from the
 * operating system is PERMISSION_DENIED with the path and the fix, IO
 * failures IO_ERROR saying what was being done.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemWAL, osError, type MemwalError, type MemwalOptions } from '../../engine/index.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'
import { openError } from '../support/open-error.js'


t.test('bad options: INVALID_OPTIONS naming the option and its range, and nothing created', async (t) => {
  const cases: [string, Partial<MemwalOptions>, RegExp][] = [
    ['segmentBytes 0', { segmentBytes: 0 }, /^segmentBytes must be an integer in \[65536, 1073741824\] bytes, not 0$/],
    ['segmentBytes too large', { segmentBytes: 2 ** 31 }, /^segmentBytes must be an integer in \[65536, 1073741824\] bytes, not 2147483648$/],
    ['segmentBytes fractional', { segmentBytes: 100_000.5 }, /^segmentBytes must be an integer in \[65536, 1073741824\]/],
    ['recordBytesMax above the hard maximum', { recordBytesMax: 128 * 1024 * 1024 }, /^recordBytesMax must be an integer in \[1, 67108728\] bytes \(at most 67108864, and one record must fit in a segment of segmentBytes 67108864\), not 134217728$/],
    ['recordBytesMax larger than a segment holds', { segmentBytes: 65536, recordBytesMax: 65536 }, /^recordBytesMax must be an integer in \[1, \d+\] bytes .*segmentBytes 65536/],
    ['recordBytesMax 0', { recordBytesMax: 0 }, /^recordBytesMax must be an integer in \[1, /],
    ['syncIntervalMs 0', { durability: 'interval', syncIntervalMs: 0 }, /^syncIntervalMs must be in \(0, 60000\] ms, not 0$/],
    ['inlineWriteBytesMax negative', { inlineWriteBytesMax: -1 }, /^inlineWriteBytesMax must be an integer in \[0, \d+\] bytes, not -1$/],
    ['unknown durability', { durability: 'fast' as NonNullable<MemwalOptions['durability']> }, /^durability must be sync, interval or none, not fast$/],
    ['unknown corruption policy', { corruptionPolicy: 'ignore' as NonNullable<MemwalOptions['corruptionPolicy']> }, /^corruptionPolicy must be one of .*skip-corrupt.*, not ignore$/],
    ['keyBytesMax negative', { keyBytesMax: -1 }, /^keyBytesMax must be a finite number > 0, not -1$/],
    ['cacheBytes NaN', { cacheBytes: Number.NaN }, /^cacheBytes must be a finite number > 0, not NaN$/],
    ['retry delays crossed', { resilience: { retryDelayMsMin: 100, retryDelayMsMax: 10 } }, /^retryDelayMsMin 100 must not exceed retryDelayMsMax 10$/],
    ['unknown backlog policy', { backlogPolicy: 'drop' as NonNullable<MemwalOptions['backlogPolicy']> }, /^backlogPolicy must be reject or wait, not drop$/],
    // A misspelt option must not silently leave the default in force.
    ['an option not understood', { cacheSize: 1024 } as Partial<MemwalOptions>, /^MemWAL\.open: unknown option "cacheSize" \(known: dir, /],
    ['a resilience option not understood', { resilience: { retries: 3 } as never }, /^MemWAL\.open resilience: unknown option "retries"/],
    ['watchHistoryRecords fractional', { watchHistoryRecords: 1.5 }, /^watchHistoryRecords must be an integer >= 0, not 1\.5$/],
  ]
  const root = tmpDir(t)
  const existing = path.join(root, 'existing')
  fs.mkdirSync(existing)
  for (const [what, options, message] of cases) {
    // A directory to be created (and its parent), and one that exists already but is empty.
    for (const dir of [path.join(root, 'new', 'data'), existing]) {
      const err = await openError({ dir, ...options })
      t.equal(err?.code, 'INVALID_OPTIONS', `${what}: INVALID_OPTIONS`)
      t.match(err?.message, message, `${what}: the message names the option and the range`)
    }
    t.strictSame(fs.readdirSync(root), ['existing'], `${what}: no directory created`)
    t.strictSame(fs.readdirSync(existing), [], `${what}: nothing created inside an existing directory`)
  }
})

t.test('a value too large for the log is WAL_RECORD_TOO_LARGE, even at the size of the whole backlog', async (t) => {
  const engine = await MemWAL.open({ dir: path.join(tmpDir(t), 'data') })
  t.teardown(() => engine.close())
  for (const mib of [5, 64, 65]) {
    const value = Buffer.alloc(mib * 1024 * 1024, 1)
    const err = await engine.put('big', value).then(
      () => undefined,
      (e: unknown) => e as MemwalError,
    )
    t.equal(err?.code, 'WAL_RECORD_TOO_LARGE', `${mib} MiB: WAL_RECORD_TOO_LARGE`)
    t.match(err?.message, /exceeds recordBytesMax 4194304$/, `${mib} MiB: the message gives the limit`)
  }
  t.equal(engine.health().wal.lastLsn, 0, 'nothing was written')
  t.equal(engine.health().state, 'open', 'and the engine is not read-only for it')
  await engine.put('small', 'fits')
  t.equal(await engine.get('small'), 'fits')
})

t.test('operating-system refusals: one mapping, PERMISSION_DENIED with the path and the fix', async (t) => {
  const errno = (code: string, p: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: refused, open '${p}'`), { code, path: p })
  for (const code of ['EACCES', 'EPERM']) {
    const e = osError(errno(code, '/data/wal/x.seg'), 'read the log', '/data')
    t.equal(e.code, 'PERMISSION_DENIED', `${code}: PERMISSION_DENIED`)
    t.match(e.message, new RegExp(`^permission denied: /data/wal/x\\.seg \\(${code}, while trying to read the log\\): run memwal as the user that owns the data directory`), `${code}: the path refused, and the fix`)
    t.match(e.details, { path: '/data/wal/x.seg', errno: code })
  }
  const rofs = osError(errno('EROFS', '/ro/data'), 'create the data directory /ro/data')
  t.equal(rofs.code, 'PERMISSION_DENIED')
  t.match(rofs.message, /read-only: remount it read-write/)
  const eio = osError(errno('EIO', '/data/wal'), 'read the log')
  t.equal(eio.code, 'IO_ERROR', 'anything else is IO_ERROR')
  t.match(eio.message, /^cannot read the log: EIO: /)
  const typed = new (class extends Error {})('x')
  t.equal(osError(osError(errno('EACCES', '/a'), 'x'), 'y').message.includes('while trying to x'), true, 'a MemwalError passes through unchanged')
  t.equal(osError(typed, 'z').code, 'IO_ERROR')

  // Through the engine: creating the data directory refused (as root no mode bit refuses, so the filesystem seam does).
  const dir = path.join(tmpDir(t), 'denied')
  const node = new NodeFileSystem()
  const denying = Object.assign(Object.create(node) as NodeFileSystem, {
    mkdirp: (p: string) => Promise.reject(errno('EACCES', p)),
  })
  const err = await openError({ dir, fs: denying })
  t.equal(err?.code, 'PERMISSION_DENIED', 'MemWAL.open: PERMISSION_DENIED')
  t.match(err?.message, new RegExp(`^permission denied: ${dir} \\(EACCES, while trying to create the data directory ${dir}\\): run memwal as`))
})
