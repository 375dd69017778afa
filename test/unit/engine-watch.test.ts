/**
 * MemWAL.watch, the change feed, on a real data directory:
 * - live changes arrive in log order with namespace, key, version, time and
 *   the value as written (types kept, a private copy);
 * - a consumer that starts from an old version, or falls behind, reads from
 *   the segments and then continues live: no change twice, none missed, none
 *   out of order, and the writers never waited for it;
 * - namespace and prefix filters; refusals of options not understood;
 * - history retention deleted is HISTORY_PURGED naming the oldest version
 *   still there (also for a watcher that was open but not reading), and a
 *   watch resumed from there gets exactly the rest;
 * - return() and close() end a watch that waits for the next change;
 * - across a reopen, a watch from the last version a consumer saw resumes;
 * - a chunk read from the segments is held as bytes, each record decoded
 *   when the consumer reaches it (what bounds a lagging watch's memory);
 *   next() calls not awaited one by one are answered in order;
 * - the log read a chunk at a time, each read resumed where the last left
 *   off: the same records, no segment read whole twice; a resume point off a
 *   frame boundary is corruption;
 * - a seeded model: random writes (puts, deletes, batches, 3 namespaces),
 *   flushes and one reopen, with watchers started at random versions and
 *   reading at random paces, each sees exactly the model's changes after its
 *   start.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemWAL, followLog, isMemwalError, type Change, type MemwalOptions } from '../../engine/index.js'
import { ManualClock, SeededRandom } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'
import { take } from '../support/take.js'
import { waitFor } from '../support/wait-for.js'
import { RecordType, SEGMENT_HEADER_BYTES } from '../../engine/format/format.js'
import { RecordCodec } from '../../engine/format/record-codec.js'
import { logFrames, WatchHub } from '../../engine/watch.js'
import { createChecksums } from '../../engine/format/checksum.js'
import { readLog, readLogSegments } from '../../engine/log/wal-reader.js'
import type { ResumePoint } from '../../engine/log/segment-cursor.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { ForwardingFileSystem } from '../support/forwarding-fs.js'

const SMALL = { segmentBytes: 64 * 1024, recordBytesMax: 16 * 1024 } as const

function open(dir: string, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, closeGraceMs: 1000, ...extra })
}


function segmentBases(dir: string): number[] {
  return fs.readdirSync(path.join(dir, 'wal')).flatMap((n) => /^(\d{20})\.seg$/.exec(n)?.[1] ?? []).map(Number).sort((a, b) => a - b)
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string | undefined; details: Record<string, unknown> | undefined }> {
  try {
    await p
    return { code: undefined, details: undefined }
  } catch (err) {
    return isMemwalError(err) ? { code: err.code, details: err.details as Record<string, unknown> } : { code: `not a MemwalError: ${String(err)}`, details: undefined }
  }
}

t.test('live changes arrive in log order, with the value as written', async (t) => {
  const db = await open(tmpDir(t))
  t.teardown(() => db.close())
  const it = db.watch()
  const when = new Date('2026-01-02T03:04:05.678Z')
  const a = await db.put('a', { when, bytes: new Uint8Array([1, 2, 3]), n: 10n }, { namespace: 'agents/1', tags: ['x'], expiresAt: 4_000_000_000_000 })
  const b = await db.batch([
    { type: 'put', key: 'b', value: 'two' },
    { type: 'del', key: 'a', namespace: 'agents/1' },
  ])
  const c = await db.delete('b')
  const seen = await take(it, 4)
  t.strictSame(
    seen.map((c) => [c.type, c.namespace, c.key, c.version]),
    [
      ['put', 'agents/1', 'a', a.lsn],
      ['put', 'default', 'b', b.lsn],
      ['delete', 'agents/1', 'a', b.lsn],
      ['delete', 'default', 'b', c.lsn],
    ],
    'every operation, in log order; a batch gives one change per operation, all at its version',
  )
  const first = seen[0] as Change
  t.same(first.value, { when, bytes: new Uint8Array([1, 2, 3]), n: 10n }, 'the value as written, types kept')
  t.ok((first.value as { when: unknown }).when instanceof Date, 'a Date stays a Date')
  t.strictSame(first.tags, ['x'])
  t.equal(first.expiresAt, 4_000_000_000_000)
  t.equal(seen[1]?.value, 'two')
  t.equal(seen[2]?.value, undefined, 'a delete carries no value')
  const again = await db.put('k', { list: [1] })
  const changed = (await take(it, 1))[0] as Change
  const entry = await db.getEntry('k')
  t.equal(changed.time, entry?.updatedAt, "time is the entry's updatedAt")
  ;(changed.value as { list: number[] }).list.push(2)
  t.strictSame(await db.get('k'), { list: [1] }, "changing a watch's value changes nothing stored")
  t.equal(changed.version, again.lsn)
  await it.return?.()
})

t.test('from an old version, through the segments and on live: nothing twice, nothing missed; writers never wait', async (t) => {
  const db = await open(tmpDir(t), SMALL)
  t.teardown(() => db.close())
  const idle = db.watch() // opened, never read while the writes go on
  const N = 3000
  for (let i = 0; i < N; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => db.put(`k${i + j}`, { i: i + j, pad: 'p'.repeat(200) })))
  await db.flush({ timeoutMs: 20_000 })
  t.ok(segmentBases(db.dir).length > 3, 'the history spans several segments')
  t.equal(db.health().backlog.records, 0, 'every sink applied it all: the pending log holds none of it')
  const from = db.watch({ fromVersion: 1500 })
  const extra = db.put('late', 1)
  const lateLsn = (await extra).lsn
  for (const [name, it, start] of [['idle', idle, 1], ['from 1500', from, 1501]] as const) {
    const seen = await take(it, lateLsn - start + 1)
    const versions = seen.map((c) => c.version)
    const expected = Array.from({ length: lateLsn - start + 1 }, (_, i) => start + i)
    t.strictSame(versions, expected, `${name}: versions ${start}..${lateLsn}, each once, in order`)
    t.strictSame(seen.slice(0, 2).map((c) => c.key), start === 1 ? ['k0', 'k1'] : ['k1500', 'k1501'], `${name}: the right entries`)
    await it.return?.()
  }
})

t.test('namespace and prefix filters; options not understood are refused', async (t) => {
  const db = await open(tmpDir(t))
  t.teardown(() => db.close())
  const ns = db.watch({ namespace: 'a' })
  const pre = db.watch({ prefix: 'user:' })
  await db.put('user:1', 1, { namespace: 'a' })
  await db.put('other', 2, { namespace: 'a' })
  await db.put('user:2', 3, { namespace: 'a/b' })
  await db.put('user:3', 4)
  await db.put('end', 0, { namespace: 'a' })
  await db.put('user:end', 0)
  t.strictSame((await take(ns, 3)).map((c) => `${c.namespace}:${c.key}`), ['a:user:1', 'a:other', 'a:end'], 'namespace: exactly that one, not a/b')
  t.strictSame((await take(pre, 4)).map((c) => `${c.namespace}:${c.key}`), ['a:user:1', 'a/b:user:2', 'default:user:3', 'default:user:end'], 'prefix: in any namespace')
  const last = db.health().wal.lastLsn
  for (const [what, o, code] of [
    ['an unknown field', { since: 3 }, 'INVALID_OPTIONS'],
    ['a negative version', { fromVersion: -1 }, 'INVALID_OPTIONS'],
    ['a version not written yet', { fromVersion: last + 1 }, 'INVALID_OPTIONS'],
    ['a fractional version', { fromVersion: 1.5 }, 'INVALID_OPTIONS'],
    ['a prefix that is not a string', { prefix: 3 }, 'INVALID_OPTIONS'],
    ['a namespace with an empty segment', { namespace: 'a//b' }, 'ENGINE_INVALID_VALUE'],
  ] as const) {
    t.equal((await codeOf(Promise.resolve().then(() => db.watch(o as never)))).code, code, `${what} is refused`)
  }
  t.strictSame((await take(db.watch({ fromVersion: last }), 0)).length, 0, 'the last version itself is accepted')
})

/** Writes 2,000 records of ~300 bytes (many 64 KiB segments), lets every sink apply them, and gives retention its chance. */
async function writeAndPurge(db: MemWAL, clock: ManualClock): Promise<void> {
  for (let i = 0; i < 2000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => db.put(`k${i + j}`, 'v'.repeat(300))))
  await db.flush({ timeoutMs: 20_000 })
  clock.advance(2000) // retention looks at most once a second
  await db.put('nudge', 1)
  await db.flush({ timeoutMs: 20_000 })
}

t.test('history that retention deleted is HISTORY_PURGED, never skipped; resuming from the oldest version gets the rest', async (t) => {
  const clock = new ManualClock()
  const db = await open(tmpDir(t), { ...SMALL, clock })
  t.teardown(() => db.close())
  const holding = db.watch({ fromVersion: 0 }) // open, not reading: it holds the history it has not read
  await writeAndPurge(db, clock)
  await new Promise((r) => setTimeout(r, 300))
  t.equal(segmentBases(db.dir)[0], 1, 'an open watch holds back retention: its unread records stay in the log')
  t.equal((await holding.next()).value?.version, 1, 'and it reads them')
  await holding.return?.()
  clock.advance(2000)
  await db.put('nudge-2', 1)
  await db.flush({ timeoutMs: 20_000 })
  // Purges delete oldest first: once at most 3 segments are left, the one in progress is over.
  await waitFor(() => segmentBases(db.dir).length <= 3, 'the old segments to be purged once no watch holds them', 10_000, 20)
  await db.verify() // runs once the purge in progress has ended: what is left is what the log has
  const oldest = segmentBases(db.dir)[0] as number
  const fresh = await codeOf(db.watch({ fromVersion: 0 }).next())
  t.equal(fresh.code, 'HISTORY_PURGED', 'a watch from version 0 is refused')
  t.strictSame(fresh.details, { fromVersion: 0, oldestVersion: oldest }, 'naming the oldest version still in the log')
  const resumed = db.watch({ fromVersion: oldest - 1 })
  const first = await take(resumed, 2)
  t.strictSame(first.map((c) => c.version), [oldest, oldest + 1], 'resuming just before the oldest version reads on from it')
  await resumed.return?.()
  // The lock-free reader of the log (memwal watch) says the same, beside the open engine.
  const stop = new AbortController()
  t.teardown(() => stop.abort())
  const follower = await codeOf(followLog({ dir: db.dir, fromVersion: 0, signal: stop.signal }).next())
  t.strictSame(follower, fresh, 'followLog: HISTORY_PURGED with the same details')
  const followed = await take(followLog({ dir: db.dir, fromVersion: oldest - 1, signal: stop.signal }), 2)
  t.strictSame(followed.map((c) => c.version), [oldest, oldest + 1], 'followLog resumes from there too')
  t.equal((await codeOf(followLog({ dir: db.dir, since: 1 } as never).next())).code, 'INVALID_OPTIONS', 'followLog refuses an option it does not know')
})

t.test('watchHistoryRecords keeps that much history for watches that reconnect', async (t) => {
  const clock = new ManualClock()
  const db = await open(tmpDir(t), { ...SMALL, clock, watchHistoryRecords: 500 })
  t.teardown(() => db.close())
  await writeAndPurge(db, clock)
  await waitFor(() => (segmentBases(db.dir)[0] ?? 0) > 1, 'segments older than the window to be purged', 10_000, 20)
  const last = db.health().wal.lastLsn
  const oldest = segmentBases(db.dir)[0] as number
  t.ok(oldest <= last - 500 + 1, `the last 500 records stay (oldest ${oldest}, last ${last})`)
  const back = await take(db.watch({ fromVersion: last - 500 }), 500)
  t.strictSame(back.map((c) => c.version), Array.from({ length: 500 }, (_, i) => last - 499 + i), 'a watch 500 versions back reads them all')
  t.equal((await codeOf(MemWAL.open({ dir: tmpDir(t), watchHistoryRecords: -1 }))).code, 'INVALID_OPTIONS', 'a negative window is refused')
})

t.test('return() and close() end a watch waiting for the next change', async (t) => {
  const db = await open(tmpDir(t))
  const a = db.watch()
  const waitingA = a.next()
  const b = db.watch()
  const waitingB = b.next()
  await a.return?.()
  t.strictSame(await waitingA, { done: true, value: undefined }, 'return() ends the wait at once')
  t.strictSame(await a.next(), { done: true, value: undefined }, 'and the watch stays ended')
  await db.close()
  t.strictSame(await waitingB, { done: true, value: undefined }, 'close() ends every watch')
  t.equal((await codeOf(Promise.resolve().then(() => db.watch()))).code, 'ENGINE_CLOSED', 'no watch after close')
})

t.test('across a reopen, a watch from the last version a consumer saw resumes with the next change', async (t) => {
  const dir = tmpDir(t)
  let db = await open(dir)
  const it = db.watch()
  for (let i = 0; i < 50; i++) await db.put(`k${i}`, i)
  const seen = await take(it, 20)
  const lastSeen = (seen.at(-1) as Change).version
  await db.close()
  db = await open(dir)
  t.teardown(() => db.close())
  const resumed = db.watch({ fromVersion: lastSeen })
  await db.put('after', 1)
  const rest = await take(resumed, 31)
  t.strictSame(rest.map((c) => c.key), [...Array.from({ length: 30 }, (_, i) => `k${i + 20}`), 'after'], 'the 30 not seen before the reopen, then the new one')
})

/** One committed change as the model sees it. */
interface ModelChange {
  readonly version: number
  readonly text: string
}

function describe(c: Change): string {
  return `${c.type} ${c.namespace ?? '*'}/${c.key}${c.type === 'put' ? `=${JSON.stringify(c.value)}` : ''}`
}

for (const seed of [1, 2, 3]) {
  t.test(`model, seed ${seed}: every watcher sees exactly the changes after its start, in order`, async (t) => {
    const random = new SeededRandom(seed)
    const int = (n: number): number => random.below(n)
    const dir = tmpDir(t)
    // The window keeps the whole history: readers start at random old versions, and reconnect after the reopen.
    const options = { ...SMALL, watchHistoryRecords: 1_000_000 }
    let db = await open(dir, options)
    t.teardown(() => db.close())
    const model: ModelChange[] = []
    const log = (version: number, text: string): void => void model.push({ version, text })
    interface Reader {
      readonly start: number
      it: AsyncIterator<Change>
      readonly seen: ModelChange[]
    }
    const readers: Reader[] = []
    const startReader = (): void => {
      const last = db.health().wal.lastLsn
      const start = int(last + 1)
      readers.push({ start, it: db.watch({ fromVersion: start }), seen: [] })
    }
    const read = async (r: Reader, n: number): Promise<void> => {
      for (const c of await take(r.it, n)) r.seen.push({ version: c.version, text: describe(c) })
    }
    const expectedFor = (r: Reader): ModelChange[] => model.filter((m) => m.version > r.start)
    let reopened = false
    for (let step = 0; step < 400; step++) {
      const roll = int(100)
      const ns = ['n0', 'n1', 'n2/x'][int(3)] as string
      const key = `k${int(40)}`
      if (roll < 55) {
        const value = { step, pad: 'x'.repeat(int(400)) }
        const { lsn } = await db.put(key, value, { namespace: ns })
        log(lsn, `put ${ns}/${key}=${JSON.stringify(value)}`)
      } else if (roll < 65) {
        const { lsn } = await db.delete(key, { namespace: ns })
        log(lsn, `delete ${ns}/${key}`)
      } else if (roll < 75) {
        const ops = Array.from({ length: 1 + int(4) }, (_, i) =>
          int(3) === 0 ? { type: 'del' as const, key: `k${int(40)}`, namespace: ns } : { type: 'put' as const, key: `k${int(40)}`, value: [step, i], namespace: ns },
        )
        const { lsn } = await db.batch(ops)
        for (const op of ops) log(lsn, op.type === 'put' ? `put ${ns}/${op.key}=${JSON.stringify(op.value)}` : `delete ${ns}/${op.key}`)
      } else if (roll < 82) {
        if (readers.length < 6) startReader()
      } else if (roll < 95) {
        const r = readers[int(Math.max(1, readers.length))]
        if (r) {
          const due = expectedFor(r).length - r.seen.length
          if (due > 0) await read(r, 1 + int(due))
        }
      } else if (roll < 99) {
        await db.flush({ timeoutMs: 20_000 })
      } else if (!reopened) {
        // A restart: each consumer resumes from the last version it saw (or its start, if it saw none).
        reopened = true
        await db.close()
        db = await open(dir, options)
        for (const r of readers) {
          const due = expectedFor(r)
          const seenAll = r.seen.length
          // A version is resumed whole: drop changes of a batch seen only in part, the resumed watch gives them again.
          const lastWhole = seenAll === due.length || seenAll === 0 ? (r.seen.at(-1)?.version ?? r.start) : (due[seenAll] as ModelChange).version - 1
          while ((r.seen.at(-1)?.version ?? -1) > lastWhole) r.seen.pop()
          r.it = db.watch({ fromVersion: Math.max(lastWhole, r.start) })
        }
      }
    }
    for (const r of readers) {
      await read(r, expectedFor(r).length - r.seen.length)
      t.strictSame(r.seen, expectedFor(r), `watcher from ${r.start}: ${r.seen.length} changes, as the model`)
    }
    t.ok(readers.length > 0 && model.length > 100, `${model.length} changes, ${readers.length} watchers`)
    // The lock-free reader (memwal watch) reads the same changes from the files, beside the open engine.
    const stop = new AbortController()
    const followed = await take(followLog({ dir, fromVersion: 0, signal: stop.signal }), model.length)
    stop.abort()
    t.strictSame(followed.map((c) => ({ version: c.version, text: describe(c) })), model, 'followLog from version 0: the whole model')
  })
}

t.test('a chunk read from the segments is held as its bytes: each record is decoded when the consumer reaches it', async (t) => {
  const codec = new RecordCodec()
  const N = 1000
  const records = Array.from({ length: N }, (_, i) => ({ lsn: i + 1, type: RecordType.PUT, payload: Uint8Array.from(codec.encode({ type: RecordType.PUT, op: { type: 'put', namespace: 'default', key: `k${i}`, value: { i } }, hlc: 1_000_000 + i })) }))
  let decoded = 0
  const counting = Object.create(codec) as RecordCodec
  counting.decode = (type, payload) => {
    decoded++
    return codec.decode(type, payload)
  }
  let reads = 0
  const hub = new WatchHub(
    {
      codec: counting,
      committedLsn: () => N,
      pendingFirstLsn: () => N + 1, // every record only in the segments
      pendingFrame: () => undefined,
      readLog: async (from, to) => {
        reads++
        return logFrames(records.slice(from - 1, to))
      },
    },
    { keyBytesMax: 1024, labelBytesMax: 1024, tagsMax: 16, batchOpsMax: 100 },
    0,
  )
  const it = hub.open({ fromVersion: 0 })
  const first = await take(it, 3)
  t.strictSame(first.map((c) => [c.key, c.version, c.value]), [['k0', 1, { i: 0 }], ['k1', 2, { i: 1 }], ['k2', 3, { i: 2 }]])
  t.equal(reads, 1, 'one read brought the chunk')
  t.equal(decoded, 3, 'only the records handed over were decoded: the rest wait as bytes, not as a heap of objects')
  // Calls not awaited one by one are answered in order, each change once.
  const rest = await Promise.all(Array.from({ length: N - 3 }, () => it.next()))
  t.strictSame(rest.map((r) => (r.done === true ? -1 : r.value.version)), Array.from({ length: N - 3 }, (_, i) => i + 4), 'the rest, in log order, nothing twice')
  t.equal(decoded, N)
  const waiting = it.next()
  hub.close()
  t.strictSame(await waiting, { done: true, value: undefined }, 'close() ends the watch waiting for the next change')
})

t.test('the log read a chunk at a time, each from where the last left off: the same records, no segment read whole twice', async (t) => {
  const dir = tmpDir(t)
  const db = await open(dir, SMALL)
  for (let i = 0; i < 3000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => (j % 10 === 9 ? db.batch([{ type: 'put', key: `b${i + j}`, value: 1 }, { type: 'del', key: `k${i}` }]) : db.put(`k${i + j}`, { i: i + j, pad: 'p'.repeat(200) }))))
  const last = (await db.put('last', 1)).lsn
  await db.close()
  const segments = segmentBases(dir).length
  t.ok(segments > 5, `the log spans ${segments} segments`)
  let wholeReads = 0
  const counting = new (class extends ForwardingFileSystem {
    override readFile(p: string): Promise<Uint8Array> {
      if (p.endsWith('.seg')) wholeReads++
      return super.readFile(p)
    }
  })(new NodeFileSystem())
  const o = { fs: counting, sums: await createChecksums(), walDir: path.join(dir, 'wal'), recordBytesMax: SMALL.recordBytesMax, toLsn: last, skipDamage: false }
  const hex = (r: { lsn: number; payload: Uint8Array }): string => `${r.lsn}:${Buffer.from(r.payload).toString('hex')}`
  const whole: string[] = []
  for await (const r of readLog({ ...o, fromLsn: 1 })) whole.push(hex(r))
  t.equal(whole.length, last, 'one read gives every record')

  wholeReads = 0
  const chunked: string[] = []
  let chunks = 0
  let resumeAt: ResumePoint | undefined
  for (let from = 1; from <= last; chunks++) {
    let taken = 0
    read: for await (const seg of readLogSegments({ ...o, fromLsn: from, ...(resumeAt ? { resumeAt } : {}) })) {
      for (const r of seg) {
        chunked.push(hex(r))
        resumeAt = { lsn: r.lsn + 1, segment: seg.segment, offset: seg.next }
        from = r.lsn + 1
        if (++taken === 37) break read
      }
    }
  }
  t.strictSame(chunked, whole, `${chunks} chunks, each resumed where the last left off, give the same records in the same order`)
  t.ok(wholeReads <= segments, `each segment read whole at most once (${wholeReads} whole reads, ${segments} segments, ${chunks} chunks)`)

  // One byte past the first segment's header: inside its first frame.
  const bad = { lsn: 2, segment: `${String(segmentBases(dir)[0]).padStart(20, '0')}.seg`, offset: SEGMENT_HEADER_BYTES + 1 }
  await t.rejects(
    (async () => {
      for await (const _ of readLog({ ...o, fromLsn: 2, resumeAt: bad })) void _
    })(),
    { code: 'WAL_CORRUPT_FRAME' },
    'a resume point that is no frame boundary is corruption, never records read from the wrong place',
  )
})
