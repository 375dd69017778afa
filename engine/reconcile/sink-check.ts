import type { Packr } from 'msgpackr'
import type { BackendSink, StoredEntry } from '../sinks/sink.js'
import { labelsOf, type IndexedEntry, type IndexSink } from '../sinks/index-sink.js'
import type { CacheSink } from '../sinks/cache-sink.js'
import type { Checksums } from '../format/checksum.js'
import { opIdentity, splitIdentity } from '../format/identity.js'
import type { Finding } from '../log/recovery/findings.js'
import type { PutOp } from '../format/record-codec.js'
import { createPackr, packValue } from '../format/value-codec.js'
import { keepsCreatedAt } from '../format/expiry-key.js'
import type { LatestVersion, LatestVersions, LsnRange } from './latest-versions.js'

/**
 * The reconciler's checks of the replicas against the log (DESIGN.md §8), and
 * their repairs. Pure comparison over iterators in key order (LevelDB and the
 * index both sort keys as bytes), so memory holds the log's latest versions
 * (labels and a hash of the value: latest-versions.ts) and little else.
 */
/** `sink-halted`: the sink took nothing since it halted (MemWAL.verify on an engine a halt made read-only; never repaired). */
export type SinkFindingKind = 'sink-halted' | 'checkpoint-ahead' | 'backend-missing' | 'backend-stale' | 'backend-extra' | 'index-missing' | 'index-orphan' | 'index-mismatch' | 'cache-stale'

/** A finding about a sink: `sink` is always set. */
type SinkFinding = Finding<SinkFindingKind> & { readonly sink: string }

export interface SinkTargets {
  readonly backend: BackendSink
  readonly index: IndexSink
  readonly cache?: CacheSink
  /** Whether a key's state is in flux (pending, or touched above the lowest checkpoint): then it is not compared. */
  readonly unstable: (key: string) => boolean
  readonly lastLsn: number
  /**
   * LSN ranges the log no longer holds (cut or lost after the backend may have
   * applied them): where a key's version may lie there, the backend is the
   * only witness, and the log cannot prove it wrong.
   */
  readonly lost?: readonly LsnRange[]
  /** The checksums the latest versions hashed values with. */
  readonly sums: Checksums
  /** The log's puts for these identities at these LSNs (their latest versions), read back: only for the keys a value is needed of. */
  readonly readBack: (wanted: ReadonlyMap<string, number>) => Promise<ReadonlyMap<string, PutOp>>
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
 *
 * A stored value is compared by the hash of its packed bytes with the log's
 * (latest-versions.ts). Where they differ, or the log's version has no hash
 * (it was applied after the scan began), the log's value is read back and
 * compared as a whole: a row is reported stale only on that, never on a
 * hash alone. What a repair writes is read back the same way, for the keys
 * it repairs only.
 */
async function checkBackend(t: SinkTargets, latest: LatestVersions, repair: boolean, findings: SinkFinding[]): Promise<ReadonlyMap<string, number | undefined>> {
  const covered = t.backend.checkpoint
  const packr = createPackr()
  const seen = new Map<string, number | undefined>()
  const wrongs: Wrong[] = []
  // Rows whose value is to be compared with the log's value read back: their hash differed, or there was none.
  const unsure: { readonly key: string; readonly v: LatestVersion; readonly stored: StoredEntry; readonly bytes: Buffer }[] = []
  const lost = (t.lost ?? []).filter(([first]) => first <= covered)
  for await (const [key, stored] of t.backend.entries()) {
    const v = latest.get(key)
    if (!v || v.lsn > covered || t.unstable(key)) continue
    seen.set(key, undefined)
    // Stored from a record the log lost: newer than the log's latest version of the key, not stale.
    if (stored.lsn > v.lsn && lost.some(([a, b]) => a <= stored.lsn && stored.lsn <= b)) continue
    if (v.type === 'del') {
      wrongs.push({ kind: 'backend-extra', key, v, detail: `deleted at LSN ${v.lsn} but still stored (from LSN ${stored.lsn})` })
      continue
    }
    // Copied out of msgpackr's shared buffer: kept past the next pack.
    const bytes = Buffer.from(packValue(packr, stored.value))
    if (stored.lsn !== v.lsn || !sameLabels(stored, labelsOf(stored.namespace, v.tags, v.expiresAt))) wrongs.push(staleRow(key, v, stored))
    else if (v.valueHash !== undefined && v.valueHash === t.sums.h64(bytes)) seen.set(key, bytes.length)
    else unsure.push({ key, v, stored, bytes })
  }
  for (const [key, v] of latest.entries(covered)) {
    if (seen.has(key) || v.type === 'del' || t.unstable(key)) continue
    // A record the log lost after this version may have deleted the key: its absence proves nothing.
    if (lost.some(([, b]) => b > v.lsn)) continue
    wrongs.push({ kind: 'backend-missing', key, v, detail: `written at LSN ${v.lsn} (covered by checkpoint ${covered}) but absent` })
  }
  const wanted = new Map<string, number>(unsure.map((u) => [u.key, u.v.lsn]))
  if (repair) for (const w of wrongs) if (w.kind !== 'backend-extra') wanted.set(w.key, w.v.lsn)
  const logged = await t.readBack(wanted)
  for (const u of unsure) {
    const put = logged.get(u.key)
    // The log no longer holds the version (retention, under a running writer): nothing to compare it with.
    if (put === undefined) continue
    if (u.bytes.equals(packValue(packr, put.value))) seen.set(u.key, u.bytes.length)
    else wrongs.push(staleRow(u.key, u.v, u.stored))
  }
  const fixes: [string, StoredEntry | undefined][] = []
  for (const w of wrongs) {
    // A row to delete, or the log's put read back; a put the log no longer holds (retention, under a running writer) is left unrepaired.
    const put = w.kind === 'backend-extra' ? undefined : logged.get(w.key)
    const fixable = w.kind === 'backend-extra' || put !== undefined
    findings.push({ kind: w.kind, sink: t.backend.name, ...splitIdentity(w.key), lsnFirst: w.v.lsn, detail: w.detail, action: repair && fixable ? 'repaired' : 'none' })
    if (repair && fixable) fixes.push([w.key, put && entryOf(put, w.v, w.createdAt)])
  }
  if (fixes.length > 0) await t.backend.repair(fixes)
  return seen
}

/** A backend row the log disagrees with; `createdAt` for a stale row that keeps its own (keepsCreatedAt). */
interface Wrong {
  readonly kind: 'backend-extra' | 'backend-stale' | 'backend-missing'
  readonly key: string
  readonly v: LatestVersion
  readonly detail: string
  readonly createdAt?: number
}

function staleRow(key: string, v: LatestVersion, stored: StoredEntry): Wrong {
  // createdAt is kept from the stored row when it carries over (keepsCreatedAt; the log may no longer hold the first put).
  const createdAt = keepsCreatedAt(stored.expiresAt, v.updatedAt) ? stored.createdAt : v.updatedAt
  return { kind: 'backend-stale', key, v, detail: `stored from LSN ${stored.lsn}, the log's latest is LSN ${v.lsn}`, createdAt }
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
      if (!t.unstable(bk)) findings.push({ kind: 'index-missing', sink: name, ...splitIdentity(bk), detail: 'live key not indexed', action: 'none' })
      bn = await b.next()
    } else if (xk !== undefined && (bk === undefined || xk < bk)) {
      if (!t.unstable(xk)) findings.push({ kind: 'index-orphan', sink: name, ...splitIdentity(xk), detail: 'indexed key not in the backend', action: 'none' })
      xn = await x.next()
    } else if (bk !== undefined && !bn.done && !xn.done) {
      const [stored, indexed] = [bn.value[1], xn.value[1]]
      if (!t.unstable(bk) && !sameLabels(stored, indexed)) findings.push({ kind: 'index-mismatch', sink: name, ...splitIdentity(bk), detail: 'indexed tags, expiry or write time differ from the stored ones', action: 'none' })
      else if (!t.unstable(bk) && indexed.valueBytes !== undefined) {
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
    if (t.unstable(p.key)) continue
    const f = forward.get(p.key)
    // A tag posting carries the entry's write time and expiry (layout 3) and its tags (layout 4): the same as its forward entry's, or a query would judge wrongly.
    const ok = f !== undefined && (p.kind === 'tag' ? (f.tags ?? []).includes(p.label) && p.meta.updatedAt === f.updatedAt && p.meta.expiresAt === f.expiresAt && (p.meta.tags === undefined || sameTags(p.meta.tags, f.tags)) : String(f.expiresAt) === p.label)
    if (ok && p.kind === 'expiry') expiryPosted.add(p.key)
    if (!ok) findings.push({ kind: 'index-orphan', sink: name, ...splitIdentity(p.key), detail: `${p.kind} entry "${p.label}" does not match the key's indexed entry`, action: 'none' })
  }
  // An expiring entry without its posting is never swept (reads still hide it once expired): its place in the store would stay taken.
  for (const [id, f] of forward) {
    if (f.expiresAt !== undefined && !expiryPosted.has(id) && !t.unstable(id)) {
      findings.push({ kind: 'index-missing', sink: name, ...splitIdentity(id), detail: `expiry entry ${f.expiresAt} missing: the sweep would not find it`, action: 'none' })
    }
  }
  if (repair && findings.length > first) {
    const backend = t.backend
    await t.index.rebuild(entryLabels(backend.entries(), packr), backend.checkpoint)
    markRepaired(findings, first)
  }
}

async function checkCache(t: SinkTargets, cache: CacheSink, repair: boolean, findings: SinkFinding[]): Promise<void> {
  for (const [key, e] of [...cache.entries()]) {
    if (t.unstable(key)) continue
    const stored = await t.backend.get(key)
    if (stored && stored.lsn === e.lsn) continue
    findings.push({ kind: 'cache-stale', sink: cache.name, ...splitIdentity(key), lsnFirst: e.lsn, detail: `cached from LSN ${e.lsn}, backend has ${stored ? `LSN ${stored.lsn}` : 'nothing'}`, action: repair ? 'repaired' : 'none' })
    if (repair) cache.invalidate(key)
  }
}

function markRepaired(findings: SinkFinding[], from: number): void {
  for (let i = from; i < findings.length; i++) {
    const f = findings[i] as SinkFinding
    findings[i] = { ...f, action: 'repaired' }
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

/** The row the log says an identity should hold: `op` is its latest version `v`, read back. */
function entryOf(op: PutOp, v: LatestVersion, createdAt = v.updatedAt): StoredEntry {
  return { value: op.value, ...splitIdentity(opIdentity(op)), lsn: v.lsn, createdAt, updatedAt: v.updatedAt, ...(op.tags ? { tags: op.tags } : {}), ...(op.expiresAt !== undefined ? { expiresAt: op.expiresAt } : {}) }
}
