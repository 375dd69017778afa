/**
 * The contract every sink keeps (engine/sinks/sink.ts), as one suite run
 * against each implementation (abstract-level's way: the same tests, a
 * fixture per implementation). test/unit/sink-contract.test.ts runs it.
 *
 * - apply stores what the records leave, in LSN order, and moves the
 *   checkpoint to the batch's upToLsn;
 * - apply is idempotent by LSN: records at or below the checkpoint have no
 *   second effect, alone or mixed with new ones;
 * - a batch without records moves the checkpoint;
 * - a durable sink reopens at its checkpoint with its data; a volatile one
 *   reopens empty at its start LSN;
 * - the checkpoint is written atomically with the data: a write that fails
 *   leaves neither, in memory or after a reopen;
 * - records out of LSN order are refused.
 */
import type { Test } from 'tap'
import { RecordType } from '../../engine/format/format.js'
import type { Op, WalRecord } from '../../engine/format/record-codec.js'
import { DEFAULT_NAMESPACE, type AppliedRecord, type ApplyBatch, type Sink, type StoredEntry } from '../../engine/index.js'
import { identityOf } from '../../engine/format/identity.js'

/** What a sink holds for a key, as far as its kind stores it (an index keeps no values, for one). */
export type Held = Partial<StoredEntry>

/**
 * The suite's keys live in one namespace each: `b` and `c` in `ns`, the
 * rest in `default` (identity is (namespace, key); `read` takes the
 * identity). Entries below name only their value, LSN and tags; the
 * namespace is the key's.
 */
export const contractNamespace = (key: string): string => (key === 'b' || key === 'c' ? 'ns' : DEFAULT_NAMESPACE)
export const contractId = (key: string): string => identityOf(contractNamespace(key), key)
type Want = Pick<StoredEntry, 'value' | 'lsn'> & { readonly tags?: readonly string[] }
const held = (key: string, e: Want): StoredEntry => ({ ...e, key, namespace: contractNamespace(key), createdAt: 0, updatedAt: 0 })

/** One storage, opened as often as a test asks (a reopen), for one implementation. */
export interface SinkFixture {
  /** Opens a sink on the fixture's storage. */
  open(): Promise<Sink>
  /** Closes the sink and whatever the fixture opened with it. */
  close(sink: Sink): Promise<void>
  /** What `sink` holds for identity `id`, or undefined. */
  read(sink: Sink, id: string): Promise<Held | undefined>
  /** Makes the storage's next write fail before anything of it lands; undefined when the storage cannot be made to. */
  readonly failNextWrite?: () => Promise<void>
}

export interface SinkKind {
  readonly name: string
  readonly durable: boolean
  /** The part of an entry this kind of sink keeps. */
  project(e: StoredEntry): Held
  /** A fixture on fresh storage; its teardown is the test's. */
  fixture(t: ContractTest): Promise<SinkFixture>
}

/** A tap Test (the suite registers subtests on it). */
export type ContractTest = Test

/** HLCs grow with LSNs, as the engine stamps them: every sink may rely on them (PostgreSQL orders versions by them). */
const HLC_BASE = 1_700_000_000_000_000

function record(lsn: number, ops: readonly Op[]): AppliedRecord {
  const [first] = ops
  const hlc = HLC_BASE + lsn
  let rec: WalRecord
  if (ops.length === 1 && first?.type === 'put') rec = { type: RecordType.PUT, op: first, hlc }
  else if (ops.length === 1 && first?.type === 'del') rec = { type: RecordType.DELETE, op: first, hlc }
  else rec = { type: RecordType.BATCH, ops: [...ops], hlc }
  return { lsn, record: rec, bytes: 64 }
}

const put = (key: string, value: unknown, more: { tags?: string[] } = {}): Op => ({ type: 'put', key, value, namespace: contractNamespace(key), ...more })
const del = (key: string): Op => ({ type: 'del', key, namespace: contractNamespace(key) })
const batch = (upToLsn: number, ...records: AppliedRecord[]): ApplyBatch => ({ records, upToLsn })

/** LSNs 1-3: two puts, then a batch that overwrites one, deletes one and adds one. */
const FIRST = batch(
  3,
  record(1, [put('a', { n: 1 })]),
  record(2, [put('b', 'two', { tags: ['x', 'y'] })]),
  record(3, [put('a', { n: 3 }, { tags: ['x'] }), del('b'), put('c', [3])]),
)
/** What FIRST leaves. */
const AFTER_FIRST: ReadonlyMap<string, Want | undefined> = new Map<string, Want | undefined>([
  ['a', { value: { n: 3 }, lsn: 3, tags: ['x'] }],
  ['b', undefined],
  ['c', { value: [3], lsn: 3 }],
])

async function expectHeld(t: ContractTest, kind: SinkKind, f: SinkFixture, sink: Sink, want: ReadonlyMap<string, Want | undefined>, when: string): Promise<void> {
  for (const [key, e] of want) t.same(await f.read(sink, contractId(key)), e === undefined ? undefined : kind.project(held(key, e)), `${when}: ${key}`)
}

export async function runSinkContract(t: ContractTest, kind: SinkKind): Promise<void> {
  await t.test(`${kind.name}: a fresh sink opens at checkpoint 0, holding nothing`, async (t) => {
    const f = await kind.fixture(t)
    const sink = await f.open()
    t.equal(sink.checkpoint, 0)
    t.equal(await f.read(sink, contractId('a')), undefined)
    await f.close(sink)
  })

  await t.test(`${kind.name}: apply stores what the records leave, in LSN order, and moves the checkpoint`, async (t) => {
    const f = await kind.fixture(t)
    const sink = await f.open()
    await sink.apply(FIRST)
    t.equal(sink.checkpoint, 3)
    await expectHeld(t, kind, f, sink, AFTER_FIRST, 'after LSNs 1-3')
    await f.close(sink)
  })

  await t.test(`${kind.name}: apply is idempotent by LSN`, async (t) => {
    const f = await kind.fixture(t)
    const sink = await f.open()
    await sink.apply(FIRST)
    await sink.apply(FIRST)
    t.equal(sink.checkpoint, 3, 'the same batch again leaves the checkpoint')
    await expectHeld(t, kind, f, sink, AFTER_FIRST, 'the same batch again')
    // Old LSNs carrying other ops (as a replay after a lost acknowledgement never would, but a bug might): no effect.
    await sink.apply(batch(2, record(1, [put('a', 'stale')]), record(2, [put('b', 'stale')])))
    t.equal(sink.checkpoint, 3, 'an older batch leaves the checkpoint')
    await expectHeld(t, kind, f, sink, AFTER_FIRST, 'an older batch')
    // Old and new mixed: only the new take effect.
    await sink.apply(batch(5, record(2, [put('a', 'stale')]), record(3, [del('c')]), record(4, [put('d', 4)]), record(5, [del('a')])))
    t.equal(sink.checkpoint, 5)
    await expectHeld(t, kind, f, sink, new Map([...AFTER_FIRST, ['a', undefined], ['d', { value: 4, lsn: 4 }]]), 'old and new mixed')
    await f.close(sink)
  })

  await t.test(`${kind.name}: a batch without records moves the checkpoint (past a dead-lettered record)`, async (t) => {
    const f = await kind.fixture(t)
    const sink = await f.open()
    await sink.apply(FIRST)
    await sink.apply(batch(7))
    t.equal(sink.checkpoint, 7)
    await expectHeld(t, kind, f, sink, AFTER_FIRST, 'after the empty batch')
    await sink.apply(batch(8, record(8, [put('e', 8)])))
    t.same(await f.read(sink, contractId('e')), kind.project(held('e', { value: 8, lsn: 8 })), 'the next record applies')
    await f.close(sink)
  })

  await t.test(`${kind.name}: ${kind.durable ? 'a reopen keeps the checkpoint and the data' : 'a reopen starts empty at the start LSN (volatile)'}`, async (t) => {
    const f = await kind.fixture(t)
    const first = await f.open()
    await first.apply(FIRST)
    await first.apply(batch(6))
    await f.close(first)
    const again = await f.open()
    if (kind.durable) {
      t.equal(again.checkpoint, 6, 'the checkpoint survived')
      await expectHeld(t, kind, f, again, AFTER_FIRST, 'after the reopen')
      await again.apply(FIRST)
      await expectHeld(t, kind, f, again, AFTER_FIRST, 'a replay of what the checkpoint covers, after the reopen')
    } else {
      t.equal(again.checkpoint, 0, 'the checkpoint is the start LSN')
      await expectHeld(t, kind, f, again, new Map([...AFTER_FIRST].map(([k]) => [k, undefined])), 'after the reopen')
    }
    await f.close(again)
  })

  await t.test(`${kind.name}: the checkpoint moves with the data or not at all`, async (t) => {
    const f = await kind.fixture(t)
    if (f.failNextWrite === undefined) {
      t.comment(`${kind.name}: its storage cannot be made to fail a write here, so atomicity is not shown by this suite`)
      return
    }
    const sink = await f.open()
    await sink.apply(FIRST)
    await f.failNextWrite()
    await t.rejects(sink.apply(batch(5, record(4, [put('a', 'lost')]), record(5, [put('z', 'lost')]))), 'the failed write rejects the apply')
    t.equal(sink.checkpoint, 3, 'the checkpoint did not move')
    await expectHeld(t, kind, f, sink, new Map([...AFTER_FIRST, ['z', undefined]]), 'after the failed apply')
    await f.close(sink)
    if (!kind.durable) return
    const again = await f.open()
    t.equal(again.checkpoint, 3, 'nor did the stored checkpoint')
    await expectHeld(t, kind, f, again, new Map([...AFTER_FIRST, ['z', undefined]]), 'after a reopen')
    await again.apply(batch(5, record(4, [put('a', 'retried')]), record(5, [put('z', 'retried')])))
    t.same(await f.read(again, contractId('z')), kind.project(held('z', { value: 'retried', lsn: 5 })), 'the retry applies')
    await f.close(again)
  })

  await t.test(`${kind.name}: records out of LSN order are refused`, async (t) => {
    const f = await kind.fixture(t)
    const sink = await f.open()
    await t.rejects(sink.apply(batch(5, record(5, [put('a', 5)]), record(4, [put('a', 4)]))))
    t.equal(sink.checkpoint, 0)
    await f.close(sink)
  })
}
