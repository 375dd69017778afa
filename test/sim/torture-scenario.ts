/**
 * One torture scenario: the whole engine (WAL, appliers, cache, index and
 * backend sinks) on a SimulatedFileSystem and a memory-level store, with a
 * ManualClock and seeded random sources, driven by seeded random steps while
 * faults are injected at random points, and checked against a plain model
 * after every step. Used by `npm run torture` (test/sim/torture.ts) and
 * test/sim/torture.test.ts. Public API only (engine/index.ts).
 *
 * Steps: put, delete, batch, bursts of concurrent writes (group commit),
 * puts with an expiry (ttlMs or expiresAt, single and batched; the manual
 * clock moves on and the expiry sweep runs every SWEEP_INTERVAL_MS of it),
 * conditional writes (ifVersion, ifAbsent, on put, delete and batch
 * operations), namespace clears, get, query, flush, clean close/reopen, and
 * faults:
 *   - power loss with torn writes (by prefix, or, for even seeds, by 512-byte
 *     sectors kept in any subset: a torn final group), the cut landing either after a few event
 *     loop turns or at the Nth mutating filesystem operation from now (any
 *     await point of the log: a write, the spare segment's preparation, a
 *     rotation's rename or directory sync, a purge), with writes in flight;
 *     sometimes a second cut during the recovery that follows;
 *   - sink faults (backend, index or cache): outages, transient failures, hangs
 *     (calls that do not return until released; a call hung at a crash dies
 *     with the process; a hung call may outlive the apply timeout, the clock
 *     jumping past it, and then complete its work late, as a slow backend
 *     would), permanent rejects (records touching `poison/` keys, backend or
 *     index, which must go to the dead-letter log);
 *   - disk faults on the log: ENOSPC on writes (the write is refused, typed,
 *     and the log goes on), EIO on writes, fdatasync or a directory sync
 *     (the engine must fail closed, G2); after a failure the engine is
 *     reopened either after a power loss or, with the page cache intact, by
 *     a process restart;
 *   - bit flips in segments (between a close and the next open, or under
 *     the open engine), which recovery or verify() must report (G5).
 *
 * Checked against the model (key -> latest acknowledged version):
 *   G1  after every crash and restart, each LSN acknowledged in the epoch is
 *       in the log holding exactly its ops (or was purged after every durable
 *       sink applied it); every read matches the model;
 *   G2  an EIO on the log fails the engine closed: state `failed`, every
 *       later write refused with ENGINE_FAILED, no acknowledgement after the
 *       failure, no further write or sync of a segment; after reopening,
 *       everything acknowledged before the failure is there;
 *   G3  after healing and flushing: every sink's checkpoint is the log's last
 *       LSN, the backlog is empty, the backend holds exactly the model,
 *       verify() finds nothing, no sink's storage took an LSN twice (over
 *       the whole scenario for the durable sinks), and every poison record
 *       was dead-lettered;
 *   G4  getEntry/get/query return the model's answer, or the typed
 *       ENGINE_BACKEND_UNAVAILABLE, and that only for a key that is not
 *       pending (its version is at or below every sink's checkpoint);
 *   G5  every bit flip is reported: open refuses with a typed corruption
 *       error, or recovery's findings or verify() name the segment;
 *   ORIGIN  a record found in the log after a crash beyond the acknowledged
 *       ones is one of the writes whose outcome was unknown (in flight, or
 *       in the group that failed), byte for byte, or an expiry sweep's batch
 *       of deletes, each of an entry the model has expired (unless a later
 *       version replaced it); a write refused with a definite error
 *       (ENOSPC, backlog, invalid, a failed condition) never surfaces;
 *   MEMORY  the model decides what reads see and what conditions find: an
 *       entry whose expiresAt is at or before the clock is absent (reads,
 *       queries, ifAbsent holds, ifVersion is refused with current null),
 *       swept or not; a conditional write is acknowledged exactly when the
 *       model says its conditions hold, else refused with VERSION_MISMATCH
 *       naming the model's current version (wrongConditions); a clear leaves
 *       every key of its namespace absent.
 *
 * Determinism: a seed replays exactly (test/sim/torture.test.ts runs seeds twice
 * and compares every counter and trace line). The step sequence, the fault
 * choices, the engine's random source, the filesystem's tears and the clock
 * derive from the seed; the simulated disk and memory-level settle through
 * setImmediate and microtasks only, and the runner moves by counted event
 * loop turns and manual clock advances, never by real time. What would
 * otherwise bring real time in is pinned:
 *   - the circuit breaker and the apply timeout run on the engine's injected
 *     clock (engine/resilience), the scenario's ManualClock: no Date.now patch.
 *     The timeout is set far beyond what retries and settles advance the
 *     clock by, so it fires only when the scenario jumps the clock past it
 *     on purpose (a late apply; test/unit/hung-sink.test.ts covers it on the
 *     real clock too); hangs are released by the scenario, or die with the
 *     engine that made them;
 *   - xxhash-wasm compiles WebAssembly off the event loop: the runner
 *     compiles each module once and instantiates it synchronously
 *     (memoiseWasmCompile), and waits for the engine to be idle before
 *     verify(), so no background work races a compile;
 *   - the real-time watchdog (HANG_MS) only reports a call that never settles.
 * The real-process counterpart, with real timing, is test/process/crash-loop.test.ts.
 */
import { isDeepStrictEqual } from 'node:util'
import { BackendSink, MemWAL, PermanentSinkError, dumpLog, isMemwalError, type AppliedRecord, type BatchOp, type DumpEntry, type FileHandle, type LevelDatabase, type MemwalOptions, type OpenMode, type OpenOptions, type QueryOptions, type Sink } from '../../engine/index.js'
import { ManualClock, SeededRandom, SimulatedFileSystem, type Op } from '../../engine/testing.js'
import { ForwardingFileHandle, ForwardingFileSystem } from '../support/forwarding-fs.js'
import { PowerLossLevel } from '../support/power-loss-level.js'
import { fromEntry, fromQuery, fromStored, identityOrder, namespaceOf, normalOp, nsOption, type ModelEntry } from '../support/identity-view.js'

export const TORTURE_DIR = '/data'
const WAL_DIR = `${TORTURE_DIR}/wal`
const SEGMENT_BYTES = 64 * 1024
const KEYS = ['a/1', 'a/2', 'a/3', 'b/1', 'b/2', 'c', 'd', 'e'] as const
const POISON_KEYS = ['poison/1', 'poison/2'] as const
const NAMESPACES = ['n1', 'n2'] as const
const TAGS = ['t1', 't2', 't3'] as const
const PREFIXES = ['a/', 'b/', 'c', 'z'] as const
/** Manual-clock ms: an expiring put lives 1..TTL_MS_MAX ms, about what a scenario's clock moves, so some expire in it. */
const TTL_MS_MAX = 60
/** The expiry sweep's cadence on the manual clock (its smallest): rounds run within the scenario's clock advances. */
const SWEEP_INTERVAL_MS = 10
const FAULTY_SINKS = ['backend', 'index', 'cache'] as const
type FaultySink = (typeof FAULTY_SINKS)[number]
/** A real-time watchdog: an engine call that has not settled after this long is reported as a hang. */
const HANG_MS = 20_000
/** Far beyond any retry or settle: the apply timeout fires only when a late-apply step jumps the clock past it (see Determinism). */
const APPLY_TIMEOUT_MS = 10 * 60_000
/** Manual-clock ms: a settle round (RETRY_DELAY_MS_MAX) lets the breaker probe. */
const BREAKER_HALF_OPEN_MS = 5
const RETRY_DELAY_MS_MAX = 8
const CLOSE_GRACE_MS = 50
/** Clock advances a settle may take before the sinks count as not converging. */
const SETTLE_ROUNDS_MAX = 200
/** Turns without progress after which the engine counts as idle, and the most turns to wait for it. */
const IDLE_TURNS = 12
const IDLE_TURNS_MAX = 2_000
/** docs/design.md §3: the frame magic "MWFR", as a little-endian u32; type 4 at byte 20 is a group marker (version 2). */
const GROUP_MARKER_TYPE = 4
const FRAME_MAGIC = 0x5246574d
const CORRUPTION_CODES = new Set(['WAL_CORRUPT_FRAME', 'WAL_CORRUPT_HEADER', 'WAL_TORN_TAIL', 'WAL_HOLE', 'WAL_MISSING_SEGMENT', 'WAL_LSN_SEQUENCE', 'WAL_UNKNOWN_VERSION'])

/** Deliberate harness bugs, to prove that the checks catch what they claim to (test/sim/torture.test.ts). */
export type Sabotage = 'double-apply' | 'drop-apply'

export interface TortureOptions {
  /** Most steps per scenario; the scenario takes a seeded count in [steps / 2, steps]. Default 16. */
  readonly steps?: number
  /** Verbose trace (replays). */
  readonly log?: (line: string) => void
  readonly sabotage?: Sabotage
}

/** The violation counters: every one must stay 0. */
export interface TortureViolations {
  acknowledgedLost: number
  doubleApplies: number
  wrongReads: number
  undetectedCorruptions: number
  reopenFailures: number
  /** G2: an acknowledgement after the log failed, a write or sync of a segment after it, or an EIO that did not fail the engine. */
  failClosed: number
  /** G3: sinks that did not converge on the log with healthy sinks. */
  notConverged: number
  /** ORIGIN: a record in the log that no unknown-outcome write wrote, or a refused write that surfaced. */
  origin: number
  /** MEMORY: a conditional write acknowledged though the model says a condition fails, or refused though they all hold (or naming another current version). */
  wrongConditions: number
  /** Anything else: a hang, an untyped error, an unexpected recovery finding. */
  other: number
}

export interface TortureCounts {
  steps: number
  /** Engine calls: writes, reads, queries, flushes, verifies, opens and closes. */
  operations: number
  writes: number
  acknowledged: number
  refusedBacklog: number
  reads: number
  queries: number
  typedReadErrors: number
  flushes: number
  flushTimeouts: number
  cleanRestarts: number
  powerLosses: number
  powerLossesInRecovery: number
  inFlightAtCrash: number
  surfacedUnacked: number
  tornTails: number
  enospcArmed: number
  enospcRefusals: number
  eioArmed: number
  walFailures: number
  refusedAfterFailure: number
  pageCacheReopens: number
  bitFlips: number
  flipsRefusedAtOpen: number
  flipsFoundAtOpen: number
  flipsFoundByVerify: number
  /** Flips in a segment that retention deleted (every durable sink had applied it) before anything read it. */
  flipsPurged: number
  outages: number
  hangs: number
  /** Hung calls that outlived the apply timeout, then completed their work. */
  lateApplies: number
  /** Faults (outage, transient failures, hang) injected into the cache sink. */
  cacheFaults: number
  transientFailures: number
  poisonWrites: number
  deadLettered: number
  /** Scenarios whose log rotated to a second segment (0 or 1 per scenario). */
  rotated: number
  /** Puts with an expiry, and reads (getEntry) of an entry the model has expired, which must read absent. */
  expiringPuts: number
  expiredReads: number
  /** Expiry sweep records found in the log (each a batch of deletes of expired entries). */
  sweepRecords: number
  conditionalWrites: number
  /** Conditional writes refused with VERSION_MISMATCH, as the model said. */
  conditionRefusals: number
  clears: number
  /** Deletes the acknowledged clears wrote. */
  clearedEntries: number
  /** Power losses that took store writes (applies or syncs) after its last sync: the group sync's loss, replayed from the log. */
  storeWritesLost: number
  lastLsn: number
}

export interface TortureResult {
  readonly seed: number
  readonly ok: boolean
  readonly violations: string[]
  readonly counts: TortureCounts
  readonly failures: TortureViolations
}

export function emptyViolations(): TortureViolations {
  return { acknowledgedLost: 0, doubleApplies: 0, wrongReads: 0, undetectedCorruptions: 0, reopenFailures: 0, failClosed: 0, notConverged: 0, origin: 0, wrongConditions: 0, other: 0 }
}

export function emptyCounts(): TortureCounts {
  return {
    steps: 0, operations: 0, writes: 0, acknowledged: 0, refusedBacklog: 0, reads: 0, queries: 0, typedReadErrors: 0, flushes: 0, flushTimeouts: 0,
    cleanRestarts: 0, powerLosses: 0, powerLossesInRecovery: 0, inFlightAtCrash: 0, surfacedUnacked: 0, tornTails: 0,
    enospcArmed: 0, enospcRefusals: 0, eioArmed: 0, walFailures: 0, refusedAfterFailure: 0, pageCacheReopens: 0,
    bitFlips: 0, flipsRefusedAtOpen: 0, flipsFoundAtOpen: 0, flipsFoundByVerify: 0, flipsPurged: 0,
    outages: 0, hangs: 0, lateApplies: 0, cacheFaults: 0, transientFailures: 0, poisonWrites: 0, deadLettered: 0, rotated: 0, lastLsn: 0,
    expiringPuts: 0, expiredReads: 0, sweepRecords: 0, conditionalWrites: 0, conditionRefusals: 0, clears: 0, clearedEntries: 0, storeWritesLost: 0,
  }
}

/** Set while a scenario runs: one at a time per process (the runner's counted event loop turns assume nothing else runs). */
let running = false

/**
 * xxhash-wasm compiles its WebAssembly module on every call, off the event
 * loop (about 0.5 ms, 15 times per scenario). The runner compiles each
 * distinct module once per process and instantiates it synchronously: every
 * engine still gets its own instance and memory, and no compile is left in
 * flight for the event loop to turn around.
 */
function memoiseWasmCompile(): void {
  interface Wasm {
    Module: new (bytes: Uint8Array) => object
    Instance: new (module: object, imports?: object) => object
    instantiate: (source: unknown, imports?: object) => Promise<unknown>
    memoised?: true
  }
  const wasm = (globalThis as unknown as { WebAssembly: Wasm }).WebAssembly
  if (wasm.memoised) return
  const original = wasm.instantiate.bind(wasm)
  const modules = new Map<string, object>()
  wasm.instantiate = (source, imports) => {
    if (!ArrayBuffer.isView(source) && !(source instanceof ArrayBuffer)) return original(source, imports)
    const bytes = ArrayBuffer.isView(source) ? Buffer.from(source.buffer, source.byteOffset, source.byteLength) : Buffer.from(source)
    const key = bytes.toString('base64')
    let module = modules.get(key)
    if (!module) {
      module = new wasm.Module(bytes)
      modules.set(key, module)
    }
    return Promise.resolve({ module, instance: new wasm.Instance(module, imports) })
  }
  wasm.memoised = true
}

export async function runTortureScenario(seed: number, options: TortureOptions = {}): Promise<TortureResult> {
  if (running) throw new Error('one torture scenario at a time per process')
  running = true
  memoiseWasmCompile()
  const s = new Scenario(seed >>> 0, options)
  try {
    await s.run()
  } catch (err) {
    if (!(err instanceof Violation)) s.record('other', `unexpected exception: ${(err as Error)?.stack ?? String(err)}`)
  } finally {
    await s.shutdown()
    running = false
  }
  return s.result()
}

// ---- the model ----

interface Version {
  readonly present: boolean
  readonly lsn: number
  readonly value?: unknown
  readonly namespace?: string
  readonly tags?: readonly string[]
  /** ms on the scenario's clock: from then on the entry is absent (swept or not). */
  readonly expiresAt?: number
}

/** A write's condition on one of its ops. */
type Condition = { readonly ifVersion: number } | { readonly ifAbsent: true }

interface Write {
  readonly id: number
  /** The ops as the log must hold them (a put's expiresAt absolute); for a clear, as read from the log once acknowledged (empty before). */
  readonly ops: readonly Op[]
  /** Per op, its condition, if any. */
  readonly conditions?: readonly (Condition | undefined)[]
  /** A put with an expiry is given as ttlMs (from the clock at the call) rather than expiresAt. */
  readonly asTtl?: boolean
  /** A clear of this namespace: the log holds deletes of the keys it had (pending or indexed), which the model cannot list beforehand. */
  readonly clear?: string
}

/** Whether `ops`, read from the log, are what write `w` wrote. */
function wrote(w: Write, ops: readonly Op[]): boolean {
  if (w.clear === undefined || w.ops.length > 0) return sameOps(ops, w.ops)
  return ops.length > 0 && ops.every((o) => o.type === 'del' && o.namespace === w.clear && namespaceOf(o.key, NAMESPACES) === w.clear)
}

/** A write whose outcome is unknown: it may or may not be in the log. */
interface Unknown {
  readonly write: Write
  readonly why: string
}

class Violation extends Error {}

class InjectedFault extends Error {
  readonly code = 'EINJECTED'
}

type ApplyHook = (records: readonly AppliedRecord[], checkpoint: number, signal?: AbortSignal) => Promise<void>

interface SinkFaults {
  down: boolean
  failNext: number
  hang: boolean
}

/** Calls hung in one epoch: released to go on, or killed with the process. */
interface HangGate {
  readonly promise: Promise<void>
  open(): void
  kill(): void
}

function hangGate(): HangGate {
  let open!: () => void
  let kill!: (err: Error) => void
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve
    kill = reject
  })
  promise.catch(() => undefined)
  return { promise, open, kill: () => kill(new InjectedFault('the process holding this call died')) }
}

const normOp = (o: Op): Op => normalOp(o) as Op

const sameOps = (a: readonly Op[], b: readonly Op[]): boolean => same(a.map(normOp), b.map(normOp))

function describeOps(ops: readonly Op[]): string {
  return ops.map((o) => (o.type === 'put' ? `put ${o.key}=${brief(o.value).slice(0, 40)}${o.namespace ? ` ns=${o.namespace}` : ''}${o.tags ? ` tags=${o.tags.join(',')}` : ''}${o.expiresAt !== undefined ? ` expiresAt=${o.expiresAt}` : ''}` : `del ${o.key}`)).join('; ')
}

function describeWrite(w: Write): string {
  if (w.clear !== undefined) return `clear ${w.clear}`
  const conds = (w.conditions ?? []).map((c, i) => (c === undefined ? '' : ` [op ${i} ${'ifAbsent' in c ? 'ifAbsent' : `ifVersion ${c.ifVersion}`}]`)).join('')
  return `${describeOps(w.ops)}${conds}`
}

/** Structural form for comparison: what msgpack carries back (plain objects and arrays). */
function plain(x: unknown): unknown {
  return x === undefined ? undefined : JSON.parse(JSON.stringify(x))
}

/** Equal as stored values: structurally, or once both are in the form msgpack carries back. */
function same(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(a, b) || isDeepStrictEqual(plain(a), plain(b))
}

function brief(x: unknown): string {
  const s = JSON.stringify(x, (_k, v: unknown) => (typeof v === 'string' && v.length > 12 ? `${v.slice(0, 4)}…(${v.length})` : v))
  return s === undefined ? 'undefined' : s.length > 400 ? `${s.slice(0, 400)}…` : s
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await turn()
}

/**
 * The record frames at the start of a segment's bytes (docs/design.md §3),
 * walked by magic and length alone: where the last one ends (0 if none) and
 * its LSN. A group marker is not a record: one that no record frame follows
 * (its write never completed) is not log data, and the next write overwrites
 * it (engine/log/segment-cursor.ts), so it neither ends nor numbers the log.
 */
function recordFramesIn(bytes: Buffer): { readonly end: number; readonly lastLsn: number } {
  let at = 64
  let end = 0
  let lastLsn = 0
  while (at + 32 <= bytes.length && bytes.readUInt32LE(at) === FRAME_MAGIC) {
    const next = at + 32 + bytes.readUInt32LE(at + 16)
    if (bytes[at + 20] !== GROUP_MARKER_TYPE) {
      lastLsn = Number(bytes.readBigUInt64LE(at + 8))
      end = next
    }
    at = next
  }
  return { end: end <= bytes.length ? end : 0, lastLsn }
}

function lastLsnIn(bytes: Buffer): number {
  return recordFramesIn(bytes).lastLsn
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

// ---- the filesystem, watched ----

/**
 * The FileSystem the engine gets: the simulated one, with every mutating
 * operation on a segment counted and every error it throws seen, for G2.
 */
class WatchedFs extends ForwardingFileSystem {
  /** Set when the engine failed: segment writes and syncs after it are counted. */
  failed = false
  writesAfterFailure = 0
  /** An error other than a space error that a segment write or sync threw. */
  ioErrorOnSegment: string | undefined

  constructor(readonly sim: SimulatedFileSystem) {
    super(sim)
  }

  override async open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    return new WatchedHandle(await this.sim.open(p, mode, options), p, this)
  }

  /** @internal */
  touched(p: string): void {
    if (this.failed && p.endsWith('.seg')) this.writesAfterFailure++
  }

  /** @internal */
  threw(p: string, err: unknown): void {
    const code = (err as { code?: unknown })?.code
    if (p.endsWith('.seg') && typeof code === 'string' && code !== 'ENOSPC' && code !== 'SIM_POWER_LOSS') this.ioErrorOnSegment ??= `${code} on ${p}`
  }
}

class WatchedHandle extends ForwardingFileHandle {
  constructor(
    inner: FileHandle,
    private readonly path: string,
    private readonly fs: WatchedFs,
  ) {
    super(inner)
  }

  override async write(data: Uint8Array, position: number): Promise<void> {
    this.fs.touched(this.path)
    try {
      await this.inner.write(data, position)
    } catch (err) {
      this.fs.threw(this.path, err)
      throw err
    }
  }

  override async datasync(): Promise<void> {
    this.fs.touched(this.path)
    try {
      await this.inner.datasync()
    } catch (err) {
      this.fs.threw(this.path, err)
      throw err
    }
  }

  override truncate(length: number): Promise<void> {
    this.fs.touched(this.path)
    return this.inner.truncate(length)
  }
}

// ---- the scenario ----

class Scenario {
  readonly violations: string[] = []
  readonly failures = emptyViolations()
  readonly counts = emptyCounts()
  step = 0
  private readonly rng: SeededRandom
  private readonly stepsTotal: number
  private readonly log: (line: string) => void
  private readonly clock = new ManualClock()
  private sim: SimulatedFileSystem
  private fs: WatchedFs
  /** The store's database: loses its unsynced writes when the disk restarts after a power cut (memwal's store is group-synced). */
  private readonly store: PowerLossLevel
  private readonly db: LevelDatabase
  private engine: MemWAL | undefined
  private epoch = 0
  private readonly config: Partial<MemwalOptions>
  private readonly bigValues: boolean
  /** Which sink refuses records touching poison keys for good, if any. */
  private readonly poisonSink: FaultySink | undefined
  private readonly faults: Record<FaultySink, SinkFaults> = {
    backend: { down: false, failNext: 0, hang: false },
    index: { down: false, failNext: 0, hang: false },
    cache: { down: false, failNext: 0, hang: false },
  }
  private gates = new Map<string, HangGate>()
  private sinks: Partial<Record<string, Sink>> = {}
  /** Per sink (cache: per epoch too), per LSN: how many times its storage took the record. */
  private readonly applied = new Map<string, number>()
  /** For the durable sinks' entries of `applied`: the store's write count once the apply had returned (see restartDisk). */
  private readonly appliedAtWrite = new Map<string, number>()
  private doubleApply: string | undefined
  private sabotaged = false
  private readonly model = new Map<string, Version>()
  /** Acknowledged poison puts: LSN -> key (they must all be dead-lettered by the poison sink). */
  private readonly poisonAcked = new Map<number, { key: string; value: unknown }>()
  /** Dead-lettered LSN -> the sink that refused it. */
  private readonly deadLettered = new Map<number, string>()
  private nextWriteId = 0
  /** Last LSN of the log when the current engine opened. */
  private openedAtLsn = 0
  private lastLsn = 0
  /** Writes acknowledged by the current engine, by LSN. */
  private ackedThisEpoch = new Map<number, Write>()
  /** Expiry sweep records the current engine wrote, found in its log after a flush: durable, so a crash must keep them. */
  private sweptThisEpoch = new Map<number, readonly Op[]>()
  /** Writes whose outcome is unknown (they may surface at the next open). */
  private unknown: Unknown[] = []
  /** Writes refused for certain: they must never surface. */
  private refused: Write[] = []
  /** The engine failed closed (G2): set when first seen. */
  private failedSeen = false
  private readonly sabotage: Sabotage | undefined
  /** While a bit flip is checked with verify(), an outage spares the backend's reads (verify must see the log, not the outage). */
  private verifying = false

  constructor(readonly seed: number, options: TortureOptions) {
    this.rng = new SeededRandom(seed)
    const steps = options.steps ?? 16
    this.stepsTotal = Math.ceil(steps / 2) + this.rng.below(Math.floor(steps / 2) + 1)
    this.log = options.log ?? (() => undefined)
    this.sabotage = options.sabotage
    // The tear mode is not drawn from the rng: the rest of a seed's scenario is the same in either mode.
    this.sim = new SimulatedFileSystem(new SeededRandom((seed ^ 0x5eed5eed) >>> 0), { tear: seed % 2 === 0 ? 'sectors' : 'prefix' })
    this.fs = new WatchedFs(this.sim)
    this.store = new PowerLossLevel(() => this.sim.isCrashed)
    this.db = this.store.db
    const pick = <T,>(xs: readonly T[]): T => xs[this.rng.below(xs.length)] as T
    this.bigValues = this.rng.chance(0.25)
    const p = this.rng.below(10)
    this.poisonSink = p < 2 ? 'backend' : p < 3 ? 'index' : undefined
    this.config = {
      segmentBytes: SEGMENT_BYTES,
      cacheBytes: pick([512, 4096, 32 * 1024 * 1024]),
      maxBacklogBytes: pick([8 * 1024, 64 * 1024 * 1024, 64 * 1024 * 1024]),
      applyBatchRecordsMax: pick([1, 3, 1024]),
      // The store's group sync: often, rarely (the manual clock seldom moves a minute), or by bytes alone.
      storeSyncIntervalMs: pick([1, 100, 60_000]),
      storeSyncBytes: pick([4096, 4 * 1024 * 1024]),
      closeGraceMs: CLOSE_GRACE_MS,
      sweepIntervalMs: SWEEP_INTERVAL_MS,
      resilience: {
        retryDelayMsMin: 1,
        retryDelayMsMax: RETRY_DELAY_MS_MAX,
        breakerThreshold: 1 + this.rng.below(3),
        breakerHalfOpenMs: BREAKER_HALF_OPEN_MS,
        applyTimeoutMs: APPLY_TIMEOUT_MS,
      },
    }
    this.log(`seed ${seed}: ${this.stepsTotal} steps${this.bigValues ? ', big values' : ''}${this.poisonSink ? `, ${this.poisonSink} rejects poison keys` : ''}, config ${JSON.stringify(this.config)}`)
  }

  nowMs(): number {
    return this.clock.nowMs()
  }

  result(): TortureResult {
    this.counts.steps = Math.min(this.step, this.stepsTotal)
    this.counts.lastLsn = this.lastLsn
    return { seed: this.seed, ok: this.violations.length === 0, violations: this.violations, counts: this.counts, failures: this.failures }
  }

  record(kind: keyof TortureViolations, message: string, n = 1): void {
    this.failures[kind] += n
    this.violations.push(`seed ${this.seed} step ${this.step}: [${kind}] ${message}`)
    this.log(`VIOLATION [${kind}]: ${message}`)
  }

  private fail(kind: keyof TortureViolations, message: string, n = 1): never {
    this.record(kind, message, n)
    throw new Violation(message)
  }

  async run(): Promise<void> {
    await this.open('initial open')
    for (this.step = 1; this.step <= this.stepsTotal; this.step++) {
      if (this.failedSeen) await this.recoverFromFailure()
      else await this.randomStep()
      this.checkDoubleApply()
      await this.checkReads('after the step')
    }
    this.step = this.stepsTotal + 1
    if (this.failedSeen) await this.recoverFromFailure()
    this.log('final: heal, flush, restart')
    await this.flushAndCheck('final')
    await this.restart()
    await this.idle(this.e)
    this.checkDoubleApply()
    await this.checkReads('after the final restart')
  }

  async shutdown(): Promise<void> {
    this.releaseAll()
    const e = this.engine
    this.engine = undefined
    if (e) await this.closeEngine(e).catch((err: unknown) => this.record('other', `closing at the end: ${(err as Error).message}`))
    this.killHung()
    await this.db.close().catch(() => undefined)
  }

  // ---- engine lifecycle ----

  private get e(): MemWAL {
    if (!this.engine) throw new Violation('no engine')
    return this.engine
  }

  private async openEngine(): Promise<MemWAL> {
    this.counts.operations++
    this.epoch++
    this.sinks = {}
    this.fs = new WatchedFs(this.sim)
    const e = await MemWAL.open({
      ...this.config,
      dir: TORTURE_DIR,
      fs: this.fs,
      level: this.db,
      clock: this.clock,
      random: new SeededRandom((this.seed ^ Math.imul(this.epoch, 0x9e3779b1)) >>> 0),
      wrapSink: <S extends Sink>(sink: S): S => this.wrap(sink),
    })
    e.on('dead-letter', (ev: { lsn: number; sink: string }) => {
      this.counts.deadLettered++
      this.deadLettered.set(ev.lsn, ev.sink)
      this.log(`    dead-lettered by ${ev.sink}: LSN ${ev.lsn}`)
    })
    return e
  }

  /**
   * Opens the engine on the current disk. `expectLast` is what the log must
   * end at (learned from a dump of the disk before). A power cut may be
   * armed to land during recovery: the disk restarts and recovery runs again.
   */
  private async open(why: string, cutDuringRecovery = false, expectLast?: number): Promise<void> {
    let cut = cutDuringRecovery
    for (let attempt = 0; ; attempt++) {
      if (cut) this.sim.cutPowerAtOp(1 + this.rng.below(10))
      let e: MemWAL
      try {
        e = await this.guard('MemWAL.open', this.openEngine())
      } catch (err) {
        if (err instanceof Violation) throw err
        if (cut && (err as { code?: string }).code === 'SIM_POWER_LOSS') {
          this.counts.powerLossesInRecovery++
          this.log(`  power cut during recovery (attempt ${attempt + 1})`)
          await this.restartDisk()
          cut = attempt < 1 && this.rng.chance(0.3)
          continue
        }
        this.fail('reopenFailures', `${why}: MemWAL.open failed: ${isMemwalError(err) ? err.code : (err as { code?: string }).code ?? 'untyped'} ${(err as Error).message}`)
      }
      if (cut) {
        // Recovery finished before the cut: the spare segment's preparation may still reach it.
        await turns(4)
        this.sim.cutPowerAtOp(Infinity)
        if (this.sim.isCrashed) {
          this.counts.powerLossesInRecovery++
          this.log(`  power cut right after recovery (attempt ${attempt + 1})`)
          await this.closeEngine(e)
          await this.restartDisk()
          cut = false
          continue
        }
      }
      this.engine = e
      break
    }
    const e = this.e
    const h = e.health()
    this.openedAtLsn = h.wal.lastLsn
    this.ackedThisEpoch = new Map()
    this.sweptThisEpoch = new Map()
    this.failedSeen = false
    if (h.wal.activeSegment !== '00000000000000000001.seg') this.counts.rotated = 1
    const findings = e.recovery.findings
    this.log(`  opened (${why}): last LSN ${this.openedAtLsn}, findings: ${findings.map((f) => `${f.kind}@${f.segment}:${f.offset}`).join(', ') || 'none'}`)
    const bad = findings.filter((f) => f.kind !== 'torn-tail')
    this.counts.tornTails += findings.length - bad.length
    if (bad.length > 0) this.fail('other', `${why}: recovery found more than a torn tail: ${JSON.stringify(bad).slice(0, 600)}`)
    if (expectLast !== undefined && this.openedAtLsn !== expectLast) {
      this.fail('acknowledgedLost', `${why}: the engine reopened with last LSN ${this.openedAtLsn}, the disk's log ends at ${expectLast}`, Math.max(1, expectLast - this.openedAtLsn))
    }
    if (this.openedAtLsn < this.lastLsn) this.fail('acknowledgedLost', `${why}: the log ends at ${this.openedAtLsn}, below the model's last LSN ${this.lastLsn}`, this.lastLsn - this.openedAtLsn)
    this.lastLsn = this.openedAtLsn
  }

  /** Closes, advancing the manual clock so that close's grace for a hung sink call can pass. */
  private async closeEngine(e: MemWAL): Promise<void> {
    this.counts.operations++
    let done = false
    const p = e.close().finally(() => (done = true))
    for (let i = 0; i < 50 && !done; i++) {
      await turns(4)
      if (!done) this.clock.advance(CLOSE_GRACE_MS)
    }
    await this.guard('close', p)
  }

  /** The end of an epoch: calls hung in it die with it. */
  private killHung(): void {
    for (const g of this.gates.values()) g.kill()
    this.gates = new Map()
  }

  /** Wraps each sink: fault injection on the backend and the index, apply counting on all three. */
  private wrap<S extends Sink>(sink: S): S {
    const name = sink.name
    this.sinks[name] = sink
    const f = (this.faults as Record<string, SinkFaults | undefined>)[name]
    const epoch = this.epoch
    const hook = sink as unknown as { _apply: ApplyHook }
    const original = hook._apply.bind(sink)
    hook._apply = async (records, checkpoint, signal) => {
      if (f) {
        if (f.hang) {
          let gate = this.gates.get(name)
          if (!gate) {
            gate = hangGate()
            this.gates.set(name, gate)
          }
          await gate.promise
        }
        if (epoch !== this.epoch) throw new InjectedFault(`${name}: a call of a dead engine`)
        if (f.down) throw new InjectedFault(`${name} is down`)
        if (f.failNext > 0) {
          f.failNext--
          throw new InjectedFault(`${name}: transient failure`)
        }
        if (this.poisonSink === name) {
          const bad = records.find((r) => (r.record.type === 3 ? r.record.ops : [r.record.op]).some((o) => o.key.startsWith('poison/')))
          if (bad) throw new PermanentSinkError(`${name} refuses LSN ${bad.lsn} for good`)
        }
      }
      if (this.sabotage === 'drop-apply' && name === 'backend' && !this.sabotaged && records.length > 0) {
        this.sabotaged = true
        return // claims success, stores nothing
      }
      await original(records, checkpoint, signal)
      if (this.sabotage === 'double-apply' && name === 'index' && !this.sabotaged && records.length > 0) {
        this.sabotaged = true
        await original(records, checkpoint, signal)
        this.countApplied(name, epoch, records)
      }
      this.countApplied(name, epoch, records)
    }
    if (f && sink instanceof BackendSink) {
      const get = sink.get.bind(sink)
      sink.get = async (key) => {
        if (f.down && !this.verifying) throw new InjectedFault(`${name} is down (get ${key})`)
        return get(key)
      }
    }
    return sink
  }

  private countApplied(name: string, epoch: number, records: readonly AppliedRecord[]): void {
    for (const r of records) {
      const k = name === 'cache' ? `${name}:${epoch}:${r.lsn}` : `${name}:${r.lsn}`
      const n = (this.applied.get(k) ?? 0) + 1
      this.applied.set(k, n)
      if (name !== 'cache') this.appliedAtWrite.set(k, this.store.writes)
      if (n > 1) this.doubleApply ??= `the ${name} sink's storage took LSN ${r.lsn} ${n} times`
    }
  }

  /**
   * Power comes back: the disk keeps what was durable, and so does the store
   * (its writes after its last sync are gone). An apply the store lost may
   * be applied again: it leaves the ledger. An apply is taken as lost when
   * the store had taken more writes than its last sync covered by the time
   * the apply returned (an upper bound on its own write: a kept apply may be
   * forgotten too, which only spares a later double apply of it from notice).
   */
  private async restartDisk(): Promise<void> {
    if (this.store.writes > this.store.syncedWrites) this.counts.storeWritesLost++
    await this.store.powerLoss()
    for (const [k, at] of this.appliedAtWrite) {
      this.appliedAtWrite.delete(k) // kept for good, or lost: either way no longer in question
      if (at <= this.store.syncedWrites) continue
      const n = (this.applied.get(k) ?? 1) - 1
      if (n > 0) this.applied.set(k, n)
      else this.applied.delete(k)
    }
    this.sim = this.sim.restart(this.rng.nextU32())
  }

  private checkDoubleApply(): void {
    if (this.doubleApply !== undefined) this.fail('doubleApplies', this.doubleApply)
  }

  private heal(): void {
    for (const n of FAULTY_SINKS) Object.assign(this.faults[n], { down: false, failNext: 0, hang: false })
    this.releaseAll()
  }

  private releaseAll(): void {
    for (const n of FAULTY_SINKS) this.faults[n].hang = false
    for (const g of this.gates.values()) g.open()
    this.gates = new Map()
  }

  // ---- writes ----

  private newWrite(): Write {
    const id = this.nextWriteId++
    if (this.poisonSink && this.rng.chance(0.08)) {
      this.counts.poisonWrites++
      return { id, ops: [{ type: 'put', key: POISON_KEYS[this.rng.below(POISON_KEYS.length)] as string, value: { poison: id } }] }
    }
    const kind = this.rng.below(10)
    const asTtl = this.rng.chance(0.5)
    if (kind < 5) return { id, ops: [this.putOp(id, 0)], asTtl }
    if (kind < 7) return { id, ops: [this.delOp()] }
    const n = 2 + this.rng.below(7)
    const ops: Op[] = []
    for (let i = 0; i < n; i++) ops.push(this.rng.chance(0.7) ? this.putOp(id, i) : this.delOp())
    return { id, ops, asTtl }
  }

  /**
   * A write with conditions: a put or a delete, or a batch of 2-4 ops on
   * distinct keys, each op conditioned (on the model's current version, on
   * a stale or made-up one, or ifAbsent) or not. Only ever issued alone, so
   * that the model, as it is when it is issued, decides the outcome.
   */
  private newConditionalWrite(): Write {
    const id = this.nextWriteId++
    const n = this.rng.chance(0.6) ? 1 : 2 + this.rng.below(3)
    const keys: string[] = [...KEYS]
    const ops: Op[] = []
    const conditions: (Condition | undefined)[] = []
    for (let i = 0; i < n; i++) {
      const key = keys.splice(this.rng.below(keys.length), 1)[0] as string
      const op: Op = this.rng.chance(0.75) ? this.putOp(id, i, key) : { type: 'del', key, ...nsOption(key, NAMESPACES) }
      ops.push(op)
      const v = this.model.get(key)
      const roll = this.rng.below(10)
      conditions.push(
        n > 1 && roll < 2 ? undefined
          : roll < 6 && v ? { ifVersion: v.lsn }
          : roll < 8 || op.type === 'del' ? { ifVersion: 1 + this.rng.below(this.lastLsn + 3) }
          : { ifAbsent: true },
      )
    }
    return { id, ops, conditions, asTtl: this.rng.chance(0.5) }
  }

  private key(): string {
    return KEYS[this.rng.below(KEYS.length)] as string
  }

  private delOp(): Op {
    const key = this.key()
    return { type: 'del', key, ...nsOption(key, NAMESPACES) }
  }

  private putOp(id: number, i: number, chosen?: string): Op {
    const roll = this.rng.below(100)
    const pad = this.bigValues ? 1000 + this.rng.below(5000) : roll < 85 ? this.rng.below(40) : roll < 98 ? 200 + this.rng.below(800) : 2000 + this.rng.below(3000)
    const shape = this.rng.below(8)
    const value: unknown =
      shape === 0 ? `s${id}:${'é'.repeat(pad % 50)}` : shape === 1 ? [id, i, null, true, 1.5, { nested: ['x'] }] : { w: id, i, n: this.rng.below(1000), pad: 'p'.repeat(pad) }
    const key = chosen ?? this.key()
    const namespace = namespaceOf(key, NAMESPACES)
    const tags = this.rng.chance(0.5) ? TAGS.filter(() => this.rng.chance(0.5)) : undefined
    // Resolved now, as the engine resolves ttlMs at the call (the clock does not move between the two).
    const expiresAt = this.rng.chance(0.3) ? this.clock.nowMs() + 1 + this.rng.below(TTL_MS_MAX) : undefined
    return { type: 'put', key, value, ...(namespace !== undefined ? { namespace } : {}), ...(tags ? { tags } : {}), ...(expiresAt !== undefined ? { expiresAt } : {}) }
  }

  /** An op as the engine's API takes it: its condition, and its expiry as ttlMs (from the clock now) when the write says so. */
  private apiOp(w: Write, i: number): BatchOp {
    const o = w.ops[i] as Op
    const c = w.conditions?.[i]
    const ns = o.namespace !== undefined ? { namespace: o.namespace } : {}
    if (o.type === 'del') return { type: 'del', key: o.key, ...ns, ...(c && 'ifVersion' in c ? c : {}) }
    const { expiresAt, ...rest } = o
    const expiry = expiresAt === undefined ? {} : w.asTtl === true ? { ttlMs: expiresAt - this.clock.nowMs() } : { expiresAt }
    return { ...rest, ...expiry, ...(c ?? {}) }
  }

  /**
   * What the model says of a conditional write now: undefined when every
   * condition holds, else the first op whose condition fails with the
   * version the engine must name (null: absent). An expired entry is absent.
   */
  private failedCondition(w: Write): { readonly key: string; readonly current: number | null } | undefined {
    for (const [i, c] of (w.conditions ?? []).entries()) {
      if (c === undefined) continue
      const key = (w.ops[i] as Op).key
      const current = this.live(key) ? (this.model.get(key) as Version).lsn : null
      if ('ifAbsent' in c ? current !== null : current !== c.ifVersion) return { key, current }
    }
    return undefined
  }

  /** Whether the model has `key` present and not expired by the clock now. */
  private live(key: string): boolean {
    const v = this.model.get(key)
    return v !== undefined && v.present && (v.expiresAt === undefined || v.expiresAt > this.clock.nowMs())
  }

  private issue(w: Write): Promise<{ lsn: number }> {
    this.counts.writes++
    this.counts.operations++
    if (w.conditions) this.counts.conditionalWrites++
    for (const o of w.ops) if (o.type === 'put' && o.expiresAt !== undefined) this.counts.expiringPuts++
    if (w.ops.length === 1) {
      const { type, key, value: _value, ...options } = this.apiOp(w, 0) as BatchOp & { value?: unknown }
      if (type === 'del') return this.e.delete(key, options)
      return this.e.put(key, (w.ops[0] as { value: unknown }).value, options)
    }
    return this.e.batch(w.ops.map((_, i) => this.apiOp(w, i)))
  }

  /** Issues writes concurrently; each outcome is an acknowledgement, a definite refusal or unknown. */
  private async writeAll(ws: Write[], extraTicks = 0): Promise<void> {
    const failedBefore = this.e.health().state === 'failed'
    // A conditional write is issued alone: the model as it is now decides it.
    const predicted = ws.map((w) => (w.conditions ? this.failedCondition(w) : undefined))
    const outcomes = ws.map((w) => this.issue(w).then(
      (r) => {
        // G2: nothing is acknowledged once the log failed.
        if (this.failedSeen || this.e.health().state === 'failed') this.record('failClosed', `write ${describeWrite(w)} was acknowledged (LSN ${r.lsn}) after the log failed`)
        return r
      },
      (err: unknown) => err as Error,
    ))
    for (let i = 0; i < extraTicks; i++) await turn()
    const results = await this.guard('writes', Promise.all(outcomes))
    ws.forEach((w, i) => this.settleWrite(w, results[i] as { lsn: number } | Error, failedBefore, predicted[i]))
    this.noteFailure()
  }

  private settleWrite(w: Write, out: { lsn: number } | Error, failedBefore: boolean, failed?: { readonly key: string; readonly current: number | null }): void {
    if (!(out instanceof Error)) {
      if (failed) this.fail('wrongConditions', `${describeWrite(w)} was acknowledged (LSN ${out.lsn}), though ${failed.key} is at ${failed.current ?? 'absent'} in the model`)
      this.acked(w, out.lsn)
      this.log(`    acked LSN ${out.lsn}: ${describeWrite(w)}`)
      return
    }
    const code = isMemwalError(out) ? out.code : (out as { code?: string }).code
    if (w.conditions && code === 'VERSION_MISMATCH') {
      const d = (out as { details?: { key?: string; current?: number | null } }).details
      if (!failed) this.fail('wrongConditions', `${describeWrite(w)} was refused (${d?.key ?? '?'} at ${d?.current ?? 'absent'}), though every condition holds in the model`)
      const c = w.conditions[w.ops.findIndex((o) => o.key === d?.key)]
      const want = this.live(d?.key ?? '') ? (this.model.get(d?.key ?? '') as Version).lsn : null
      if (c === undefined || d?.current !== want || ('ifAbsent' in c ? want === null : want === c.ifVersion)) this.fail('wrongConditions', `${describeWrite(w)} was refused naming ${d?.key ?? '?'} at ${d?.current ?? 'absent'}: the model has it at ${want ?? 'absent'}`)
      this.counts.conditionRefusals++
      this.refused.push(w)
      this.log(`    refused (version mismatch, as the model says): ${describeWrite(w)}`)
      return
    }
    // A condition that needs the backend's version while it cannot answer, or whose versions kept changing: refused, nothing written.
    if (w.conditions && (code === 'ENGINE_BACKEND_UNAVAILABLE' || code === 'ENGINE_GATE_BUSY')) {
      this.counts.typedReadErrors++
      this.refused.push(w)
      return
    }
    switch (code) {
      case 'ENGINE_BACKLOG_FULL':
        this.counts.refusedBacklog++
        this.refused.push(w)
        return
      case 'WAL_WRITE_FAILED':
        this.counts.enospcRefusals++
        this.refused.push(w)
        this.log(`    refused (no space): ${describeOps(w.ops)}`)
        return
      case 'ENGINE_FAILED':
        if (failedBefore) {
          this.counts.refusedAfterFailure++
          this.refused.push(w)
        } else this.unknown.push({ write: w, why: 'in the group that failed' })
        this.log(`    refused (engine failed${failedBefore ? '' : ', outcome unknown'}): ${describeOps(w.ops)}`)
        return
      default:
        this.fail('other', `write ${describeWrite(w)} failed with ${code ?? 'an untyped error'}: ${out.message}`)
    }
  }

  private acked(w: Write, lsn: number): void {
    this.counts.acknowledged++
    if (this.ackedThisEpoch.has(lsn) || lsn <= this.openedAtLsn) this.fail('other', `LSN ${lsn} acknowledged twice (or at or below the log's end ${this.openedAtLsn} at open)`)
    this.ackedThisEpoch.set(lsn, w)
    this.applyToModel(lsn, w.ops)
    this.lastLsn = Math.max(this.lastLsn, lsn)
  }

  /**
   * Whether `ops` at `lsn`, a record no write of the scenario wrote, are an
   * expiry sweep's: a batch of deletes, each of an entry the model has
   * present and expired by now (or that a later version replaced since).
   */
  private sweptOps(lsn: number, ops: readonly Op[]): boolean {
    return ops.length > 0 && ops.every((o) => {
      const v = this.model.get(o.key)
      if (o.type !== 'del' || v === undefined || o.namespace !== (namespaceOf(o.key, NAMESPACES) ?? 'default')) return false
      return v.lsn > lsn || (v.present && v.expiresAt !== undefined && v.expiresAt <= this.clock.nowMs())
    })
  }

  private applyToModel(lsn: number, ops: readonly Op[]): void {
    for (const o of ops) {
      if (o.key.startsWith('poison/')) {
        this.poisonAcked.set(lsn, { key: o.key, value: (o as { value?: unknown }).value })
        continue
      }
      const cur = this.model.get(o.key)
      if (cur && cur.lsn > lsn) continue
      const n = normOp(o)
      this.model.set(o.key, n.type === 'del' ? { present: false, lsn } : { present: true, lsn, value: n.value, ...(n.namespace !== undefined ? { namespace: n.namespace } : {}), ...(n.tags ? { tags: n.tags } : {}), ...(o.type === 'put' && o.expiresAt !== undefined ? { expiresAt: o.expiresAt } : {}) })
    }
  }

  /** G2: once an EIO hit a segment, the engine must be failed; from then on, segment writes are counted. */
  private noteFailure(): void {
    const e = this.e
    const state = e.health().state
    if (state === 'failed' && !this.failedSeen) {
      this.failedSeen = true
      this.fs.failed = true
      this.counts.walFailures++
      this.log(`  the engine failed closed: ${e.health().reason ?? ''}`)
    }
    if (this.fs.ioErrorOnSegment !== undefined && state !== 'failed') this.fail('failClosed', `${this.fs.ioErrorOnSegment}, yet the engine is ${state}, not failed`)
  }

  // ---- steps ----

  private async randomStep(): Promise<void> {
    const roll = this.rng.below(100)
    if (roll < 20) {
      this.log(`step ${this.step}: write`)
      return this.writeAll([this.newWrite()])
    }
    if (roll < 26) {
      this.log(`step ${this.step}: conditional write`)
      return this.writeAll([this.newConditionalWrite()])
    }
    if (roll < 36) {
      const n = 2 + this.rng.below(7)
      this.log(`step ${this.step}: burst of ${n} concurrent writes`)
      return this.writeAll(Array.from({ length: n }, () => this.newWrite()))
    }
    if (roll < 42) return this.queryStep()
    if (roll < 47) return this.flushStep()
    if (roll < 58) return this.sinkFaultStep()
    if (roll < 60) return this.clearStep()
    if (roll < 65) return this.advanceStep()
    if (roll < 72) return this.diskFaultStep()
    if (roll < 77) {
      this.log(`step ${this.step}: clean restart`)
      return this.restart()
    }
    if (roll < 91) return this.crash()
    return this.bitFlipStep()
  }

  private async queryStep(): Promise<void> {
    const q: { namespace?: string; tag?: string; prefix?: string } = {}
    if (this.rng.chance(0.4)) q.namespace = NAMESPACES[this.rng.below(NAMESPACES.length)] as string
    if (this.rng.chance(0.4)) q.tag = TAGS[this.rng.below(TAGS.length)] as string
    if (this.rng.chance(0.4)) q.prefix = PREFIXES[this.rng.below(PREFIXES.length)] as string
    this.log(`step ${this.step}: query ${JSON.stringify(q)}`)
    await this.checkQuery(q, 'query step', false)
    const k = this.key()
    this.counts.operations++
    const v = await this.guard(`get(${k})`, this.e.get(k, nsOption(k, NAMESPACES))).catch((err: unknown) => {
      if (err instanceof Violation) throw err
      if (isMemwalError(err) && err.code === 'ENGINE_BACKEND_UNAVAILABLE' && (this.model.get(k)?.lsn ?? 0) <= this.minCheckpoint()) return this.live(k) ? this.model.get(k)?.value : undefined
      this.fail('wrongReads', `get(${k}) failed with ${isMemwalError(err) ? err.code : 'an untyped error'}`)
    })
    const want = this.model.get(k)
    if (!same(v, this.live(k) ? want?.value : undefined)) this.fail('wrongReads', `get(${k}) = ${brief(v)}, the model has ${brief(want)}${this.live(k) ? '' : ' (expired or absent)'}`)
  }

  /**
   * Clears one namespace (never `default`, where the poison keys live): one
   * record of deletes, acknowledged with its LSN; nothing written when the
   * model has nothing live there (and nothing expired the sweep left).
   */
  private async clearStep(): Promise<void> {
    const namespace = NAMESPACES[this.rng.below(NAMESPACES.length)] as string
    this.log(`step ${this.step}: clear ${namespace}`)
    const w: Write = { id: this.nextWriteId++, ops: [], clear: namespace }
    this.counts.clears++
    this.counts.writes++
    this.counts.operations++
    const failedBefore = this.e.health().state === 'failed'
    const out = await this.guard(`clear ${namespace}`, this.e.clear({ namespace }).then((r) => r, (err: unknown) => err as Error))
    if (out instanceof Error) this.settleWrite(w, out, failedBefore)
    else if (out.records === 0) {
      const live = KEYS.filter((k) => namespaceOf(k, NAMESPACES) === namespace && this.live(k))
      if (live.length > 0) this.fail('wrongReads', `clear ${namespace} found nothing to delete, though the model has ${live.join(', ')} live there`)
      this.log('    nothing to clear')
    } else if (out.records === 1 && out.lsn !== undefined) {
      // Durable once acknowledged: its deletes, as logged, are what the model takes.
      const ops = (await this.readLog(this.sim, out.lsn, `clear ${namespace}`)).seen.get(out.lsn)
      if (!ops || !wrote(w, ops) || ops.length !== out.deleted) this.fail('other', `clear ${namespace} acknowledged at LSN ${out.lsn} (${out.deleted} deleted), the log holds ${ops ? describeOps(ops) : 'nothing'} there`)
      const missed = KEYS.filter((k) => namespaceOf(k, NAMESPACES) === namespace && this.live(k) && !ops.some((o) => o.key === k))
      if (missed.length > 0) this.fail('wrongReads', `clear ${namespace} left ${missed.join(', ')}, live in the model`)
      this.counts.clearedEntries += out.deleted
      this.settleWrite({ ...w, ops }, { lsn: out.lsn }, failedBefore)
    } else this.fail('other', `clear ${namespace} of at most ${KEYS.length} keys took ${out.records} records`)
    this.noteFailure()
  }

  /** Heal and flush (G3); or, with a sink still down, a flush with a timeout must fail typed and in time. */
  private async flushStep(): Promise<void> {
    const stuck = FAULTY_SINKS.some((n) => this.faults[n].down || this.faults[n].hang)
    if (stuck && this.rng.chance(0.5)) {
      this.log(`step ${this.step}: flush with a sink down, timeout 40 ms`)
      this.counts.operations++
      let settled: unknown
      const p = this.e.flush({ timeoutMs: 40 }).then(() => (settled = 'ok'), (err: unknown) => (settled = err))
      for (let i = 0; i < 6 && settled === undefined; i++) {
        await turns(4)
        this.clock.advance(10)
      }
      await turns(4)
      await this.guard('flush with timeout', p)
      if (settled === undefined) this.fail('other', 'flush({ timeoutMs: 40 }) did not settle 60 ms after it was called')
      if (settled !== 'ok') {
        if (!isMemwalError(settled) || settled.code !== 'ENGINE_FLUSH_TIMEOUT') this.fail('other', `flush with a timeout failed with ${isMemwalError(settled) ? settled.code : 'an untyped error'}`)
        this.counts.flushTimeouts++
      }
      return
    }
    this.log(`step ${this.step}: heal and flush`)
    await this.flushAndCheck(`step ${this.step}`)
  }

  private sinkFaultStep(): void {
    const name = FAULTY_SINKS[this.rng.chance(0.7) ? 0 : 1 + this.rng.below(FAULTY_SINKS.length - 1)] as FaultySink
    const f = this.faults[name]
    const kind = this.rng.below(5)
    if (name === 'cache' && kind < 4) this.counts.cacheFaults++
    if (kind === 0 || kind === 1) {
      f.down = !f.down
      if (f.down) this.counts.outages++
    } else if (kind === 2) {
      const n = 1 + this.rng.below(5)
      f.failNext += n
      this.counts.transientFailures += n
    } else if (kind === 3) {
      if (f.hang) {
        f.hang = false
        this.gates.get(name)?.open()
        this.gates.delete(name)
      } else {
        f.hang = true
        this.counts.hangs++
      }
    } else this.heal()
    this.log(`step ${this.step}: sink fault ${['outage toggle', 'outage toggle', 'transient failures', 'hang toggle', 'heal all'][kind]} on ${name}: ${JSON.stringify(this.faults)}`)
  }

  /**
   * Time passes: retries and half-open probes run. Or, with a sink's calls
   * hung, the clock jumps past the apply timeout (they time out, the applier
   * goes on) and then the hung calls complete their work late: whatever a
   * late call stores, no record may be applied twice and the sinks must
   * still converge (checked at the next flush).
   */
  private async advanceStep(): Promise<void> {
    const hung = FAULTY_SINKS.filter((n) => this.faults[n].hang)
    if (hung.length > 0 && this.rng.chance(0.4)) {
      this.log(`step ${this.step}: the clock jumps past the apply timeout, then the hung calls of ${hung.join(', ')} complete late`)
      await turns(6)
      this.clock.advance(APPLY_TIMEOUT_MS + 1)
      await turns(6)
      this.counts.lateApplies++
      this.releaseAll()
      await turns(6)
      return
    }
    const rounds = 1 + this.rng.below(4)
    this.log(`step ${this.step}: ${rounds} clock advances`)
    for (let i = 0; i < rounds; i++) {
      await turns(6)
      this.clock.advance(RETRY_DELAY_MS_MAX)
    }
    await turns(6)
  }

  /** Arms ENOSPC or EIO on the log, then writes into it. */
  private async diskFaultStep(): Promise<void> {
    const after = this.rng.below(3)
    if (this.rng.chance(0.55)) {
      const times = this.rng.chance(0.8) ? 1 : 2
      this.sim.injectFault({ op: 'write', code: 'ENOSPC', pathIncludes: WAL_DIR, after, times })
      this.counts.enospcArmed++
      this.log(`step ${this.step}: ENOSPC armed on log writes (after ${after}, ${times} times)`)
    } else {
      const op = (['write', 'write', 'datasync', 'syncDir'] as const)[this.rng.below(4)] as 'write' | 'datasync' | 'syncDir'
      this.sim.injectFault({ op, code: 'EIO', pathIncludes: WAL_DIR, after })
      this.counts.eioArmed++
      this.log(`step ${this.step}: EIO armed on the log's ${op} (after ${after})`)
    }
    const n = 1 + this.rng.below(5)
    const ws = Array.from({ length: n }, () => this.newWrite())
    await this.writeAll(ws)
  }

  private minCheckpoint(): number {
    const h = this.e.health()
    return Math.min(...Object.values(h.sinks).map((s) => s.checkpoint))
  }

  // ---- restarts, crashes, failures ----

  /** Clean close and reopen on the same disk. */
  private async restart(): Promise<void> {
    this.counts.cleanRestarts++
    const e = this.e
    this.engine = undefined
    await this.closeEngine(e)
    this.killHung()
    this.sim.clearFaults()
    const durable = this.durableCheckpointOf(e)
    const end = await this.learn(this.sim, durable, 'clean restart')
    await this.open('clean restart', false, end)
  }

  private durableCheckpointOf(e: MemWAL, log = true): number {
    const h = e.health()
    if (log) this.log(`  closed: checkpoints ${Object.entries(h.sinks).map(([n, x]) => `${n} ${x.checkpoint} (durable ${x.durableCheckpoint})`).join(', ')}`)
    // Retention purges only through the durable checkpoints (the store's group sync).
    return Math.min(h.sinks['backend']?.durableCheckpoint ?? 0, h.sinks['index']?.durableCheckpoint ?? 0)
  }

  /**
   * Power loss, perhaps with writes in flight: cut at the Nth mutating
   * filesystem operation from now (it may tear a write), or after a few
   * turns. Then the process dies (the engine is closed: its appliers stop
   * and its hung calls die), the disk restarts, and the engine reopens.
   */
  private async crash(): Promise<void> {
    this.counts.powerLosses++
    const inFlight = this.rng.chance(0.7) ? 1 + this.rng.below(6) : 0
    const atOp = this.rng.chance(0.5) ? 1 + this.rng.below(8) : undefined
    const ticks = this.rng.below(10)
    this.log(`step ${this.step}: power loss with ${inFlight} writes in flight, cut ${atOp !== undefined ? `at mutating op ${atOp}` : `after ${ticks} turns`}`)
    if (atOp !== undefined) this.sim.cutPowerAtOp(atOp)
    const failedBefore = this.e.health().state === 'failed'
    const flying = Array.from({ length: inFlight }, () => this.newWrite()).map((w) => ({ w, out: this.issue(w).then((r) => r, (err: unknown) => err as Error) }))
    for (let i = 0; i < ticks; i++) await turn()
    this.sim.powerLoss()
    for (const f of flying) {
      const out = await this.guard('a write in flight at the power loss', f.out)
      if (out instanceof Error && (isMemwalError(out) ? out.code : '') !== 'ENGINE_BACKLOG_FULL' && (isMemwalError(out) ? out.code : '') !== 'WAL_WRITE_FAILED') {
        this.counts.inFlightAtCrash++
        this.unknown.push({ write: f.w, why: 'in flight at the power loss' })
      } else this.settleWrite(f.w, out, failedBefore)
    }
    await this.dieAndRestart('power loss', true)
  }

  /** The process dies on a crashed disk: close, restart the disk, learn what survived, reopen (maybe with another cut in recovery). */
  private async dieAndRestart(why: string, mayCutAgain: boolean): Promise<void> {
    const e = this.e
    this.engine = undefined
    await this.closeEngine(e)
    this.killHung()
    const durable = this.durableCheckpointOf(e)
    await this.restartDisk()
    const end = await this.learn(this.sim, durable, why)
    await this.open(why, mayCutAgain && this.rng.chance(0.25), end)
  }

  /** After the engine failed closed (G2): a power loss and reopen, or a process restart with the page cache intact. */
  private async recoverFromFailure(): Promise<void> {
    const e = this.e
    // Still failed, still refusing: one more write must be refused, typed.
    await this.writeAll([this.newWrite()])
    if (this.fs.writesAfterFailure > 0) this.fail('failClosed', `${this.fs.writesAfterFailure} segment writes or syncs after the log failed`)
    if (e.health().state !== 'failed') this.fail('failClosed', `the engine left the failed state by itself (now ${e.health().state})`)
    if (this.rng.chance(0.7)) {
      this.log(`step ${this.step}: recover from the failure: power loss and reopen`)
      this.counts.powerLosses++
      this.sim.powerLoss()
      await this.dieAndRestart('reopen after failure (power loss)', false)
    } else {
      this.log(`step ${this.step}: recover from the failure: process restart, page cache intact`)
      this.counts.pageCacheReopens++
      this.engine = undefined
      await this.closeEngine(e)
      this.killHung()
      this.sim.clearFaults()
      const end = await this.learn(this.sim, this.durableCheckpointOf(e), 'reopen after failure (page cache intact)')
      await this.open('reopen after failure (page cache intact)', false, end)
    }
  }

  /**
   * Reads the log on `disk` with dumpLog (read only): every LSN acknowledged
   * in the closing epoch must hold its ops (G1), unless it was purged after
   * every durable sink applied it; any record beyond the acknowledged ones
   * must be a write of unknown outcome (ORIGIN), which joins the model.
   * Resolves the LSN the log ends at.
   */
  private async learn(disk: SimulatedFileSystem, durableCheckpoint: number, why: string): Promise<number> {
    this.counts.operations++
    const { seen, end } = await this.readLog(disk, this.openedAtLsn + 1, why)
    const lost: string[] = []
    for (const [lsn, w] of this.ackedThisEpoch) {
      const got = seen.get(lsn)
      if (!got) {
        if (lsn > durableCheckpoint) lost.push(`LSN ${lsn} (${describeWrite(w)}) is not in the log`)
      } else if (!wrote(w, got)) lost.push(`LSN ${lsn} holds ${describeOps(got)}, acknowledged for ${describeWrite(w)}`)
    }
    for (const [lsn, ops] of this.sweptThisEpoch) {
      const got = seen.get(lsn)
      if (got ? !sameOps(got, ops) : lsn > durableCheckpoint) lost.push(`the sweep's LSN ${lsn} (${describeOps(ops)}), found durable before, ${got ? `holds ${describeOps(got)}` : 'is not in the log'}`)
    }
    if (lost.length > 0) this.fail('acknowledgedLost', `${why}: ${lost.join('; ')} (durable checkpoint ${durableCheckpoint})`, lost.length)
    for (const [lsn, ops] of [...seen].sort((a, b) => a[0] - b[0])) {
      if (this.ackedThisEpoch.has(lsn) || this.sweptThisEpoch.has(lsn)) continue
      const i = this.unknown.findIndex((u) => wrote(u.write, ops))
      // A record that is both a write of unknown outcome and a valid sweep (the same deletes of entries expired in the
      // model) is taken as the sweep's: the write then stays to explain a later record of the same deletes, which the
      // model, with the entry deleted, would no longer take for a sweep (seed 453041752: the sweep's del a/1 at LSN 7,
      // the in-flight write's del a/1 at LSN 9, matched the other way round, failed as an origin violation).
      if (i < 0 || this.sweptOps(lsn, ops)) {
        this.sweepRecord(lsn, ops, why)
        continue
      }
      this.log(`    unacknowledged write surfaced at LSN ${lsn} (${this.unknown[i]?.why ?? ''}): ${describeOps(ops)}`)
      this.unknown.splice(i, 1)
      this.counts.surfacedUnacked++
      this.applyToModel(lsn, ops)
      this.lastLsn = Math.max(this.lastLsn, lsn)
    }
    this.unknown = []
    this.refused = []
    return Math.max(end, this.openedAtLsn)
  }

  /**
   * A record in the log that no write of the scenario wrote (ORIGIN) must be
   * the expiry sweep's; it joins the model (its deletes change no read: what
   * it deletes had expired).
   */
  private sweepRecord(lsn: number, ops: readonly Op[], why: string): void {
    if (!this.sweptOps(lsn, ops)) {
      const refused = this.refused.some((w) => wrote(w, ops))
      this.fail('origin', `${why}: LSN ${lsn} holds ${describeOps(ops)}, which ${refused ? 'was refused with a definite error' : 'no write of unknown outcome wrote, nor the expiry sweep (not all expired deletes)'}`)
    }
    this.log(`    expiry sweep record at LSN ${lsn}: ${describeOps(ops)}`)
    this.counts.sweepRecords++
    this.applyToModel(lsn, ops)
    this.lastLsn = Math.max(this.lastLsn, lsn)
  }

  /**
   * The records of the log on `disk` from `fromLsn` (dumpLog, read only), as
   * recovery keeps them: every record, except those after the first damage
   * in the last segment (a torn final group: a write that never completed,
   * whose later sectors persisted; recovery truncates it). `end`: the last LSN.
   */
  private async readLog(disk: SimulatedFileSystem, fromLsn: number, why: string): Promise<{ seen: Map<number, readonly Op[]>; end: number }> {
    const seen = new Map<number, readonly Op[]>()
    let end = 0
    try {
      const entries: DumpEntry[] = []
      for await (const d of dumpLog({ dir: TORTURE_DIR, fs: disk, fromLsn })) entries.push(d)
      const lastSegment = entries.reduce((m, d) => (d.segment > m ? d.segment : m), '')
      const torn = entries.find((d) => d.kind === 'damage' && d.segment === lastSegment)
      const tornAt = torn?.kind === 'damage' ? torn.offset : Infinity
      for (const d of entries) {
        if (d.kind !== 'record' || (d.segment === lastSegment && d.offset > tornAt)) continue
        seen.set(d.lsn, d.record.type === 3 ? d.record.ops : [d.record.op])
        end = Math.max(end, d.lsn)
      }
    } catch (err) {
      this.fail('other', `${why}: dumpLog failed: ${(err as Error).message}`)
    }
    return { seen, end }
  }

  /**
   * After a flush, with the engine idle: the records of the live log that no
   * write of the scenario wrote must be the expiry sweep's (ORIGIN); they
   * are durable now (everything appended was acknowledged and applied), so
   * a later crash must keep them.
   */
  private async learnSweeps(when: string): Promise<void> {
    const { seen } = await this.readLog(this.sim, this.openedAtLsn + 1, when)
    for (const [lsn, ops] of [...seen].sort((a, b) => a[0] - b[0])) {
      if (this.ackedThisEpoch.has(lsn) || this.sweptThisEpoch.has(lsn)) continue
      this.sweepRecord(lsn, ops, when)
      this.sweptThisEpoch.set(lsn, ops)
    }
  }

  // ---- bit flips ----

  private async walFiles(disk: SimulatedFileSystem): Promise<string[]> {
    return (await disk.readdir(WAL_DIR)).map((n) => `${WAL_DIR}/${n}`)
  }

  /**
   * Where the frames of each segment end, by walking the frame headers
   * (DESIGN.md §3: a 64-byte segment header, then frames of a 32-byte header
   * starting with the magic "MWFR", the u32 payload length at offset 16, and
   * the payload). Synchronous: nothing moves in the engine meanwhile.
   */
  private async segmentEnds(): Promise<Map<string, number>> {
    const ends = new Map<string, number>()
    for (const f of await this.walFiles(this.sim)) {
      const bytes = this.sim.peek(f)
      if (!f.endsWith('.seg') || !bytes || bytes.length < 64) continue
      const { end } = recordFramesIn(bytes)
      if (end > 64) ends.set(f.slice(WAL_DIR.length + 1), end)
    }
    return ends
  }

  /**
   * Turns the event loop until the engine is idle: no filesystem mutation,
   * apply, checkpoint or failure count changed for IDLE_TURNS turns (its
   * appliers wait for records, for the manual clock or for a hung call).
   * Called before verify(), which compiles WebAssembly off the event loop:
   * a busy engine would get a varying distance meanwhile.
   */
  private async idle(e: MemWAL): Promise<void> {
    const signature = (): string => {
      const h = e.health()
      return `${this.sim.stats.mutatingOps}:${this.applied.size}:${h.backlog.records}:${Object.values(h.sinks).map((x) => `${x.checkpoint}/${x.consecutiveFailures}/${x.applied}/${x.deadLetters}`).join(',')}`
    }
    let last = signature()
    for (let same = 0, i = 0; same < IDLE_TURNS && i < IDLE_TURNS_MAX; i++) {
      await turn()
      const now = signature()
      same = now === last ? same + 1 : 0
      last = now
    }
  }

  /**
   * A bit flips in a segment (G5), under the open engine or while it is
   * closed. Detection: open refuses with a typed corruption error, or
   * recovery's findings or verify() name the segment. The original bytes
   * are put back afterwards (the operator restores the file), and the run
   * goes on.
   */
  private async bitFlipStep(): Promise<void> {
    const online = this.rng.chance(0.4)
    let last = 0
    if (online) {
      await this.idle(this.e)
    } else {
      const e = this.e
      this.engine = undefined
      await this.closeEngine(e)
      this.killHung()
      this.sim.clearFaults()
      last = await this.learn(this.sim, this.durableCheckpointOf(e), 'close before a bit flip')
    }
    const ends = await this.segmentEnds()
    const segs = [...ends.keys()]
    if (segs.length === 0) {
      if (!online) await this.open('no segment to flip a bit in', false, last)
      return
    }
    const seg = segs[this.rng.below(segs.length)] as string
    const file = `${WAL_DIR}/${seg}`
    const end = ends.get(seg) as number
    const at = this.rng.below(end)
    const bit = this.rng.below(8)
    this.counts.bitFlips++
    this.log(`step ${this.step}: bit ${bit} of byte ${at} flips in ${seg} (frames end at ${end}), engine ${online ? 'open' : 'closed'}`)
    if (online) {
      const before = this.sim.peek(file) as Buffer
      const flipped = Buffer.from(before)
      flipped[at] = (flipped[at] as number) ^ (1 << bit)
      this.sim.poke(file, flipped)
      this.counts.operations++
      this.verifying = true
      const report = await this.guard('verify', this.e.verify()).finally(() => (this.verifying = false))
      this.sim.poke(file, before)
      if (report.findings.some((f) => f.segment === seg)) this.counts.flipsFoundByVerify++
      else this.fail('undetectedCorruptions', `a flipped bit at offset ${at} of ${seg} (frames end at ${end}), under the open engine: verify() reported ${JSON.stringify(report.findings).slice(0, 400)}`)
      return
    }
    const snapshot = new Map<string, Buffer>()
    for (const f of await this.walFiles(this.sim)) snapshot.set(f, Buffer.from(this.sim.peek(f) as Buffer))
    const flipped = Buffer.from(snapshot.get(file) as Buffer)
    flipped[at] = (flipped[at] as number) ^ (1 << bit)
    this.sim.poke(file, flipped)
    let detected: string | undefined
    try {
      const damaged = await this.guard('MemWAL.open on a flipped bit', this.openEngine())
      this.log(`  opened on the flipped bit: last LSN ${damaged.health().wal.lastLsn}, findings ${JSON.stringify(damaged.recovery.findings)}`)
      try {
        if (damaged.recovery.findings.some((f) => f.segment === seg)) {
          this.counts.flipsFoundAtOpen++
          detected = 'recovery findings'
        } else {
          this.counts.operations++
          await this.idle(damaged)
          this.verifying = true
          const report = await this.guard('verify', damaged.verify()).finally(() => (this.verifying = false))
          if (report.findings.some((f) => f.segment === seg)) {
            this.counts.flipsFoundByVerify++
            detected = 'verify'
          } else if (!this.sim.peek(file) && this.durableCheckpointOf(damaged, false) >= lastLsnIn(snapshot.get(file) as Buffer)) {
            // Retention deleted the segment (every durable sink had applied it) before anything read the damaged frame.
            this.counts.flipsPurged++
            detected = 'purged by retention, never read'
          } else this.log(`  verify(): ${JSON.stringify(report).slice(0, 1500)}`)
        }
      } finally {
        await this.closeEngine(damaged)
        this.killHung()
      }
    } catch (err) {
      if (err instanceof Violation) throw err
      const code = isMemwalError(err) ? err.code : undefined
      if (code === undefined || !CORRUPTION_CODES.has(code)) this.fail('undetectedCorruptions', `open on a flipped bit at offset ${at} of ${seg} failed with ${code ?? 'an untyped error'}: ${(err as Error).message}`)
      this.counts.flipsRefusedAtOpen++
      detected = `open refused with ${code}`
    }
    if (detected === undefined) this.fail('undetectedCorruptions', `a flipped bit at offset ${at} of ${seg} (frames end at ${end}) went unreported by recovery and verify()`)
    this.log(`  detected: ${detected}; the original bytes are put back`)
    for (const f of await this.walFiles(this.sim)) if (!snapshot.has(f)) this.sim.remove(f)
    for (const [f, bytes] of snapshot) this.sim.poke(f, bytes)
    await this.open('after a bit flip was repaired', false, last)
  }

  // ---- checks ----

  private async checkReads(when: string): Promise<void> {
    for (const k of KEYS) await this.checkKey(k, when, false)
    for (const k of POISON_KEYS) if (this.poisonSink) await this.checkPoison(k, when, false)
  }

  private expected(key: string): ModelEntry | undefined {
    const v = this.model.get(key)
    if (!v || !this.live(key)) return undefined
    return { value: v.value, lsn: v.lsn, ...(v.namespace !== undefined ? { namespace: v.namespace } : {}), ...(v.tags ? { tags: v.tags } : {}) }
  }

  /** G1 + G4 for one key: the model's version, or (not strict) the typed error for a key that is not pending. */
  private async checkKey(key: string, when: string, strict: boolean): Promise<void> {
    this.counts.reads++
    this.counts.operations++
    const want = this.expected(key)
    const v = this.model.get(key)
    if (v?.present === true && !this.live(key)) this.counts.expiredReads++
    let got: ModelEntry | undefined
    try {
      const e = await this.guard(`getEntry(${key})`, this.e.getEntry(key, nsOption(key, NAMESPACES)))
      if (e && want && e.expiresAt !== v?.expiresAt) this.fail('wrongReads', `${when}: getEntry(${key}) expires at ${e.expiresAt ?? 'never'}, the model's at ${v?.expiresAt ?? 'never'}`)
      got = fromEntry(e)
    } catch (err) {
      if (err instanceof Violation) throw err
      const code = isMemwalError(err) ? err.code : 'an untyped error'
      const lsn = this.model.get(key)?.lsn ?? 0
      if (!strict && code === 'ENGINE_BACKEND_UNAVAILABLE' && lsn <= this.minCheckpoint()) {
        this.counts.typedReadErrors++
        return
      }
      this.fail('wrongReads', `${when}: getEntry(${key}) failed with ${code}${code === 'ENGINE_BACKEND_UNAVAILABLE' ? ` though ${strict ? 'every sink is healthy' : `its version (LSN ${lsn}) is pending (checkpoints at ${this.minCheckpoint()})`}` : `: ${(err as Error).message}`}`)
    }
    if (!same(got, want)) this.fail('wrongReads', `${when}: getEntry(${key}) = ${brief(got)}, the model has ${brief(want)}`)
    // get answers as getEntry did, or (not strict, the key not pending) fails typed: a read may race the backend going down.
    const value = await this.guard(`get(${key})`, this.e.get(key, nsOption(key, NAMESPACES))).catch((err: unknown) => {
      if (err instanceof Violation) throw err
      if (!strict && isMemwalError(err) && err.code === 'ENGINE_BACKEND_UNAVAILABLE' && (this.model.get(key)?.lsn ?? 0) <= this.minCheckpoint()) return want?.value
      this.fail('wrongReads', `${when}: get(${key}) failed with ${isMemwalError(err) ? err.code : 'an untyped error'}`)
    })
    if (!same(value, want?.value)) this.fail('wrongReads', `${when}: get(${key}) = ${brief(value)}, the model has ${brief(want?.value)}`)
  }

  /**
   * A poison key: while its record is pending the overlay answers with it;
   * once dead-lettered by the backend the key reads as absent (the backend
   * never took it), and if the index refused it the backend has it.
   */
  private async checkPoison(key: string, when: string, settled: boolean): Promise<void> {
    this.counts.reads++
    this.counts.operations++
    let got: ModelEntry | undefined
    try {
      // Poison keys are written without a namespace: they live in `default`.
      got = fromEntry(await this.guard(`getEntry(${key})`, this.e.getEntry(key)))
    } catch (err) {
      if (err instanceof Violation) throw err
      if (!settled && isMemwalError(err) && err.code === 'ENGINE_BACKEND_UNAVAILABLE') {
        this.counts.typedReadErrors++
        return
      }
      this.fail('wrongReads', `${when}: getEntry(${key}) failed with ${isMemwalError(err) ? err.code : 'an untyped error'}`)
    }
    const versions = [...this.poisonAcked].filter(([, p]) => p.key === key).sort((a, b) => a[0] - b[0])
    const latest = versions[versions.length - 1]
    if (got === undefined) {
      if (settled && this.poisonSink === 'index' && latest) this.fail('wrongReads', `${when}: getEntry(${key}) = undefined, though only the index refused it and the backend took LSN ${latest[0]}`)
      return
    }
    const match = versions.find(([lsn, p]) => lsn === got.lsn && same(p.value, got.value))
    if (!match) this.fail('wrongReads', `${when}: getEntry(${key}) = ${brief(got)}, which no acknowledged write of it holds`)
    if (settled && (this.poisonSink === 'backend' || got.lsn !== latest?.[0])) this.fail('wrongReads', `${when}: getEntry(${key}) = ${brief(got)} after the ${this.poisonSink ?? ''} sink dead-lettered it`)
  }

  private async checkQuery(q: QueryOptions, when: string, strict: boolean): Promise<void> {
    this.counts.queries++
    this.counts.operations++
    const want = [...this.model.entries()]
      .filter(([k, v]) => this.live(k) && (q.prefix === undefined || k.startsWith(q.prefix)) && (q.namespace === undefined || v.namespace === q.namespace) && (q.tag === undefined || (v.tags ?? []).includes(q.tag)))
      .sort((a, b) => (identityOrder(a[0], NAMESPACES) < identityOrder(b[0], NAMESPACES) ? -1 : 1))
      .map(([key, v]) => ({ key, value: v.value, ...(v.namespace !== undefined ? { namespace: v.namespace } : {}), ...(v.tags ? { tags: v.tags } : {}) }))
    let got: { key: string }[]
    try {
      got = (await this.guard(`query ${JSON.stringify(q)}`, collect(this.e.query(q)))).map(fromQuery)
    } catch (err) {
      if (err instanceof Violation) throw err
      if (!strict && isMemwalError(err) && err.code === 'ENGINE_BACKEND_UNAVAILABLE') {
        this.counts.typedReadErrors++
        return
      }
      this.fail('wrongReads', `${when}: query ${JSON.stringify(q)} failed with ${isMemwalError(err) ? err.code : 'an untyped error'}: ${(err as Error).message}`)
    }
    const visible = got.filter((r) => !r.key.startsWith('poison/'))
    if (!same(visible, want)) this.fail('wrongReads', `${when}: query ${JSON.stringify(q)} = ${brief(visible)}, the model has ${brief(want)}`)
  }

  /**
   * Heals every sink, then advances the clock until flush resolves (G3);
   * then every checkpoint is the log's end, the backlog is empty, the
   * backend holds the model, verify() is clean, nothing was applied twice
   * and every poison record went to the dead-letter log.
   */
  private async flushAndCheck(when: string): Promise<void> {
    this.heal()
    this.counts.flushes++
    this.counts.operations++
    const e = this.e
    let done: unknown
    const p = e.flush().then(() => (done = 'ok'), (err: unknown) => (done = err))
    for (let i = 0; i < SETTLE_ROUNDS_MAX && done === undefined; i++) {
      await turns(6)
      if (done !== undefined) break
      this.clock.advance(RETRY_DELAY_MS_MAX)
    }
    if (done === undefined) this.fail('notConverged', `${when}: flush with healthy sinks did not complete after ${SETTLE_ROUNDS_MAX} retry rounds: ${JSON.stringify(e.health()).slice(0, 600)}`)
    await this.guard('flush', p)
    if (done !== 'ok') this.fail('notConverged', `${when}: flush with healthy sinks failed: ${isMemwalError(done) ? done.code : ''} ${(done as Error).message}`)
    this.checkDoubleApply()
    const h = e.health()
    for (const [name, s] of Object.entries(h.sinks)) if (s.checkpoint !== h.wal.lastLsn) this.fail('notConverged', `${when}: after flush the ${name} checkpoint is ${s.checkpoint}, the log's last LSN ${h.wal.lastLsn}`)
    await this.learnSweeps(when)
    if (h.wal.lastLsn !== this.lastLsn) this.fail('other', `${when}: the log's last LSN is ${h.wal.lastLsn}, the model's ${this.lastLsn}`)
    if (h.backlog.records !== 0 || h.backlog.pendingKeys !== 0) this.fail('notConverged', `${when}: after flush the backlog holds ${h.backlog.records} records, ${h.backlog.pendingKeys} keys`)
    const backend = this.sinks['backend'] as BackendSink | undefined
    if (!backend) this.fail('other', 'no backend sink was wrapped')
    // An expired row the sweep has not deleted yet is the backend's business: no reader sees it.
    const stored = (await collect(backend.entries())).filter(([, e]) => e.expiresAt === undefined || e.expiresAt > this.clock.nowMs()).map(([, e]): [string, ModelEntry] => [e.key, fromStored(e)]).filter(([k]) => !k.startsWith('poison/'))
    const want = [...KEYS].filter((k) => this.live(k)).sort((a, b) => (identityOrder(a, NAMESPACES) < identityOrder(b, NAMESPACES) ? -1 : 1)).map((k) => [k, this.expected(k)])
    if (!same(stored, want)) this.fail('notConverged', `${when}: the backend holds ${brief(stored)}, the model ${brief(want)}`)
    this.counts.operations++
    await this.idle(e)
    const report = await this.guard('verify', e.verify())
    const findings = report.findings.filter((f) => !(f.key?.startsWith('poison/') ?? false))
    if (findings.length > 0) this.fail('notConverged', `${when}: verify() after flush: ${JSON.stringify(findings).slice(0, 600)}`)
    const undead = [...this.poisonAcked.keys()].filter((lsn) => !this.deadLettered.has(lsn))
    if (undead.length > 0) this.fail('notConverged', `${when}: poison records at LSNs ${undead.join(' ')} were never dead-lettered`)
    const wrongly = [...this.deadLettered].filter(([lsn, sink]) => sink !== this.poisonSink || !this.poisonAcked.has(lsn))
    if (wrongly.length > 0) this.fail('other', `${when}: dead-lettered though no poison record of that sink: ${wrongly.map(([lsn, sink]) => `LSN ${lsn} by ${sink}`).join(', ')}`)
    for (const k of KEYS) await this.checkKey(k, `${when} (after flush)`, true)
    if (this.poisonSink) for (const k of POISON_KEYS) await this.checkPoison(k, `${when} (after flush)`, true)
    const queries: QueryOptions[] = [{}, ...NAMESPACES.map((namespace) => ({ namespace })), ...TAGS.map((tag) => ({ tag })), ...PREFIXES.map((prefix) => ({ prefix })), { namespace: 'n2', tag: 't1', prefix: 'b/' }]
    for (const q of queries) await this.checkQuery(q, `${when} (after flush)`, true)
    this.log(`  flushed: checkpoints at ${h.wal.lastLsn}`)
  }

  private guard<T>(what: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Violation(`${what} did not settle in ${HANG_MS} ms`)), HANG_MS)
    })
    return Promise.race([p, hang]).finally(() => clearTimeout(timer)).catch((err: unknown) => {
      if (err instanceof Violation) this.record('other', `hang: ${err.message}`)
      throw err
    })
  }
}
