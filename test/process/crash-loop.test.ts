/**
 * Real processes, real disk: a writer process under load, with a flaky
 * backend (outages, transient failures, calls that outlive the apply
 * timeout), is killed with SIGKILL again and again (MEMWAL_CRASH_LOOP_KILLS,
 * default 60; the documented run is 200), a quarter of the time while it is
 * opening the data directory (recovery), otherwise 10-150 ms after it is
 * ready. The child is the kill child's `engine` profile `flaky-backend`
 * (test/process/children/engine-writer.ts); the rounds are run by
 * test/process/kill-loop.ts, and the reopen, G3, ONCE and index checks are
 * shared with engine-kill9 (test/process/engine-checks.ts).
 *
 * After every kill this process, before touching the directory, reads the log
 * with dumpLog (read only), then reopens MemWAL with a healthy backend,
 * flushes, and checks every acknowledged write of the whole run:
 *   G1      every LSN acknowledged in the round is in the log holding exactly
 *           the ops acknowledged (or was purged after both durable sinks had
 *           it), the log has no gap, and the engine reopens at its end;
 *   ORIGIN  every other record of the round is a write that was in flight at
 *           the kill, each at most once;
 *   STATE   the backend holds exactly what the acknowledged and surfaced
 *           writes of every round leave, key by key (value, namespace, tags,
 *           LSN), and getEntry agrees for every key the round touched: most
 *           writes have keys of their own, so every acknowledged write of the
 *           run is checked after every kill, not only the latest versions;
 *   ONCE    the backend reopens at or past every apply the child saw return,
 *           and this process applies each LSN past that checkpoint exactly
 *           once, never one applied in an earlier round;
 *   G3      after flush every sink's checkpoint is the log's end, and the
 *           index answers each namespace and tag with exactly the backend's keys;
 *   MODES   the data directory, wal/ and store/ are 0700, the log's files 0600.
 *
 * MEMWAL_SEED replays a run's choices (child seeds, kill moments); the kill
 * timing itself is the operating system's.
 */
import { randomInt } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { dumpLog, type Entry, type StoredEntry } from '../../engine/index.js'
import { nsOption } from '../support/identity-view.js'
import { type Op } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'
import { ENGINE_CHILD_NAMESPACES, ENGINE_PROFILES, ownKeyWrite } from './children/engine-writer.js'
import { brief, checkAppliedOnce, checkIndexAgrees, entryIs, entryOf, reopenAndDrain, sameOps, versionOf, type Version } from './engine-checks.js'
import { killLoop, type Round } from './kill-loop.js'

const KILLS = Number(process.env['MEMWAL_CRASH_LOOP_KILLS'] ?? 30)
const SEED = Number(process.env['MEMWAL_SEED'] ?? randomInt(0, 2 ** 31))
const DELETABLE_MAX = 200
/** Violations reported in full before the run stops. */
const REPORTED_MAX = 5
const PROFILE = ENGINE_PROFILES['flaky-backend']
/** The checker's backend is healthy: its calls get a generous timeout (the child's 60 ms is for its flaky one). */
const CHECK_OPTIONS = { ...PROFILE.options, resilience: { ...PROFILE.options.resilience, applyTimeoutMs: 30_000 } }

const mode = (p: string): number => fs.statSync(p).mode & 0o777

t.test(`crash loop: a writer under load with a flaky backend, killed ${KILLS} times; every acknowledged write checked after each kill (seed ${SEED})`, async (t) => {
  t.comment(`MEMWAL_SEED=${SEED} MEMWAL_CRASH_LOOP_KILLS=${KILLS}`)
  const root = tmpDir(t, 'memwal-crash-loop-')
  const dir = path.join(root, 'data')
  const deletableFile = path.join(root, 'deletable.json')
  /** The verified state after the last round: every key ever written. */
  let state = new Map<string, Version>()
  let prevLast = 0
  const appliedEver = new Set<number>()
  /** The keys each round's child was told it may delete. */
  let deletable: string[] = []
  let whileOpening = 0
  const totals = { batches: 0, inFlight: 0, surfaced: 0, purgedBeforeCheck: 0, replayed: 0, keysChecked: 0, segmentsSeen: new Set<string>() }
  let violations = 0

  const check = async (r: Round): Promise<number | undefined> => {
    const { round, childSeed, acks } = r
    const violation = (msg: string): void => {
      violations++
      if (violations <= REPORTED_MAX) t.fail(`round ${round}: ${msg}`)
    }

    // ---- read the log as the kill left it (read only), before anything opens it ----
    const logged = new Map<number, Op[]>()
    // (A kill before the first open made wal/ leaves nothing to read.)
    if (fs.existsSync(path.join(dir, 'wal'))) for await (const d of dumpLog({ dir, fromLsn: prevLast + 1 })) if (d.kind === 'record') logged.set(d.lsn, d.record.type === 3 ? [...d.record.ops] : [d.record.op])

    // ---- reopen here with a healthy backend, counting what it applies ----
    const observed = new Map<string, StoredEntry>()
    const throughEngine = new Map<string, Entry | undefined>()
    const ops = new Map<number, Op[]>() // LSN -> ops of the round, acknowledged or surfaced
    const re = await reopenAndDrain(dir, CHECK_OPTIONS, violation, async (engine, backend, { lastLsn, durableAtOpen }) => {
      // ---- G1 and ORIGIN: the round's records, from the log and the acknowledgements ----
      const maxLogged = Math.max(prevLast, ...logged.keys())
      for (let lsn = prevLast + 1; lsn <= maxLogged; lsn++) if (!logged.has(lsn) && lsn > durableAtOpen) violation(`G1: the log has a gap at LSN ${lsn}`)
      // Records past the last one read can be missing only if retention purged them, every durable sink having them.
      if (lastLsn < maxLogged || (lastLsn > maxLogged && lastLsn > durableAtOpen)) violation(`the engine reopened at LSN ${lastLsn}, the log read before ends at ${maxLogged}`)
      const unacked = new Map<number, Op[]>()
      for (let c = 0; c < r.issued; c++) if (!acks.has(c)) unacked.set(c, ownKeyWrite(childSeed, c, deletable))
      totals.inFlight += unacked.size
      for (const [c, lsn] of acks) {
        const want = ownKeyWrite(childSeed, c, deletable)
        const got = logged.get(lsn)
        if (got && !sameOps(got, want)) violation(`G1: LSN ${lsn} holds ${brief(got)}, acknowledged for write ${c}: ${brief(want)}`)
        if (!got) {
          if (lsn > durableAtOpen) violation(`G1: acknowledged LSN ${lsn} (write ${c}) is not in the log, and the durable checkpoint is ${durableAtOpen}`)
          totals.purgedBeforeCheck++
        }
        ops.set(lsn, want)
      }
      for (const [lsn, got] of logged) {
        if (ops.has(lsn)) continue
        const hit = [...unacked].find(([, w]) => sameOps(w, got))
        if (!hit) {
          violation(`ORIGIN: LSN ${lsn} holds ${brief(got)}, which no write in flight at the kill wrote`)
          continue
        }
        unacked.delete(hit[0])
        totals.surfaced++
        ops.set(lsn, got)
      }
      totals.batches += [...ops.values()].filter((o) => o.length > 1).length

      // ---- what the backend and the engine hold now ----
      for await (const [, e] of backend.entries()) observed.set(e.key, e)
      const touched = new Set<string>()
      for (const o of ops.values()) for (const op of o) touched.add(op.key)
      for (const k of touched) throughEngine.set(k, await engine.getEntry(k, nsOption(k, ENGINE_CHILD_NAMESPACES)))
    })
    totals.segmentsSeen.add(re.activeSegment)

    // ---- ONCE ----
    checkAppliedOnce(re, r.childApplied, prevLast, appliedEver, violation)
    totals.replayed += re.applied.length

    // ---- STATE: every acknowledged write of the run ----
    const next = new Map(state)
    for (const [lsn, o] of [...ops].sort((x, y) => x[0] - y[0])) for (const op of o) next.set(op.key, versionOf(op, lsn))
    for (const k of new Set([...next.keys(), ...observed.keys()])) {
      if (!entryIs(observed.get(k), next.get(k))) violation(`STATE: the backend holds ${k} = ${brief(observed.get(k))}, the acknowledged writes leave ${brief(entryOf(next.get(k)))}`)
    }
    for (const [k, got] of throughEngine) if (!entryIs(got, next.get(k))) violation(`STATE: getEntry(${k}) = ${brief(got)}, the acknowledged writes leave ${brief(entryOf(next.get(k)))}`)
    totals.keysChecked += next.size

    // ---- G3: the index agrees with the backend ----
    checkIndexAgrees(re, observed, violation)

    // ---- MODES ----
    for (const d of [dir, path.join(dir, 'wal'), path.join(dir, 'store')]) if (mode(d) !== 0o700) violation(`${d} has mode ${mode(d).toString(8)}, not 700`)
    for (const f of fs.readdirSync(path.join(dir, 'wal'))) if (mode(path.join(dir, 'wal', f)) !== 0o600) violation(`wal/${f} has mode ${mode(path.join(dir, 'wal', f)).toString(8)}, not 600`)

    state = next
    prevLast = re.lastLsn
    return violations === 0 ? re.lastLsn : undefined
  }

  const run = await killLoop(t, {
    kills: KILLS,
    seed: SEED,
    args: (childSeed, _round, rng) => {
      const present = [...state].filter(([k, v]) => v.present && k.startsWith('u/')).map(([k]) => k)
      deletable = []
      for (let i = 0; i < Math.min(DELETABLE_MAX, present.length); i++) deletable.push(present[rng.below(present.length)] as string)
      fs.writeFileSync(deletableFile, JSON.stringify(deletable))
      return ['engine', dir, String(childSeed), 'flaky-backend', deletableFile]
    },
    killMoment: (rng) => {
      if (rng.chance(0.25)) {
        whileOpening++
        return { after: 'opening', delayMs: rng.below(31) }
      }
      return { after: 'ready', delayMs: 10 + rng.below(141) }
    },
    check,
  })

  t.equal(violations, 0, 'no violation in any round')
  t.equal(run.kills, KILLS, 'every round ended in a SIGKILL')
  t.ok(run.acks > KILLS, 'the children acknowledged writes')
  t.ok(run.killsBeforeReady > 0 || KILLS < 20, 'some kills landed while the child was opening (recovery)')
  t.ok(totals.batches > 0, 'batches were written')
  const live = [...state.values()].filter((v) => v.present).length
  t.comment(`kills: ${run.kills} (${whileOpening} aimed at the open, ${run.killsBeforeReady} before it resolved), acknowledged writes: ${run.acks} (batches among the round records: ${totals.batches}), log LSNs: ${prevLast}, keys checked after each kill (sum): ${totals.keysChecked}, live keys at the end: ${live}/${state.size}`)
  t.comment(`writes in flight at a kill: ${totals.inFlight}, of which found in the log: ${totals.surfaced}; acknowledged records purged (applied by both durable sinks) before the check: ${totals.purgedBeforeCheck}; records replayed into the backend on reopen: ${totals.replayed}; highest apply the children saw: ${run.childApplied}; active segments seen: ${totals.segmentsSeen.size}`)
})
