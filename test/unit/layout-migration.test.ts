/**
 * Store layout 2 ((namespace, key) identity) from a layout-1 directory made
 * by the code before it (fixtures/datadirs/layout-1, see its README): the
 * open migrates it, and every entry reads back under the namespace it was
 * last put in (none: `default`), with the version that wrote it; version-1
 * deletes are honoured (the key in whichever namespace held it), records only
 * in the log (the store was behind) included. A crash at any step of the
 * migration leaves a directory the next open migrates, or one already at
 * layout 2. fsck and verify are clean afterwards. A disk that refuses a write
 * of the layout-4 migration (ENOSPC, EIO) fails the open with IO_ERROR and
 * leaves the older layout, which the next open migrates.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { ClassicLevel } from 'classic-level'
import { fsck, inspectDataDir, MemWAL, type MemwalError } from '../../engine/index.js'
import { ManualClock, Wal } from '../../engine/testing.js'
import { LevelStore } from '../../engine/sinks/level-store.js'
import { migrateLayout, type MigrationStep } from '../../engine/sinks/level-layout.js'
import { logOf } from '../../engine/open.js'
import { LAYOUT1_DIR, LAYOUT1_EXPECTED, type ExpectedEntry } from '../../fixtures/make-layout1-fixture.js'
import { tmpDir } from '../support/tmp-dir.js'
import { decodePostingValue } from '../../engine/sinks/index-scan.js'
import { decodeForward } from '../../engine/sinks/index-sink.js'

const CLEAN_DIR = fileURLToPath(new URL('../../fixtures/datadirs/clean/', import.meta.url))

const expected = JSON.parse(fs.readFileSync(LAYOUT1_EXPECTED, 'utf8')) as { applied: number; lastLsn: number; entries: ExpectedEntry[] }
const NOW_MS = 1_900_000_000_000

function copy(t: Test): string {
  const dir = path.join(tmpDir(t, 'memwal-layout1-'), 'd')
  fs.cpSync(LAYOUT1_DIR, dir, { recursive: true })
  return dir
}

async function expectMigrated(t: Test, dir: string, when: string): Promise<void> {
  const e = await MemWAL.open({ dir, clock: new ManualClock(NOW_MS) })
  try {
    t.equal(e.health().wal.lastLsn, expected.lastLsn, `${when}: the log is whole`)
    for (const x of expected.entries) {
      const got = await e.getEntry(x.key, { namespace: x.namespace })
      t.match(got, { namespace: x.namespace, key: x.key, value: x.value, tags: x.tags ?? [], version: x.lsn }, `${when}: ${x.namespace} ${x.key}`)
    }
    const listed: string[] = []
    for await (const r of e.query({ limit: 1000 })) listed.push(`${r.namespace}\u0000${r.key}`)
    t.strictSame(listed, expected.entries.map((x) => `${x.namespace}\u0000${x.key}`).sort(), `${when}: query lists exactly the expected identities`)
    // v1 deletes and moves: nothing left behind in another namespace.
    t.equal(await e.get('moved', { namespace: 'team/a' }), undefined, `${when}: a key moved away from team/a is not there`)
    t.equal(await e.get('moved', { namespace: 'team/b' }), undefined, `${when}: nor in team/b (moved again, in the log only)`)
    t.strictSame(await e.get('moved', { namespace: 'team/c' }), { where: 'c' }, `${when}: it is in team/c`)
    t.equal(await e.get('gone', { namespace: 'agents/7' }), undefined, `${when}: a v1 delete of a namespaced key (applied) is honoured`)
    t.equal(await e.get('b/1', { namespace: 'team/b' }), undefined, `${when}: a v1 delete of a namespaced key (only in the log) is honoured`)
    t.equal(await e.get('deltail', { namespace: 'x' }), undefined, `${when}: a put and a v1 delete, both only in the log`)
    t.equal(await e.get('note/2', { namespace: 'agents/7/session/3' }), undefined, `${when}: a v1 delete inside a batch`)
    t.equal(await e.get('plain'), 'again', `${when}: a key without a namespace is in default`)
    t.strictSame(await e.get('k/05'), 'now without a namespace', `${when}: a key moved to no namespace is in default`)
    t.equal(await e.get('k/05', { namespace: 'agents/1' }), undefined, `${when}: and not in its old one`)
    const row = await e.getEntry('tailonly', { namespace: 'agents/9' })
    t.equal(row?.updatedAt, 1_700_000_000_000 + 63 * 1000, `${when}: updatedAt is the ms of the record that wrote it`)
    const v = await e.verify()
    t.equal(v.clean, true, `${when}: verify is clean: ${JSON.stringify(v.findings).slice(0, 400)}`)
  } finally {
    await e.close()
  }
  const r = await fsck({ dir, repair: false })
  t.equal(r.clean, true, `${when}: fsck is clean: ${JSON.stringify(r.findings).slice(0, 400)}`)
}

t.test('the fixture is a layout-1 store behind its log', async (t) => {
  const dir = copy(t)
  const store = await LevelStore.open(path.join(dir, 'store'))
  t.teardown(() => store.close())
  t.equal(await store.layout(), 1, 'no layout key: layout 1')
  t.equal(await store.readCheckpoint('backend'), expected.applied, 'the backend applied the first records only')
  t.ok(expected.lastLsn > expected.applied, 'the rest is only in the log')
})

t.test('open migrates a layout-1 directory: every entry under its namespace, v1 deletes honoured', async (t) => {
  const dir = copy(t)
  await expectMigrated(t, dir, 'after the migration')
  const store = await LevelStore.open(path.join(dir, 'store'))
  t.equal(await store.layout(), 4, 'the store says layout 4 (1 migrated to 2, then 2 to 4)')
  let legacy = 0
  for await (const _ of store.legacyData.keys()) legacy++
  for await (const _ of store.legacyIndex.keys()) legacy++
  t.equal(legacy, 0, 'the layout-1 rows are gone')
  await store.close()
  await expectMigrated(t, dir, 'after a second open (already layout 2)')
  const e = await MemWAL.open({ dir })
  await e.put('moved', 'new in team/a', { namespace: 'team/a' })
  t.equal(await e.get('moved', { namespace: 'team/a' }), 'new in team/a', 'new writes go on, under identities')
  t.strictSame(await e.get('moved', { namespace: 'team/c' }), { where: 'c' }, 'another namespace\'s entry is untouched')
  await e.close()
})

async function layoutOf(dir: string): Promise<number> {
  const store = await LevelStore.open(path.join(dir, 'store'))
  try {
    return await store.layout()
  } finally {
    await store.close()
  }
}

t.test('a dry-run fsck and status on a layout-1 directory change nothing: they report that it needs its migration', async (t) => {
  const dir = copy(t)
  const r = await fsck({ dir, repair: false })
  t.equal(r.clean, true, `clean (a notice is no damage): ${JSON.stringify(r.findings).slice(0, 400)}`)
  t.match(r.findings, [{ kind: 'needs-migration', action: 'none' }], 'the one finding: a notice that the store needs its migration')
  const s = await inspectDataDir(dir)
  t.match(s.verified, { clean: true, counts: { 'needs-migration': 1 } }, 'status says so too')
  t.equal(await layoutOf(dir), 1, 'the store is still layout 1')
})

t.test('fsck --repair on a layout-1 directory migrates it first, then checks it', async (t) => {
  const dir = copy(t)
  const r = await fsck({ dir, repair: true })
  t.equal(r.clean, true, `clean: ${JSON.stringify(r.findings).slice(0, 400)}`)
  await expectMigrated(t, dir, 'opened after fsck --repair')
})

t.test('a dry-run fsck and status on a layout-1 directory with a damaged log report the damage, never throw', async (t) => {
  const dir = copy(t)
  const wal = path.join(dir, 'wal')
  const seg = path.join(wal, fs.readdirSync(wal).filter((n) => n.endsWith('.seg')).sort()[0] as string)
  const bytes = fs.readFileSync(seg)
  // A byte in the payload of a frame in the middle of the log's data: damage in durable bytes.
  let end = bytes.length
  while (end > 64 && bytes[end - 1] === 0) end--
  const at = 64 + Math.floor((end - 64) / 2)
  bytes[at] = (bytes[at] ?? 0) ^ 0x55
  fs.writeFileSync(seg, bytes)
  const r = await fsck({ dir, repair: false })
  t.equal(r.clean, false, 'damage is reported')
  t.ok(r.findings.some((f) => f.kind === 'corrupt-frame'), `a corrupt frame: ${JSON.stringify(r.counts)}`)
  t.ok(r.findings.some((f) => f.kind === 'needs-migration'), 'and the migration still to do')
  const s = await inspectDataDir(dir)
  t.match(s.verified, { clean: false }, 'status reports it too')
  t.equal(await layoutOf(dir), 1, 'nothing was migrated')
})

const STEPS: readonly MigrationStep[] = ['legacy-caught-up', 'rows-written', 'layout-set', 'legacy-cleared']

for (const step of STEPS) {
  t.test(`a crash after the migration step "${step}": the next open finishes it`, async (t) => {
    const dir = copy(t)
    const store = await LevelStore.open(path.join(dir, 'store'))
    const wal = await Wal.open({ dir, segmentBytes: 64 * 1024 })
    const crash = new Error(`crash after ${step}`)
    await t.rejects(
      migrateLayout(store, logOf(wal), {
        ownBackend: true, nowMs: NOW_MS,
        afterStep: async (s) => {
          if (s === step) throw crash
        },
      }),
      { code: 'IO_ERROR', cause: crash },
    )
    await wal.close()
    await store.close()
    await expectMigrated(t, dir, `after a crash at ${step}`)
  })
}

/**
 * A layout-2 store (the release before write times were indexed): made here
 * from a layout-3 one by writing its index back as layout 2 kept it (forward
 * entries [tags, expiresAt], empty tag postings) and its layout key to 2.
 */
async function asLayout2(dir: string): Promise<void> {
  const store = await LevelStore.open(path.join(dir, 'store'))
  try {
    const ops: Parameters<LevelStore['writeBatch']>[0] = [{ type: 'put', sublevel: store.meta, key: 'layout', value: Buffer.from([0, 0, 0, 0, 0, 0, 0, 2]) }]
    for await (const [k, v] of store.index.iterator()) {
      if (k.startsWith('f\u0000')) {
        const [tags, expiresAt] = store.packr.decode(v) as [unknown, unknown]
        ops.push({ type: 'put', sublevel: store.index, key: k, value: store.packr.encode([tags, expiresAt]) })
      } else if (k.startsWith('t\u0000')) ops.push({ type: 'put', sublevel: store.index, key: k, value: new Uint8Array(0) })
    }
    await store.writeBatch(ops)
  } finally {
    await store.close()
  }
}

/** Runs the migration of a closed directory with a crash injected after `crashAt`: the store is left at `layout`. */
async function crashMidMigration(t: Test, dir: string, crashAt: MigrationStep, layout: number): Promise<void> {
  const store = await LevelStore.open(path.join(dir, 'store'))
  const wal = await Wal.open({ dir, segmentBytes: 64 * 1024 })
  const crash = new Error('crash')
  await t.rejects(migrateLayout(store, logOf(wal), { ownBackend: true, nowMs: NOW_MS, afterStep: async (s) => { if (s === crashAt) throw crash } }), { code: 'IO_ERROR', cause: crash })
  await wal.close()
  await store.close()
  t.equal(await layoutOf(dir), layout, `a crash after "${crashAt}" leaves layout ${layout}`)
}

t.test('a layout-2 store (index without write times) is migrated to layout 4 at open, a crash midway included', async (t) => {
  for (const crashAt of [undefined, 'postings-reindexed'] as const) {
    const dir = path.join(tmpDir(t, 'memwal-layout2-'), 'd')
    const clock = new ManualClock(NOW_MS)
    const e = await MemWAL.open({ dir, clock })
    await e.put('old', 1, { namespace: 'n', tags: ['a', 'b'] })
    clock.advance(60_000)
    await e.put('new', 2, { namespace: 'n', tags: ['a', 'b'], ttlMs: 3_600_000 })
    await e.put('untagged', 3, { namespace: 'n' })
    await e.close()
    await asLayout2(dir)
    t.equal(await layoutOf(dir), 2, 'made layout 2')
    t.match((await fsck({ dir, repair: false })).findings, [{ kind: 'needs-migration' }], 'a dry run says it needs its migration')
    if (crashAt !== undefined) await crashMidMigration(t, dir, crashAt, 2)
    const db = await MemWAL.open({ dir, clock })
    try {
      const keys = async (q: Parameters<MemWAL['query']>[0]): Promise<string[]> => {
        const out: string[] = []
        for await (const r of db.query(q)) out.push(r.key)
        return out
      }
      t.strictSame(await keys({ namespace: 'n', tags: { all: ['a', 'b'] }, since: NOW_MS + 1 }), ['new'], 'a time-bounded tag query after the migration')
      t.strictSame(await keys({ namespace: 'n', until: NOW_MS + 1 }), ['old'], 'a time-bounded scan')
      t.equal(await db.count({ namespace: 'n', tags: { all: ['a'] }, until: NOW_MS + 60_000 }), 1, 'count')
      t.equal((await db.verify()).clean, true, 'verify is clean (postings carry the times)')
    } finally {
      await db.close()
    }
    t.equal(await layoutOf(dir), 4, 'layout 4')
    const r = await fsck({ dir, repair: false })
    t.equal(r.clean, true, `fsck is clean: ${JSON.stringify(r.findings).slice(0, 300)}`)
  }
})

/** Every tag posting of a store, with what its value carries, and every forward entry's tags. */
async function postingsOf(dir: string): Promise<{ postings: { tag: string; id: string; tags: readonly string[] | undefined }[]; tagsOf: Map<string, readonly string[]> }> {
  const store = await LevelStore.open(path.join(dir, 'store'))
  try {
    const postings: { tag: string; id: string; tags: readonly string[] | undefined }[] = []
    const tagsOf = new Map<string, readonly string[]>()
    for await (const [k, v] of store.index.iterator()) {
      if (k.startsWith('t\u0000')) {
        const cut = k.indexOf('\u0000', 2)
        postings.push({ tag: k.slice(2, cut), id: k.slice(cut + 1), tags: decodePostingValue(v).tags })
      } else if (k.startsWith('f\u0000')) tagsOf.set(k.slice(2), decodeForward(store, k.slice(2), v)?.tags ?? [])
    }
    return { postings, tagsOf }
  } finally {
    await store.close()
  }
}

t.test('a layout-3 store (tag postings without the entry\'s tags: fixtures/datadirs/clean, made by that release) is migrated to layout 4 at open, a crash midway included', async (t) => {
  for (const crashAt of [undefined, 'postings-reindexed'] as const) {
    const dir = path.join(tmpDir(t, 'memwal-layout3-'), 'd')
    fs.cpSync(CLEAN_DIR, dir, { recursive: true })
    t.equal(await layoutOf(dir), 3, 'the fixture is layout 3')
    const before = await postingsOf(dir)
    t.ok(before.postings.length > 0 && before.postings.every((p) => p.tags === undefined), 'its tag postings carry no tags')
    // What a query of two tags must find: the forward entries holding both.
    const pairs = [['red', 'urgent'], ['green', 'blue'], ['urgent', 'pinned']] as const
    const want = pairs.map(([a, b]) => [...before.tagsOf].filter(([, tags]) => tags.includes(a) && tags.includes(b)).map(([id]) => id).sort())
    t.ok(want.some((ids) => ids.length > 0), 'some entries hold two of the tags')
    const dry = await fsck({ dir, repair: false })
    t.equal(dry.clean, true, `a dry-run fsck checks a layout-3 store as it is (its postings lack only the tags): ${JSON.stringify(dry.findings).slice(0, 300)}`)
    t.notOk(dry.findings.some((f) => f.kind === 'needs-migration'), 'no migration notice: nothing is left unchecked')
    if (crashAt !== undefined) await crashMidMigration(t, dir, crashAt, 3)
    const db = await MemWAL.open({ dir, clock: new ManualClock(NOW_MS) })
    try {
      for (const [i, [a, b]] of pairs.entries()) {
        const got: string[] = []
        for await (const r of db.query({ tags: { all: [a, b] }, limit: 1000 })) got.push(`${r.namespace}\u0000${r.key}`)
        t.strictSame(got, want[i], `query of tags ${a} and ${b} after the migration`)
        t.equal(await db.count({ tags: { all: [a, b] } }), want[i]?.length, `count of tags ${a} and ${b}`)
      }
      t.equal((await db.verify()).clean, true, 'verify is clean (postings carry the tags)')
    } finally {
      await db.close()
    }
    t.equal(await layoutOf(dir), 4, 'layout 4')
    const after = await postingsOf(dir)
    t.equal(after.postings.length, before.postings.length, 'the same postings')
    t.ok(after.postings.every((p) => p.tags !== undefined && [...p.tags].sort().join() === [...(after.tagsOf.get(p.id) ?? [])].sort().join()), 'each carries its entry\'s tags')
    const r = await fsck({ dir, repair: false })
    t.equal(r.clean, true, `fsck is clean: ${JSON.stringify(r.findings).slice(0, 300)}`)
  }
})

/** classic-level's own hook, which every LevelDB write reaches (level-store.ts writeBatch): what a full or failing disk refuses. */
interface BatchHook {
  _batch(ops: readonly { readonly key: string }[], options: object): Promise<void>
}

/** Entries of a layout-2 store of ENTRIES entries: more than one page of the migration (1,024 forward entries a batch). */
const ENTRIES = 2_200
const tagsOfEntry = (i: number): string[] => (i % 3 === 0 ? ['three', 'all'] : ['all'])

const DISK_FAULTS = [
  { what: 'ENOSPC writing the second page of postings', error: 'IO error: store/000007.log: No space left on device', at: 'page' },
  { what: 'EIO writing the batch that sets layout 4', error: 'IO error: store/000007.log: Input/output error', at: 'layout' },
] as const

for (const fault of DISK_FAULTS) {
  t.test(`${fault.what} while a layout-2 store migrates at open: the open fails typed, the store stays at layout 2, and the next open migrates it and reads every entry back`, async (t) => {
    const dir = path.join(tmpDir(t, 'memwal-layout-fault-'), 'd')
    const clock = new ManualClock(NOW_MS)
    const e = await MemWAL.open({ dir, clock })
    for (let i = 0; i < ENTRIES; i += 100) {
      await e.batch(Array.from({ length: 100 }, (_, j) => ({ type: 'put' as const, key: `k${String(i + j).padStart(5, '0')}`, value: { i: i + j }, namespace: 'n', tags: tagsOfEntry(i + j) })))
    }
    await e.flush()
    await e.close()
    await asLayout2(dir)
    const proto = ClassicLevel.prototype as unknown as BatchHook
    const realBatch = proto._batch
    t.teardown(() => {
      proto._batch = realBatch
    })
    let pages = 0
    let refused = 0
    proto._batch = async function (this: ClassicLevel, ops, options) {
      // A page of the migration: forward entries and their postings, nothing else (an apply's batch holds its checkpoint too).
      const isPage = ops.some((op) => op.key.startsWith('!ix!f\u0000')) && ops.every((op) => op.key.startsWith('!ix!'))
      const setsLayout = ops.some((op) => op.key === '!meta!layout')
      if (isPage) pages++
      if ((fault.at === 'page' && isPage && pages === 2) || (fault.at === 'layout' && setsLayout)) {
        refused++
        throw Object.assign(new Error(fault.error), { code: 'LEVEL_IO_ERROR' })
      }
      return realBatch.call(this, ops, options)
    }
    const err = (await MemWAL.open({ dir, clock }).then(
      async (db) => {
        await db.close()
        return undefined
      },
      (x: unknown) => x,
    )) as MemwalError | undefined
    proto._batch = realBatch
    t.equal(refused, 1, 'the disk refused one write of the migration')
    t.equal(err?.code, 'IO_ERROR', 'the open fails typed')
    t.match(err?.message, /from layout 2 to layout 4/, 'saying which migration failed')
    t.equal((err?.cause as { message?: string } | undefined)?.message, fault.error, 'the disk\'s error kept as the cause')
    t.equal(await layoutOf(dir), 2, 'the store is left at layout 2')

    const db = await MemWAL.open({ dir, clock })
    try {
      let wrong = 0
      for (let i = 0; i < ENTRIES; i++) {
        const got = await db.getEntry(`k${String(i).padStart(5, '0')}`, { namespace: 'n' })
        if ((got?.value as { i?: number } | undefined)?.i !== i || [...(got?.tags ?? [])].sort().join() !== [...tagsOfEntry(i)].sort().join()) wrong++
      }
      t.equal(wrong, 0, `all ${ENTRIES} entries read back with their values and tags`)
      t.equal(await db.count({ namespace: 'n', tags: { all: ['three', 'all'] } }), Math.ceil(ENTRIES / 3), 'a query of two tags counts every entry that holds both')
      t.equal((await db.verify()).clean, true, 'verify is clean')
    } finally {
      await db.close()
    }
    t.equal(await layoutOf(dir), 4, 'layout 4')
  })
}
