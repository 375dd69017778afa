/**
 * Dead letters are a known state (issue 14 item 3): fsck reports an open dead
 * letter as a notice (exit 0 from the CLI), not as backend-missing and
 * index-orphan; fsck --repair never writes the rejected record into the
 * backend; MemWAL.deadLetters lists them, retries one (written again through
 * the log, so it flows to every sink) and drops one (recorded durably), and
 * what was retried or dropped is no longer reported.
 */
import path from 'node:path'
import t, { type Test } from 'tap'
import { fsck, MemWAL, type MemwalOptions } from '../../engine/index.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'
import { identityOf } from '../../engine/format/identity.js'
import { NodeFileSystem } from '../../engine/io/node-fs.js'
import { ForwardingFileSystem } from '../support/forwarding-fs.js'
import { HoldingFs } from '../support/holding-fs.js'

function open(dir: string, faults?: SinkFaults, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 1000, ...(faults ? { wrapSink: (s) => faults.wrap(s) } : {}), ...extra })
}

/** A directory whose backend rejected the put of `poison` (LSN 2) and of `toxic` (LSN 4) for good; `ok` keys applied. */
async function withDeadLetters(t: Test): Promise<{ dir: string; poison: number; toxic: number }> {
  const dir = path.join(tmpDir(t), 'data')
  const faults = new SinkFaults({ targets: ['backend'] })
  faults.rejectKeys('poison', 'toxic')
  const db = await open(dir, faults)
  try {
    await db.put('ok/1', 1)
    const poison = (await db.put('poison', { v: 1 }, { namespace: 'ns', tags: ['t'] })).lsn
    await db.put('ok/2', 2)
    const toxic = (await db.put('toxic', { v: 1 })).lsn
    await db.flush({ timeoutMs: 10_000 })
    return { dir, poison, toxic }
  } finally {
    await db.close()
  }
}

t.test('fsck: an open dead letter is a notice, never backend-missing or index-orphan; --repair does not apply it', async (t) => {
  const { dir, poison, toxic } = await withDeadLetters(t)
  const r = await fsck({ dir, repair: false })
  t.equal(r.clean, true, 'clean: dead letters are a known state')
  t.strictSame(r.counts, { 'dead-letter': 2 })
  t.equal(r.notices, 2)
  t.match(r.findings, [{ kind: 'dead-letter', sink: 'backend', key: 'poison', lsnFirst: poison }, { kind: 'dead-letter', sink: 'backend', key: 'toxic', lsnFirst: toxic }])
  const repaired = await fsck({ dir, repair: true })
  t.equal(repaired.clean, true)
  t.equal(repaired.repaired, 0, 'nothing to repair')
  const db = await open(dir)
  try {
    t.equal(await db.get('poison'), undefined, 'the rejected record was not written into the backend by the repair')
    t.equal(await db.get('ok/2'), 2)
  } finally {
    await db.close()
  }
})

t.test('deadLetters.list/retry/drop: retry writes the record again and it flows; drop is recorded; neither is reported again', async (t) => {
  const { dir, poison, toxic } = await withDeadLetters(t)
  const db = await open(dir)
  try {
    t.match(await db.deadLetters.list(), [{ sink: 'backend', lsn: poison, keys: ['poison'], entries: [{ namespace: 'ns', key: 'poison' }] }, { sink: 'backend', lsn: toxic, keys: ['toxic'], entries: [{ namespace: 'default', key: 'toxic' }] }])
    await t.rejects(db.deadLetters.retry(999), { code: 'DEADLETTER_NOT_FOUND' })
    const r = await db.deadLetters.retry(poison)
    t.equal(r.retried.length, 1)
    t.equal(r.retried[0]?.lsn, poison)
    t.ok((r.retried[0]?.newLsn ?? 0) > toxic, 'written again with a new LSN')
    await db.flush({ timeoutMs: 10_000 })
    t.match(await db.getEntry('poison', { namespace: 'ns' }), { value: { v: 1 }, version: r.retried[0]?.newLsn, namespace: 'ns', key: 'poison', tags: ['t'] }, 'the backend applied it this time, with its namespace and tags')
    const keys: string[] = []
    for await (const q of db.query({ namespace: 'ns' })) keys.push(q.key)
    t.strictSame(keys, ['poison'], 'and the index')
    t.match(await db.deadLetters.list(), [{ lsn: toxic }], 'only the other one is open')
    t.strictSame(await db.deadLetters.drop(toxic), { dropped: [toxic] })
    t.strictSame(await db.deadLetters.list(), [])
    t.strictSame(await db.deadLetters.drop('all'), { dropped: [] })
    t.equal((await db.verify()).clean, true)
  } finally {
    await db.close()
  }
  const r = await fsck({ dir, repair: false })
  t.strictSame(r.findings, [], 'retried and dropped: nothing reported, and the dropped key is not backend-missing')
  const again = await open(dir)
  try {
    t.strictSame(await again.deadLetters.list(), [], 'the resolutions are durable')
    t.equal(await again.get('toxic'), undefined, 'a dropped record stays unapplied')
  } finally {
    await again.close()
  }
})

t.test('retry leaves a dead letter whose key was written since: superseded, still open', async (t) => {
  const { dir, poison } = await withDeadLetters(t)
  const db = await open(dir)
  try {
    await db.put('poison', { v: 1 }, { namespace: 'elsewhere' }) // another identity: does not supersede it
    await db.put('poison', { v: 2 }, { namespace: 'ns' })
    await db.flush({ timeoutMs: 10_000 })
    const r = await db.deadLetters.retry('all')
    t.strictSame(r.superseded, [poison], 'a newer version exists: not written again')
    t.equal(r.retried.length, 1, 'the other one is')
    t.strictSame(await db.get('poison', { namespace: 'ns' }), { v: 2 }, 'the newer version stands')
    t.match(await db.deadLetters.list(), [{ lsn: poison }])
  } finally {
    await db.close()
  }
})

t.test('retry never overwrites a write that lands between its version check and its rewrite: superseded, the write stands', async (t) => {
  const { dir, poison, toxic } = await withDeadLetters(t)
  const fs = new HoldingFs(new NodeFileSystem())
  // While retry reads the backend for poison's version, a user's put of poison is appended and held in flight:
  // the read cannot see it (not acknowledged), and the rewrite comes after it in the log.
  let duringRead: (() => Promise<void>) | undefined
  let user: Promise<{ lsn: number }> | undefined
  const db = await open(dir, undefined, {
    fs,
    cacheBytes: 1,
    wrapSink: (s) => {
      if (s.name !== 'backend') return s
      const reads = s as unknown as { get(id: string): Promise<unknown> }
      const get = reads.get.bind(s)
      reads.get = async (id) => {
        const before = await get(id)
        const land = id === identityOf('ns', 'poison') ? duringRead : undefined
        duringRead = land ? undefined : duringRead
        if (land) await land()
        return before
      }
      return s
    },
  })
  try {
    duringRead = async () => {
      const held = fs.hold('user-marker')
      user = db.put('poison', { v: 'user-marker' }, { namespace: 'ns' })
      await held
    }
    const retrying = db.deadLetters.retry(poison)
    while (user === undefined) await new Promise((resolve) => setImmediate(resolve))
    // Let the retry reach its rewrite (the gate waits for the held put, or the put is released first: the outcome is the same).
    setImmediate(() => fs.release())
    const [r, landed] = await Promise.all([retrying, user.then((u) => u.lsn)])
    t.ok(landed > toxic, 'the user put was appended during the check')
    t.strictSame(r, { retried: [], superseded: [poison] }, 'the lost race is reported superseded, not retried')
    t.match(await db.getEntry('poison', { namespace: 'ns' }), { value: { v: 'user-marker' }, version: landed }, 'the user write stands')
    t.match(await db.deadLetters.list(), [{ lsn: poison }, { lsn: toxic }], 'still open (drop it)')
    const again = await db.deadLetters.retry(toxic)
    t.match(again, { retried: [{ lsn: toxic }], superseded: [] }, 'with no race, retried: the condition held (absent)')
  } finally {
    await db.close()
  }
})

/** The real filesystem, counting the replacements of deadletter/resolved.json. */
class CountingFs extends ForwardingFileSystem {
  resolvedWrites = 0
  /** The next write of resolved.json fails (as if the process died before it). */
  failNext = false
  override rename(from: string, to: string): Promise<void> {
    if (path.basename(to) === 'resolved.json') {
      this.resolvedWrites++
      if (this.failNext) {
        this.failNext = false
        return Promise.reject(new Error('injected: resolved.json not written'))
      }
    }
    return this.inner.rename(from, to)
  }
}

t.test("retry('all') records its resolutions with one write of resolved.json, however many records it writes again", async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const keys = Array.from({ length: 25 }, (_, i) => `poison/${i}`)
  const faults = new SinkFaults({ targets: ['backend'] })
  faults.rejectKeys(...keys)
  const first = await open(dir, faults)
  for (const k of keys) await first.put(k, k)
  await first.flush({ timeoutMs: 10_000 })
  await first.close()
  const fs = new CountingFs(new NodeFileSystem())
  const db = await open(dir, undefined, { fs })
  try {
    t.equal((await db.deadLetters.list()).length, keys.length)
    const r = await db.deadLetters.retry('all')
    t.equal(r.retried.length, keys.length, 'every record written again')
    t.equal(fs.resolvedWrites, 1, 'one write of resolved.json for the call')
    t.strictSame(await db.deadLetters.list(), [], 'all recorded as retried')
    await db.flush({ timeoutMs: 10_000 })
    t.strictSame(await db.get('poison/7'), 'poison/7', 'and applied this time')
  } finally {
    await db.close()
  }
})

t.test('retry whose resolutions are never recorded (a crash before resolved.json): the records stay open, and a second retry finds each superseded by its own copy, applied once', async (t) => {
  const { dir, poison, toxic } = await withDeadLetters(t)
  const fs = new CountingFs(new NodeFileSystem())
  const db = await open(dir, undefined, { fs })
  try {
    fs.failNext = true
    await t.rejects(db.deadLetters.retry('all'), { message: /resolved.json not written/ })
    t.match(await db.deadLetters.list(), [{ lsn: poison }, { lsn: toxic }], 'not recorded: still open')
    const last = db.health().wal.lastLsn
    t.strictSame(await db.deadLetters.retry('all'), { retried: [], superseded: [poison, toxic] }, 'each has a newer version: the copy the first retry wrote')
    t.equal(db.health().wal.lastLsn, last, 'nothing written twice')
    await db.flush({ timeoutMs: 10_000 })
    t.strictSame([await db.get('poison', { namespace: 'ns' }), await db.get('toxic')], [{ v: 1 }, { v: 1 }], 'the values the first retry wrote again are there')
  } finally {
    await db.close()
  }
})
