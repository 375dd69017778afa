/**
 * The log's appender handles write and sync on a thread of the log's own
 * (engine/io/io-thread.ts, through NodeFileSystem's `appender` open option):
 * bytes land where asked, in order; errors keep the `code` the writer's
 * error handling reads (ENOSPC); closing waits for writes still in flight
 * (a descriptor number reused must never take a late write); an idle
 * thread never keeps the process alive; and the engine's log, on the real
 * filesystem, acknowledges through it.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import { MemWAL } from '../../engine/index.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { childEnv } from '../support/child-env.js'
import { tmpDir } from '../support/tmp-dir.js'

const here = path.dirname(fileURLToPath(import.meta.url))

t.test('writes through the thread land at their positions, in order, and sync', async (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'seg')
  fs.writeFileSync(file, Buffer.alloc(64 * 1024))
  const nfs = new NodeFileSystem()
  const h = await nfs.open(file, 'readwrite', { dsync: true, appender: true })
  const writes: Promise<void>[] = []
  // Not awaited one by one: the thread keeps them in the order asked, so an overlapping later write wins.
  for (let i = 0; i < 32; i++) writes.push(h.write(Buffer.alloc(4096, i + 1), i * 1024))
  await Promise.all(writes)
  await h.datasync()
  await h.close()
  const bytes = fs.readFileSync(file)
  for (let i = 0; i < 31; i++) t.equal(bytes[i * 1024], i + 1, `block ${i} holds write ${i}'s first byte, overwritten in order after it`)
  t.equal(bytes[31 * 1024 + 4095], 32, 'the last write is whole')
  t.equal(bytes[31 * 1024 + 4096], 0, 'and nothing past it')
})

t.test('an error from the thread keeps its code (ENOSPC from /dev/full)', { skip: fs.existsSync('/dev/full') ? false : 'no /dev/full here' }, async (t) => {
  const nfs = new NodeFileSystem()
  const h = await nfs.open('/dev/full', 'readwrite', { appender: true })
  await t.rejects(h.write(Buffer.alloc(512, 7), 0), { code: 'ENOSPC', syscall: 'write' })
  // The thread lives on after an error: the next request is answered too.
  await t.rejects(h.write(Buffer.alloc(1, 7), 0), { code: 'ENOSPC' })
  await h.close()
})

t.test('close waits for the handle\'s writes still in flight', async (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'seg')
  fs.writeFileSync(file, Buffer.alloc(0))
  const nfs = new NodeFileSystem()
  const h = await nfs.open(file, 'readwrite', { appender: true })
  let landed = false
  const w = h.write(Buffer.alloc(1 << 20, 9), 0).then(() => (landed = true))
  await h.close()
  t.ok(landed, 'the write had landed when close resolved')
  await w
  t.equal(fs.statSync(file).size, 1 << 20, 'all of it')
  await t.rejects(h.write(Buffer.alloc(1), 0), 'a write after close is refused')
})

t.test('a closed handle refuses writes while another keeps the thread: its descriptor number may be another file\'s now', async (t) => {
  const dir = tmpDir(t)
  const nfs = new NodeFileSystem()
  for (const name of ['a', 'b']) fs.writeFileSync(path.join(dir, name), Buffer.alloc(0))
  const a = await nfs.open(path.join(dir, 'a'), 'readwrite', { appender: true })
  const b = await nfs.open(path.join(dir, 'b'), 'readwrite', { appender: true })
  await a.close()
  // The kernel hands the lowest free number out again: this file takes a's.
  const other = path.join(dir, 'other')
  const fd = fs.openSync(other, 'w+')
  t.teardown(() => fs.closeSync(fd))
  await t.rejects(a.write(Buffer.from('late'), 0), { code: 'EBADF' }, 'a write through the closed handle is refused')
  await t.rejects(a.datasync(), { code: 'EBADF' }, 'and a sync')
  t.throws(() => a.writeSync?.(Buffer.from('late'), 0), { code: 'EBADF' }, 'and an inline write')
  t.equal(fs.readFileSync(other, 'utf8'), '', 'nothing reached the file that took the number')
  await b.write(Buffer.from('still here'), 0)
  await b.close()
  t.equal(fs.readFileSync(path.join(dir, 'b'), 'utf8'), 'still here', 'the other handle writes on')
})

t.test('a write from a view into a larger buffer writes the view', async (t) => {
  // Only the view's bytes go to the thread (an exact copy, transferred), not the buffer under it.
  const dir = tmpDir(t)
  const file = path.join(dir, 'seg')
  fs.writeFileSync(file, Buffer.alloc(0))
  const h = await new NodeFileSystem().open(file, 'readwrite', { appender: true })
  const big = Buffer.alloc(4 << 20, 0x61)
  big.write('view', 1000)
  await h.write(big.subarray(1000, 1004), 0)
  await h.close()
  t.equal(fs.readFileSync(file, 'utf8'), 'view')
  t.equal(big.toString('utf8', 1000, 1004), 'view', 'the caller\'s buffer is left as it was (copied, not transferred away)')
})

t.test('the thread restarts for the next appender after the last one closed', async (t) => {
  const dir = tmpDir(t)
  const nfs = new NodeFileSystem()
  for (let i = 0; i < 3; i++) {
    const file = path.join(dir, `seg${i}`)
    fs.writeFileSync(file, Buffer.alloc(0))
    const h = await nfs.open(file, 'readwrite', { appender: true })
    await h.write(Buffer.from(`segment ${i}`), 0)
    await h.close()
    t.equal(fs.readFileSync(file, 'utf8'), `segment ${i}`)
  }
})

t.test('an appender left open does not keep the process alive', (t) => {
  // Node 20 refs a worker for good when a listener is added after unref() (nodejs/node#53036): the
  // child would then never exit. It opens an appender, writes, and ends without closing it.
  const dir = tmpDir(t)
  const child = path.join(dir, 'child.mjs')
  const testing = path.join(here, '..', '..', 'engine', 'testing.ts')
  fs.writeFileSync(child, [
    `import { NodeFileSystem } from ${JSON.stringify(testing)}`,
    `const h = await new NodeFileSystem().open(${JSON.stringify(path.join(dir, 'seg'))}, 'create', { appender: true })`,
    `await h.write(Buffer.from('x'), 0)`,
    `console.log('written')`,
  ].join('\n'))
  const r = spawnSync(process.execPath, [...process.execArgv, child], { encoding: 'utf8', timeout: 60_000 })
  t.equal(r.signal, null, 'the child exited by itself (not killed at the timeout)')
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /written/)
  t.end()
})

t.test('the thread runs under --input-type=module: it takes none of the process\'s flags', (t) => {
  // Its source is CommonJS: evaluated as a module (the flag is inherited by default), it died at once, and
  // every write through it failed the log closed.
  const dir = tmpDir(t)
  const testing = pathToFileURL(path.join(here, '..', '..', 'engine', 'testing.ts')).href
  const script = [
    `import { NodeFileSystem } from ${JSON.stringify(testing)}`,
    `const h = await new NodeFileSystem().open(${JSON.stringify(path.join(dir, 'seg'))}, 'create', { appender: true })`,
    `await h.write(Buffer.alloc(1 << 20, 1), 0)`,
    `await h.datasync()`,
    `await h.close()`,
    `console.log('written')`,
  ].join('\n')
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: childEnv() })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /written/)
  t.equal(fs.statSync(path.join(dir, 'seg')).size, 1 << 20, 'the write landed')
  t.end()
})

t.test('the engine on the real filesystem acknowledges through the thread, small groups and large', async (t) => {
  const dir = tmpDir(t)
  const db = await MemWAL.open({ dir })
  await db.put('one', { n: 1 }, { namespace: 'a' })
  const big = 'x'.repeat(64 * 1024)
  await Promise.all(Array.from({ length: 64 }, (_, i) => db.put(`k${i}`, { big, i }, { namespace: 'a' })))
  await db.close()
  const again = await MemWAL.open({ dir })
  t.same(await again.get('one', { namespace: 'a' }), { n: 1 })
  t.same(await again.get('k63', { namespace: 'a' }), { big, i: 63 })
  await again.close()
})
