/**
 * G1 and G3 of the whole engine against real processes, a real directory and
 * LevelDB: a child (the kill child's
 * `engine` profile `outage`, test/process/children/engine-writer.ts) runs MemWAL with a backend
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
 * The rounds are run by test/process/kill-loop.ts; the reopen, G3, ONCE and
 * the index check are shared with crash-loop (test/process/engine-checks.ts).
 *
 * MEMWAL_KILLS sets the number of kills (default 30); MEMWAL_SEED replays a
 * run's choices of child seeds and kill delays (the kill timing itself is the
 * operating system's).
 */
import { randomInt } from 'node:crypto'
import path from 'node:path'
import t from 'tap'
import type { Entry } from '../../engine/index.js'
import { nsOption } from '../support/identity-view.js'
import type { Op } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'
import { ENGINE_CHILD_NAMESPACES, ENGINE_PROFILES, SHARED_KEYS, sharedKey, sharedKeyWrite, type WriteValue } from './children/engine-writer.js'
import { brief, checkAppliedOnce, checkIndexAgrees, entryIs, reopenAndDrain, versionOf, type Version } from './engine-checks.js'
import { killLoop, type Round } from './kill-loop.js'

const KILLS = Number(process.env['MEMWAL_KILLS'] ?? 30)
const SEED = Number(process.env['MEMWAL_SEED'] ?? randomInt(0, 2 ** 31))
/** Kill delay after `ready`, ms. */
const DELAY_MS_MIN = 20
const DELAY_MS_MAX = 200
/** Failures reported per round before the run stops. */
const REPORTED_MAX = 5
const PROFILE = ENGINE_PROFILES.outage
const KEYS = Array.from({ length: SHARED_KEYS }, (_, i) => sharedKey(i))

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

t.test(`kill -9 the engine ${KILLS} times during backend outages: acknowledged writes converge exactly once (seed ${SEED})`, async (t) => {
  t.comment(`MEMWAL_SEED=${SEED} MEMWAL_KILLS=${KILLS}`)
  const dir = path.join(tmpDir(t, 'memwal-engine-kill9-'), 'data')
  const totals = { batchesAcked: 0, replayed: [] as number[], surfaced: 0, absentByUnacked: 0 }
  /** The state verified after the last round (key -> version); the log's last LSN then. */
  let base = new Map<string, Version>()
  let prevLast = 0
  /** Every LSN this process applied to the backend, over all rounds. */
  const appliedEver = new Set<number>()

  const check = async (r: Round): Promise<number | undefined> => {
    const { round, childSeed } = r
    let wrong = 0
    const report = (msg: string): void => {
      if (wrong++ < REPORTED_MAX) t.fail(`round ${round}: ${msg}`)
    }
    const acks: Ack[] = [...r.acks].map(([c, lsn]) => ({ lsn, ops: sharedKeyWrite(childSeed, c) }))
    totals.batchesAcked += acks.filter((a) => a.ops.length > 1).length

    // ---- reopen here with a healthy backend, counting what it applies ----
    const observed = new Map<string, Entry | undefined>()
    const re = await reopenAndDrain(dir, PROFILE.options, report, async (engine) => {
      for (const k of KEYS) observed.set(k, await engine.getEntry(k, nsOption(k, ENGINE_CHILD_NAMESPACES)))
    })
    const lastLsn = re.lastLsn

    // ---- ONCE: what the backend applied, and when ----
    checkAppliedOnce(re, r.childApplied, prevLast, appliedEver, report)
    totals.replayed.push(re.applied.length)

    // ---- G1: acknowledged LSNs are in the log; each acknowledgement is of a write the child issued ----
    const maxAck = Math.max(0, ...acks.map((a) => a.lsn))
    if (maxAck > lastLsn) report(`G1: LSN ${maxAck} was acknowledged, the log ends at ${lastLsn}`)
    if (lastLsn < prevLast) report(`the log shrank from ${prevLast} to ${lastLsn}`)
    const ackedLsns = new Set(acks.map((a) => a.lsn))
    if (ackedLsns.size !== acks.length) report('an LSN was acknowledged twice')
    for (const c of r.acks.keys()) if (c >= r.issued) report(`write ${c} was acknowledged, the child issued only ${r.issued}`)
    const candidates: Candidate[] = []
    for (let c = 0; c < r.issued; c++) {
      if (r.acks.has(c)) continue
      if (!r.lastBurst || c < r.lastBurst.first) report(`write ${c} of a completed burst was never acknowledged`)
      else candidates.push({ counter: c, ops: sharedKeyWrite(childSeed, c) })
    }
    const budget = lastLsn - prevLast - acks.length
    if (budget < 0 || budget > candidates.length) report(`the log holds ${lastLsn - prevLast} new records for ${acks.length} acknowledged and ${candidates.length} in-flight writes`)

    // ---- the model: the last round's verified state plus this round's acknowledged writes, by LSN ----
    const model = new Map(base)
    for (const a of [...acks].sort((x, y) => x.lsn - y.lsn)) for (const op of a.ops) model.set(op.key, versionOf(op, a.lsn))

    // ---- G1 per key: the model's version, or a newer one an in-flight write explains ----
    const next = new Map<string, Version>()
    const absent: string[] = []
    for (const k of KEYS) {
      const got = observed.get(k)
      const want = model.get(k)
      if (entryIs(got, want)) {
        next.set(k, want ?? { present: false, lsn: 0 })
        continue
      }
      if (got) {
        const v = got.value as Partial<WriteValue>
        const cand = v.s === childSeed ? candidates.find((c) => c.counter === v.c) : undefined
        const last = cand ? lastOpOn(cand.ops, k) : undefined
        const fits = cand && last && last.index === v.i && got.version > prevLast && !ackedLsns.has(got.version) && got.version > (want?.lsn ?? 0) && entryIs(got, versionOf(last.op, got.version))
        if (!fits || !cand) {
          report(`G1: getEntry(${k}) = ${brief(got, 400)}, the acknowledged writes leave ${brief(want, 400)}`)
          continue
        }
        if (cand.lsn !== undefined && cand.lsn !== got.version) report(`write ${cand.counter} shows under LSN ${cand.lsn} and ${got.version}`)
        cand.lsn = got.version
        next.set(k, versionOf(last.op, got.version))
        continue
      }
      // Absent where an acknowledged put left a value: only an in-flight delete (later than it) explains that.
      if (!candidates.some((c) => lastOpOn(c.ops, k)?.op.type === 'del')) {
        report(`G1: getEntry(${k}) = undefined, the acknowledged writes leave ${brief(want, 400)}`)
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
        if (got && got.version < b.lsn) report(`ATOM: ${b.what} at LSN ${b.lsn} is partly visible: ${op.key} shows LSN ${got.version}`)
        if (!got && op.type === 'put') {
          const laterDel = acks.some((a) => a.lsn > b.lsn && lastOpOn(a.ops, op.key)?.op.type === 'del') || candidates.some((c) => lastOpOn(c.ops, op.key)?.op.type === 'del')
          if (!laterDel) report(`ATOM: ${b.what} at LSN ${b.lsn} put ${op.key}, which is absent and no later write deleted it`)
        }
      }
    }

    // ---- G3: the index agrees with the backend ----
    checkIndexAgrees(re, observed, report)
    if (wrong > 0) return undefined
    base = next
    prevLast = lastLsn
    return lastLsn
  }

  const run = await killLoop(t, {
    kills: KILLS,
    seed: SEED,
    args: (childSeed) => ['engine', dir, String(childSeed), 'outage', '-'],
    killMoment: (rng) => ({ after: 'ready', delayMs: DELAY_MS_MIN + rng.below(DELAY_MS_MAX - DELAY_MS_MIN + 1) }),
    check,
  })

  t.equal(run.kills, KILLS, 'every round ended in a kill')
  t.ok(run.acks > 0 && totals.batchesAcked > 0, 'the children acknowledged writes and batches')
  t.ok(run.outagesBegun > 0, 'the backend went down during the runs')
  t.ok(prevLast >= run.acks, 'the log holds at least every acknowledged write')
  const live = [...base.values()].filter((v) => v.present).length
  t.comment(`kills: ${run.kills}, acknowledged writes: ${run.acks} (${totals.batchesAcked} batches), log LSNs: ${prevLast}, live keys: ${live}/${KEYS.length}, outages begun: ${run.outagesBegun}, highest apply the children saw: ${run.childApplied}`)
  t.comment(`records replayed into the backend after each reopen: ${totals.replayed.join(' ')} (total ${totals.replayed.reduce((a, b) => a + b, 0)})`)
  t.comment(`in-flight writes found in the log after a kill: ${totals.surfaced}, key absences explained by an in-flight delete: ${totals.absentByUnacked}`)
})
