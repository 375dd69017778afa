/**
 * The disk thresholds on a real filesystem (issue 14 item 6): a small tmpfs
 * mounted for the test (root, as here and in CI; if the mount fails the test
 * fails with the reason, it never skips), the real NodeFileSystem and
 * LevelDB, the health loop driven by a manual clock. The engine fills it:
 * - `disk-low` fires once free space (statfs) falls below diskLowBytes, while
 *   every write is still acknowledged;
 * - below diskReadOnlyBytes the engine is read-only: writes refused with
 *   ENGINE_READ_ONLY, reads served; freeing space brings it back;
 * - with the disk filled to ENOSPC behind its back (another process's file,
 *   between two health checks), the log goes on in its preallocated segment,
 *   and the write that needs a new segment is refused with WAL_WRITE_FAILED
 *   (transient): the engine does not fail; the next check makes it read-only;
 * - once space is freed, writes are acknowledged again, and after a reopen
 *   every acknowledged write reads back, byte for byte, and verify() is clean.
 * The figures it meets are in its assertion messages. Each check waits for
 * LevelDB's compactions to end, and the thresholds are wider apart than one
 * takes: a compaction in flight no longer skips the disk-low window.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout } from 'node:timers/promises'
import t from 'tap'
import { MemWAL, type MemwalOptions } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { manualResilience } from '../support/manual-engine.js'
import { settle, waitFor } from '../support/wait-for.js'

const MiB = 1024 * 1024
const TMPFS_BYTES = 48 * MiB
/**
 * The thresholds, apart by more than a LevelDB compaction takes for a while
 * (it writes its new tables before it deletes the old: 8 MB at most measured
 * here, free space going from 12.3 to 4.4 MB and back) plus what the writes
 * between two checks take: a check in the middle of one cannot pass over the
 * disk-low window, and the writes after the last check before read-only
 * cannot meet ENOSPC while a compaction runs. The checks also wait for
 * LevelDB to finish its compactions (levelDbIdle), so what they see is the
 * space the data holds.
 */
const LOW_BYTES = 22 * MiB
const READ_ONLY_BYTES = 14 * MiB
/** What the other occupant of the disk takes at first: removing it brings free space back above diskReadOnlyBytes. */
const BALLAST_BYTES = 16 * MiB
const INTERVAL_MS = 10_000
const VALUE_BYTES = 8 * 1024
/** Bound on the puts of one phase: far more than the tmpfs holds. */
const PUTS_MAX = TMPFS_BYTES / VALUE_BYTES

interface Teardown {
  teardown(fn: () => unknown): void
}

/**
 * A tmpfs of `bytes` mounted on a fresh directory; when the test ends,
 * whatever happened, `before` runs (closing what uses the mount), then the
 * tmpfs is unmounted and the directory removed. A failed mount throws with
 * its reason: the test fails, it does not skip.
 */
function mountTmpfs(t: Teardown, bytes: number, before: () => Promise<unknown>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-tmpfs-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'tmpfs', dir], { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    fs.rmdirSync(dir)
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim()
    throw new Error(`cannot mount a ${bytes}-byte tmpfs on ${dir}: this test needs root (as CI has): ${stderr || (err as Error).message}`)
  }
  t.teardown(async () => {
    await before().catch(() => undefined)
    execFileSync('umount', [dir])
    fs.rmdirSync(dir)
  })
  return dir
}

/** Fills `file` until the disk refuses with ENOSPC (or `bytes` are written): the bytes it took. */
function fill(file: string, bytes = Infinity): number {
  const chunk = Buffer.alloc(64 * 1024, 0x5a)
  const fd = fs.openSync(file, 'w')
  let written = 0
  try {
    while (written < bytes) written += fs.writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - written))
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOSPC') throw err
  } finally {
    fs.closeSync(fd)
  }
  return written
}

/**
 * Whether the LevelDB in `storeDir` has finished every memtable flush and
 * compaction it began, by its info log (LOG): each `Level-0 table #N:
 * started` has its `#N: <bytes>` line, each `Compacting` its `compacted to:`
 * (or `Compaction error`), and every file it logged as deleted is gone. With
 * the sinks idle nothing starts another, so free space then stays as the data
 * holds it, not as a compaction's new and old tables together hold it.
 */
function levelDbIdle(storeDir: string): boolean {
  const log = fs.readFileSync(path.join(storeDir, 'LOG'), 'utf8')
  const count = (re: RegExp): number => (log.match(re) ?? []).length
  if (count(/Level-0 table #\d+: started/g) !== count(/Level-0 table #\d+: \d+ bytes/g)) return false
  if (count(/Compacting \d+@\d+ \+ \d+@\d+ files/g) !== count(/compacted to: |Compaction error/g)) return false
  const present = new Set(fs.readdirSync(storeDir).map((f) => Number(/(\d+)/.exec(f)?.[1] ?? -1)))
  return [...log.matchAll(/Delete type=\d+ #(\d+)/g)].every((m) => !present.has(Number(m[1])))
}

function freeBytes(dir: string): number {
  const s = fs.statfsSync(dir)
  return s.bavail * s.bsize
}

t.test('a real disk filling up: disk-low, then read-only, ENOSPC refused cleanly, recovery when space is freed, nothing acknowledged lost', async (t) => {
  let engine: MemWAL | undefined
  const mnt = mountTmpfs(t, TMPFS_BYTES, async () => engine?.close())
  // Another occupant of the disk, which the test removes to free space.
  const ballast = path.join(mnt, 'ballast')
  t.equal(fill(ballast, BALLAST_BYTES), BALLAST_BYTES)
  const clock = new ManualClock()
  const options: MemwalOptions = {
    dir: path.join(mnt, 'data'), clock, healthIntervalMs: INTERVAL_MS, segmentBytes: MiB, resilience: manualResilience, closeGraceMs: 1000,
    diskLowBytes: LOW_BYTES, diskReadOnlyBytes: READ_ONLY_BYTES, diskLowSeconds: 1,
  }
  const db = await MemWAL.open(options)
  engine = db
  const low: number[] = []
  const states: string[] = []
  db.on('disk-low', (e) => low.push(e.freeBytes))
  db.on('state', (e) => states.push(`${e.from}->${e.to}`))
  const acked = new Map<string, Buffer>()
  let n = 0
  const put = async (): Promise<void> => {
    const key = `k${n++}`
    const value = randomBytes(VALUE_BYTES)
    await db.put(key, value)
    acked.set(key, value)
  }
  const storeDir = path.join(options.dir, 'store')
  /**
   * One health check on the manual clock, awaited until its look at the disk (a real statfs) is in. `drained`: first
   * waits for the sinks to apply what is pending (a jump of the clock past an apply in flight would time it out), then
   * for LevelDB to finish the compactions those writes began (a check in the middle of one sees space it gives back).
   */
  const check = async (drained = true): Promise<void> => {
    const before = db.health().disk
    if (drained) {
      await waitFor(() => db.health().backlog.records === 0, 'the sinks applied every write', 30_000)
      await waitFor(() => levelDbIdle(storeDir), 'LevelDB finished its compactions', 30_000)
    }
    await settle()
    clock.advance(INTERVAL_MS)
    await waitFor(() => db.health().disk !== before, 'the health check looked at the disk')
    await settle()
  }

  // 1. Writes until a check sees free space below diskLowBytes: the event comes, and no write failed.
  t.equal(db.health().disk?.totalBytes, TMPFS_BYTES, 'health().disk is the tmpfs, from statfs')
  while (low.length === 0 && n < PUTS_MAX) {
    for (let i = 0; i < 32; i++) await put()
    await check()
  }
  const lowAt = low[0] ?? 0
  t.ok(lowAt < LOW_BYTES && lowAt >= READ_ONLY_BYTES, `disk-low at ${lowAt} bytes free (diskLowBytes ${LOW_BYTES}, diskReadOnlyBytes ${READ_ONLY_BYTES}), after ${n} puts`)
  t.equal(db.health().state, 'open', 'writes still go')
  t.equal(acked.size, n, 'every write so far acknowledged')

  // 2. Goes on until a check sees free space below diskReadOnlyBytes: read-only, typed, before ENOSPC.
  while (db.health().state === 'open' && n < PUTS_MAX) {
    for (let i = 0; i < 16; i++) await put()
    await check()
  }
  t.equal(db.health().state, 'read-only', `read-only at ${db.health().disk?.freeBytes} bytes free, after ${n} puts`)
  t.match(db.health().reason, /disk nearly full/)
  t.equal(acked.size, n, 'no write failed on the way: the engine stopped them before the disk did')
  await t.rejects(db.put('refused', 1), { code: 'ENGINE_READ_ONLY' }, 'a write is refused, typed')
  t.same(await db.get('k0'), acked.get('k0'), 'reads are served')
  t.ok(low.every((free) => free < LOW_BYTES), `each disk-low said free space was below diskLowBytes (${low.length}: LevelDB frees its log file as it compacts, so the real free space goes up and down)`)

  // 3. Space freed: writable again at the next check.
  fs.rmSync(ballast)
  await check()
  t.equal(db.health().state, 'open', `open again at ${db.health().disk?.freeBytes} bytes free`)
  await put()

  // 4. The disk filled to ENOSPC behind the engine's back, between two checks: the log goes on in the space it
  //    preallocated, and the write that needs a new segment is refused (transient); the engine does not fail.
  const took = fill(ballast)
  t.ok(freeBytes(mnt) < VALUE_BYTES, `the disk is full: another file took ${took} bytes, ${freeBytes(mnt)} left`)
  let refusal: { code?: string; transient?: boolean } | undefined
  const fullFrom = n
  while (!refusal && n < fullFrom + PUTS_MAX) {
    await put().catch((err: { code?: string; transient?: boolean }) => (refusal = err))
  }
  t.match(refusal, { code: 'WAL_WRITE_FAILED', transient: true }, `after ${n - 1 - fullFrom} more writes into preallocated space, the one that needs a new segment is refused: WAL_WRITE_FAILED, transient`)
  t.not(db.health().state, 'failed', 'the engine has not failed (G2 is for EIO, not for a full disk)')
  await check(false)
  t.equal(db.health().state, 'read-only', 'the next check: read-only')
  await t.rejects(db.put('refused', 1), { code: 'ENGINE_READ_ONLY' })

  // 5. Space freed again: writes acknowledged, the sinks catch up.
  fs.rmSync(ballast)
  await check(false)
  t.not(db.health().state, 'read-only', `writable again at ${db.health().disk?.freeBytes} bytes free`)
  const lastKey = `k${n}`
  await put()
  t.ok(acked.has(lastKey), 'a write that needs a new segment is acknowledged')
  // The sinks retry on the manual clock. A LevelDB write that failed on the full disk left its log damaged; the store
  // reopens LevelDB before its next write (level-store.ts), so the sinks catch up once there is room again.
  for (let i = 0; i < 200 && db.health().backlog.records > 0; i++) {
    clock.advance(1000)
    await settle()
    await setTimeout(10)
  }
  t.equal(db.health().backlog.records, 0, `the sinks applied everything once space came back (${db.health().sinks.backend?.lastError?.message ?? 'no error'})`)
  const readOnly = states.filter((s) => s.includes('read-only')).map((s) => (s.endsWith('->read-only') ? 'in' : 'out'))
  t.strictSame(readOnly, ['in', 'out', 'in', 'out'], `read-only twice, writable again twice (${states.filter((s) => s.includes('read-only')).join(', ')})`)

  // 6. Reopened: the sinks apply what was behind; every acknowledged write reads back, byte for byte; verify() is clean.
  await db.close()
  const reopened = await MemWAL.open(options)
  engine = reopened
  await waitFor(() => reopened.health().backlog.records === 0, 'the reopened store applied what was behind', 30_000)
  const missing: string[] = []
  for (const [key, value] of acked) {
    const got = (await reopened.get(key)) as Buffer | undefined
    if (got === undefined || !value.equals(got)) missing.push(key)
  }
  t.strictSame(missing, [], `all ${acked.size} acknowledged writes read back after the reopen (missing: ${missing.length === 0 ? 'none' : `${missing.length}, ${missing[0]}..${missing[missing.length - 1]}`})`)
  const report = await reopened.verify()
  t.equal(report.clean, true, 'verify() is clean')
})
