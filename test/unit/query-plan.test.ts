/**
 * How a query of several tags is planned (engine/query/query-run.ts): with
 * tag postings that carry their entries' tags (store layout 4), only the
 * posting LevelDB estimates smallest is read and the other tags are judged
 * from it; a posting written before layout 4 (no tags in it) makes the query
 * read that entry instead; without estimates (everything still in LevelDB's
 * memtable) the postings are joined. Every plan answers what the entries say.
 */
import path from 'node:path'
import t, { type Test } from 'tap'
import { fsck, MemWAL } from '../../engine/index.js'
import { ManualClock } from '../../engine/testing.js'
import { IndexSink } from '../../engine/sinks/index-sink.js'
import { LevelStore } from '../../engine/sinks/level-store.js'
import { encodePostingValue } from '../../engine/sinks/index-scan.js'
import { tmpDir } from '../support/tmp-dir.js'

const NOW_MS = 1_900_000_000_000
const N = 400

/** Entry i's tags: every entry `common`, every 40th `rare`, every 3rd `odd3`, every 5th `five`. */
function tagsOf(i: number): string[] {
  return ['common', ...(i % 40 === 0 ? ['rare'] : []), ...(i % 3 === 0 ? ['odd3'] : []), ...(i % 5 === 0 ? ['five'] : [])]
}

const keyOf = (i: number): string => `k${String(i).padStart(4, '0')}`

/** The keys a query of these tags must return, from the entries as written. */
function expected(all: readonly string[], any: readonly string[] = []): string[] {
  const out: string[] = []
  for (let i = 0; i < N; i++) {
    const tags = tagsOf(i)
    if (all.every((x) => tags.includes(x)) && (any.length === 0 || any.some((x) => tags.includes(x)))) out.push(keyOf(i))
  }
  return out
}

/** A store whose entries are in LevelDB's table files (a reopen writes the memtable out), so postings have size estimates. */
async function filled(t: Test): Promise<string> {
  const dir = path.join(tmpDir(t, 'memwal-query-plan-'), 'd')
  const db = await MemWAL.open({ dir, clock: new ManualClock(NOW_MS) })
  for (let i = 0; i < N; i += 50) await db.batch(Array.from({ length: 50 }, (_, j) => ({ type: 'put' as const, key: keyOf(i + j), value: { i: i + j }, namespace: 'n', tags: tagsOf(i + j) })))
  // Applied before the close: what the next open replays from the log would be in the memtable again.
  await db.flush()
  await db.close()
  return dir
}

/** Runs `fn` recording the tags whose postings queries open. */
async function scannedTags<T>(t: Test, fn: () => Promise<T>): Promise<{ result: T; tags: string[] }> {
  const tags: string[] = []
  const original = IndexSink.prototype.tagScan
  IndexSink.prototype.tagScan = function (this: IndexSink, tag, range, reverse, firstStep) {
    tags.push(tag)
    return original.call(this, tag, range, reverse, firstStep)
  }
  t.teardown(() => {
    IndexSink.prototype.tagScan = original
  })
  try {
    return { result: await fn(), tags }
  } finally {
    IndexSink.prototype.tagScan = original
  }
}

async function keys(db: MemWAL, q: Parameters<MemWAL['query']>[0]): Promise<string[]> {
  const out: string[] = []
  for await (const r of db.query(q)) out.push(r.key)
  return out
}

t.test('a query of two tags reads only the smaller posting and judges the other tag from it', async (t) => {
  const dir = await filled(t)
  const db = await MemWAL.open({ dir, clock: new ManualClock(NOW_MS) })
  t.teardown(() => db.close())
  // Estimates are by table block: of postings of near sizes (odd3: 134 entries, five: 80) either may be read, never common (400).
  const cases: [string[], string[], string[]][] = [
    [['common', 'rare'], [], ['rare']],
    [['rare', 'common'], [], ['rare']],
    [['common', 'odd3', 'five'], [], ['odd3', 'five']],
    [['common'], ['rare', 'five'], ['common']],
  ]
  for (const [all, any, smallest] of cases) {
    const { result, tags } = await scannedTags(t, () => keys(db, { namespace: 'n', tags: { all, ...(any.length > 0 ? { any } : {}) }, limit: 1000 }))
    t.strictSame(result, expected(all, any), `tags ${all.join('+')}${any.length > 0 ? ` any ${any.join('|')}` : ''}: the entries that hold them`)
    t.ok(tags.length === 1 && smallest.includes(tags[0] as string), `one posting is read, of ${smallest.join(' or ')}: ${tags.join()}`)
    const counted = await scannedTags(t, () => db.count({ namespace: 'n', tags: { all, ...(any.length > 0 ? { any } : {}) } }))
    t.equal(counted.result, expected(all, any).length, 'count agrees')
    t.strictSame(counted.tags, tags, 'count reads the same one posting')
  }
  const reversed = await keys(db, { namespace: 'n', tags: { all: ['common', 'odd3'] }, reverse: true, limit: 7 })
  t.strictSame(reversed, expected(['common', 'odd3']).reverse().slice(0, 7), 'reverse with a limit')
  // A page and its continuation: the cursor continues the same plan.
  const page = await db.queryPage({ namespace: 'n', tags: { all: ['common', 'five'] }, limit: 10 })
  const rest = await db.queryPage({ namespace: 'n', tags: { all: ['common', 'five'] }, limit: 1000, cursor: page.cursor as string })
  t.strictSame([...page.entries, ...rest.entries].map((e) => e.key), expected(['common', 'five']), 'pages continue where they stopped')
  // One tag: its posting alone, as always.
  const one = await scannedTags(t, () => keys(db, { namespace: 'n', tags: { all: ['rare'] }, limit: 1000 }))
  t.strictSame(one.result, expected(['rare']))
  t.strictSame(one.tags, ['rare'])
})

t.test('pending writes and deletes over a driven query read as they are, not as the posting says', async (t) => {
  const dir = await filled(t)
  const db = await MemWAL.open({ dir, clock: new ManualClock(NOW_MS) })
  t.teardown(() => db.close())
  await db.put(keyOf(1), 'now rare', { namespace: 'n', tags: ['common', 'rare'] })
  await db.put(keyOf(40), 'no longer rare', { namespace: 'n', tags: ['common'] })
  await db.delete(keyOf(80), { namespace: 'n' })
  const want = [keyOf(1), ...expected(['common', 'rare']).filter((k) => k !== keyOf(40) && k !== keyOf(80))].sort()
  t.strictSame(await keys(db, { namespace: 'n', tags: { all: ['common', 'rare'] }, limit: 1000 }), want)
  t.equal(await db.count({ namespace: 'n', tags: { all: ['common', 'rare'] } }), want.length)
  await db.flush()
  t.strictSame(await keys(db, { namespace: 'n', tags: { all: ['common', 'rare'] }, limit: 1000 }), want, 'the same once applied')
})

t.test('a posting written before layout 4 (no tags in it) makes a driven query read that entry', async (t) => {
  const dir = await filled(t)
  // The rare postings of entry 0 (common, rare, odd3, five) and entry 40 (common, rare, five) written back as layout 3 kept them: a time, no tags.
  const store = await LevelStore.open(path.join(dir, 'store'))
  const old = Buffer.alloc(8)
  old.writeDoubleBE(NOW_MS, 0)
  await store.writeBatch([0, 40].map((i) => ({ type: 'put' as const, sublevel: store.index, key: `t\u0000rare\u0000n\u0000${keyOf(i)}`, value: old })))
  await store.close()
  const db = await MemWAL.open({ dir, clock: new ManualClock(NOW_MS) })
  t.teardown(() => db.close())
  const { result, tags } = await scannedTags(t, () => keys(db, { namespace: 'n', tags: { all: ['odd3', 'rare'] }, limit: 1000 }))
  t.strictSame(tags, ['rare'], 'rare drives (the smaller posting)')
  t.strictSame(result, expected(['odd3', 'rare']), 'entry 0 (odd3) is read and kept, entry 40 (no odd3) read and left out')
  t.ok(result.includes(keyOf(0)) && !result.includes(keyOf(40)))
  t.equal(await db.count({ namespace: 'n', tags: { all: ['odd3', 'rare'] } }), expected(['odd3', 'rare']).length, 'count reads them too')
})

t.test('without estimates (a store all in the memtable) the postings are joined', async (t) => {
  const dir = path.join(tmpDir(t, 'memwal-query-plan-'), 'd')
  const db = await MemWAL.open({ dir, clock: new ManualClock(NOW_MS) })
  t.teardown(() => db.close())
  for (let i = 0; i < 60; i++) await db.put(keyOf(i), i, { namespace: 'n', tags: tagsOf(i) })
  await db.flush()
  const { result, tags } = await scannedTags(t, () => keys(db, { namespace: 'n', tags: { all: ['common', 'odd3'] }, limit: 1000 }))
  t.strictSame(result, expected(['common', 'odd3']).filter((k) => k < keyOf(60)))
  t.strictSame(tags.sort(), ['common', 'odd3'], 'both postings are joined')
})

t.test('fsck finds a tag posting whose tags are not its entry\'s, and --repair rebuilds it', async (t) => {
  const dir = await filled(t)
  const store = await LevelStore.open(path.join(dir, 'store'))
  // Entry 3 holds common and odd3; its odd3 posting made to say rare too: a driven query would take it for a rare entry.
  await store.writeBatch([{ type: 'put', sublevel: store.index, key: `t\u0000odd3\u0000n\u0000${keyOf(3)}`, value: encodePostingValue(NOW_MS, undefined, ['common', 'odd3', 'rare']) }])
  await store.close()
  const dry = await fsck({ dir, repair: false })
  t.match(dry.findings, [{ kind: 'index-orphan', key: keyOf(3) }], 'the posting is reported')
  const fixed = await fsck({ dir, repair: true })
  t.equal(fixed.unrepaired, 0, 'repaired')
  t.equal((await fsck({ dir, repair: false })).clean, true, 'clean afterwards')
  const db = await MemWAL.open({ dir, clock: new ManualClock(NOW_MS) })
  t.teardown(() => db.close())
  t.strictSame(await keys(db, { namespace: 'n', tags: { all: ['odd3', 'rare'] }, limit: 1000 }), expected(['odd3', 'rare']), 'the query answers as the entries say')
})
