/**
 * G7 on the real filesystem: one writer per data directory. A second writer,
 * in this process or another, gets LOCK_HELD naming the holder; a lock left by
 * a killed process, or from before a reboot, is taken over at once; the owner
 * record is durable; close() releases the lock; and the data directory keeps
 * its files private (directories 0700, files 0600).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { type MemwalError } from '../../engine/index.js'
import { lockHolder, ProcessDirLocker, RecordType, systemLockHost, Wal, type LockHost } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'
import { waitFor } from '../support/wait-for.js'
import type { Child } from '../support/child-process.js'
import { WAL_CHILD_SEGMENT_BYTES } from '../process/children/wal-writer.js'
import { spawnKillChild } from '../process/kill-child.js'

const LOCK_DIR = 'memwal.lock'

function openWal(dir: string): Promise<Wal> {
  return Wal.open({ dir, segmentBytes: WAL_CHILD_SEGMENT_BYTES })
}

interface TryOpenResult {
  ok: boolean
  pid: number
  code?: string
  message?: string
  details?: { dir?: string; holder?: string }
}

async function tryOpenInChild(dir: string): Promise<TryOpenResult> {
  const child = spawnKillChild(['wal-try-open', dir])
  const line = await child.waitFor((l) => l.startsWith('{'))
  const end = await child.ended
  if (end.code !== 0) throw new Error(`try-open child exited ${String(end.code ?? end.signal)}: ${child.stderr()}`)
  return JSON.parse(line) as TryOpenResult
}

/** A child holding the lock of `dir`; killed at the end of the test if still running. */
async function holdInChild(t: { teardown(fn: () => unknown): void }, dir: string): Promise<Child> {
  const child = spawnKillChild(['wal-hold', dir], { stdin: true })
  t.teardown(() => child.killIfRunning())
  await child.waitFor((l) => l.startsWith('ready '))
  return child
}

async function appendOne(wal: Wal, key: string): Promise<number> {
  return wal.appendRecord({ type: RecordType.PUT, op: { type: 'put', key, value: key } })
}

async function keysIn(wal: Wal): Promise<string[]> {
  const keys: string[] = []
  for await (const r of wal.read(1)) {
    const rec = wal.decode(r)
    if (rec.type === RecordType.PUT) keys.push(rec.op.key)
  }
  return keys
}

t.test('a second Wal.open in the same process is refused with LOCK_HELD naming this process', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const first = await openWal(dir)
  t.teardown(() => first.close())
  await appendOne(first, 'before')

  const err = (await openWal(dir).then(
    async (w) => {
      await w.close()
      return undefined
    },
    (e: unknown) => e,
  )) as MemwalError | undefined
  t.ok(err, 'the second open is refused')
  t.equal(err?.code, 'LOCK_HELD')
  t.match(err?.message, new RegExp(`process ${process.pid}\\b`), 'the message names the holder pid')
  t.match(String(err?.details['holder']), new RegExp(`process ${process.pid}\\b`), 'details.holder names the holder pid')
  t.equal(err?.details['dir'], dir, 'details.dir names the data directory')

  // The refused open did not disturb the holder: it still writes, and still holds the lock.
  await appendOne(first, 'after')
  t.same(await keysIn(first), ['before', 'after'])
  t.match(lockHolder(dir), new RegExp(`process ${process.pid}\\b`))
})

t.test('a second writer process is refused with LOCK_HELD naming the holder process', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const wal = await openWal(dir)
  t.teardown(() => wal.close())
  await appendOne(wal, 'a')

  const res = await tryOpenInChild(dir)
  t.equal(res.ok, false, 'the other process cannot open the WAL')
  t.not(res.pid, process.pid)
  t.equal(res.code, 'LOCK_HELD')
  t.match(res.message, new RegExp(`process ${process.pid}\\b`), 'the message names this process')
  t.match(res.details?.holder, new RegExp(`process ${process.pid}\\b`), 'details.holder names this process')
  t.equal(res.details?.dir, dir, 'details.dir names the data directory')

  // The refused process left the lock and the log alone.
  t.match(lockHolder(dir), new RegExp(`process ${process.pid}\\b`))
  await appendOne(wal, 'b')
  t.same(await keysIn(wal), ['a', 'b'])
})

t.test('this process is refused while another process holds the lock', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const holder = await holdInChild(t, dir)
  const err = (await openWal(dir).then(
    async (w) => {
      await w.close()
      return undefined
    },
    (e: unknown) => e,
  )) as MemwalError | undefined
  t.equal(err?.code, 'LOCK_HELD')
  t.match(String(err?.details['holder']), new RegExp(`process ${holder.pid}\\b`), 'names the child holder')
  holder.proc.stdin?.end()
  t.equal((await holder.ended).code, 0)
})

t.test('a lock left by a SIGKILLed holder is taken over at once', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const holder = await holdInChild(t, dir)
  t.match(lockHolder(dir), new RegExp(`process ${holder.pid}\\b`))
  holder.proc.kill('SIGKILL')
  t.equal((await holder.ended).signal, 'SIGKILL')
  t.ok(fs.existsSync(path.join(dir, LOCK_DIR)), 'the killed holder left its lock behind')

  // Make the leftover lock look as fresh as can be: by proper-lockfile's mtime
  // rule it is not stale for an hour, so only the dead-holder check can take it.
  const future = new Date(Date.now() + 3600_000)
  fs.utimesSync(path.join(dir, LOCK_DIR), future, future)

  // One attempt, no retry loop: it must succeed now.
  const wal = await openWal(dir)
  t.teardown(() => wal.close())
  t.match(lockHolder(dir), new RegExp(`process ${process.pid}\\b`), 'the lock now names this process')
  await appendOne(wal, 'mine')
  t.same(await keysIn(wal), ['mine'])

  // And the taken-over lock is a real one: another process is refused.
  const res = await tryOpenInChild(dir)
  t.equal(res.code, 'LOCK_HELD')
  t.match(res.details?.holder, new RegExp(`process ${process.pid}\\b`))
})

t.test('close() releases the lock: another process can open, then this one again', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const first = await openWal(dir)
  await appendOne(first, 'one')
  await first.close()
  t.notOk(fs.existsSync(path.join(dir, LOCK_DIR)), 'no lock left after close')
  t.equal(lockHolder(dir), undefined)

  const res = await tryOpenInChild(dir)
  t.equal(res.ok, true, `another process opens after close (${res.code ?? ''} ${res.message ?? ''})`)

  // A child that holds the lock and closes cleanly releases it too: no takeover needed.
  const holder = await holdInChild(t, dir)
  t.match(lockHolder(dir), new RegExp(`process ${holder.pid}\\b`))
  holder.proc.stdin?.end()
  await holder.waitFor((l) => l === 'closed')
  t.equal((await holder.ended).code, 0)
  t.notOk(fs.existsSync(path.join(dir, LOCK_DIR)), 'the child released its lock on close')

  const again = await openWal(dir)
  t.teardown(() => again.close())
  await appendOne(again, 'two')
  t.same(await keysIn(again), ['one', 'two'])
})

t.test('a process that exits without close() leaves no lock behind', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const child = spawnKillChild(['wal-exit-open', dir])
  await child.waitFor((l) => l.startsWith('ready '))
  t.equal((await child.ended).code, 0)
  // proper-lockfile removes its locks on exit; the owner file inside must not stop it.
  t.notOk(fs.existsSync(path.join(dir, LOCK_DIR)), 'the lock was removed at exit')
  const wal = await openWal(dir)
  t.teardown(() => wal.close())
  t.equal(wal.lastLsn, 1, 'the record the child wrote is there')
})

t.test('the data directory is created 0700 and its files 0600', async (t) => {
  const parent = path.join(tmpDir(t), 'not-yet')
  const dir = path.join(parent, 'data')
  const wal = await openWal(dir)
  t.teardown(() => wal.close())
  // Enough to rotate at least once, so that more than one segment exists.
  const value = Buffer.alloc(50_000, 7)
  for (let i = 0; i < 12; i++) await wal.appendRecord({ type: RecordType.PUT, op: { type: 'put', key: `k${i}`, value } })
  t.ok((await wal.segments()).length >= 2, 'the log rotated')

  const mode = (p: string): string => (fs.statSync(p).mode & 0o777).toString(8)
  t.equal(mode(parent), '700', 'a missing parent directory is created 0700')
  t.equal(mode(dir), '700', 'data directory')
  t.equal(mode(path.join(dir, 'wal')), '700', 'wal directory')
  const segments = fs.readdirSync(path.join(dir, 'wal')).filter((n) => n.endsWith('.seg'))
  t.ok(segments.length >= 2)
  for (const s of segments) t.equal(mode(path.join(dir, 'wal', s)), '600', `segment ${s}`)

  // Everything memwal made under the data directory, the lock included.
  const walk = (p: string): void => {
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const full = path.join(p, e.name)
      const rel = path.relative(dir, full)
      if (e.isDirectory()) {
        t.equal(mode(full), '700', `directory ${rel}`)
        walk(full)
      } else {
        t.equal(mode(full), '600', `file ${rel}`)
      }
    }
  }
  walk(dir)
})

// ---- after a power loss or a reboot (issue 14 item 9a) ----

/** A lock directory as a crash leaves it: `owner` is owner.json's text, `mtimeMs` its last refresh. */
function craftLock(dir: string, owner: string, mtimeMs: number): void {
  const lock = path.join(dir, LOCK_DIR)
  fs.mkdirSync(lock, { recursive: true, mode: 0o700 })
  fs.writeFileSync(path.join(lock, 'owner.json'), owner)
  fs.utimesSync(lock, new Date(mtimeMs), new Date(mtimeMs))
}

/** This machine, but booted at `bootTimeMs` with boot id `bootId`; PID 1 stands for a process that is alive. */
function hostBooted(bootId: string, bootTimeMs: number): LockHost {
  return { ...systemLockHost, bootId: () => bootId, bootTimeMs: () => bootTimeMs }
}

async function takes(locker: ProcessDirLocker, dir: string): Promise<string> {
  try {
    const lock = await locker.acquire(dir, () => undefined)
    await lock.release()
    return 'taken'
  } catch (err) {
    return `${(err as MemwalError).code}: ${(err as Error).message}`
  }
}

t.test('a lock from an earlier boot of this host is taken over at once, even if its PID is alive now', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  fs.mkdirSync(dir, { mode: 0o700 })
  // PID 1 is alive after any boot: only the boot id can say that this holder is not that process.
  const owner = (bootId: string): string => JSON.stringify({ pid: 1, hostname: os.hostname(), startedAtMs: Date.now() - 60_000, bootId })
  const fresh = Date.now() + 3600_000 // not stale by proper-lockfile's mtime rule for an hour
  craftLock(dir, owner('boot-before'), fresh)
  t.equal(await takes(new ProcessDirLocker({ host: hostBooted('boot-now', Date.now() - 10_000) }), dir), 'taken', 'another boot id: left over')

  craftLock(dir, owner('boot-now'), fresh)
  t.match(await takes(new ProcessDirLocker({ host: hostBooted('boot-now', Date.now() - 10_000) }), dir), /^LOCK_HELD: .*process 1 on /, 'the same boot id and a live PID: held')
  fs.rmSync(path.join(dir, LOCK_DIR), { recursive: true })

  // The real machine's boot id, read by the default locker: a Wal opens at once over a lock from another boot.
  craftLock(dir, owner('00000000-0000-0000-0000-000000000000'), fresh)
  const wal = await openWal(dir)
  t.teardown(() => wal.close())
  t.match(lockHolder(dir), new RegExp(`process ${process.pid}\\b`), 'the lock now names this process')
  const written = JSON.parse(fs.readFileSync(path.join(dir, LOCK_DIR, 'owner.json'), 'utf8')) as { bootId?: string }
  const bootId = fs.existsSync('/proc/sys/kernel/random/boot_id') ? fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() : undefined
  t.equal(written.bootId, bootId, 'the owner record carries this boot id')
})

t.test('a lock left by an earlier process with this PID (a container\'s PID 1 after a restart) is taken over at once; this very process\'s own is refused as such', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  fs.mkdirSync(dir, { mode: 0o700 })
  const bootId = systemLockHost.bootId()
  const start = systemLockHost.processStart(process.pid)
  // Linux says (/proc/<pid>/stat); where the system does not, the test fails rather than skip.
  if (start === undefined) {
    t.fail('this system does not say when a process began')
    return
  }
  const fresh = Date.now() + 3600_000 // not stale by proper-lockfile's mtime rule for an hour
  // This host, this boot, this PID: only the start time tells the earlier process from this one.
  const owner = (processStart: string): string => JSON.stringify({ pid: process.pid, hostname: os.hostname(), startedAtMs: Date.now() - 60_000, ...(bootId !== undefined ? { bootId } : {}), processStart })
  craftLock(dir, owner(String(Number(start) - 1)), fresh)
  t.equal(await takes(new ProcessDirLocker(), dir), 'taken', 'an earlier process with this PID: left over, taken at once')

  // A live process under a PID the lock names, begun at another moment: the PID was reused, the holder is gone.
  craftLock(dir, JSON.stringify({ pid: 1, hostname: os.hostname(), startedAtMs: Date.now() - 60_000, ...(bootId !== undefined ? { bootId } : {}), processStart: 'not-when-pid-1-began' }), fresh)
  t.equal(await takes(new ProcessDirLocker(), dir), 'taken', 'PID 1 alive, but another process than the holder: left over')

  // This very process's lock, as it writes it: refused, and said to be this process.
  const wal = await openWal(dir)
  t.teardown(() => wal.close())
  const written = JSON.parse(fs.readFileSync(path.join(dir, LOCK_DIR, 'owner.json'), 'utf8')) as { processStart?: string }
  t.equal(written.processStart, start, 'the owner record carries the holder\'s start time')
  t.match(await takes(new ProcessDirLocker(), dir), new RegExp(`^LOCK_HELD: .*process ${process.pid} on .*, this very process: it already has the directory open`), 'this process\'s own lock: held, and said so')
})

t.test('a lock with no readable owner is taken over at once if it was last refreshed before this boot, and held otherwise', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  fs.mkdirSync(dir, { mode: 0o700 })
  const now = Date.now()
  // Booted 10 s ago; the lock was refreshed 30 s ago: within proper-lockfile's 60 s stale period, but before the boot.
  const host = hostBooted('boot-now', now - 10_000)
  // (An empty lock directory needs no rule: renaming a new lock onto it replaces it.)
  for (const [label, owner] of [['an empty owner file (power loss)', ''], ['a torn owner file', '{"pid":12']] as const) {
    craftLock(dir, owner, now - 30_000)
    t.equal(await takes(new ProcessDirLocker({ host }), dir), 'taken', `${label}, from before this boot: left over`)
    craftLock(dir, owner, now - 1_000)
    t.match(await takes(new ProcessDirLocker({ host }), dir), /^LOCK_HELD: .*an unknown process/, `${label}, refreshed during this boot: held`)
    fs.rmSync(path.join(dir, LOCK_DIR), { recursive: true, force: true })
  }
})

t.test('the owner record is durable: owner.json, the lock directory and the data directory are synced', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  fs.mkdirSync(dir, { mode: 0o700 })
  const synced: string[] = []
  const open = fs.promises.open
  // A syscall spy: every handle opened through fs.promises records the paths it syncs.
  fs.promises.open = (async (p: fs.PathLike, ...rest: unknown[]) => {
    const h = await (open as (...a: unknown[]) => Promise<fs.promises.FileHandle>)(p, ...rest)
    const sync = h.sync.bind(h)
    h.sync = async () => {
      await sync()
      synced.push(String(p))
    }
    return h
  }) as typeof fs.promises.open
  t.teardown(() => {
    fs.promises.open = open
  })
  const lock = await new ProcessDirLocker().acquire(dir, () => undefined)
  fs.promises.open = open
  t.teardown(() => lock.release())
  const rel = synced.map((p) => path.relative(dir, p).replace(/^memwal\.lock\.\d+\.\d+\.tmp/, 'memwal.lock.<temp>'))
  t.ok(rel.includes('memwal.lock.<temp>/owner.json'), `owner.json synced before the rename (${rel.join(', ')})`)
  t.ok(rel.includes('memwal.lock.<temp>'), 'the lock directory synced before the rename')
  t.ok(rel.includes(''), 'the data directory synced after the rename')
  t.ok(rel.indexOf('memwal.lock.<temp>/owner.json') < rel.indexOf(''), 'in that order')
})

t.test('a lock lost while held is reported as LOCK_COMPROMISED, with proper-lockfile\'s error as the cause', async (t) => {
  const dir = tmpDir(t)
  let lost: unknown
  const lock = await new ProcessDirLocker({ staleMs: 2_000, updateMs: 1_000 }).acquire(dir, (err) => (lost = err))
  t.teardown(() => lock.release().catch(() => undefined))
  fs.rmSync(path.join(dir, 'memwal.lock'), { recursive: true, force: true })
  await waitFor(() => lost !== undefined, 'the lock refresh to notice', 10_000, 20)
  t.match(lost, { code: 'LOCK_COMPROMISED', details: { dir }, cause: { code: 'ECOMPROMISED' } })
  t.match((lost as Error).message, `the lock of ${dir} was lost`)
})
