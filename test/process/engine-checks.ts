/**
 * The checks the engine profiles of the kill loop share (engine-kill9 and
 * crash-loop): reopening the killed child's directory with a healthy backend
 * that counts what it applies, draining it, and the guarantees every round
 * must keep (G3 after flush, ONCE, the index agreeing with the backend).
 */
import { isDeepStrictEqual } from 'node:util'
import { BackendSink, DEFAULT_NAMESPACE, MemWAL, type Entry, type MemwalOptions, type Sink, type StoredEntry } from '../../engine/index.js'
import { type Op } from '../../engine/testing.js'
import { ENGINE_CHILD_NAMESPACES, ENGINE_CHILD_TAGS } from './children/engine-writer.js'
import { fromEntry, fromStored, normalOp, normTags, type ModelEntry } from '../support/identity-view.js'

const FLUSH_TIMEOUT_MS = 60_000
/** Results a query may return: more than any round writes. */
const QUERY_LIMIT = 100_000

export type Report = (message: string) => void

/** A key's version as the acknowledged writes leave it. */
export interface Version {
  readonly present: boolean
  readonly lsn: number
  readonly value?: unknown
  readonly namespace?: string
  readonly tags?: readonly string[]
}

/** The version `op`, written under `lsn`, gives its key (the engine stores tags deduplicated). */
export function versionOf(op: Op, lsn: number): Version {
  if (op.type === 'del') return { present: false, lsn }
  // The log's version-2 records always name the namespace; the model omits `default`, as fromEntry/fromStored do.
  return { present: true, lsn, value: op.value, ...(op.namespace !== undefined && op.namespace !== DEFAULT_NAMESPACE ? { namespace: op.namespace } : {}), ...normTags(op.tags) }
}

/** The entry a reader should get for `v`. */
export function entryOf(v: Version | undefined): ModelEntry | undefined {
  if (!v?.present) return undefined
  return { value: v.value, lsn: v.lsn, ...(v.namespace !== undefined ? { namespace: v.namespace } : {}), ...(v.tags ? { tags: v.tags } : {}) }
}

/** As JSON carries it: what a child printed, or a value after a trip through msgpack. */
export const plain = (x: unknown): unknown => (x === undefined ? undefined : JSON.parse(JSON.stringify(x)))

export const sameOps = (a: readonly Op[], b: readonly Op[]): boolean => isDeepStrictEqual(plain(a.map(normalOp)), plain(b.map(normalOp)))

/** True when the entry read (through getEntry, or stored in the backend) is what `v` leaves. */
export function entryIs(e: Entry | StoredEntry | undefined, v: Version | undefined): boolean {
  const seen = e === undefined ? undefined : 'version' in e ? fromEntry(e) : fromStored(e)
  return isDeepStrictEqual(plain(seen), plain(entryOf(v)))
}

/** A short rendering for failure messages: long strings (the pads) cut to their length. */
export function brief(x: unknown, charsMax = 300): string {
  const s = JSON.stringify(x, (_k, v: unknown) => (typeof v === 'string' && v.length > 8 ? `${v.slice(0, 3)}…(${v.length})` : v))
  return s === undefined ? 'undefined' : s.slice(0, charsMax)
}

/** What a reopen after a kill found and did. */
export interface Reopened {
  /** The log's last LSN once recovery was done. */
  readonly lastLsn: number
  /** The backend's checkpoint when it opened. */
  readonly openCheckpoint: number
  /** The lower of the durable sinks' checkpoints at open: records at or below it may have been purged. */
  readonly durableAtOpen: number
  readonly activeSegment: string
  /** Every LSN past its checkpoint that the backend applied, in order. */
  readonly applied: readonly number[]
  /** `namespace <n>` / `tag <t>` -> the keys the index answers, in order. */
  readonly queried: ReadonlyMap<string, readonly string[]>
}

/**
 * Opens `dir` with a healthy backend that records what it applies, flushes,
 * checks G3 (every sink's checkpoint at the log's end, no backlog, no growth
 * without writes), asks the index every namespace and tag, lets `inspect`
 * read through the open engine and its backend, and closes.
 */
export async function reopenAndDrain(
  dir: string,
  options: Omit<MemwalOptions, 'dir' | 'wrapSink'>,
  report: Report,
  inspect: (engine: MemWAL, backend: BackendSink, opened: { readonly lastLsn: number; readonly durableAtOpen: number }) => Promise<void>,
): Promise<Reopened> {
  let openCheckpoint = -1
  const applied: number[] = []
  let backend: BackendSink | undefined
  const wrapSink = <S extends Sink>(sink: S): S => {
    if (!(sink instanceof BackendSink)) return sink
    backend = sink
    const open = sink.open.bind(sink)
    sink.open = async () => (openCheckpoint = await open())
    const apply = sink.apply.bind(sink)
    sink.apply = async (batch, signal) => {
      const before = sink.checkpoint
      await apply(batch, signal)
      for (const r of batch.records) if (r.lsn > before) applied.push(r.lsn)
    }
    return sink
  }
  const engine = await MemWAL.open({ ...options, dir, wrapSink })
  try {
    const h0 = engine.health()
    const lastLsn = h0.wal.lastLsn
    const durableAtOpen = Math.min(h0.sinks['backend']?.checkpoint ?? 0, h0.sinks['index']?.checkpoint ?? 0)
    await engine.flush({ timeoutMs: FLUSH_TIMEOUT_MS })
    const h = engine.health()
    if (h.wal.lastLsn !== lastLsn) report(`the log grew from ${lastLsn} to ${h.wal.lastLsn} during recovery and flush, with no writes`)
    for (const name of ['backend', 'index', 'cache']) {
      if (h.sinks[name]?.checkpoint !== lastLsn) report(`G3: after flush the ${name} checkpoint is ${String(h.sinks[name]?.checkpoint)}, the log's last LSN ${lastLsn}`)
    }
    if (h.backlog.records !== 0) report(`after flush the backlog still holds ${h.backlog.records} records`)
    const queried = new Map<string, string[]>()
    for (const ns of ENGINE_CHILD_NAMESPACES) queried.set(`namespace ${ns}`, await queryKeys(engine, { namespace: ns }))
    for (const tag of ENGINE_CHILD_TAGS) queried.set(`tag ${tag}`, await queryKeys(engine, { tag }))
    if (!backend) throw new Error('the backend sink was never wrapped')
    await inspect(engine, backend, { lastLsn, durableAtOpen })
    return { lastLsn, openCheckpoint, durableAtOpen, activeSegment: h0.wal.activeSegment, applied, queried }
  } finally {
    await engine.close()
  }
}

async function queryKeys(engine: MemWAL, q: { namespace: string } | { tag: string }): Promise<string[]> {
  const keys: string[] = []
  for await (const r of engine.query({ ...q, limit: QUERY_LIMIT })) keys.push(r.key)
  return keys.sort()
}

/**
 * ONCE: the backend reopened at or past every apply the child saw resolve
 * and at or past the last round's checkpoint, and this reopen applied each
 * LSN past its checkpoint exactly once, never one applied in an earlier
 * round (`appliedEver`, which this adds to).
 */
export function checkAppliedOnce(re: Reopened, childApplied: number, previousCheckpoint: number, appliedEver: Set<number>, report: Report): void {
  const cp = re.openCheckpoint
  if (cp < childApplied) report(`ONCE: the backend reopened at checkpoint ${cp}, but the child saw an apply through ${childApplied} resolve: those LSNs would be applied twice`)
  if (cp < previousCheckpoint) report(`ONCE: the backend checkpoint went back from ${previousCheckpoint} to ${cp}`)
  const twice = re.applied.filter((lsn, i) => re.applied.indexOf(lsn) !== i || appliedEver.has(lsn))
  if (twice.length > 0) report(`ONCE: LSNs applied twice: ${twice.slice(0, 10).join(' ')}`)
  const stale = re.applied.filter((lsn) => lsn <= cp)
  if (stale.length > 0) report(`ONCE: LSNs at or below the checkpoint ${cp} applied again: ${stale.slice(0, 10).join(' ')}`)
  if (re.applied.length !== re.lastLsn - cp) report(`ONCE: the recovery applied ${re.applied.length} records to the backend, the log holds ${re.lastLsn - cp} past its checkpoint ${cp}`)
  for (const lsn of re.applied) appliedEver.add(lsn)
}

/** G3: every namespace and tag query answers exactly the keys (sorted) that `entries` hold under it. */
export function checkIndexAgrees(re: Reopened, entries: ReadonlyMap<string, Entry | StoredEntry | undefined>, report: Report): void {
  for (const [q, keys] of re.queried) {
    const [kind, label] = q.split(' ') as [string, string]
    const want = [...entries]
      .filter(([, e]) => e !== undefined && (kind === 'namespace' ? e.namespace === label : (e.tags ?? []).includes(label)))
      .map(([k]) => k)
      .sort()
    if (!isDeepStrictEqual(keys, want)) report(`G3: query ${q} = ${brief(keys)}, the backend holds ${brief(want)}`)
  }
}
