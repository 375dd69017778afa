/**
 * Seeded power-loss scenarios for the WAL (DESIGN.md G1, §4, §7).
 *
 * One scenario: a simulated filesystem, a manual clock and seeded randomness;
 * a WAL in `sync` durability with the smallest segments (64 KiB) so that it
 * rotates often; a seeded workload of appends (bursts that group commit
 * gathers, lone awaited appends, pauses); power cut at a seeded mutating
 * filesystem operation, so the crash lands anywhere: mid group write, while
 * a spare segment is zero-filled or synced, on the segment header write, the
 * rename, the directory sync. Then restart (unsynced bytes lost or torn),
 * sometimes a second power cut during recovery itself, reopen, read the log
 * back and check:
 *
 *   G1  every acknowledged append reads back under its LSN, byte for byte;
 *       and every record a recovery once returned stays (later epochs too);
 *   LSN the log holds LSNs 1..lastLsn, contiguous;
 *   TORN recovery reported only torn tails (tolerate-torn-tail policy);
 *   ORIGIN every record read back is the append that was given that LSN: an
 *       unacknowledged (rejected) append may surface under its own LSN (its
 *       outcome was unknown to its caller) but never under an LSN
 *       acknowledged to someone else, and no bytes appear that nobody wrote.
 *
 * Some scenarios go on writing after a recovery and crash again (epochs).
 * Everything derives from the seed: `runScenario(seed)` replays exactly.
 */
import { posix as path } from 'node:path'
import { describeFinding, type FileHandle, type Finding, type OpenMode, type OpenOptions } from '../../engine/index.js'
import { ManualClock, RecordType, SeededRandom, SimulatedFileSystem, Wal, type TearMode } from '../../engine/testing.js'
import { ForwardingFileHandle, ForwardingFileSystem } from './forwarding-fs.js'

export const SCENARIO_DIR = '/data'
export const SCENARIO_SEGMENT_BYTES = 64 * 1024
const SEGMENT_HEADER_BYTES = 64
const FRAME_HEADER_BYTES = 32
/** Largest payload the workload appends. */
const PAYLOAD_BYTES_MAX = 3000
/** Real-time watchdog for appends that never settle: a hang is reported as a violation, not waited out. */
const SETTLE_WATCHDOG_MS = 10_000

export interface ScenarioOptions {
  /** Writing epochs, each ended by a power cut (1..3); seeded when absent. */
  readonly epochs?: number
  /** Most appends in one epoch; seeded count in [appendsMax / 4, appendsMax]. */
  readonly appendsMax?: number
  /** Chance that power is cut again during the recovery that follows a crash. */
  readonly secondCrashChance?: number
  /** Called after each restart, before the reopen that is checked: lets a test damage the disk on purpose. */
  readonly afterRestart?: (sim: SimulatedFileSystem, epoch: number) => void
  /** How the power cuts tear unsynced writes (sim-fs.ts); by default every other seed tears by sectors. */
  readonly tear?: TearMode
  /** Verbose trace, for the replay script. */
  readonly log?: (line: string) => void
}

export interface ScenarioResult {
  readonly seed: number
  readonly ok: boolean
  /** Precise messages; empty when every invariant held. */
  readonly violations: string[]
  readonly epochs: number
  readonly appended: number
  /** Appends whose promise resolved. */
  readonly acknowledged: number
  /** Acknowledged appends missing or different after a recovery (must be 0). */
  readonly lost: number
  /** Appends rejected by the power cut. */
  readonly rejected: number
  /** Rejected appends that a recovery nevertheless returned under their own LSN (allowed: their outcome was unknown). */
  readonly surfacedUnacked: number
  /** Every finding every checked recovery reported. */
  readonly findings: Finding[]
  readonly tornTails: number
  /** Torn tails with valid frames after the damage: a final group whose later sectors persisted and earlier ones not. */
  readonly tornGroups: number
  readonly tear: TearMode
  /** Where each power cut landed, e.g. 'write: group write' or 'recovery: torn-tail zeroing'. */
  readonly crashSites: string[]
  /** Power cuts that hit a recovery in progress. */
  readonly secondCrashes: number
  readonly lastLsn: number
  readonly segmentsMax: number
}

export function replayCommand(seed: number): string {
  return `npx tsx test/tools/replay-power-loss.ts --seed ${seed}`
}

export async function runScenario(seed: number, options: ScenarioOptions = {}): Promise<ScenarioResult> {
  return new Scenario(seed >>> 0, options).run()
}

// ---------------------------------------------------------------------------
// The filesystem seen through a tracer: records every mutating operation in
// call order. The simulated filesystem takes one macrotask per call and
// decides whether power is cut right after it, in call order, so operation
// number N here is the one `cutPowerAtOp` cut.

interface TracedOp {
  readonly op: 'create' | 'write' | 'datasync' | 'truncate' | 'rename' | 'unlink' | 'syncDir'
  readonly file: string
  readonly position?: number
  readonly length?: number
  readonly dsync?: boolean
  /** For a datasync: what the handle last wrote. */
  readonly after?: string
}

class TracingFs extends ForwardingFileSystem {
  readonly ops: TracedOp[] = []
  phase = 'open'

  constructor(readonly sim: SimulatedFileSystem) {
    super(sim)
  }

  override async open(file: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    if (mode === 'create') this.ops.push({ op: 'create', file })
    const inner = await this.sim.open(file, mode, options)
    return new TracingHandle(this, inner, file, options?.dsync === true)
  }

  override rename(from: string, to: string): Promise<void> {
    this.ops.push({ op: 'rename', file: `${from} -> ${to}` })
    return this.sim.rename(from, to)
  }

  override unlink(file: string): Promise<void> {
    this.ops.push({ op: 'unlink', file })
    return this.sim.unlink(file)
  }

  override syncDir(dir: string): Promise<void> {
    this.ops.push({ op: 'syncDir', file: dir })
    return this.sim.syncDir(dir)
  }
}

class TracingHandle extends ForwardingFileHandle {
  private lastWrite = 'nothing'

  constructor(
    private readonly fs: TracingFs,
    inner: FileHandle,
    private readonly file: string,
    private readonly dsync: boolean,
  ) {
    super(inner)
  }

  override write(data: Uint8Array, position: number): Promise<void> {
    const op: TracedOp = { op: 'write', file: this.file, position, length: data.length, dsync: this.dsync }
    this.lastWrite = siteOf(op)
    this.fs.ops.push(op)
    return this.inner.write(data, position)
  }

  override datasync(): Promise<void> {
    this.fs.ops.push({ op: 'datasync', file: this.file, after: this.lastWrite })
    return this.inner.datasync()
  }

  override truncate(length: number): Promise<void> {
    this.fs.ops.push({ op: 'truncate', file: this.file, length })
    return this.inner.truncate(length)
  }
}

/** A name for where an operation sits in the WAL's life. */
function siteOf(op: TracedOp): string {
  const spare = path.basename(op.file).startsWith('spare')
  switch (op.op) {
    case 'create':
      return 'spare create'
    case 'write':
      if (spare) return op.position === 0 && op.length === SEGMENT_HEADER_BYTES ? 'segment header write' : 'spare zero-fill'
      return op.dsync === true ? 'group write' : 'torn-tail zeroing'
    case 'datasync':
      if (spare) return op.after === 'segment header write' ? 'segment header sync' : 'spare sync'
      return 'torn-tail zeroing sync'
    case 'truncate':
      return 'truncate'
    case 'rename':
      return 'segment rename'
    case 'unlink':
      return 'spare unlink'
    case 'syncDir':
      return 'directory sync'
  }
}

function describeOp(op: TracedOp): string {
  const where = op.position !== undefined ? ` @${op.position}+${op.length ?? 0}` : ''
  return `${op.op} ${op.file}${where}${op.dsync === true ? ' (dsync)' : ''} [${siteOf(op)}]`
}

// ---------------------------------------------------------------------------

type Step =
  | { readonly kind: 'single'; readonly size: number }
  | { readonly kind: 'burst'; readonly sizes: readonly number[]; readonly awaitAll: boolean }
  | { readonly kind: 'pause' }

interface Submitted {
  readonly epoch: number
  readonly index: number
  readonly payload: Uint8Array
}

class Scenario {
  private readonly rng: SeededRandom
  private readonly clock = new ManualClock()
  private readonly log: (line: string) => void
  private readonly violations: string[] = []
  /** LSN -> bytes that must read back: acknowledged appends, and records a recovery already returned. */
  private readonly known = new Map<number, { bytes: Uint8Array; acked: boolean; epoch: number }>()
  /** LSN -> the append of the current epoch that was given it (if every write before it succeeds), not acknowledged. */
  private readonly unacked = new Map<number, Submitted>()
  private readonly findings: Finding[] = []
  private readonly crashSites: string[] = []
  private appended = 0
  private acknowledged = 0
  private rejected = 0
  private surfacedUnacked = 0
  private lost = 0
  private secondCrashes = 0
  private segmentsMax = 0
  private lastLsn = 0

  /** Not drawn from the rng: the rest of a seed's scenario is the same in either mode. */
  private readonly tear: TearMode

  constructor(
    private readonly seed: number,
    private readonly o: ScenarioOptions,
  ) {
    this.tear = o.tear ?? (seed % 2 === 0 ? 'sectors' : 'prefix')
    this.rng = new SeededRandom(seed)
    this.log = o.log ?? (() => undefined)
  }

  async run(): Promise<ScenarioResult> {
    const epochs = this.o.epochs ?? pick(this.rng, [[1, 0.6], [2, 0.25], [3, 0.15]])
    let fs = new TracingFs(new SimulatedFileSystem(new SeededRandom(this.rng.nextU32()), { tear: this.tear }))
    let wal: Wal | undefined
    this.log(`seed ${this.seed}: ${epochs} epoch(s), unsynced writes torn by ${this.tear}`)
    try {
      for (let epoch = 1; epoch <= epochs && this.violations.length === 0; epoch++) {
        await this.writeUntilPowerCut(fs, wal, epoch)
        wal = undefined
        fs = await this.recover(fs, epoch)
        const opened = await this.openChecked(fs, epoch)
        if (!opened) break
        wal = opened
        await this.verify(wal, epoch)
      }
    } finally {
      await wal?.close().catch(() => undefined)
    }
    return this.result(epochs)
  }

  // ---- one epoch of writing, ended by a power cut ----

  private async writeUntilPowerCut(fs: TracingFs, existing: Wal | undefined, epoch: number): Promise<void> {
    const steps = this.plan()
    const startOp = fs.sim.stats.mutatingOps
    const estimate = this.estimateOps(steps, existing === undefined)
    const cutAt = 1 + this.rng.below(estimate)
    const crashOp = startOp + cutAt
    fs.sim.cutPowerAtOp(cutAt)
    this.log(`epoch ${epoch}: ${steps.length} steps, power cut planned at mutating op #${crashOp} (${cutAt} of an estimated ${estimate} from op #${startOp})`)
    let wal = existing
    if (!wal) {
      fs.phase = 'create'
      try {
        wal = await this.open(fs)
      } catch (err) {
        if (!isPowerLoss(err, fs)) this.violation(`epoch ${epoch}: creating the log failed without a power cut: ${errorText(err)}`)
      }
    }
    fs.phase = 'write'
    if (wal) await this.workload(wal, fs, steps, epoch)
    this.noteCrash(fs, crashOp, 'after the workload, every append settled')
    await wal?.close().catch(() => undefined)
  }

  /** Appends of 0..3000 bytes: lone awaited ones, bursts in one tick (one group commit), pauses. */
  private plan(): Step[] {
    const appendsMax = this.o.appendsMax ?? 200
    const target = Math.max(1, Math.floor(appendsMax / 4) + this.rng.below(appendsMax - Math.floor(appendsMax / 4) + 1))
    const steps: Step[] = []
    let n = 0
    while (n < target) {
      const r = this.rng.below(10)
      if (r < 4) {
        steps.push({ kind: 'single', size: this.payloadSize() })
        n++
      } else if (r < 9) {
        const sizes = Array.from({ length: 2 + this.rng.below(7) }, () => this.payloadSize())
        steps.push({ kind: 'burst', sizes, awaitAll: this.rng.chance(0.5) })
        n += sizes.length
      } else {
        steps.push({ kind: 'pause' })
      }
    }
    return steps
  }

  private payloadSize(): number {
    // Mostly spread over the whole range; some empty and some tiny payloads.
    const r = this.rng.below(20)
    if (r === 0) return 0
    if (r === 1) return 1 + this.rng.below(16)
    return this.rng.below(PAYLOAD_BYTES_MAX + 1)
  }

  /** Roughly how many mutating operations the epoch makes, so the cut lands inside it most of the time. */
  private estimateOps(steps: readonly Step[], creating: boolean): number {
    let groups = 0
    let bytes = 0
    for (const s of steps) {
      if (s.kind === 'single') {
        groups++
        bytes += FRAME_HEADER_BYTES + s.size
      } else if (s.kind === 'burst') {
        groups += s.awaitAll ? 1 : 0.5
        for (const size of s.sizes) bytes += FRAME_HEADER_BYTES + size
      }
    }
    const rotations = bytes / (SCENARIO_SEGMENT_BYTES - SEGMENT_HEADER_BYTES)
    // A rotation: header write + sync, rename, directory sync, then a spare: create, zero-fill, sync.
    // Calibrated on seeds: bursts that are not awaited merge with what follows; about one epoch in eight ends uncut.
    return Math.max(1, Math.ceil(0.9 * (groups + rotations * 7 + (creating ? 10 : 3))))
  }

  private async workload(wal: Wal, fs: TracingFs, steps: readonly Step[], epoch: number): Promise<void> {
    const base = wal.lastLsn + 1
    let index = 0
    const inFlight: Promise<void>[] = []
    const submit = (size: number): Promise<void> => {
      const s: Submitted = { epoch, index: index++, payload: makePayload(this.rng.nextU32(), size, epoch, index - 1) }
      const due = base + s.index
      this.appended++
      const p = wal.append(RecordType.PUT, s.payload).then(
        (lsn) => {
          this.acknowledged++
          if (lsn !== due) this.violation(`epoch ${epoch}: append #${s.index} was acknowledged with LSN ${lsn}; ${due} was due (appends are written in order)`)
          if (this.known.has(lsn)) this.violation(`epoch ${epoch}: LSN ${lsn} acknowledged twice`)
          this.known.set(lsn, { bytes: s.payload, acked: true, epoch })
        },
        (err: unknown) => {
          this.rejected++
          this.unacked.set(due, s)
          if (!fs.sim.isCrashed) this.violation(`epoch ${epoch}: append #${s.index} rejected before any power cut: ${errorText(err)}`)
        },
      )
      inFlight.push(p)
      return p
    }
    for (const step of steps) {
      if (fs.sim.isCrashed) break
      if (step.kind === 'single') {
        await submit(step.size)
      } else if (step.kind === 'burst') {
        const group = step.sizes.map(submit)
        if (step.awaitAll) await Promise.all(group)
      } else {
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    if (!(await settled(inFlight))) this.violation(`epoch ${epoch}: some appends never settled`)
    this.log(`epoch ${epoch}: ${index} appended from LSN ${base}; acknowledged so far ${this.acknowledged}, rejected ${this.rejected}; wal state ${wal.state.kind}`)
  }

  /** Names where the power cut landed; cuts now if it has not happened yet. */
  private noteCrash(fs: TracingFs, crashOp: number, otherwise: string): string {
    let site: string
    if (fs.sim.isCrashed && fs.sim.stats.mutatingOps === crashOp) {
      const op = fs.ops[crashOp - 1]
      site = op ? `${fs.phase}: ${siteOf(op)}` : `${fs.phase}: (untraced op)`
      this.log(`  power cut at op #${crashOp}: ${op ? describeOp(op) : '?'}`)
      for (const prev of fs.ops.slice(Math.max(0, crashOp - 4), crashOp - 1)) this.log(`    before it: ${describeOp(prev)}`)
    } else {
      if (!fs.sim.isCrashed) fs.sim.powerLoss()
      site = `${fs.phase}: ${otherwise}`
      this.log(`  power cut ${otherwise} (op #${fs.sim.stats.mutatingOps})`)
    }
    this.crashSites.push(site)
    return site
  }

  // ---- recovery ----

  /**
   * Restarts the machine. Sometimes cuts power again while the log recovers:
   * a dry run on an identical restart (restart is pure for a given seed)
   * counts the mutating operations the reopen makes before it resolves, and
   * the cut lands on one of them, or on the first few after it (the
   * background spare preparation).
   */
  private async recover(crashed: TracingFs, epoch: number): Promise<TracingFs> {
    const restartSeed = this.rng.nextU32()
    let fs = new TracingFs(crashed.sim.restart(restartSeed))
    if (this.rng.chance(this.o.secondCrashChance ?? 0.3)) {
      const dry = new TracingFs(crashed.sim.restart(restartSeed))
      const reopenOps = await this.countReopenOps(dry)
      const cutAt = 1 + this.rng.below(reopenOps + 3)
      fs.sim.cutPowerAtOp(cutAt)
      fs.phase = 'recovery'
      this.log(`epoch ${epoch}: reopening with a second power cut at op #${cutAt} (the reopen makes ${reopenOps} mutating ops)`)
      try {
        const wal = await this.open(fs)
        this.log(`  the reopen finished before the cut (recovered to LSN ${wal.lastLsn})`)
        this.noteFindings(wal.recovery.findings, epoch, 'the interrupted recovery')
        fs.phase = 'recovery (background spare)'
        await macrotasks(12) // let the spare preparation that the reopen started run into the cut
        this.noteCrash(fs, cutAt, 'after the reopen')
        await wal.close().catch(() => undefined)
      } catch (err) {
        if (!isPowerLoss(err, fs)) {
          this.violation(`epoch ${epoch}: a reopen failed without a power cut: ${errorText(err)}`)
          fs.sim.powerLoss()
        }
        this.noteCrash(fs, cutAt, 'after the reopen')
        this.secondCrashes++
      }
      fs = new TracingFs(fs.sim.restart(this.rng.nextU32()))
    }
    this.o.afterRestart?.(fs.sim, epoch)
    return fs
  }

  /** Mutating operations a reopen makes on `fs` before it resolves (0 if it fails: then the real reopen reports it). */
  private async countReopenOps(fs: TracingFs): Promise<number> {
    try {
      const wal = await Wal.open({ dir: SCENARIO_DIR, fs, clock: this.clock, random: new SeededRandom(0), segmentBytes: SCENARIO_SEGMENT_BYTES, durability: 'sync' })
      const n = fs.sim.stats.mutatingOps
      fs.sim.powerLoss()
      await wal.close().catch(() => undefined)
      return n
    } catch {
      return 0
    }
  }

  private async openChecked(fs: TracingFs, epoch: number): Promise<Wal | undefined> {
    fs.phase = 'verify'
    try {
      const wal = await this.open(fs)
      this.noteFindings(wal.recovery.findings, epoch, 'recovery')
      return wal
    } catch (err) {
      this.violation(`epoch ${epoch}: reopening after the power cut failed: ${errorText(err)}`)
      return undefined
    }
  }

  private noteFindings(findings: readonly Finding[], epoch: number, what: string): void {
    for (const f of findings) {
      this.findings.push(f)
      this.log(`  ${what} found: ${describeFinding(f)}`)
      if (f.kind !== 'torn-tail') this.violation(`epoch ${epoch}: ${what} reported ${describeFinding(f)}; only torn tails may follow a power cut`)
    }
  }

  /** Reads the whole log back and checks G1, contiguity and the origin of every record. */
  private async verify(wal: Wal, epoch: number): Promise<void> {
    const got = new Map<number, Uint8Array>()
    let due = 1
    try {
      for await (const r of wal.read(1)) {
        if (r.lsn !== due) this.violation(`epoch ${epoch}: read LSN ${r.lsn} where ${due} was due: LSNs are not contiguous from 1`)
        got.set(r.lsn, Uint8Array.prototype.slice.call(r.payload))
        due = r.lsn + 1
      }
    } catch (err) {
      this.violation(`epoch ${epoch}: reading the recovered log failed: ${errorText(err)}`)
      return
    }
    if (got.size !== wal.lastLsn) this.violation(`epoch ${epoch}: the log reads ${got.size} records but reports last LSN ${wal.lastLsn}`)
    for (const [lsn, want] of this.known) {
      const have = got.get(lsn)
      const what = want.acked ? `acknowledged LSN ${lsn} (epoch ${want.epoch})` : `LSN ${lsn}, returned by an earlier recovery`
      if (!have) {
        if (want.acked) this.lost++
        this.violation(`epoch ${epoch}: ${what} is missing after recovery (log ends at LSN ${wal.lastLsn})`)
      } else if (!sameBytes(have, want.bytes)) {
        if (want.acked) this.lost++
        this.violation(`epoch ${epoch}: ${what} reads back different bytes: ${bytesText(have)} instead of ${bytesText(want.bytes)}`)
      }
    }
    for (const [lsn, have] of got) {
      if (this.known.has(lsn)) continue
      const s = this.unacked.get(lsn)
      if (!s) this.violation(`epoch ${epoch}: LSN ${lsn} holds ${bytesText(have)}, but no append was given LSN ${lsn}`)
      else if (!sameBytes(have, s.payload)) this.violation(`epoch ${epoch}: LSN ${lsn} holds ${bytesText(have)}, not the rejected append #${s.index} given that LSN`)
      else this.surfacedUnacked++
    }
    // What a recovery returned may have been replicated: it must stay.
    for (const [lsn, bytes] of got) if (!this.known.has(lsn)) this.known.set(lsn, { bytes, acked: false, epoch })
    this.unacked.clear()
    this.lastLsn = wal.lastLsn
    this.segmentsMax = Math.max(this.segmentsMax, (await wal.segments()).length)
    this.log(`epoch ${epoch}: recovered ${got.size} records (last LSN ${wal.lastLsn}), ${this.findings.length} finding(s) so far`)
  }

  private open(fs: TracingFs): Promise<Wal> {
    return Wal.open({
      dir: SCENARIO_DIR, fs, clock: this.clock, random: new SeededRandom(this.rng.nextU32()),
      segmentBytes: SCENARIO_SEGMENT_BYTES, durability: 'sync',
    })
  }

  private violation(message: string): void {
    this.violations.push(message)
    this.log(`VIOLATION: ${message}`)
  }

  private result(epochs: number): ScenarioResult {
    return {
      seed: this.seed,
      ok: this.violations.length === 0,
      violations: this.violations,
      epochs,
      appended: this.appended,
      acknowledged: this.acknowledged,
      lost: this.lost,
      rejected: this.rejected,
      surfacedUnacked: this.surfacedUnacked,
      findings: this.findings,
      tornTails: this.findings.filter((f) => f.kind === 'torn-tail').length,
      tornGroups: this.findings.filter((f) => f.kind === 'torn-tail' && f.detail.includes('final group write that never completed')).length,
      tear: this.tear,
      crashSites: this.crashSites,
      secondCrashes: this.secondCrashes,
      lastLsn: this.lastLsn,
      segmentsMax: this.segmentsMax,
    }
  }
}

// ---------------------------------------------------------------------------

function pick<T>(rng: SeededRandom, choices: readonly (readonly [T, number])[]): T {
  let r = rng.nextU32() / 2 ** 32
  for (const [value, p] of choices) {
    if (r < p) return value
    r -= p
  }
  const last = choices[choices.length - 1]
  if (!last) throw new Error('pick from nothing')
  return last[0]
}

/** Seeded bytes; from 12 bytes on, tagged with epoch and append number so that a misplaced record names its origin. */
export function makePayload(seed: number, size: number, epoch: number, index: number): Uint8Array {
  const out = Buffer.allocUnsafe(size)
  let x = seed | 1
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    for (let k = 0; k < 4 && i + k < size; k++) out[i + k] = (x >>> (8 * k)) & 0xff
  }
  if (size >= 12) {
    out.writeUInt32LE(0x7a67e5a1, 0)
    out.writeUInt32LE(epoch, 4)
    out.writeUInt32LE(index, 8)
  }
  return out
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0
}

function bytesText(b: Uint8Array): string {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.length)
  const tag = buf.length >= 12 && buf.readUInt32LE(0) === 0x7a67e5a1 ? `, tagged epoch ${buf.readUInt32LE(4)} append #${buf.readUInt32LE(8)}` : ''
  return `${buf.length} bytes (${buf.subarray(0, 8).toString('hex')}…${tag})`
}

function isPowerLoss(err: unknown, fs: TracingFs): boolean {
  return fs.sim.isCrashed && typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'SIM_POWER_LOSS'
}

function errorText(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown; message?: unknown }
    return `${String(e.code ?? 'no code')}: ${String(e.message ?? err)}`
  }
  return String(err)
}

/** Lets `n` rounds of simulated I/O (one macrotask each) run. */
export async function macrotasks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** Waits for every promise; false if the watchdog fired first. */
async function settled(ps: readonly Promise<unknown>[]): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const watchdog = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), SETTLE_WATCHDOG_MS)
  })
  try {
    return await Promise.race([Promise.allSettled(ps).then(() => true as const), watchdog])
  } finally {
    clearTimeout(timer)
  }
}
