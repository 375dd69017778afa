/**
 * Seeded model-based scenarios for the whole engine (DESIGN.md G1, G3, G4,
 * §5-7): MemWAL on a simulated filesystem, with a memory-level database as
 * its LevelDB store, driven by random steps while a plain in-memory model
 * says what every read must return.
 *
 * Steps: put, delete, batch (2-10 ops, keys may repeat), bursts of concurrent
 * writes (group commit), get, query, flush, sink faults (transient failures,
 * outages, slow calls that outlive the apply timeout, on the backend, the
 * index and the cache, injected through `wrapSink`), clean restarts, and
 * crashes. A crash may land while writes are in flight: power is cut
 * (`sim.powerLoss()`: the log keeps only what was synced, plus a seeded torn
 * prefix of the rest), the engine is closed (its appliers stop; the
 * memory-level database keeps every batch it applied, like a disk whose
 * batches are atomic and synced), and MemWAL reopens on `sim.restart(seed)`
 * with the same database.
 *
 * The model is a map key -> latest version (value, namespace, tags, LSN), fed
 * by the writes whose promise resolved. A write that was in flight at a crash
 * has an unknown outcome: a copy of the restarted disk (`restart` with the
 * same seed gives the same image) is read with a bare Wal to learn which of
 * them reached the log and under which LSN; each must be one of the writes in
 * flight, byte for byte (ORIGIN), and joins the model.
 *
 * Checked after every step:
 *   G1  every acknowledged write is reflected: each key's getEntry is the
 *       model's version (value, namespace, tags, LSN); after a crash every
 *       acknowledged LSN is in the log with the ops it was acknowledged for;
 *   G4  get / query return the model's answer or a typed error
 *       (ENGINE_BACKEND_UNAVAILABLE), never a wrong value or a false "not found";
 *       and no typed error for a key written after the backend went down (it
 *       is pending, and pending keys are always answered);
 *   G3  after a flush with healthy sinks: every sink's checkpoint is the log's
 *       last LSN, the backlog is empty, the backend holds exactly the model,
 *       the index holds exactly the model's namespaces and tags, and queries
 *       (served by the index alone then) equal the model.
 *
 * The step sequence, the engine's random source and the filesystem's tears
 * derive from the seed; the appliers' retry and breaker timers use real time
 * (tiny delays), so a replay follows the same steps but the interleaving of
 * appliers and steps may differ slightly.
 */
import { isDeepStrictEqual } from 'node:util'
import { MemoryLevel } from 'memory-level'
import { BackendSink, MemWAL, isMemwalError, type BatchOp, type LevelDatabase, type MemwalOptions, type QueryOptions, type Sink } from '../../engine/index.js'
import { SeededRandom, SimulatedFileSystem, Wal, noDirLocker, type Op, type WalRecord } from '../../engine/testing.js'
import { fromEntry, fromIndexed, fromQuery, fromStored, identityOrder, namespaceOf, normalOp, nsOption, type ModelEntry } from './identity-view.js'

export const MODEL_DIR = '/data'
const SEGMENT_BYTES = 64 * 1024
const KEYS = ['u/1', 'u/2', 'u/3', 'u/4', 'd/1', 'd/2', 'd/3', 'x', 'y', 'z'] as const
const NAMESPACES = ['n1', 'n2'] as const
const TAGS = ['t1', 't2', 't3'] as const
const PREFIXES = ['u/', 'd/', 'x', 'q'] as const
const SINK_NAMES = ['backend', 'index', 'cache'] as const
type SinkName = (typeof SINK_NAMES)[number]
/** Real-time watchdog: an engine call that does not settle is reported, not waited out. */
const HANG_MS = 15_000
/** Longest flush with healthy sinks before it counts as a violation. */
const FLUSH_TIMEOUT_MS = 10_000
/** Apply calls slower than this time out (and the slow-call fault outlives it). */
const APPLY_TIMEOUT_MS = 20

export interface ModelScenarioOptions {
  /** Number of steps; seeded in [steps / 2, steps] when given, in [25, 70] otherwise. */
  readonly steps?: number
  /** Verbose trace, for the replay script. */
  readonly log?: (line: string) => void
}

export interface ModelScenarioResult {
  readonly seed: number
  readonly ok: boolean
  /** Precise messages; empty when every invariant held. */
  readonly violations: string[]
  readonly steps: number
  /** Write calls made (each put, delete or batch). */
  readonly writes: number
  readonly acked: number
  /** Writes refused with ENGINE_BACKLOG_FULL (they must leave no trace). */
  readonly refused: number
  readonly crashes: number
  readonly restarts: number
  /** Writes in flight when power was cut, and how many of them a recovery nevertheless found in the log. */
  readonly inFlightAtCrash: number
  readonly surfacedUnacked: number
  readonly flushes: number
  readonly reads: number
  readonly queries: number
  /** Reads and queries that failed with the typed ENGINE_BACKEND_UNAVAILABLE (allowed by G4). */
  readonly typedReadErrors: number
  /** Faults injected into sinks. */
  readonly faults: number
  /** Torn tails that recoveries truncated. */
  readonly tornTails: number
  /** Distinct active segments seen: more than one means the log rotated. */
  readonly segments: number
  readonly lastLsn: number
}

interface Version {
  readonly present: boolean
  readonly lsn: number
  readonly value?: unknown
  readonly namespace?: string
  readonly tags?: readonly string[]
}

interface SinkFaults {
  down: boolean
  failNext: number
  slowNext: number
}

interface Write {
  readonly id: number
  readonly ops: readonly Op[]
}

class Violation extends Error {}

const opsOf = (r: WalRecord): readonly Op[] => (r.type === 3 ? r.ops : [r.op])

function describeOps(ops: readonly Op[]): string {
  return ops.map((o) => (o.type === 'put' ? `put ${o.key}=${JSON.stringify(o.value).slice(0, 40)}${o.namespace ? ` ns=${o.namespace}` : ''}${o.tags ? ` tags=${o.tags.join(',')}` : ''}` : `del ${o.key}`)).join('; ')
}

/** Normalises an op as the engine stores it (tags deduplicated; absent fields absent). */
function normOp(o: Op): Op {
  return normalOp(o) as Op
}

export async function runEngineModelScenario(seed: number, options: ModelScenarioOptions = {}): Promise<ModelScenarioResult> {
  const s = new Scenario(seed, options)
  try {
    await s.run()
  } catch (err) {
    if (!(err instanceof Violation)) s.violations.push(`seed ${seed} step ${s.step}: unexpected exception: ${(err as Error)?.stack ?? String(err)}`)
  } finally {
    await s.shutdown()
  }
  return s.result()
}

class Scenario {
  readonly violations: string[] = []
  step = 0
  private readonly rng: SeededRandom
  private readonly stepsTotal: number
  private readonly log: (line: string) => void
  private sim: SimulatedFileSystem
  private readonly db: LevelDatabase
  private engine: MemWAL | undefined
  private readonly model = new Map<string, Version>()
  private readonly faults: Record<SinkName, SinkFaults> = {
    backend: { down: false, failNext: 0, slowNext: 0 },
    index: { down: false, failNext: 0, slowNext: 0 },
    cache: { down: false, failNext: 0, slowNext: 0 },
  }
  private readonly sinks: Partial<Record<SinkName, Sink>> = {}
  private readonly config: Partial<MemwalOptions>
  /** Values of 0.5-4 KB, so that the 64 KiB segments rotate and retention purges them. */
  private readonly bigValues: boolean
  /** Last LSN of the log as the current engine opened it: every record up to it is in the model. */
  private openedAtLsn = 0
  private nextWriteId = 0
  private counts = { writes: 0, acked: 0, refused: 0, crashes: 0, restarts: 0, inFlightAtCrash: 0, surfacedUnacked: 0, flushes: 0, reads: 0, queries: 0, typedReadErrors: 0, faults: 0, tornTails: 0 }
  private readonly segmentsSeen = new Set<string>()
  private lastLsn = 0
  /** While the backend is down: the last LSN acknowledged when it went down. A key written later is pending, and must be answered. */
  private backendDownSince: number | undefined
  /** Writes acknowledged since the current engine opened, by LSN. */
  private ackedThisEpoch = new Map<number, Write>()

  constructor(readonly seed: number, options: ModelScenarioOptions) {
    this.rng = new SeededRandom(seed)
    this.stepsTotal = options.steps !== undefined ? Math.ceil(options.steps / 2) + this.rng.below(Math.floor(options.steps / 2) + 1) : 25 + this.rng.below(46)
    this.log = options.log ?? (() => undefined)
    this.sim = new SimulatedFileSystem(new SeededRandom(seed ^ 0x5eed))
    this.db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as LevelDatabase
    const pick = <T,>(xs: readonly T[]): T => xs[this.rng.below(xs.length)] as T
    this.bigValues = this.rng.chance(0.3)
    this.config = {
      segmentBytes: SEGMENT_BYTES,
      cacheBytes: pick([512, 4096, 32 * 1024 * 1024]),
      maxBacklogBytes: pick([6 * 1024, 64 * 1024 * 1024, 64 * 1024 * 1024]),
      applyBatchRecordsMax: pick([1, 3, 1024]),
      closeGraceMs: 2_000,
      resilience: {
        retryDelayMsMin: 1,
        retryDelayMsMax: 4,
        breakerThreshold: 1 + this.rng.below(3),
        breakerHalfOpenMs: 2 + this.rng.below(8),
        applyTimeoutMs: APPLY_TIMEOUT_MS,
      },
    }
    this.log(`seed ${seed}: ${this.stepsTotal} steps${this.bigValues ? ', big values' : ''}, config ${JSON.stringify(this.config)}`)
  }

  result(): ModelScenarioResult {
    return { seed: this.seed, ok: this.violations.length === 0, violations: this.violations, steps: this.step, ...this.counts, segments: this.segmentsSeen.size, lastLsn: this.lastLsn }
  }

  async run(): Promise<void> {
    await this.open(this.sim)
    for (this.step = 1; this.step <= this.stepsTotal; this.step++) {
      await this.randomStep()
      await this.checkReads('after step')
    }
    this.heal()
    await this.flushAndCheck('final')
    await this.restart()
    await this.checkReads('after the final restart')
  }

  async shutdown(): Promise<void> {
    const e = this.engine
    this.engine = undefined
    if (e) await this.guard('close', e.close()).catch((err: unknown) => this.violations.push(`closing at the end: ${(err as Error).message}`))
    await this.db.close().catch(() => undefined)
  }

  // ---- engine lifecycle ----

  private async open(fs: SimulatedFileSystem): Promise<void> {
    const e = await this.guard('MemWAL.open', MemWAL.open({
      ...this.config,
      dir: MODEL_DIR,
      fs,
      level: this.db,
      random: new SeededRandom((this.seed ^ Math.imul(this.counts.crashes + this.counts.restarts + 1, 0x9e3779b1)) >>> 0),
      wrapSink: <S extends Sink>(sink: S): S => this.wrap(sink),
    }))
    this.engine = e
    this.openedAtLsn = e.health().wal.lastLsn
    this.lastLsn = this.openedAtLsn
    this.ackedThisEpoch = new Map()
    const r = e.recovery
    this.log(`  opened: last LSN ${this.openedAtLsn}, recovery findings: ${r.findings.map((f) => f.kind).join(', ') || 'none'}`)
    const bad = r.findings.filter((f) => f.kind !== 'torn-tail')
    this.counts.tornTails += r.findings.length - bad.length
    if (bad.length > 0) this.fail(`recovery found more than a torn tail: ${JSON.stringify(bad)}`)
  }

  private get e(): MemWAL {
    if (!this.engine) throw new Violation('no engine')
    return this.engine
  }

  /** Wraps each sink for fault injection (the faults outlive restarts, as a real outage would). */
  private wrap<S extends Sink>(sink: S): S {
    const name = sink.name as SinkName
    const f = this.faults[name]
    if (!f) return sink
    this.sinks[name] = sink
    const apply = sink.apply.bind(sink)
    sink.apply = async (batch, signal) => {
      if (f.down) throw new Error(`simulated ${name} outage`)
      if (f.failNext > 0) {
        f.failNext--
        throw new Error(`simulated transient ${name} failure`)
      }
      if (f.slowNext > 0) {
        f.slowNext--
        // A slow call that outlives the apply timeout, ignoring the abort signal, then applies.
        await new Promise((resolve) => setTimeout(resolve, APPLY_TIMEOUT_MS + 10))
      }
      return apply(batch, signal)
    }
    if (sink instanceof BackendSink) {
      const get = sink.get.bind(sink)
      sink.get = async (key) => {
        if (f.down) throw new Error('simulated backend outage')
        return get(key)
      }
    }
    return sink
  }

  private heal(): void {
    this.backendDownSince = undefined
    for (const n of SINK_NAMES) this.faults[n] = Object.assign(this.faults[n], { down: false, failNext: 0, slowNext: 0 })
  }

  private async restart(): Promise<void> {
    this.counts.restarts++
    this.log(`  clean restart`)
    const e = this.e
    this.engine = undefined
    await this.guard('close', e.close())
    await this.open(this.sim)
  }

  /**
   * Power loss, perhaps with writes in flight: cut now (after a few event-loop
   * turns) or at the Nth mutating filesystem operation from now, which may tear
   * a group write. Then close, restart the disk, learn which in-flight writes
   * survived, reopen.
   */
  private async crash(inFlight: number): Promise<void> {
    this.counts.crashes++
    const atOp = this.rng.chance(0.5) ? 1 + this.rng.below(6) : undefined
    if (atOp !== undefined) this.sim.cutPowerAtOp(atOp)
    const flying: { write: Write; outcome: Promise<{ lsn: number } | Error> }[] = []
    for (let i = 0; i < inFlight; i++) {
      const w = this.newWrite()
      flying.push({ write: w, outcome: this.issue(w).then((r) => r, (err: unknown) => err as Error) })
    }
    const ticks = this.rng.below(12)
    for (let i = 0; i < ticks; i++) await new Promise((resolve) => setImmediate(resolve))
    const cutBefore = this.sim.isCrashed
    this.sim.powerLoss()
    const unknown: Write[] = []
    for (const f of flying) {
      const out = await this.guard('a write in flight at the crash', f.outcome)
      if (out instanceof Error) {
        if (isMemwalError(out) && out.code === 'ENGINE_BACKLOG_FULL') this.counts.refused++
        else unknown.push(f.write)
      } else {
        this.acked(f.write, out.lsn)
      }
    }
    this.counts.inFlightAtCrash += unknown.length
    const e = this.e
    this.engine = undefined
    await this.guard('close after the crash', e.close())
    const diskSeed = this.rng.nextU32()
    this.log(`  power cut ${cutBefore ? `at mutating op ${String(atOp)}` : `after ${ticks} ticks`} with ${inFlight} writes in flight (${unknown.length} unacknowledged); restart seed ${diskSeed}`)
    const probeLast = await this.learnSurvivors(this.sim.restart(diskSeed), unknown)
    this.sim = this.sim.restart(diskSeed)
    await this.open(this.sim)
    if (this.openedAtLsn !== probeLast) this.fail(`the engine reopened with last LSN ${this.openedAtLsn}, a bare Wal recovered the same disk to ${probeLast}`)
  }

  /**
   * Reads a copy of the restarted disk with a bare Wal: every acknowledged LSN
   * must hold what was acknowledged (checked against the model's LSNs), and
   * every record past the last known LSN must be an unacknowledged write in
   * flight (each at most once); those join the model.
   */
  private async learnSurvivors(probe: SimulatedFileSystem, unknown: Write[]): Promise<number> {
    const wal = await this.guard('probe Wal.open', Wal.open({ dir: MODEL_DIR, fs: probe, locker: noDirLocker, segmentBytes: SEGMENT_BYTES }))
    try {
      const seen = new Map<number, readonly Op[]>()
      for await (const r of wal.read(this.openedAtLsn + 1)) seen.set(r.lsn, opsOf(wal.decode(r)))
      for (const [lsn, w] of this.ackedThisEpoch) {
        const got = seen.get(lsn)
        if (!got) this.fail(`G1: acknowledged LSN ${lsn} (${describeOps(w.ops)}) is not in the log after the crash (log ends at ${wal.lastLsn})`)
        else if (!isDeepStrictEqual(got.map(normOp), w.ops.map(normOp))) this.fail(`G1: LSN ${lsn} holds ${describeOps(got)}, acknowledged for ${describeOps(w.ops)}`)
      }
      const left = [...unknown]
      for (const [lsn, ops] of [...seen].sort((a, b) => a[0] - b[0])) {
        if (this.ackedThisEpoch.has(lsn)) continue
        const i = left.findIndex((w) => isDeepStrictEqual(w.ops.map(normOp), ops.map(normOp)))
        if (i < 0) this.fail(`ORIGIN: LSN ${lsn} holds ${describeOps(ops)}, which no unacknowledged write in flight wrote`)
        left.splice(i, 1)
        this.counts.surfacedUnacked++
        this.applyToModel(lsn, ops)
        this.log(`    unacknowledged write surfaced at LSN ${lsn}: ${describeOps(ops)}`)
      }
      return wal.lastLsn
    } finally {
      await wal.close()
    }
  }

  // ---- writes ----

  private newWrite(): Write {
    const id = this.nextWriteId++
    const kind = this.rng.below(10)
    if (kind < 5) return { id, ops: [this.putOp(id, 0)] }
    if (kind < 7) return { id, ops: [this.delOp()] }
    const n = 2 + this.rng.below(9)
    const ops: Op[] = []
    for (let i = 0; i < n; i++) ops.push(this.rng.chance(0.7) ? this.putOp(id, i) : this.delOp())
    return { id, ops }
  }

  private key(): string {
    return KEYS[this.rng.below(KEYS.length)] as string
  }

  private delOp(): Op {
    const key = this.key()
    return { type: 'del', key, ...nsOption(key, NAMESPACES) }
  }

  private putOp(id: number, i: number): Op {
    const roll = this.rng.below(100)
    const pad = this.bigValues ? 500 + this.rng.below(3500) : roll < 80 ? this.rng.below(40) : roll < 97 ? 200 + this.rng.below(800) : 2000 + this.rng.below(3000)
    const value = { w: id, i, n: this.rng.below(1000), pad: 'p'.repeat(pad) }
    const key = this.key()
    const namespace = namespaceOf(key, NAMESPACES)
    const tags = this.rng.chance(0.5) ? TAGS.filter(() => this.rng.chance(0.5)) : undefined
    return { type: 'put', key, value, ...(namespace !== undefined ? { namespace } : {}), ...(tags ? { tags } : {}) }
  }

  private issue(w: Write): Promise<{ lsn: number }> {
    this.counts.writes++
    const [op] = w.ops
    if (w.ops.length === 1 && op) {
      if (op.type === 'del') return this.e.delete(op.key, nsOption(op.key, NAMESPACES))
      return this.e.put(op.key, op.value, { ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) })
    }
    return this.e.batch(w.ops as BatchOp[])
  }

  private acked(w: Write, lsn: number): void {
    this.counts.acked++
    if (this.ackedThisEpoch.has(lsn) || lsn <= this.openedAtLsn) this.fail(`LSN ${lsn} acknowledged twice (or below the log's end ${this.openedAtLsn} at open)`)
    this.ackedThisEpoch.set(lsn, w)
    this.applyToModel(lsn, w.ops)
    this.lastLsn = Math.max(this.lastLsn, lsn)
  }

  /** Applies a record's ops in order; a key's newer version (higher LSN) is never overwritten by an older one. */
  private applyToModel(lsn: number, ops: readonly Op[]): void {
    for (const o of ops) {
      const cur = this.model.get(o.key)
      if (cur && cur.lsn > lsn) continue
      const n = normOp(o)
      this.model.set(o.key, n.type === 'del' ? { present: false, lsn } : { present: true, lsn, value: n.value, ...(n.namespace !== undefined ? { namespace: n.namespace } : {}), ...(n.tags ? { tags: n.tags } : {}) })
    }
  }

  /** Issues writes concurrently and records each outcome: acknowledged, or refused for backlog. */
  private async writeAll(ws: Write[]): Promise<void> {
    const outcomes = await this.guard('writes', Promise.all(ws.map((w) => this.issue(w).then((r) => r, (err: unknown) => err as Error))))
    ws.forEach((w, i) => {
      const out = outcomes[i]
      if (out instanceof Error) {
        if (isMemwalError(out) && out.code === 'ENGINE_BACKLOG_FULL') {
          this.counts.refused++
          this.log(`    refused (backlog full): ${describeOps(w.ops)}`)
        } else this.fail(`write ${describeOps(w.ops)} failed: ${isMemwalError(out) ? out.code : ''} ${out.message}`)
      } else if (out) {
        this.acked(w, out.lsn)
        this.log(`    acked LSN ${out.lsn}: ${describeOps(w.ops)}`)
      }
    })
  }

  // ---- steps ----

  private async randomStep(): Promise<void> {
    const roll = this.rng.below(100)
    if (roll < 30) {
      this.log(`step ${this.step}: write`)
      return this.writeAll([this.newWrite()])
    }
    if (roll < 42) {
      const n = 2 + this.rng.below(8)
      this.log(`step ${this.step}: burst of ${n} concurrent writes`)
      return this.writeAll(Array.from({ length: n }, () => this.newWrite()))
    }
    if (roll < 50) {
      this.log(`step ${this.step}: get`)
      return this.checkGet(this.key(), 'get step')
    }
    if (roll < 60) return this.queryStep()
    if (roll < 66) {
      this.log(`step ${this.step}: heal and flush`)
      this.heal()
      return this.flushAndCheck(`step ${this.step}`)
    }
    if (roll < 84) return this.faultStep()
    if (roll < 88) {
      this.log(`step ${this.step}: restart`)
      return this.restart()
    }
    const inFlight = this.rng.chance(0.7) ? 1 + this.rng.below(6) : 0
    this.log(`step ${this.step}: crash`)
    return this.crash(inFlight)
  }

  private faultStep(): void {
    this.counts.faults++
    const name = SINK_NAMES[this.rng.below(this.rng.chance(0.6) ? 1 : SINK_NAMES.length)] as SinkName
    const f = this.faults[name]
    const kind = this.rng.below(4)
    if (kind === 0) {
      f.down = !f.down
      if (name === 'backend') this.backendDownSince = f.down ? this.lastLsn : undefined
    }
    else if (kind === 1) f.failNext += 1 + this.rng.below(6)
    else if (kind === 2) f.slowNext += 1
    else this.heal()
    this.log(`step ${this.step}: fault ${['toggle outage', 'transient failures', 'slow call', 'heal all'][kind]} on ${name}: ${JSON.stringify(this.faults)}`)
  }

  private async queryStep(): Promise<void> {
    const q: { namespace?: string; tag?: string; prefix?: string } = {}
    if (this.rng.chance(0.4)) q.namespace = NAMESPACES[this.rng.below(NAMESPACES.length)] as string
    if (this.rng.chance(0.4)) q.tag = TAGS[this.rng.below(TAGS.length)] as string
    if (this.rng.chance(0.4)) q.prefix = PREFIXES[this.rng.below(PREFIXES.length)] as string
    this.log(`step ${this.step}: query ${JSON.stringify(q)}`)
    await this.checkQuery(q, 'query step', true)
  }

  // ---- checks ----

  private expectedEntry(key: string): ModelEntry | undefined {
    const v = this.model.get(key)
    if (!v || !v.present) return undefined
    return { value: v.value, lsn: v.lsn, ...(v.namespace !== undefined ? { namespace: v.namespace } : {}), ...(v.tags ? { tags: v.tags } : {}) }
  }

  /** G1 + G4 for every key. */
  private async checkReads(when: string): Promise<void> {
    this.segmentsSeen.add(this.e.health().wal.activeSegment)
    for (const k of KEYS) await this.checkGet(k, when)
  }

  private async checkGet(key: string, when: string, typedErrorAllowed = true): Promise<void> {
    this.counts.reads++
    const want = this.expectedEntry(key)
    let got: ModelEntry | undefined
    try {
      got = fromEntry(await this.guard(`getEntry(${key})`, this.e.getEntry(key, nsOption(key, NAMESPACES))))
    } catch (err) {
      if (err instanceof Violation) throw err
      const pendingSince = this.backendDownSince !== undefined && (this.model.get(key)?.lsn ?? 0) > this.backendDownSince
      if (typedErrorAllowed && !pendingSince && isMemwalError(err) && err.code === 'ENGINE_BACKEND_UNAVAILABLE') {
        this.counts.typedReadErrors++
        return
      }
      if (pendingSince) return this.fail(`G4 ${when}: getEntry(${key}) failed with ${isMemwalError(err) ? err.code : 'an untyped error'}, though its write (LSN ${String(this.model.get(key)?.lsn)}) came after the backend went down, so it is pending`)
      return this.fail(`G4 ${when}: getEntry(${key}) failed with ${isMemwalError(err) ? err.code : 'an untyped error'}: ${(err as Error).message}`)
    }
    const value = await this.guard(`get(${key})`, this.e.get(key, nsOption(key, NAMESPACES))).catch((err: unknown) => {
      if (isMemwalError(err) && err.code === 'ENGINE_BACKEND_UNAVAILABLE' && typedErrorAllowed) return got?.value
      throw err
    })
    if (!isDeepStrictEqual(plain(got), plain(want))) {
      this.fail(`${want && !got ? 'G4 false "not found"' : 'G1/G4 wrong version'} ${when}: getEntry(${key}) = ${brief(got)}, the model has ${brief(want)}`)
    }
    if (!isDeepStrictEqual(value, want?.value)) this.fail(`G4 ${when}: get(${key}) = ${brief(value)}, the model has ${brief(want?.value)}`)
  }

  private async checkQuery(q: QueryOptions, when: string, typedErrorAllowed: boolean): Promise<void> {
    this.counts.queries++
    const want = [...this.model.entries()]
      .filter(([k, v]) => v.present && (q.prefix === undefined || k.startsWith(q.prefix)) && (q.namespace === undefined || v.namespace === q.namespace) && (q.tag === undefined || (v.tags ?? []).includes(q.tag)))
      .sort((a, b) => (identityOrder(a[0], NAMESPACES) < identityOrder(b[0], NAMESPACES) ? -1 : 1))
      .map(([key, v]) => ({ key, value: v.value, ...(v.namespace !== undefined ? { namespace: v.namespace } : {}), ...(v.tags ? { tags: v.tags } : {}) }))
    let got: unknown[]
    try {
      got = (await this.guard(`query ${JSON.stringify(q)}`, collect(this.e.query(q)))).map(fromQuery)
    } catch (err) {
      if (err instanceof Violation) throw err
      if (typedErrorAllowed && isMemwalError(err) && err.code === 'ENGINE_BACKEND_UNAVAILABLE') {
        this.counts.typedReadErrors++
        return
      }
      return this.fail(`G4 ${when}: query ${JSON.stringify(q)} failed with ${isMemwalError(err) ? err.code : 'an untyped error'}: ${(err as Error).message}`)
    }
    if (!isDeepStrictEqual(plain(got), plain(want))) this.fail(`G4 ${when}: query ${JSON.stringify(q)} = ${brief(got)}, the model has ${brief(want)}`)
  }

  /** G3: with healthy sinks, flush converges every sink on the log and the model. */
  private async flushAndCheck(when: string): Promise<void> {
    this.counts.flushes++
    try {
      await this.guard('flush', this.e.flush({ timeoutMs: FLUSH_TIMEOUT_MS }))
    } catch (err) {
      if (err instanceof Violation) throw err
      return this.fail(`G3 ${when}: flush with healthy sinks failed: ${isMemwalError(err) ? err.code : ''} ${(err as Error).message}`)
    }
    const h = this.e.health()
    for (const n of SINK_NAMES) {
      const cp = h.sinks[n]?.checkpoint
      if (cp !== h.wal.lastLsn) this.fail(`G3 ${when}: after flush the ${n} checkpoint is ${String(cp)}, the log's last LSN ${h.wal.lastLsn}`)
    }
    if (h.wal.lastLsn !== this.lastLsn) this.fail(`${when}: the log's last LSN is ${h.wal.lastLsn}, the model's ${this.lastLsn}`)
    if (h.backlog.records !== 0 || h.backlog.pendingKeys !== 0) this.fail(`G3 ${when}: after flush the backlog holds ${h.backlog.records} records, ${h.backlog.pendingKeys} keys`)
    // The backend holds exactly the model.
    const backend = this.sinks.backend as BackendSink | undefined
    if (!backend) return this.fail('no backend sink was wrapped')
    const stored: [string, ModelEntry][] = []
    for await (const [, e] of backend.entries()) stored.push([e.key, fromStored(e)])
    const byId = (a: string, b: string): number => (identityOrder(a, NAMESPACES) < identityOrder(b, NAMESPACES) ? -1 : 1)
    const want = KEYS.filter((k) => this.model.get(k)?.present).sort(byId).map((k) => [k, this.expectedEntry(k)])
    if (!isDeepStrictEqual(plain(stored), plain(want))) this.fail(`G3 ${when}: the backend holds ${brief(stored)}, the model ${brief(want)}`)
    // The index holds exactly the model's namespaces and tags.
    const index = this.sinks.index as unknown as { all(): AsyncIterable<[string, { namespace: string; tags?: readonly string[] }]> } | undefined
    if (!index) return this.fail('no index sink was wrapped')
    const indexed: unknown[] = []
    for await (const [id, e] of index.all()) indexed.push(fromIndexed(id, e))
    const wantIndexed = KEYS.filter((k) => this.model.get(k)?.present).sort(byId).map((k) => {
      const v = this.model.get(k) as Version
      return [k, { ...(v.namespace !== undefined ? { namespace: v.namespace } : {}), ...(v.tags ? { tags: v.tags } : {}) }]
    })
    if (!isDeepStrictEqual(plain(indexed), plain(wantIndexed))) this.fail(`G3 ${when}: the index holds ${brief(indexed)}, the model ${brief(wantIndexed)}`)
    // Queries, now served by the index alone, equal the model; and no read may fail.
    for (const q of [{}, ...NAMESPACES.map((namespace) => ({ namespace })), ...TAGS.map((tag) => ({ tag })), { prefix: 'u/' }, { namespace: 'n1', tag: 't2', prefix: 'd/' }]) await this.checkQuery(q, `${when} (after flush)`, false)
    for (const k of KEYS) await this.checkGet(k, `${when} (after flush)`, false)
    this.log(`  flushed: checkpoints at ${h.wal.lastLsn}, ${want.length} live keys`)
  }

  private fail(message: string): never {
    this.violations.push(`seed ${this.seed} step ${this.step}: ${message}`)
    this.log(`VIOLATION: ${message}`)
    throw new Violation(message)
  }

  private guard<T>(what: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const hang = new Promise<never>((_, reject) => {
      // Not unref'd: a call that never settles, with nothing else pending, must be reported rather than let the process exit.
      timer = setTimeout(() => reject(new Violation(`${what} did not settle in ${HANG_MS} ms`)), HANG_MS)
    })
    return Promise.race([p, hang]).finally(() => clearTimeout(timer)).catch((err: unknown) => {
      if (err instanceof Violation) {
        this.violations.push(`seed ${this.seed} step ${this.step}: hang: ${err.message}`)
      }
      throw err
    })
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

/** Structural form for comparison: what msgpack carries (plain objects and arrays). */
function plain(x: unknown): unknown {
  return x === undefined ? undefined : JSON.parse(JSON.stringify(x))
}

function brief(x: unknown): string {
  const s = JSON.stringify(x, (_k, v: unknown) => (typeof v === 'string' && v.length > 12 ? `${v.slice(0, 4)}…(${v.length})` : v))
  return s === undefined ? 'undefined' : s.length > 600 ? `${s.slice(0, 600)}…` : s
}
