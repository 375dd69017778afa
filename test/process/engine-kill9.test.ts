/**
 * G1 and G3 of the whole engine against real processes, a real directory and
 * LevelDB: a child (test/support/engine-child.ts) runs MemWAL with a backend
 * that goes down and comes back on a seeded schedule, writing puts, deletes
 * and batches, and is SIGKILLed 20-200 ms after it opened. After every kill
 * this process reopens MemWAL with a healthy backend, flushes, and checks
 * against a model built from every acknowledgement so far:
 *
 *   G1   every acknowledged write's effect is visible through getEntry
 *        (value, namespace, tags, LSN), unless a later write replaced it;
 *   ATOM each batch is all or nothing: a batch whose effect shows on one key
 *        shows on every key it touched (or a later write replaced it there);
 *   ONCE no LSN is applied to the backend twice: the backend opens with a
 *        checkpoint at or past every apply the child saw resolve, and this
 *        process applies each LSN past that checkpoint exactly once, never
 *        one already applied in an earlier round;
 *   G3   after flush every sink's checkpoint is the log's last LSN, and the
 *        index answers each namespace and tag query with exactly the keys the
 *        backend holds under it.
 *
 * A write that was in flight at the kill has an unknown outcome: it may be in
 * the log. Such a write is recognised by the (seed, counter, op) its values
 * carry, must hold a LSN no acknowledged write holds, above the key's last
 * acknowledged one, and the number of them is bounded by the LSNs the log
 * holds beyond the acknowledged ones.
 *
 * MEMWAL_KILLS sets the number of kills (default 30); MEMWAL_SEED replays a
 * run's choices of child seeds and kill delays (the kill timing itself is the
 * operating system's).
 */
import { randomInt } from 'node:crypto'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import { MemWAL, SeededRandom, type Op, type Sink, type StoredEntry } from '../../engine/index.js'
import { tmpDir } from '../support/tmp-dir.js'
import {
  ENGINE_CHILD_KEYS, ENGINE_CHILD_NAMESPACES, ENGINE_CHILD_TAGS, engineChildOptions, keyOf, spawnEngineChild, writeFor,
  type ChildValue, type EngineChild,
} from '../support/engine-child.js'

const KILLS = Number(process.env['MEMWAL_KILLS'] ?? 30)
const SEED = Number(process.env['MEMWAL_SEED'] ?? randomInt(0, 2 ** 31))
/** Kill delay after `ready`, ms. */
const DELAY_MS_MIN = 20
const DELAY_MS_MAX = 200
const FLUSH_TIMEOUT_MS = 60_000
const KEYS = Array.from({ length: ENGINE_CHILD_KEYS }, (_, i) => keyOf(i))

interface Version {
  readonly present: boolean
  readonly lsn: number
  readonly value?: unknown
  readonly namespace?: string
  readonly tags?: readonly string[]
}

interface Ack {
  readonly lsn: number
  readonly ops: Op[]
}

/** A write of the last burst that no acknowledgement covers: in the log or not. */
interface Candidate {
  readonly counter: number
  readonly ops: Op[]
  /** LSN it was found under, once a value of it was seen. */
  lsn?: number
}

interface Totals {
  kills: number
  acks: number
  batchesAcked: number
  outagesSeen: number
  childApplied: number
  replayed: number[]
  surfaced: number
  absentByUnacked: number
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Last op on `key` in a record's ops (ops apply in order; the last wins). */
function lastOpOn(ops: readonly Op[], key: string): { op: Op; index: number } | undefined {
  for (let i = ops.length - 1; i >= 0; i--) if (ops[i]?.key === key) return { op: ops[i] as Op, index: i }
  return undefined
}

/**
 * How few in-flight writes, beyond those already seen in the log, must also be
 * there for their deletes to explain every key in `absent` (an exact search:
 * at most one burst of candidates).
 */
function fewestDeleters(candidates: readonly Candidate[], absent: readonly string[]): number {
  const deletes = (c: Candidate, k: string): boolean => lastOpOn(c.ops, k)?.op.type === 'del'
  const need = absent.filter((k) => !candidates.some((c) => c.lsn !== undefined && deletes(c, k)))
  const others = candidates.filter((c) => c.lsn === undefined)
  let best = need.length === 0 ? 0 : Infinity
  for (let mask = 1; mask < 1 << others.length && need.length > 0; mask++) {
    const chosen = others.filter((_, i) => (mask >> i) & 1)
    if (chosen.length < best && need.every((k) => chosen.some((c) => deletes(c, k)))) best = chosen.length
  }
  return best
}

function versionOf(op: Op, lsn: number): Version {
  if (op.type === 'del') return { present: false, lsn }
  return { present: true, lsn, value: op.value, ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: [...new Set(op.tags)] } : {}) }
}

function sameAs(e: StoredEntry | undefined, v: Version | undefined): boolean {
  if (!e) return !v?.present
  if (!v?.present) return false
  const plain = (x: unknown): unknown => JSON.parse(JSON.stringify(x ?? null))
  return e.lsn === v.lsn && isDeepStrictEqual(plain(e.value), plain(v.value)) && e.namespace === v.namespace && isDeepStrictEqual(plain(e.tags), plain(v.tags))
}

function brief(x: unknown): string {
  const s = JSON.stringify(x, (_k, v: unknown) => (typeof v === 'string' && v.length > 8 ? `${v.slice(0, 3)}…(${v.length})` : v))
  return s === undefined ? 'undefined' : s.slice(0, 400)
}

t.test(`kill -9 the engine ${KILLS} times during backend outages: acknowledged writes converge exactly once (seed ${SEED})`, async (t) => {
  t.comment(`MEMWAL_SEED=${SEED} MEMWAL_KILLS=${KILLS}`)
  const dir = path.join(tmpDir(t, 'memwal-engine-kill9-'), 'data')
  const rng = new SeededRandom(SEED)
  const totals: Totals = { kills: 0, acks: 0, batchesAcked: 0, outagesSeen: 0, childApplied: 0, replayed: [], surfaced: 0, absentByUnacked: 0 }
  let child: EngineChild | undefined
  t.teardown(() => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL')
  })
  /** The state verified after the last round (key -> version); the log's last LSN then; the backend checkpoint then. */
  let base = new Map<string, Version>()
  let prevLast = 0
  let prevCheckpoint = 0
  /** Every LSN this process applied to the backend, over all rounds. */
  const appliedEver = new Set<number>()
  const seeds = new Set<number>()

  for (let round = 0; round < KILLS; round++) {
    let childSeed = rng.nextU32()
    while (seeds.has(childSeed)) childSeed = rng.nextU32()
    seeds.add(childSeed)
    const delayMs = DELAY_MS_MIN + rng.below(DELAY_MS_MAX - DELAY_MS_MIN + 1)

    // ---- run the child and kill it ----
    const acks: Ack[] = []
    const bad: string[] = []
    let readyLast: number | undefined
    let lastBurst: { first: number; n: number } | undefined
    let childApplied = 0
    let onReady = (): void => undefined
    const ready = new Promise<void>((resolve) => (onReady = resolve))
    child = spawnEngineChild(dir, childSeed, (line) => {
      const sp = line.indexOf(' ')
      const word = sp < 0 ? line : line.slice(0, sp)
      const rest = sp < 0 ? '' : line.slice(sp + 1)
      if (word === 'ack') {
        const sp2 = rest.indexOf(' ')
        acks.push({ lsn: Number(rest.slice(0, sp2)), ops: JSON.parse(rest.slice(sp2 + 1)) as Op[] })
      } else if (word === 'burst') {
        const [first, n] = rest.split(' ').map(Number)
        lastBurst = { first: first ?? 0, n: n ?? 0 }
      } else if (word === 'applied') childApplied = Math.max(childApplied, Number(rest))
      else if (word === 'outage') totals.outagesSeen += rest === 'on' ? 1 : 0
      else if (word === 'ready') {
        readyLast = Number(rest.split(' ')[1])
        onReady()
      } else bad.push(line)
    })
    await Promise.race([ready, child.ended])
    if (readyLast === undefined) {
      t.fail(`round ${round}: the child ended before ready: ${bad.join(' | ')} ${child.stderr().slice(0, 2000)}`)
      break
    }
    await sleep(delayMs)
    child.proc.kill('SIGKILL')
    const end = await child.ended
    totals.kills++
    if (end.signal !== 'SIGKILL') {
      t.fail(`round ${round}: the child ended by itself (${String(end.code)}): ${bad.join(' | ')} ${child.stderr().slice(0, 2000)}`)
      break
    }
    if (bad.length > 0) t.fail(`round ${round}: unexpected child output: ${bad.slice(0, 3).join(' | ').slice(0, 2000)}`)
    if (readyLast !== prevLast) t.fail(`round ${round}: the child opened a log ending at ${readyLast}, the last round left it at ${prevLast}`)
    totals.acks += acks.length
    totals.batchesAcked += acks.filter((a) => a.ops.length > 1).length
    totals.childApplied = Math.max(totals.childApplied, childApplied)

    // ---- reopen here with a healthy backend, counting what it applies ----
    const session = { openCheckpoint: -1, applied: [] as number[] }
    const wrapSink = <S extends Sink>(sink: S): S => {
      if (sink.name !== 'backend') return sink
      const open = sink.open.bind(sink)
      sink.open = async () => {
        session.openCheckpoint = await open()
        return session.openCheckpoint
      }
      const apply = sink.apply.bind(sink)
      sink.apply = async (batch, signal) => {
        const before = sink.checkpoint
        await apply(batch, signal)
        for (const r of batch.records) if (r.lsn > before) session.applied.push(r.lsn)
      }
      return sink
    }
    const engine = await MemWAL.open({ ...engineChildOptions, dir, wrapSink })
    const observed = new Map<string, StoredEntry | undefined>()
    const queried = new Map<string, string[]>()
    let lastLsn: number
    try {
      lastLsn = engine.health().wal.lastLsn
      await engine.flush({ timeoutMs: FLUSH_TIMEOUT_MS })
      const h = engine.health()
      if (h.wal.lastLsn !== lastLsn) t.fail(`round ${round}: the log grew from ${lastLsn} to ${h.wal.lastLsn} during recovery and flush, with no writes`)
      for (const name of ['backend', 'index', 'cache']) {
        if (h.sinks[name]?.checkpoint !== lastLsn) t.fail(`round ${round}: G3: after flush the ${name} checkpoint is ${String(h.sinks[name]?.checkpoint)}, the log's last LSN ${lastLsn}`)
      }
      if (h.backlog.records !== 0) t.fail(`round ${round}: after flush the backlog still holds ${h.backlog.records} records`)
      for (const k of KEYS) observed.set(k, await engine.getEntry(k))
      for (const ns of ENGINE_CHILD_NAMESPACES) {
        const keys: string[] = []
        for await (const r of engine.query({ namespace: ns, limit: 100_000 })) keys.push(r.key)
        queried.set(`ns:${ns}`, keys)
      }
      for (const tag of ENGINE_CHILD_TAGS) {
        const keys: string[] = []
        for await (const r of engine.query({ tag, limit: 100_000 })) keys.push(r.key)
        queried.set(`tag:${tag}`, keys)
      }
    } finally {
      await engine.close()
    }

    // ---- ONCE: what the backend applied, and when ----
    const cp = session.openCheckpoint
    if (cp < childApplied) t.fail(`round ${round}: ONCE: the backend reopened at checkpoint ${cp}, but the child saw an apply through ${childApplied} resolve: those LSNs would be applied twice`)
    if (cp < prevCheckpoint) t.fail(`round ${round}: ONCE: the backend checkpoint went back from ${prevCheckpoint} to ${cp}`)
    const dup = session.applied.filter((lsn, i) => session.applied.indexOf(lsn) !== i || appliedEver.has(lsn))
    const stale = session.applied.filter((lsn) => lsn <= cp)
    if (dup.length > 0) t.fail(`round ${round}: ONCE: LSNs applied twice: ${dup.slice(0, 10).join(' ')}`)
    if (stale.length > 0) t.fail(`round ${round}: ONCE: LSNs at or below the checkpoint ${cp} applied again: ${stale.slice(0, 10).join(' ')}`)
    if (session.applied.length !== lastLsn - cp) t.fail(`round ${round}: the recovery applied ${session.applied.length} records to the backend, the log holds ${lastLsn - cp} past its checkpoint ${cp}`)
    for (const lsn of session.applied) appliedEver.add(lsn)
    totals.replayed.push(session.applied.length)
    prevCheckpoint = lastLsn

    // ---- G1: acknowledged LSNs are in the log; each acknowledgement is a write the child issued ----
    const maxAck = Math.max(0, ...acks.map((a) => a.lsn))
    if (maxAck > lastLsn) t.fail(`round ${round}: G1: LSN ${maxAck} was acknowledged, the log ends at ${lastLsn}`)
    if (lastLsn < prevLast) t.fail(`round ${round}: the log shrank from ${prevLast} to ${lastLsn}`)
    const ackedLsns = new Set(acks.map((a) => a.lsn))
    if (ackedLsns.size !== acks.length) t.fail(`round ${round}: an LSN was acknowledged twice`)
    const issued = new Map<number, Op[]>()
    const issuedCount = lastBurst ? lastBurst.first + lastBurst.n : 0
    for (let c = 0; c < issuedCount; c++) issued.set(c, writeFor(childSeed, c))
    const norm = (ops: Op[]): unknown => JSON.parse(JSON.stringify(ops))
    for (const a of acks) {
      // Acks print as writes resolve; search forward for an unacknowledged write with those ops (identical writes are interchangeable).
      const put = a.ops.find((o) => o.type === 'put')
      const c = put ? (put.value as ChildValue).c : [...issued.keys()].find((k) => isDeepStrictEqual(norm(issued.get(k) ?? []), norm(a.ops)))
      if (c === undefined || !isDeepStrictEqual(norm(issued.get(c) ?? []), norm(a.ops))) {
        t.fail(`round ${round}: LSN ${a.lsn} was acknowledged for ops the child never issued: ${brief(a.ops)}`)
        continue
      }
      issued.delete(c)
    }
    const candidates: Candidate[] = []
    for (const [c, ops] of issued) {
      if (!lastBurst || c < lastBurst.first) t.fail(`round ${round}: write ${c} of a completed burst was never acknowledged`)
      else candidates.push({ counter: c, ops })
    }
    const budget = lastLsn - prevLast - acks.length
    if (budget < 0 || budget > candidates.length) t.fail(`round ${round}: the log holds ${lastLsn - prevLast} new records for ${acks.length} acknowledged and ${candidates.length} in-flight writes`)

    // ---- the model: the last round's verified state plus this round's acknowledged writes, by LSN ----
    const model = new Map(base)
    for (const a of [...acks].sort((x, y) => x.lsn - y.lsn)) for (const op of a.ops) model.set(op.key, versionOf(op, a.lsn))

    // ---- G1 per key: the model's version, or a newer one an in-flight write explains ----
    let wrong = 0
    const report = (msg: string): void => {
      if (wrong++ < 5) t.fail(`round ${round}: ${msg}`)
    }
    const next = new Map<string, Version>()
    const absent: string[] = []
    for (const k of KEYS) {
      const got = observed.get(k)
      const want = model.get(k)
      if (sameAs(got, want)) {
        next.set(k, want ?? { present: false, lsn: 0 })
        continue
      }
      if (got) {
        const v = got.value as Partial<ChildValue>
        const cand = v.s === childSeed ? candidates.find((c) => c.counter === v.c) : undefined
        const last = cand ? lastOpOn(cand.ops, k) : undefined
        const fits = cand && last && last.index === v.i && got.lsn > prevLast && !ackedLsns.has(got.lsn) && got.lsn > (want?.lsn ?? 0) && sameAs(got, versionOf(last.op, got.lsn))
        if (!fits || !cand) {
          report(`G1: getEntry(${k}) = ${brief(got)}, the acknowledged writes leave ${brief(want)}`)
          continue
        }
        if (cand.lsn !== undefined && cand.lsn !== got.lsn) report(`write ${cand.counter} shows under LSN ${cand.lsn} and ${got.lsn}`)
        cand.lsn = got.lsn
        next.set(k, versionOf(last.op, got.lsn))
        continue
      }
      // Absent where an acknowledged put left a value: only an in-flight delete (later than it) explains that.
      if (!candidates.some((c) => lastOpOn(c.ops, k)?.op.type === 'del')) {
        report(`G1: getEntry(${k}) = undefined, the acknowledged writes leave ${brief(want)}`)
        continue
      }
      absent.push(k)
      totals.absentByUnacked++
      next.set(k, { present: false, lsn: lastLsn })
    }
    const surfaced = candidates.filter((c) => c.lsn !== undefined)
    totals.surfaced += surfaced.length
    // Each in-flight write that shows a value, or whose delete explains an absence, is in the log: one record each beyond the acknowledged ones.
    const inLog = surfaced.length + fewestDeleters(candidates, absent)
    if (inLog > budget) report(`at least ${inLog} in-flight writes must be in the log (${surfaced.length} show a value, the rest explain absences of ${absent.join(',')}), but it holds only ${budget} records beyond the acknowledged ones`)

    // ---- ATOM: a batch that shows anywhere shows everywhere it is not superseded ----
    const batches: { lsn: number; ops: Op[]; what: string }[] = [
      ...acks.filter((a) => a.ops.length > 1).map((a) => ({ lsn: a.lsn, ops: a.ops, what: 'acknowledged batch' })),
      ...surfaced.filter((c) => c.ops.length > 1).map((c) => ({ lsn: c.lsn as number, ops: c.ops, what: `in-flight batch ${c.counter}` })),
    ]
    for (const b of batches) {
      for (const op of b.ops) {
        const got = observed.get(op.key)
        const last = lastOpOn(b.ops, op.key)
        if (last?.op !== op) continue
        if (got && got.lsn < b.lsn) report(`ATOM: ${b.what} at LSN ${b.lsn} is partly visible: ${op.key} shows LSN ${got.lsn}`)
        if (!got && op.type === 'put') {
          const laterDel = acks.some((a) => a.lsn > b.lsn && lastOpOn(a.ops, op.key)?.op.type === 'del') || candidates.some((c) => lastOpOn(c.ops, op.key)?.op.type === 'del')
          if (!laterDel) report(`ATOM: ${b.what} at LSN ${b.lsn} put ${op.key}, which is absent and no later write deleted it`)
        }
      }
    }

    // ---- G3: the index agrees with the backend ----
    for (const [q, keys] of queried) {
      const [kind, label] = q.split(':') as [string, string]
      const want = KEYS.filter((k) => {
        const e = observed.get(k)
        return e !== undefined && (kind === 'ns' ? e.namespace === label : (e.tags ?? []).includes(label))
      })
      if (!isDeepStrictEqual(keys, want)) report(`G3: query ${q} = ${keys.join(',')}, the backend holds ${want.join(',')}`)
    }
    if (wrong > 0) break
    base = next
    prevLast = lastLsn
  }

  t.equal(totals.kills, KILLS, 'every round ended in a kill')
  t.ok(totals.acks > 0 && totals.batchesAcked > 0, 'the children acknowledged writes and batches')
  t.ok(totals.outagesSeen > 0, 'the backend went down during the runs')
  t.ok(prevLast >= totals.acks, 'the log holds at least every acknowledged write')
  const live = [...base.values()].filter((v) => v.present).length
  t.comment(`kills: ${totals.kills}, acknowledged writes: ${totals.acks} (${totals.batchesAcked} batches), log LSNs: ${prevLast}, live keys: ${live}/${KEYS.length}, outages begun: ${totals.outagesSeen}`)
  t.comment(`records replayed into the backend after each reopen: ${totals.replayed.join(' ')} (total ${totals.replayed.reduce((a, b) => a + b, 0)})`)
  t.comment(`in-flight writes found in the log after a kill: ${totals.surfaced}, key absences explained by an in-flight delete: ${totals.absentByUnacked}`)
})
