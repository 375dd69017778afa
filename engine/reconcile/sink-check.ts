import type { Packr } from 'msgpackr'
import type { BackendSink, StoredEntry } from '../sinks/sink.js'
import { labelsOf, type IndexedEntry, type IndexSink } from '../sinks/index-sink.js'
import type { CacheSink } from '../sinks/cache-sink.js'
import { opIdentity, splitIdentity } from '../format/identity.js'
import type { Finding } from '../log/recovery/findings.js'
import { hlcMs, LegacyDeleteResolver, opsOf, type Op, type WalRecord } from '../format/record-codec.js'
import { createPackr, packValue } from '../format/value-codec.js'
import { keepsCreatedAt } from '../format/expiry-key.js'

/**
 * The reconciler's checks of the replicas against the log (DESIGN.md §8), and
 * their repairs. Pure comparison over iterators in key order (LevelDB and the
 * index both sort keys as bytes), so memory holds the log's latest versions
 * and little else.
 */
export type SinkFindingKind = 'checkpoint-ahead' | 'backend-missing' | 'backend-stale' | 'backend-extra' | 'index-missing' | 'index-orphan' | 'index-mismatch' | 'cache-stale'

/** A finding about a sink: `sink` is always set. */
type SinkFinding = Finding<SinkFindingKind> & { readonly sink: string }

/** First and last LSN, inclusive. */
export type LsnRange = readonly [number, number]

/** The latest version of each identity in the log (with the ms of its record's stamp). */
export class LatestVersions extends Map<string, { readonly lsn: number; readonly op: Op; readonly updatedAt: number }> {
  /** What a version-1 delete (no namespace) deletes: the key in every namespace seen so far. */
  readonly legacy = new LegacyDeleteResolver()
}

/**
 * Adds a record's operations. A version-1 delete names only the key and meant
 * "wherever it is": it deletes the key in every namespace seen so far.
 */
export function addToLatest(latest: LatestVersions, lsn: number, r: WalRecord): void {
  const updatedAt = hlcMs(r.hlc ?? 0)
  for (const op of opsOf(r)) for (const resolved of latest.legacy.resolve(op)) latest.set(opIdentity(resolved), { lsn, op: resolved, updatedAt })
}

export interface SinkTargets {
  readonly backend: BackendSink
  readonly index: IndexSink
  readonly cache?: CacheSink
  /** Keys whose state is in flux (pending, or touched above the lowest checkpoint): not compared. */
  readonly unstable: ReadonlySet<string>
  readonly lastLsn: number
  /**
   * LSN ranges the log no longer holds (cut or lost after the backend may have
   * applied them): where a key's version may lie there, the backend is the
   * only witness, and the log cannot prove it wrong.
   */
  readonly lost?: readonly LsnRange[]
}

export async function checkSinks(t: SinkTargets, latest: LatestVersions, repair: boolean): Promise<Finding<SinkFindingKind>[]> {
  const findings: SinkFinding[] = []
  for (const s of [t.backend, t.index]) {
    if (s.checkpoint > t.lastLsn) {
      findings.push({ kind: 'checkpoint-ahead', sink: s.name, lsnFirst: t.lastLsn + 1, detail: `checkpoint ${s.checkpoint} is past the log's last LSN ${t.lastLsn}: the log lost records this sink has; the next open continues after it`, action: 'none' })
    }
  }
  const sizes = await checkBackend(t, latest, repair, findings)
  await checkIndex(t, repair, findings, sizes)
  if (t.cache) await checkCache(t, t.cache, repair, findings)
  return findings
}

/**
 * Every key whose latest log version the backend's checkpoint covers must be
 * stored exactly so. Returns each key compared, with its stored value's
 * packed size where the row was found right (for checkIndex: packed once).
 */
async function checkBackend(t: SinkTargets, latest: LatestVersions, repair: boolean, findings: SinkFinding[]): Promise<ReadonlyMap<string, number | undefined>> {
  const covered = t.backend.checkpoint
  const packr = createPackr()
  const seen = new Map<string, number | undefined>()
  const fixes: [string, StoredEntry | undefined][] = []
  const wrong = (kind: SinkFindingKind, id: string, lsn: number, detail: string, fix: StoredEntry | undefined): void => {
    findings.push({ kind, sink: t.backend.name, ...splitIdentity(id), lsnFirst: lsn, detail, action: 'none' })
    fixes.push([id, fix])
  }
  const lost = (t.lost ?? []).filter(([first]) => first <= covered)
  for await (const [key, stored] of t.backend.entries()) {
    const v = latest.get(key)
    if (!v || v.lsn > covered || t.unstable.has(key)) continue
    seen.set(key, undefined)
    // Stored from a record the log lost: newer than the log's latest version of the key, not stale.
    if (stored.lsn > v.lsn && lost.some(([a, b]) => a <= stored.lsn && stored.lsn <= b)) continue
    if (v.op.type === 'del') {
      wrong('backend-extra', key, v.lsn, `deleted at LSN ${v.lsn} but still stored (from LSN ${stored.lsn})`, undefined)
      continue
    }
    // Copied out of msgpackr's shared buffer: the log's value is packed next.
    const bytes = Buffer.from(packValue(packr, stored.value))
    if (sameEntry(packr, stored, bytes, v.op, v.lsn)) seen.set(key, bytes.length)
    else wrong('backend-stale', key, v.lsn, `stored from LSN ${stored.lsn}, the log's latest is LSN ${v.lsn}`, entryOf(v.op, v.lsn, v.updatedAt, keepsCreatedAt(stored.expiresAt, v.updatedAt) ? stored.createdAt : v.updatedAt))
  }
  for (const [key, v] of latest) {
    if (seen.has(key) || v.lsn > covered || v.op.type === 'del' || t.unstable.has(key)) continue
    // A record the log lost after this version may have deleted the key: its absence proves nothing.
    if (lost.some(([, b]) => b > v.lsn)) continue
    wrong('backend-missing', key, v.lsn, `written at LSN ${v.lsn} (covered by checkpoint ${covered}) but absent`, entryOf(v.op, v.lsn, v.updatedAt))
  }
  if (repair && fixes.length > 0) {
    await t.backend.repair(fixes)
    markRepaired(findings, 0, (f) => f.sink === t.backend.name && f.kind !== 'checkpoint-ahead')
  }
  return seen
}

/** The index and the backend, merged in key order: each live key indexed as stored, nothing else indexed. */
async function checkIndex(t: SinkTargets, repair: boolean, findings: SinkFinding[], sizes: ReadonlyMap<string, number | undefined>): Promise<void> {
  const name = t.index.name
  const first = findings.length
  const forward = new Map<string, IndexedEntry>()
  const packr = createPackr()
  const b = t.backend.entries()[Symbol.asyncIterator]()
  const x = t.index.all()[Symbol.asyncIterator]()
  let bn = await b.next()
  let xn = await x.next()
  while (!bn.done || !xn.done) {
    const bk = bn.done ? undefined : bn.value[0]
    const xk = xn.done ? undefined : xn.value[0]
    if (xk !== undefined && !xn.done) forward.set(xk, xn.value[1])
    if (bk !== undefined && (xk === undefined || bk < xk)) {
      if (!t.unstable.has(bk)) findings.push({ kind: 'index-missing', sink: name, ...splitIdentity(bk), detail: 'live key not indexed', action: 'none' })
      bn = await b.next()
    } else if (xk !== undefined && (bk === undefined || xk < bk)) {
      if (!t.unstable.has(xk)) findings.push({ kind: 'index-orphan', sink: name, ...splitIdentity(xk), detail: 'indexed key not in the backend', action: 'none' })
      xn = await x.next()
    } else if (bk !== undefined && !bn.done && !xn.done) {
      const [stored, indexed] = [bn.value[1], xn.value[1]]
      if (!t.unstable.has(bk) && !sameLabels(stored, indexed)) findings.push({ kind: 'index-mismatch', sink: name, ...splitIdentity(bk), detail: 'indexed tags, expiry or write time differ from the stored ones', action: 'none' })
      else if (!t.unstable.has(bk) && indexed.valueBytes !== undefined) {
        // stats() sums the indexed size; an entry indexed before sizes were kept has none, and stats() reads its row instead.
        const bytes = sizes.get(bk) ?? packValue(packr, stored.value).length
        if (bytes !== indexed.valueBytes) findings.push({ kind: 'index-mismatch', sink: name, ...splitIdentity(bk), detail: `indexed valueBytes ${indexed.valueBytes}, the stored value is ${bytes} bytes`, action: 'none' })
      }
      bn = await b.next()
      xn = await x.next()
    }
  }
  const expiryPosted = new Set<string>()
  for await (const p of t.index.postings()) {
    if (t.unstable.has(p.key)) continue
    const f = forward.get(p.key)
    // A tag posting carries the entry's write time and expiry (layout 3) and its tags (layout 4): the same as its forward entry's, or a query would judge wrongly.
    const ok = f !== undefined && (p.kind === 'tag' ? (f.tags ?? []).includes(p.label) && p.meta.updatedAt === f.updatedAt && p.meta.expiresAt === f.expiresAt && (p.meta.tags === undefined || sameTags(p.meta.tags, f.tags)) : String(f.expiresAt) === p.label)
    if (ok && p.kind === 'expiry') expiryPosted.add(p.key)
    if (!ok) findings.push({ kind: 'index-orphan', sink: name, ...splitIdentity(p.key), detail: `${p.kind} entry "${p.label}" does not match the key's indexed entry`, action: 'none' })
  }
  // An expiring entry without its posting is never swept (reads still hide it once expired): its place in the store would stay taken.
  for (const [id, f] of forward) {
    if (f.expiresAt !== undefined && !expiryPosted.has(id) && !t.unstable.has(id)) {
      findings.push({ kind: 'index-missing', sink: name, ...splitIdentity(id), detail: `expiry entry ${f.expiresAt} missing: the sweep would not find it`, action: 'none' })
    }
  }
  if (repair && findings.length > first) {
    const backend = t.backend
    await t.index.rebuild(entryLabels(backend.entries(), packr), backend.checkpoint)
    markRepaired(findings, first, () => true)
  }
}

async function checkCache(t: SinkTargets, cache: CacheSink, repair: boolean, findings: SinkFinding[]): Promise<void> {
  for (const [key, e] of [...cache.entries()]) {
    if (t.unstable.has(key)) continue
    const stored = await t.backend.get(key)
    if (stored && stored.lsn === e.lsn) continue
    findings.push({ kind: 'cache-stale', sink: cache.name, ...splitIdentity(key), lsnFirst: e.lsn, detail: `cached from LSN ${e.lsn}, backend has ${stored ? `LSN ${stored.lsn}` : 'nothing'}`, action: repair ? 'repaired' : 'none' })
    if (repair) cache.invalidate(key)
  }
}

function markRepaired(findings: SinkFinding[], from: number, which: (f: SinkFinding) => boolean): void {
  for (let i = from; i < findings.length; i++) {
    const f = findings[i] as SinkFinding
    if (which(f)) findings[i] = { ...f, action: 'repaired' }
  }
}

/** The index entries of the backend's rows, each with its value's size (the rebuild sizes entries indexed before sizes were kept) and write time. */
async function* entryLabels(entries: AsyncIterable<[string, StoredEntry]>, packr: Packr): AsyncIterable<[string, IndexedEntry]> {
  for await (const [k, e] of entries) yield [k, labelsOf(e.namespace, e.tags, e.expiresAt, packValue(packr, e.value).length, e.updatedAt)]
}

function sameLabels(a: IndexedEntry, b: IndexedEntry): boolean {
  // A write time the index does not know (layout 2 under an external backend) is no mismatch: queries read the entry's.
  const sameTime = a.updatedAt === undefined || b.updatedAt === undefined || a.updatedAt === b.updatedAt
  return a.namespace === b.namespace && a.expiresAt === b.expiresAt && sameTime && sameTags(a.tags, b.tags)
}

/** The same tags, in any order. */
function sameTags(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  const at = [...(a ?? [])].sort()
  const bt = [...(b ?? [])].sort()
  return at.length === bt.length && at.every((x, i) => x === bt[i])
}

/** `storedBytes`: the stored value packed. */
function sameEntry(packr: Packr, stored: StoredEntry, storedBytes: Buffer, op: Extract<Op, { type: 'put' }>, lsn: number): boolean {
  return stored.lsn === lsn && sameLabels(stored, labelsOf(stored.namespace, op.tags, op.expiresAt)) && storedBytes.equals(packValue(packr, op.value))
}

/** The row the log says an identity should hold; createdAt is kept from the stored row when there is one and it carries over (keepsCreatedAt; the log may no longer hold the first put). */
function entryOf(op: Extract<Op, { type: 'put' }>, lsn: number, updatedAt: number, createdAt = updatedAt): StoredEntry {
  return { value: op.value, ...splitIdentity(opIdentity(op)), lsn, createdAt, updatedAt, ...(op.tags ? { tags: op.tags } : {}), ...(op.expiresAt !== undefined ? { expiresAt: op.expiresAt } : {}) }
}
