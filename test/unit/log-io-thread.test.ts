/**
 * The log's appender handles write and sync on a thread of the log's own
 * (engine/io/io-thread.ts, through NodeFileSystem's `appender` open option):
 * bytes land where asked, in order; errors keep the `code` the writer's
 * error handling reads (ENOSPC, and fdatasync's own); closing waits for
 * writes still in flight (a descriptor number reused must never take a late
 * write); an idle thread never keeps the process alive; the engine's log, on
 * the real filesystem, acknowledges through it; and a thread that dies (ended
 * for real, through NodeFileSystem's test-only terminate) refuses what
 * waits and what comes later with IO_ERROR, the engine fails closed having
 * acknowledged only what is on disk, and nothing hangs.
 *
 * A sync error failing the log closed is the writer's (wal-io-faults.test.ts,
 * on the simulated filesystem: any sync error, whatever its code); here, that
 * the thread gives the writer such an error as fs would.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import { MemWAL, MemwalError } from '../../engine/index.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { childEnv } from '../support/child-env.js'
import { tmpDir } from '../support/tmp-dir.js'

const here = path.dirname(fileURLToPath(import.meta.url))

/**
 * Holds the log's I/O thread of `nfs` busy until `release`, whatever the
 * machine's speed: its blocking write of 1 MiB into a FIFO that nobody reads
 * stops once the pipe's 64 KiB are full, so every request asked after it
 * waits. `release` reads the FIFO until that write settles (done, or refused
 * with the thread ended), then closes its handle.
 */
async function busyThread(t: Parameters<typeof tmpDir>[0], nfs: NodeFileSystem): Promise<{ release(): Promise<void> }> {
  const fifo = path.join(tmpDir(t), 'fifo')
  const made = spawnSync('mkfifo', [fifo])
  if (made.status !== 0) throw new Error(`mkfifo failed: ${String(made.error ?? made.stderr)}`)
  // Opened read-write, a FIFO does not wait for a peer (Linux).
  const h = await nfs.open(fifo, 'readwrite', { appender: true })
  let settled = false
  const blocked = h.write(Buffer.alloc(1 << 20, 1), 0).then(() => (settled = true), () => (settled = true))
  return {
    release: async () => {
      const fd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
      const buf = Buffer.alloc(64 << 10)
      try {
        while (!settled) {
          try {
            fs.readSync(fd, buf)
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
            await new Promise((resolve) => setImmediate(resolve))
          }
        }
      } finally {
        fs.closeSync(fd)
      }
      await blocked
      await h.close()
    },
  }
}

t.test('writes through the thread land at their positions, in order, and sync', async (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'seg')
  fs.writeFileSync(file, Buffer.alloc(64 * 1024))
  const nfs = new NodeFileSystem()
  const h = await nfs.open(file, 'readwrite', { dsync: true, appender: true })
  t.ok(nfs.logIoThreadRunningForTesting(), 'through the log\'s I/O thread')
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
  t.ok(nfs.logIoThreadRunningForTesting(), 'through the log\'s I/O thread')
  await t.rejects(h.write(Buffer.alloc(512, 7), 0), { code: 'ENOSPC', syscall: 'write' })
  // The thread lives on after an error: the next request is answered too.
  await t.rejects(h.write(Buffer.alloc(1, 7), 0), { code: 'ENOSPC' })
  await h.close()
})

t.test('an fdatasync error from the thread keeps its code and syscall (EINVAL on a FIFO)', { skip: process.platform === 'linux' ? false : 'EINVAL from fdatasync on a pipe is Linux\'s' }, async (t) => {
  const fifo = path.join(tmpDir(t), 'fifo')
  const made = spawnSync('mkfifo', [fifo])
  if (made.status !== 0) return t.plan(0, `no mkfifo here: ${String(made.error ?? made.stderr)}`)
  // Opened read-write, a FIFO does not wait for a peer (Linux); a pipe cannot be synced.
  const nfs = new NodeFileSystem()
  const h = await nfs.open(fifo, 'readwrite', { appender: true })
  t.ok(nfs.logIoThreadRunningForTesting(), 'through the log\'s I/O thread')
  await t.rejects(h.datasync(), { code: 'EINVAL', syscall: 'fdatasync', errno: -22 })
  await t.rejects(h.datasync(), { code: 'EINVAL' }, 'the thread lives on after it')
  await h.close()
})

t.test('close waits for the handle\'s writes still in flight', { skip: process.platform === 'linux' ? false : 'a FIFO opened read-write without a peer is Linux\'s' }, async (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'seg')
  fs.writeFileSync(file, Buffer.alloc(0))
  const nfs = new NodeFileSystem()
  const h = await nfs.open(file, 'readwrite', { appender: true })
  // The write waits behind a busy request, so it is surely in flight when close is called.
  const busy = await busyThread(t, nfs)
  let landed = false
  const w = h.write(Buffer.alloc(1 << 20, 9), 0).then(() => (landed = true))
  const closed = h.close()
  await busy.release()
  await closed
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
  const nfs = new NodeFileSystem()
  const h = await nfs.open(file, 'readwrite', { appender: true })
  t.ok(nfs.logIoThreadRunningForTesting(), 'through the log\'s I/O thread')
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
    t.notOk(nfs.logIoThreadRunningForTesting(), `${i}: no thread while no appender is open`)
    const h = await nfs.open(file, 'readwrite', { appender: true })
    t.ok(nfs.logIoThreadRunningForTesting(), `${i}: a thread started for the appender`)
    await h.write(Buffer.from(`segment ${i}`), 0)
    await h.close()
    t.notOk(nfs.logIoThreadRunningForTesting(), `${i}: stopped with the last appender`)
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
    `const nfs = new NodeFileSystem()`,
    `const h = await nfs.open(${JSON.stringify(path.join(dir, 'seg'))}, 'create', { appender: true })`,
    `await h.write(Buffer.from('x'), 0)`,
    `console.log('written, thread running', nfs.logIoThreadRunningForTesting())`,
  ].join('\n'))
  const r = spawnSync(process.execPath, [...process.execArgv, child], { encoding: 'utf8', timeout: 60_000 })
  t.equal(r.signal, null, 'the child exited by itself (not killed at the timeout)')
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /written, thread running true/, 'the thread ran, and was left running')
  t.end()
})

t.test('the thread runs under --input-type=module: it takes none of the process\'s flags', (t) => {
  // Its source is CommonJS: evaluated as a module (the flag is inherited by default), it died at once, and
  // every write through it failed the log closed.
  const dir = tmpDir(t)
  const testing = pathToFileURL(path.join(here, '..', '..', 'engine', 'testing.ts')).href
  const script = [
    `import { NodeFileSystem } from ${JSON.stringify(testing)}`,
    `const nfs = new NodeFileSystem()`,
    `const h = await nfs.open(${JSON.stringify(path.join(dir, 'seg'))}, 'create', { appender: true })`,
    `await h.write(Buffer.alloc(1 << 20, 1), 0)`,
    `await h.datasync()`,
    `const running = nfs.logIoThreadRunningForTesting()`,
    `await h.close()`,
    `console.log('written through the thread', running)`,
  ].join('\n')
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: childEnv() })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /written through the thread true/, 'the thread ran (not the fallback to libuv\'s pool)')
  t.equal(fs.statSync(path.join(dir, 'seg')).size, 1 << 20, 'the write landed')
  t.end()
})

t.test('the engine on the real filesystem acknowledges through the thread, small groups and large', async (t) => {
  const dir = tmpDir(t)
  const nfs = new NodeFileSystem()
  const db = await MemWAL.open({ dir, fs: nfs })
  t.ok(nfs.logIoThreadRunningForTesting(), 'the log\'s segment is an appender on the thread')
  await db.put('one', { n: 1 }, { namespace: 'a' })
  const big = 'x'.repeat(64 * 1024)
  await Promise.all(Array.from({ length: 64 }, (_, i) => db.put(`k${i}`, { big, i }, { namespace: 'a' })))
  t.ok(nfs.logIoThreadRunningForTesting(), 'and still is')
  await db.close()
  t.notOk(nfs.logIoThreadRunningForTesting(), 'stopped at close')
  const again = await MemWAL.open({ dir })
  t.same(await again.get('one', { namespace: 'a' }), { n: 1 })
  t.same(await again.get('k63', { namespace: 'a' }), { big, i: 63 })
  await again.close()
})

/** How a call settled: acknowledged, or the error it was refused with. */
async function outcome<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; err: unknown }> {
  try {
    return { ok: true, value: await p }
  } catch (err) {
    return { ok: false, err }
  }
}

const THREAD_ENDED = { code: 'IO_ERROR', details: { reason: 'log-io-thread-ended' } }


t.test('the thread dying mid-request: what waits and what comes later is refused with IO_ERROR; close does not wait for it', { skip: process.platform === 'linux' ? false : 'a FIFO opened read-write without a peer is Linux\'s' }, async (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'seg')
  fs.writeFileSync(file, Buffer.alloc(0))
  const nfs = new NodeFileSystem()
  const h = await nfs.open(file, 'readwrite', { appender: true })
  const busy = await busyThread(t, nfs)
  const block = 1 << 20
  // Posted behind the busy request: every one still waits when the thread is ended.
  // Each outcome taken at once: they settle while the FIFO is read.
  const asked = [...[0, 1, 2, 3].map((i) => h.write(Buffer.alloc(block, i + 1), i * block)), h.datasync()].map(outcome)
  const ending = nfs.terminateLogIoThreadForTesting()
  await busy.release()
  t.equal(await ending, true, 'the thread ended')
  const settled = await Promise.all(asked)
  for (const [i, o] of settled.entries()) {
    t.ok(!o.ok && o.err instanceof MemwalError, `request ${i}, waiting: refused with a MemwalError`)
    t.match(!o.ok && o.err, THREAD_ENDED, 'IO_ERROR, the thread ended')
  }
  t.equal(fs.statSync(file).size, 0, 'none of the refused writes was carried out')
  await t.rejects(h.write(Buffer.from('late'), 0), THREAD_ENDED, 'a later write is refused')
  await t.rejects(h.datasync(), THREAD_ENDED, 'and a sync')
  t.throws(() => h.writeSync?.(Buffer.from('late'), 0), THREAD_ENDED, 'and an inline write: the writer fails at its next write, whatever its size')
  await h.close()
  await h.close() // once: the second waits for the first, the number is not closed twice

  const next = await nfs.open(file, 'readwrite', { appender: true })
  await next.write(Buffer.from('again'), 0)
  await next.close()
  t.equal(fs.readFileSync(file).toString('utf8', 0, 5), 'again', 'an appender opened once the last one closed gets a new thread')
})

t.test('the engine on a thread that dies fails closed: puts refused (ENGINE_FAILED), every one acknowledged is on disk', { skip: process.platform === 'linux' ? false : 'a FIFO opened read-write without a peer is Linux\'s' }, async (t) => {
  const dir = tmpDir(t)
  const nfs = new NodeFileSystem()
  const db = await MemWAL.open({ dir, fs: nfs })
  await db.put('before', 0)
  const big = 'x'.repeat(64 * 1024) // a group past inlineWriteBytesMax: written by the thread
  await Promise.all(Array.from({ length: 4 }, (_, i) => db.put(`early${i}`, { big, i })))
  // The log shares the thread with the busy FIFO write: its group waits behind it, unwritten, when the thread ends.
  const busy = await busyThread(t, nfs)
  const puts = Array.from({ length: 32 }, (_, i) => outcome(db.put(`k${i}`, { big, i })))
  const ending = nfs.terminateLogIoThreadForTesting()
  await busy.release()
  await ending
  const settled = await Promise.all(puts)
  t.equal(settled.filter((o) => o.ok).length, 0, 'no put waiting for the thread was acknowledged')
  await t.rejects(db.put('after-large', { big }), { code: 'ENGINE_FAILED' }, 'a later large put is refused')
  await t.rejects(db.put('after-small', 1), { code: 'ENGINE_FAILED' }, 'and a small one (inline)')
  t.equal(db.health().state, 'failed', 'the engine failed')
  for (const o of settled) t.match(!o.ok && o.err, { code: 'ENGINE_FAILED' }, 'a put refused is ENGINE_FAILED')
  const failed = settled[0]
  t.match(failed !== undefined && !failed.ok && (failed.err as { cause?: unknown }).cause, { code: 'WAL_FAILED', cause: THREAD_ENDED }, 'because of the log, because of the thread')
  await db.close()

  const again = await MemWAL.open({ dir })
  t.equal(await again.get('before'), 0)
  for (let i = 0; i < 4; i++) t.same(await again.get(`early${i}`), { big, i }, `early${i}, acknowledged through the thread before it ended, is there`)
  t.equal(await again.get('after-small'), undefined, 'a refused put after the failure is not')
  await again.close()
})

t.test('a process whose log thread died ends by itself', (t) => {
  const dir = tmpDir(t)
  const child = path.join(dir, 'child.mjs')
  const index = path.join(here, '..', '..', 'engine', 'index.ts')
  const testing = path.join(here, '..', '..', 'engine', 'testing.ts')
  fs.writeFileSync(child, [
    `import { MemWAL } from ${JSON.stringify(index)}`,
    `import { NodeFileSystem } from ${JSON.stringify(testing)}`,
    `const fs = new NodeFileSystem()`,
    `const db = await MemWAL.open({ dir: ${JSON.stringify(path.join(dir, 'db'))}, fs, inlineWriteBytesMax: 0 })`,
    `await db.put('a', 1)`,
    `const pending = db.put('b', 'x'.repeat(1 << 20))`,
    `await fs.terminateLogIoThreadForTesting()`,
    `await pending.then(() => console.log('b acknowledged'), (err) => console.log('b refused', err.code))`,
    `await db.put('c', 1).catch((err) => console.log('c refused', err.code))`,
    `await db.close()`,
    `console.log('closed')`,
  ].join('\n'))
  const r = spawnSync(process.execPath, [...process.execArgv, child], { encoding: 'utf8', timeout: 60_000 })
  t.equal(r.signal, null, 'the child exited by itself (not killed at the timeout)')
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /c refused ENGINE_FAILED\nclosed/)
  t.end()
})
