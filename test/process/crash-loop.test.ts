/**
 * Real processes, real disk: a writer process under load, with a flaky
 * backend (outages, transient failures, calls that outlive the apply
 * timeout), is killed with SIGKILL again and again (MEMWAL_CRASH_LOOP_KILLS,
 * default 60; the documented run is 200), a quarter of the time while it is
 * opening the data directory (recovery), otherwise 10-150 ms after it is
 * ready. See test/support/crash-loop-child.ts for what the child writes.
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
import { spawn, type ChildProcess } from 'node:child_process'
import { randomInt } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import { BackendSink, MemWAL, SeededRandom, dumpLog, type Op, type Sink, type StoredEntry } from '../../engine/index.js'
import { childEnv } from '../support/child-env.js'
import { CRASH_LOOP_CHILD_FILE, CRASH_LOOP_NAMESPACES, CRASH_LOOP_TAGS, crashLoopOptions, crashLoopWrite } from '../support/crash-loop-child.js'
import { tmpDir } from '../support/tmp-dir.js'

const KILLS = Number(process.env['MEMWAL_CRASH_LOOP_KILLS'] ?? 30)
const SEED = Number(process.env['MEMWAL_SEED'] ?? randomInt(0, 2 ** 31))
const WRITES_PER_ROUND = 200
const DELETABLE_MAX = 200
const FLUSH_TIMEOUT_MS = 60_000
/** Violations reported in full before the run stops. */
const REPORTED_MAX = 5

interface Version {
  readonly present: boolean
  readonly lsn: number
  readonly value?: unknown
  readonly namespace?: string
  readonly tags?: readonly string[]
}

const plain = (x: unknown): unknown => (x === undefined ? undefined : JSON.parse(JSON.stringify(x)))
const sameOps = (a: readonly Op[], b: readonly Op[]): boolean => isDeepStrictEqual(plain(a), plain(b))

function versionOf(op: Op, lsn: number): Version {
  if (op.type === 'del') return { present: false, lsn }
  return { present: true, lsn, value: op.value, ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) }
}

function entryOf(v: Version | undefined): StoredEntry | undefined {
  if (!v?.present) return undefined
  return { value: v.value, lsn: v.lsn, ...(v.namespace !== undefined ? { namespace: v.namespace } : {}), ...(v.tags ? { tags: v.tags } : {}) }
}

function brief(x: unknown): string {
  const s = JSON.stringify(x, (_k, v: unknown) => (typeof v === 'string' && v.length > 8 ? `${v.slice(0, 3)}…(${v.length})` : v))
  return s === undefined ? 'undefined' : s.slice(0, 300)
}

const mode = (p: string): number => fs.statSync(p).mode & 0o777

interface Child {
  readonly proc: ChildProcess
  readonly ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr(): string
}

function spawnChild(dir: string, seed: number, deletableFile: string, onLine: (line: string) => void): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CRASH_LOOP_CHILD_FILE, dir, String(seed), deletableFile, String(WRITES_PER_ROUND)], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let partial = ''
  let err = ''
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) onLine(line)
  })
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (err.length < 64 * 1024) err += chunk
  })
  // A line cut short by the kill was never written whole: it is not an event.
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })))
  return { proc, ended, stderr: () => err }
}

t.test(`crash loop: a writer under load with a flaky backend, killed ${KILLS} times; every acknowledged write checked after each kill (seed ${SEED})`, async (t) => {
  t.comment(`MEMWAL_SEED=${SEED} MEMWAL_CRASH_LOOP_KILLS=${KILLS}`)
  const root = tmpDir(t, 'memwal-crash-loop-')
  const dir = path.join(root, 'data')
  const deletableFile = path.join(root, 'deletable.json')
  const rng = new SeededRandom(SEED)
  let child: Child | undefined
  t.teardown(() => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL')
  })
  /** The verified state after the last round: every key ever written. */
  let state = new Map<string, Version>()
  let prevLast = 0
  const appliedEver = new Set<number>()
  const totals = { kills: 0, killsWhileOpening: 0, acks: 0, batches: 0, inFlight: 0, surfaced: 0, purgedBeforeCheck: 0, replayed: 0, keysChecked: 0, childApplied: 0, segmentsSeen: new Set<string>() }
  let violations = 0
  const violation = (round: number, msg: string): void => {
    violations++
    if (violations <= REPORTED_MAX) t.fail(`round ${round}: ${msg}`)
  }

  for (let round = 0; round < KILLS && violations === 0; round++) {
    const childSeed = rng.nextU32()
    const whileOpening = rng.chance(0.25)
    const delayMs = whileOpening ? rng.below(31) : 10 + rng.below(141)
    const present = [...state].filter(([k, v]) => v.present && k.startsWith('u/')).map(([k]) => k)
    const deletable: string[] = []
    for (let i = 0; i < Math.min(DELETABLE_MAX, present.length); i++) deletable.push(present[rng.below(present.length)] as string)
    fs.writeFileSync(deletableFile, JSON.stringify(deletable))

    // ---- run the child, kill it ----
    const acks = new Map<number, number>() // counter -> LSN
    const bad: string[] = []
    let issued = 0
    let childApplied = 0
    let readyLast: number | undefined
    let onMark = (): void => undefined
    const mark = new Promise<void>((resolve) => (onMark = resolve))
    child = spawnChild(dir, childSeed, deletableFile, (line) => {
      const [word, a, b] = line.split(' ')
      if (word === 'ack') acks.set(Number(b), Number(a))
      else if (word === 'burst') issued = Number(a) + Number(b)
      else if (word === 'applied') childApplied = Math.max(childApplied, Number(a))
      else if (word === 'opening') {
        if (whileOpening) onMark()
      } else if (word === 'ready') {
        readyLast = Number(b)
        if (!whileOpening) onMark()
      } else bad.push(line)
    })
    await Promise.race([mark, child.ended])
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    child.proc.kill('SIGKILL')
    const end = await child.ended
    totals.kills++
    if (end.signal !== 'SIGKILL') {
      violation(round, `the child ended by itself (${String(end.code)}): ${bad.join(' | ')} ${child.stderr().slice(0, 2000)}`)
      break
    }
    if (bad.length > 0) violation(round, `unexpected child output: ${bad.slice(0, 3).join(' | ').slice(0, 1000)}`)
    if (readyLast === undefined) totals.killsWhileOpening++
    else if (readyLast !== prevLast) violation(round, `the child opened the log at ${readyLast}, the last round left it at ${prevLast}`)
    totals.acks += acks.size
    totals.childApplied = Math.max(totals.childApplied, childApplied)

    // ---- read the log as the kill left it (read only), before anything opens it ----
    const logged = new Map<number, Op[]>()
    // (A kill before the first open made wal/ leaves nothing to read.)
    if (fs.existsSync(path.join(dir, 'wal'))) for await (const d of dumpLog({ dir, fromLsn: prevLast + 1 })) if (d.kind === 'record') logged.set(d.lsn, d.record.type === 3 ? [...d.record.ops] : [d.record.op])

    // ---- reopen here with a healthy backend, counting what it applies ----
    const session = { openCheckpoint: -1, applied: [] as number[], backend: undefined as BackendSink | undefined }
    const wrapSink = <S extends Sink>(sink: S): S => {
      if (!(sink instanceof BackendSink)) return sink
      session.backend = sink
      const open = sink.open.bind(sink)
      sink.open = async () => (session.openCheckpoint = await open())
      const apply = sink.apply.bind(sink)
      sink.apply = async (batch, signal) => {
        const before = sink.checkpoint
        await apply(batch, signal)
        for (const r of batch.records) if (r.lsn > before) session.applied.push(r.lsn)
      }
      return sink
    }
    // The checker's backend is healthy: its calls get a generous timeout (the child's 60 ms is for its flaky one).
    const engine = await MemWAL.open({ ...crashLoopOptions, resilience: { ...crashLoopOptions.resilience, applyTimeoutMs: 30_000 }, dir, wrapSink })
    let lastLsn = 0
    let durableAtOpen = 0
    const observed = new Map<string, StoredEntry>()
    const throughEngine = new Map<string, StoredEntry | undefined>()
    const queried = new Map<string, string[]>()
    const ops = new Map<number, Op[]>() // LSN -> ops of the round, acknowledged or surfaced
    try {
      const h0 = engine.health()
      lastLsn = h0.wal.lastLsn
      durableAtOpen = Math.min(h0.sinks['backend']?.checkpoint ?? 0, h0.sinks['index']?.checkpoint ?? 0)
      totals.segmentsSeen.add(h0.wal.activeSegment)
      await engine.flush({ timeoutMs: FLUSH_TIMEOUT_MS })
      const h = engine.health()
      for (const name of ['backend', 'index', 'cache']) if (h.sinks[name]?.checkpoint !== lastLsn) violation(round, `G3: after flush the ${name} checkpoint is ${String(h.sinks[name]?.checkpoint)}, the log's end ${lastLsn}`)
      if (h.wal.lastLsn !== lastLsn) violation(round, `the log grew from ${lastLsn} to ${h.wal.lastLsn} with no writes`)

      // ---- G1 and ORIGIN: the round's records, from the log and the acknowledgements ----
      const maxLogged = Math.max(prevLast, ...logged.keys())
      for (let lsn = prevLast + 1; lsn <= maxLogged; lsn++) if (!logged.has(lsn) && lsn > durableAtOpen) violation(round, `G1: the log has a gap at LSN ${lsn}`)
      // Records past the last one read can be missing only if retention purged them, every durable sink having them.
      if (lastLsn < maxLogged || (lastLsn > maxLogged && lastLsn > durableAtOpen)) violation(round, `the engine reopened at LSN ${lastLsn}, the log read before ends at ${maxLogged}`)
      const unacked = new Map<number, Op[]>()
      for (let c = 0; c < issued; c++) if (!acks.has(c)) unacked.set(c, crashLoopWrite(childSeed, c, deletable))
      totals.inFlight += unacked.size
      for (const [c, lsn] of acks) {
        const want = crashLoopWrite(childSeed, c, deletable)
        const got = logged.get(lsn)
        if (got && !sameOps(got, want)) violation(round, `G1: LSN ${lsn} holds ${brief(got)}, acknowledged for write ${c}: ${brief(want)}`)
        if (!got) {
          if (lsn > durableAtOpen) violation(round, `G1: acknowledged LSN ${lsn} (write ${c}) is not in the log, and the durable checkpoint is ${durableAtOpen}`)
          totals.purgedBeforeCheck++
        }
        ops.set(lsn, want)
      }
      for (const [lsn, got] of logged) {
        if (ops.has(lsn)) continue
        const hit = [...unacked].find(([, w]) => sameOps(w, got))
        if (!hit) {
          violation(round, `ORIGIN: LSN ${lsn} holds ${brief(got)}, which no write in flight at the kill wrote`)
          continue
        }
        unacked.delete(hit[0])
        totals.surfaced++
        ops.set(lsn, got)
      }
      totals.batches += [...ops.values()].filter((o) => o.length > 1).length

      // ---- what the backend and the engine hold now ----
      const backend = session.backend
      if (!backend) throw new Error('the backend sink was never wrapped')
      for await (const [k, e] of backend.entries()) observed.set(k, e)
      const touched = new Set<string>()
      for (const o of ops.values()) for (const op of o) touched.add(op.key)
      for (const k of touched) throughEngine.set(k, await engine.getEntry(k))
      for (const ns of CRASH_LOOP_NAMESPACES) {
        const keys: string[] = []
        for await (const r of engine.query({ namespace: ns, limit: 100_000 })) keys.push(r.key)
        queried.set(`namespace ${ns}`, keys)
      }
      for (const tag of CRASH_LOOP_TAGS) {
        const keys: string[] = []
        for await (const r of engine.query({ tag, limit: 100_000 })) keys.push(r.key)
        queried.set(`tag ${tag}`, keys)
      }
    } finally {
      await engine.close()
    }

    // ---- ONCE ----
    const cp = session.openCheckpoint
    if (cp < childApplied) violation(round, `ONCE: the backend reopened at checkpoint ${cp}, but the child saw an apply through ${childApplied} return`)
    const dup = session.applied.filter((lsn, i) => session.applied.indexOf(lsn) !== i || appliedEver.has(lsn) || lsn <= cp)
    if (dup.length > 0) violation(round, `ONCE: LSNs applied again: ${dup.slice(0, 10).join(' ')}`)
    if (session.applied.length !== lastLsn - cp) violation(round, `ONCE: ${session.applied.length} records applied to the backend on reopen, the log holds ${lastLsn - cp} past its checkpoint ${cp}`)
    for (const lsn of session.applied) appliedEver.add(lsn)
    totals.replayed += session.applied.length

    // ---- STATE: every acknowledged write of the run ----
    const next = new Map(state)
    for (const [lsn, o] of [...ops].sort((x, y) => x[0] - y[0])) for (const op of o) next.set(op.key, versionOf(op, lsn))
    for (const k of new Set([...next.keys(), ...observed.keys()])) {
      const want = entryOf(next.get(k))
      if (!isDeepStrictEqual(plain(observed.get(k)), plain(want))) violation(round, `STATE: the backend holds ${k} = ${brief(observed.get(k))}, the acknowledged writes leave ${brief(want)}`)
    }
    for (const [k, got] of throughEngine) if (!isDeepStrictEqual(plain(got), plain(entryOf(next.get(k))))) violation(round, `STATE: getEntry(${k}) = ${brief(got)}, the acknowledged writes leave ${brief(entryOf(next.get(k)))}`)
    totals.keysChecked += next.size

    // ---- G3: the index agrees with the backend ----
    for (const [q, keys] of queried) {
      const [kind, label] = q.split(' ') as [string, string]
      const want = [...observed].filter(([, e]) => (kind === 'namespace' ? e.namespace === label : (e.tags ?? []).includes(label))).map(([k]) => k).sort()
      if (!isDeepStrictEqual(keys, want)) violation(round, `G3: query ${q} gives ${keys.length} keys, the backend holds ${want.length}`)
    }

    // ---- MODES ----
    for (const d of [dir, path.join(dir, 'wal'), path.join(dir, 'store')]) if (mode(d) !== 0o700) violation(round, `${d} has mode ${mode(d).toString(8)}, not 700`)
    for (const f of fs.readdirSync(path.join(dir, 'wal'))) if (mode(path.join(dir, 'wal', f)) !== 0o600) violation(round, `wal/${f} has mode ${mode(path.join(dir, 'wal', f)).toString(8)}, not 600`)

    state = next
    prevLast = lastLsn
  }

  t.equal(violations, 0, 'no violation in any round')
  t.equal(totals.kills, KILLS, 'every round ended in a SIGKILL')
  t.ok(totals.acks > KILLS, 'the children acknowledged writes')
  t.ok(totals.killsWhileOpening > 0 || KILLS < 20, 'some kills landed while the child was opening (recovery)')
  t.ok(totals.batches > 0, 'batches were written')
  const live = [...state.values()].filter((v) => v.present).length
  t.comment(`kills: ${totals.kills} (${totals.killsWhileOpening} while opening), acknowledged writes: ${totals.acks} (batches among the round records: ${totals.batches}), log LSNs: ${prevLast}, keys checked after each kill (sum): ${totals.keysChecked}, live keys at the end: ${live}/${state.size}`)
  t.comment(`writes in flight at a kill: ${totals.inFlight}, of which found in the log: ${totals.surfaced}; acknowledged records purged (applied by both durable sinks) before the check: ${totals.purgedBeforeCheck}; records replayed into the backend on reopen: ${totals.replayed}; highest apply the children saw: ${totals.childApplied}; active segments seen: ${totals.segmentsSeen.size}`)
})
