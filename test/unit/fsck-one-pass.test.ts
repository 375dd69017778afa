/**
 * fsck and verify in one pass over the log (engine/reconcile/latest-versions.ts):
 * the scan that verifies each frame builds the latest version of each key,
 * keeping a hash of the value, not the value. What users rely on: a row stored
 * with the log's LSN but another value is still found, and --repair writes the
 * log's value back (read back from the log for that key); damage in the log
 * is a finding and the keys after it are still compared; each segment is read
 * once; version-1 logs resolve their deletes as before, though the resolver
 * is built only when the first version-1 operation arrives.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { Packr } from 'msgpackr'
import t from 'tap'
import { fsck, MemWAL, type FileSystem, type Sink } from '../../engine/index.js'
import { encodeVersion1, NodeFileSystem, RecordCodec, RecordType, type Op, type PutOp, type WalRecord } from '../../engine/testing.js'
import { createChecksums } from '../../engine/format/checksum.js'
import { LegacyDeleteResolver } from '../../engine/format/record-codec.js'
import { createPackr, packValue } from '../../engine/format/value-codec.js'
import { identityOf, opIdentity } from '../../engine/format/identity.js'
import { LevelStore } from '../../engine/sinks/level-store.js'
import { LatestVersions } from '../../engine/reconcile/latest-versions.js'
import { tmpDir } from '../support/tmp-dir.js'

const SEP = '\u0000'
const rowPackr = new Packr({ useRecords: false, useToJSON: false, mapsAsObjects: true, moreTypes: false })
const keyOf = (i: number): string => `k/${String(i).padStart(4, '0')}`
const valueOf = (i: number): { i: number; text: string } => ({ i, text: 'a'.repeat(200) })

/** A closed directory holding `n` keys of namespace `notes`, applied; small segments, all kept, so the log has several. */
async function closedDir(t: Parameters<typeof tmpDir>[0], n: number): Promise<{ dir: string; versions: Map<string, number> }> {
  const dir = tmpDir(t)
  const e = await MemWAL.open({ dir, segmentBytes: 64 * 1024, watchHistoryRecords: n })
  const versions = new Map<string, number>()
  for (let i = 0; i < n; i += 100) {
    const lsns = await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => e.put(keyOf(i + j), valueOf(i + j), { namespace: 'notes' })))
    lsns.forEach((r, j) => versions.set(keyOf(i + j), r.lsn))
  }
  await e.flush()
  await e.close()
  return { dir, versions }
}

/** Replaces a stored row's value, keeping its LSN, tags and times: only the value differs from the log's. */
async function tamperValue(dir: string, key: string, value: unknown): Promise<void> {
  const store = await LevelStore.open(path.join(dir, 'store'))
  try {
    const id = `notes${SEP}${key}`
    const row = rowPackr.decode((await store.data.get(id)) as Uint8Array) as unknown[]
    await store.data.put(id, rowPackr.encode([value, ...row.slice(1)]))
  } finally {
    await store.close()
  }
}

t.test('a row with the log\'s LSN but another value is found, and --repair writes the log\'s value', async (t) => {
  const { dir, versions } = await closedDir(t, 1000)
  t.equal((await fsck({ dir, repair: false })).clean, true, 'clean before')
  const key = keyOf(123)
  // The same packed size: the index's valueBytes still agrees, so only the backend is wrong.
  await tamperValue(dir, key, { i: 123, text: 'b'.repeat(200) })
  const r = await fsck({ dir, repair: false })
  t.strictSame(r.counts, { 'backend-stale': 1 })
  t.match(r.findings, [{ kind: 'backend-stale', sink: 'backend', namespace: 'notes', key, lsnFirst: versions.get(key), repaired: false }])
  const fixed = await fsck({ dir, repair: true })
  t.strictSame(fixed.counts, { 'backend-stale': 1 })
  t.ok(fixed.findings.every((f) => f.repaired), 'repaired')
  t.equal((await fsck({ dir, repair: false })).clean, true, 'clean after')
  const e = await MemWAL.open({ dir })
  t.teardown(() => e.close())
  const entry = await e.getEntry(key, { namespace: 'notes' })
  t.strictSame(entry?.value, valueOf(123), 'the log\'s value')
  t.equal(entry?.version, versions.get(key), 'at its LSN')
})

t.test('a damaged frame is a finding, and the keys after it are still compared', async (t) => {
  const { dir, versions } = await closedDir(t, 1000)
  const segments = readdirSync(path.join(dir, 'wal')).filter((n) => n.endsWith('.seg')).sort()
  t.ok(segments.length >= 2, `several segments (${segments.length})`)
  // A bit flipped in the key of an early record's payload: valid frames follow it, and whole segments after it.
  const damaged = segments.find((s) => readFileSync(path.join(dir, 'wal', s)).includes(keyOf(100)))
  const file = path.join(dir, 'wal', damaged as string)
  const bytes = readFileSync(file)
  const at = bytes.indexOf(keyOf(100))
  bytes[at] = (bytes[at] ?? 0) ^ 0x10
  writeFileSync(file, bytes)
  const late = keyOf(990)
  await tamperValue(dir, late, { i: 990, text: 'c'.repeat(200) })
  const r = await fsck({ dir, repair: false })
  t.strictSame(r.counts, { 'corrupt-frame': 1, 'backend-stale': 1 }, 'the damage, and the stale row after it (nothing about the damaged record\'s key: the backend has it)')
  t.match(r.findings.find((f) => f.kind === 'backend-stale'), { key: late, lsnFirst: versions.get(late) })
  t.match(r.findings.find((f) => f.kind === 'corrupt-frame'), { segment: damaged, lsnFirst: versions.get(keyOf(100)), alreadyApplied: true })
})

t.test('fsck reads each segment of the log once', async (t) => {
  const { dir } = await closedDir(t, 1000)
  const node = new NodeFileSystem()
  const reads = new Map<string, number>()
  const count = (p: string): void => {
    if (p.endsWith('.seg')) reads.set(path.basename(p), (reads.get(path.basename(p)) ?? 0) + 1)
  }
  const counting = new Proxy(node, {
    get(target, prop, receiver): unknown {
      const f = Reflect.get(target, prop, receiver) as unknown
      if (typeof f !== 'function') return f
      if (prop === 'open' || prop === 'readFile') return (p: string, ...rest: unknown[]) => (count(p), (f as (...a: unknown[]) => unknown).call(target, p, ...rest))
      return (f as (...a: unknown[]) => unknown).bind(target)
    },
  }) as FileSystem
  const r = await fsck({ dir, repair: false, fs: counting })
  t.equal(r.clean, true)
  t.ok(reads.size >= 2, `${reads.size} segments`)
  t.strictSame([...reads.values()].filter((n) => n !== 1), [], `every segment read once: ${JSON.stringify(Object.fromEntries(reads))}`)
})

/** A record's frame as the scan hands it over. */
function frameOf(codec: RecordCodec, r: WalRecord, v1 = false): [RecordType, Uint8Array] {
  return [r.type, Buffer.from(v1 ? encodeVersion1(codec, r) : codec.encode(r))]
}

t.test('version-1 operations resolve as the resolver always did, built only when the first one arrives', async (t) => {
  const sums = await createChecksums()
  const codec = new RecordCodec()
  const put = (key: string, namespace: string, value: unknown): PutOp => ({ type: 'put', key, value, namespace })
  const log: [WalRecord, boolean][] = [
    [{ type: RecordType.PUT, op: put('k', 'a', 1), hlc: 5_000 }, false],
    [{ type: RecordType.PUT, op: put('k', 'b', 2), hlc: 6_000 }, false],
    [{ type: RecordType.BATCH, ops: [put('m', 'a', 3), { type: 'del', key: 'n', namespace: 'c' }], hlc: 7_000 }, false],
    // A v1 delete of k: k in a and b. A v1 put of m (default namespace): m leaves a.
    [{ type: RecordType.DELETE, op: { type: 'del', key: 'k' }, hlc: 8_000 }, true],
    [{ type: RecordType.PUT, op: { type: 'put', key: 'm', value: 4 }, hlc: 9_000 }, true],
    [{ type: RecordType.PUT, op: put('k', 'b', 5), hlc: 10_000 }, false],
  ]
  const latest = new LatestVersions(sums, 5)
  log.forEach(([r, v1], i) => latest.addFrame(i + 1, ...frameOf(codec, r, v1)))
  // The same log through a resolver from its first record (what fsck did before).
  const want = new Map<string, { lsn: number; op: Op }>()
  const resolver = new LegacyDeleteResolver()
  log.forEach(([r, v1], i) => {
    const [type, payload] = frameOf(codec, r, v1)
    const decoded = codec.decode(type, payload)
    for (const op of decoded.type === RecordType.BATCH ? decoded.ops : [decoded.op]) for (const o of resolver.resolve(op)) want.set(opIdentity(o), { lsn: i + 1, op: o })
  })
  const packr = createPackr()
  const got = Object.fromEntries([...latest.entries()].map(([id, v]) => [id, v]))
  t.strictSame(Object.keys(got).sort(), [...want.keys()].sort(), 'the same identities')
  for (const [id, w] of want) {
    const v = got[id]
    t.match(v, { lsn: w.lsn, type: w.op.type }, id)
    const hashed = w.op.type === 'put' && w.lsn <= 5
    t.equal(v?.valueHash, hashed && w.op.type === 'put' ? sums.h64(packValue(packr, w.op.value)) : undefined, `${id}: a hash of the packed value only at or below the checkpoint`)
  }
  t.match(latest.get(identityOf('a', 'k')), { type: 'del', lsn: 4 })
  t.match(latest.get(identityOf('a', 'm')), { type: 'del', lsn: 5 })
  t.match(latest.get(identityOf('default', 'm')), { type: 'put', lsn: 5, updatedAt: 9 })
})

t.test('duplicate LSNs are skipped and missing ones are lost ranges, as the reader sees them', async (t) => {
  const latest = new LatestVersions(await createChecksums(), 0)
  const codec = new RecordCodec()
  const frame = (key: string, value: number): [RecordType, Uint8Array] => frameOf(codec, { type: RecordType.PUT, op: { type: 'put', key, value, namespace: 'x' } })
  latest.addFrame(3, ...frame('a', 1))
  latest.addFrame(4, ...frame('a', 2))
  latest.addFrame(4, ...frame('b', 9))
  latest.addFrame(2, ...frame('b', 9))
  latest.addFrame(8, ...frame('c', 3))
  t.equal(latest.lastLsn, 8)
  t.equal(latest.get(identityOf('x', 'b')), undefined, 'a frame at or below the last LSN taken is not the log\'s')
  t.match(latest.get(identityOf('x', 'a')), { lsn: 4 })
  t.strictSame(latest.lost(8), [[5, 7]])
  t.strictSame(latest.lost(10), [[5, 7], [9, 10]], 'and past the last record, up to the checkpoint')
})

t.test('versions above every sink\'s checkpoint are not kept: a key is compared at the version its sinks must hold', async (t) => {
  const { dir, versions } = await closedDir(t, 600)
  // New versions of keys 0-299 acknowledged while the sinks are down (their applies fail), then a close: unapplied in the log.
  const down = <S extends Sink>(sink: S): S => {
    if (sink.durable) sink.apply = () => Promise.reject(new Error('down (test outage)'))
    return sink
  }
  const e = await MemWAL.open({ dir, segmentBytes: 64 * 1024, wrapSink: down, closeGraceMs: 100 })
  const newer = new Map<string, number>()
  for (let i = 0; i < 300; i += 100) {
    const lsns = await Promise.all(Array.from({ length: 100 }, (_, j) => e.put(keyOf(i + j), { ...valueOf(i + j), newer: true }, { namespace: 'notes' })))
    lsns.forEach((r, j) => newer.set(keyOf(i + j), r.lsn))
  }
  await e.close()
  t.equal((await fsck({ dir, repair: false })).clean, true, 'clean: the sinks hold every version their checkpoints cover')
  // The applied version of a key whose newer version is in the backlog, stored wrong: before, such a key was skipped as "in flux".
  const key = keyOf(123)
  await tamperValue(dir, key, { i: 123, text: 'b'.repeat(200) })
  const r = await fsck({ dir, repair: false })
  t.strictSame(r.counts, { 'backend-stale': 1 }, 'found')
  t.match(r.findings, [{ kind: 'backend-stale', namespace: 'notes', key, lsnFirst: versions.get(key) }], 'at the version the backend must hold')
  const fixed = await fsck({ dir, repair: true })
  t.ok(fixed.findings.every((f) => f.repaired), 'repaired')
  t.equal((await fsck({ dir, repair: false })).clean, true, 'clean after')
  const back = await MemWAL.open({ dir })
  t.teardown(() => back.close())
  await back.flush()
  const entry = await back.getEntry(key, { namespace: 'notes' })
  t.strictSame(entry?.value, { ...valueOf(123), newer: true }, 'the backlog\'s newer version applied over the repaired row')
  t.equal(entry?.version, newer.get(key))
})

t.test('frames above keepThroughLsn move the last LSN and the gaps, and are not decoded', async (t) => {
  const latest = new LatestVersions(await createChecksums(), 2, 3)
  const codec = new RecordCodec()
  latest.addFrame(2, ...frameOf(codec, { type: RecordType.PUT, op: { type: 'put', key: 'a', value: 1, namespace: 'x' } }))
  latest.addFrame(3, ...frameOf(codec, { type: RecordType.PUT, op: { type: 'put', key: 'a', value: 2, namespace: 'x' } }))
  // Not a record at all: decoding it would throw. Above the bound it is only counted.
  latest.addFrame(4, RecordType.PUT, new Uint8Array([0xc1, 0xc1, 0xc1]))
  latest.addFrame(7, RecordType.PUT, new Uint8Array([0xc1]))
  t.equal(latest.lastLsn, 7)
  t.match(latest.get(identityOf('x', 'a')), { lsn: 3, type: 'put', valueHash: undefined }, 'the latest version at or below the bound; hashed only at or below hashThroughLsn')
  t.strictSame(latest.lost(7), [[5, 6]], 'a gap above the bound is still a lost range')
})
