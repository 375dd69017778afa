/**
 * WAL retention against the sinks' checkpoints, on a real data directory
 * with small (64 KiB) segments:
 * - once every durable sink has applied a segment's records, the segment is
 *   deleted (the engine looks at most once per second, so the test waits,
 *   nudging with a write as a live system would);
 * - while the index is down, no segment holding an LSN above the index
 *   checkpoint is deleted, although the backend is caught up; a reopen with
 *   the index still behind replays those segments into it, and every key is
 *   readable and queryable;
 * - a reopen after a backend outage replays the unapplied records from the
 *   segments: the backend ends with exactly the model, each LSN applied once
 *   across both sessions;
 * - a purge in progress when close() is called finishes before close()
 *   resolves: once closed (and the lock released) the engine deletes nothing,
 *   so the next opener never sees a segment vanish under its recovery scan.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemWAL, type MemwalOptions } from '../../engine/index.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { fastResilience, SinkFaults, waitFor } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'


const SEGMENT_BYTES = 64 * 1024
const VALUE = 'v'.repeat(300)

async function open(dir: string, faults: SinkFaults, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({
    dir, segmentBytes: SEGMENT_BYTES, recordBytesMax: 16 * 1024, resilience: fastResilience, closeGraceMs: 1000,
    wrapSink: (s) => faults.wrap(s), ...extra,
  })
}

/** Base LSNs of the segment files in <dir>/wal, ascending. */
function segmentBases(dir: string): number[] {
  return fs
    .readdirSync(path.join(dir, 'wal'))
    .map((n) => /^(\d{20})\.seg$/.exec(n)?.[1])
    .filter((b): b is string => b !== undefined)
    .map(Number)
    .sort((a, b) => a - b)
}

/** Puts `keys` with bounded concurrency (so that group commit batches them). */
async function putAll(engine: MemWAL, keys: string[], value: (k: string) => unknown, options?: { namespace?: string }): Promise<void> {
  for (let i = 0; i < keys.length; i += 100) await Promise.all(keys.slice(i, i + 100).map((k) => engine.put(k, value(k), options)))
}

function range(prefix: string, from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => `${prefix}${String(from + i).padStart(5, '0')}`)
}

/**
 * Waits (bounded) for `done` over the segment files, writing one small record
 * a little over each second: the engine considers a purge at most once per
 * second, when a durable sink's checkpoint moves.
 */
async function untilSegments(engine: MemWAL, dir: string, done: (bases: number[]) => boolean, what: string, timeoutMs = 8000): Promise<{ nudges: number }> {
  const deadline = Date.now() + timeoutMs
  let nudgeAt = Date.now() + 1100
  let nudges = 0
  while (!done(segmentBases(dir))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; segments ${JSON.stringify(segmentBases(dir))}`)
    if (Date.now() >= nudgeAt) {
      await engine.put(`nudge-${nudges++}`, 0)
      nudgeAt = Date.now() + 1100
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return { nudges }
}

t.test('segments every durable sink has applied are deleted; the rest stays readable after reopen', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: [] })
  const engine = await open(dir, faults)
  t.teardown(() => engine.close())
  const keys = range('key-', 0, 2000)
  await putAll(engine, keys, (k) => ({ k, pad: VALUE }))
  await engine.flush({ timeoutMs: 20_000 })
  const lastLsn = engine.health().wal.lastLsn
  t.equal(lastLsn, 2000)
  const activeBase = Number(engine.health().wal.activeSegment.slice(0, 20))
  t.ok(activeBase > 1000, `the log rotated many times (active segment starts at LSN ${activeBase})`)
  await untilSegments(engine, dir, (b) => (b[0] ?? 0) >= activeBase - 300, 'old segments to be purged')
  const bases = segmentBases(dir)
  t.ok(bases.length <= 3, `old segments were deleted (left: ${bases.join(', ')})`)
  const h = engine.health()
  const durableMin = Math.min(h.sinks.backend?.checkpoint ?? 0, h.sinks.index?.checkpoint ?? 0)
  t.ok((bases[0] ?? Infinity) <= durableMin + 1, 'no segment with unapplied records was deleted')
  await engine.close()

  const again = await open(dir, new SinkFaults({ targets: [] }))
  t.teardown(() => again.close())
  t.equal(again.health().wal.lastLsn, h.wal.lastLsn, 'the log resumes at its last LSN although its head was purged')
  const unreadable: string[] = []
  for (const k of keys) if (JSON.stringify(await again.get(k)) !== JSON.stringify({ k, pad: VALUE })) unreadable.push(k)
  t.strictSame(unreadable, [], `all ${keys.length} keys read back after reopen (from the backend; cache cold)`)
  const { lsn } = await again.put('after-reopen', 1)
  t.equal(lsn, h.wal.lastLsn + 1, 'LSNs continue')
  await again.close()
})

t.test('while the index is down, no segment above its checkpoint is deleted; reopen replays them into it', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['index'] })
  const engine = await open(dir, faults)
  t.teardown(() => engine.close())
  const before = range('a-', 0, 400)
  await putAll(engine, before, (k) => k + VALUE, { namespace: 'ns' })
  await engine.flush({ timeoutMs: 20_000 })
  faults.down()
  const during = range('b-', 0, 1600)
  await putAll(engine, during, (k) => k + VALUE, { namespace: 'ns' })
  await waitFor(() => engine.health().sinks.backend?.checkpoint === engine.health().wal.lastLsn, 'the backend catches up', 20_000)
  const indexCheckpoint = engine.health().sinks.index?.checkpoint ?? -1
  t.ok(indexCheckpoint >= 400 && indexCheckpoint < 500, `the index stopped near LSN 400 (checkpoint ${indexCheckpoint})`)
  t.equal(engine.health().state, 'degraded')
  // Several purge opportunities pass (writes a second apart, the backend applying them).
  const startBases = segmentBases(dir)
  t.ok(startBases.length > 6, `many segments (${startBases.length})`)
  const deadline = Date.now() + 2600
  let n = 0
  while (Date.now() < deadline) {
    await engine.put(`c-${n++}`, VALUE, { namespace: 'ns' })
    await waitFor(() => engine.health().sinks.backend?.checkpoint === engine.health().wal.lastLsn, 'the backend applies the nudge')
    await new Promise((r) => setTimeout(r, 400))
  }
  const bases = segmentBases(dir)
  const holding = bases.filter((b) => b <= indexCheckpoint + 1)
  t.ok(holding.length >= 1, `the segment holding LSN ${indexCheckpoint + 1} (the index's next) is still there (segments from ${bases[0]})`)
  t.strictSame(bases.filter((b) => b > indexCheckpoint), startBases.filter((b) => b > indexCheckpoint), 'no segment above the index checkpoint was deleted')
  t.equal(faults.applied('index').size, indexCheckpoint, 'the down index applied nothing more')
  const lastLsn = engine.health().wal.lastLsn
  await engine.close()

  // Reopen with the index healthy: it replays from its checkpoint out of the kept segments.
  const healthy = new SinkFaults({ targets: [] })
  const again = await open(dir, healthy)
  t.teardown(() => again.close())
  t.equal(again.health().sinks.index?.checkpoint, indexCheckpoint, 'the index checkpoint survived the reopen')
  await again.flush({ timeoutMs: 20_000 })
  const applied = healthy.applied('index')
  const wrong: number[] = []
  for (let lsn = indexCheckpoint + 1; lsn <= lastLsn; lsn++) if (applied.get(lsn) !== 1) wrong.push(lsn)
  t.strictSame(wrong, [], `the index took LSNs ${indexCheckpoint + 1}..${lastLsn} from the segments, each once`)
  t.equal(healthy.applied('backend').size, 0, 'the caught-up backend replayed nothing')
  const all = [...before, ...during, ...Array.from({ length: n }, (_, i) => `c-${i}`)]
  const found: string[] = []
  for await (const r of again.query({ namespace: 'ns', limit: 100_000 })) found.push(r.key)
  t.strictSame(found, [...all].sort(), 'every key is indexed after the replay')
  const unreadable: string[] = []
  for (const k of [...before, ...during]) if ((await again.get(k, { namespace: 'ns' })) !== k + VALUE) unreadable.push(k)
  t.strictSame(unreadable, [], 'every key reads back')
  // With the index caught up, retention resumes.
  await untilSegments(again, dir, (b) => (b[0] ?? 0) > indexCheckpoint + 1, 'purge after the index caught up')
  t.pass(`segments left: ${segmentBases(dir).length}`)
  await again.close()
})

t.test('reopen after a backend outage replays the unapplied records from the segments', async (t) => {
  const dir = tmpDir(t)
  const model = new Map<string, unknown>()
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await open(dir, faults)
  t.teardown(() => engine.close())
  const first = range('k-', 0, 300)
  await putAll(engine, first, (k) => ({ k, gen: 1 }))
  for (const k of first) model.set(k, { k, gen: 1 })
  await engine.flush({ timeoutMs: 20_000 })
  faults.down()
  const second = range('k-', 200, 900)
  await putAll(engine, second, (k) => ({ k, gen: 2, pad: VALUE }))
  for (const k of second) model.set(k, { k, gen: 2, pad: VALUE })
  for (const k of range('k-', 0, 100)) {
    await engine.delete(k)
    model.delete(k)
  }
  await engine.batch([{ type: 'put', key: 'batch-1', value: 'b' }, { type: 'del', key: 'k-00150' }])
  model.set('batch-1', 'b')
  model.delete('k-00150')
  const backendCheckpoint = engine.health().sinks.backend?.checkpoint ?? -1
  const lastLsn = engine.health().wal.lastLsn
  t.equal(backendCheckpoint, 300, 'the backend stopped at the outage')
  t.ok(segmentBases(dir).length > 3, 'the unapplied records span several segments')
  await engine.close() // during the outage

  const healthy = new SinkFaults({ targets: [] })
  const again = await open(dir, healthy)
  t.teardown(() => again.close())
  t.equal(again.health().backlog.records, lastLsn - backendCheckpoint, 'the backlog was rebuilt from the segments')
  t.equal(await again.get('k-00000'), undefined, 'pending deletes are visible at once after reopen')
  t.strictSame(await again.get('k-00899'), { k: 'k-00899', gen: 2, pad: VALUE }, 'pending puts are visible at once after reopen')
  await again.flush({ timeoutMs: 20_000 })
  const applied = healthy.applied('backend')
  const wrong: number[] = []
  for (let lsn = backendCheckpoint + 1; lsn <= lastLsn; lsn++) if (applied.get(lsn) !== 1) wrong.push(lsn)
  t.strictSame(wrong, [], 'every unapplied LSN applied once after reopen')
  t.strictSame([...applied.keys()].filter((l) => l <= backendCheckpoint), [], 'nothing the backend had was applied again')
  t.strictSame(await healthy.backendContent(), model, 'the backend holds exactly the model')
  t.equal(again.health().state, 'open')
  await again.close()
})

/** The real filesystem (so the lock is taken as usual), with segment unlinks held at a gate. */
class GatedUnlinkFs extends NodeFileSystem {
  private gate: Promise<void> | undefined
  private openGate: (() => void) | undefined
  waiting = 0
  readonly unlinked: { name: string; afterClose: boolean }[] = []
  closed = false

  hold(): void {
    this.gate = new Promise((r) => (this.openGate = r))
  }

  release(): void {
    this.openGate?.()
    this.gate = undefined
  }

  override async unlink(p: string): Promise<void> {
    if (this.gate && p.endsWith('.seg')) {
      this.waiting++
      await this.gate
      this.waiting--
    }
    await super.unlink(p)
    this.unlinked.push({ name: path.basename(p), afterClose: this.closed })
  }
}

t.test('a purge in progress at close finishes before close resolves; nothing is deleted after', async (t) => {
  const dir = tmpDir(t)
  const gated = new GatedUnlinkFs()
  const engine = await open(dir, new SinkFaults({ targets: [] }), { fs: gated })
  t.teardown(() => engine.close())
  await putAll(engine, range('k-', 0, 800), (k) => k + VALUE)
  await engine.flush({ timeoutMs: 20_000 })
  t.ok(segmentBases(dir).length > 3, 'several segments to purge')
  gated.hold()
  await untilSegments(engine, dir, () => gated.waiting > 0, 'a purge to start deleting a segment')
  const closing = engine.close().then(() => (gated.closed = true))
  await new Promise((r) => setTimeout(r, 50))
  gated.release()
  await closing
  await new Promise((r) => setTimeout(r, 100))
  t.ok(gated.unlinked.length >= 1, `the purge deleted ${gated.unlinked.length} segment(s)`)
  t.strictSame(gated.unlinked.filter((u) => u.afterClose).map((u) => u.name), [], 'no segment was deleted after close() resolved')
  const again = await open(dir, new SinkFaults({ targets: [] }))
  t.teardown(() => again.close())
  const unreadable: string[] = []
  for (const k of range('k-', 0, 800)) if ((await again.get(k)) !== k + VALUE) unreadable.push(k)
  t.strictSame(unreadable, [], 'every key reads back after reopen')
  await again.close()
})
