import { posix as path } from 'node:path'
import type { FileHandle, FileStat, FileSystem, OpenMode, OpenOptions } from './fs.js'
import { SeededRandom } from './random.js'

/**
 * A simulated filesystem that remembers which bytes are durable.
 *
 * Model: a file is an inode with `current` bytes (what reads see) and
 * `durable` bytes (what survives power loss), plus the list of operations made
 * since the last sync. A name maps to an inode; a directory's names become
 * durable only on `syncDir`. On power loss each file keeps its durable bytes
 * plus, per `tear`, either a seeded, arbitrary prefix of its unsynced
 * operations (`prefix`: a torn write keeps a prefix of its bytes) or a seeded
 * subset of their sectors (`sectors`: each 512-byte piece of each unsynced
 * write, at file offsets that are multiples of 512, persists or not on its
 * own, so a later piece of a write can survive an earlier one, as when the
 * kernel splits a write into pages and writes them back in any order); names
 * not yet synced revert.
 *
 * Faults: a write can fail with ENOSPC (or any code) having written a prefix;
 * a sync can fail with EIO, after which, as on Linux, the unsynced bytes are
 * dropped from the durable image while reads still show them ("fsyncgate");
 * power can be cut at the Nth mutating operation.
 */
export class SimulatedCrashError extends Error {
  readonly code = 'SIM_POWER_LOSS'
  constructor() {
    super('simulated power loss: the filesystem is gone until restart()')
  }
}

type PendingOp = { kind: 'write'; position: number; bytes: Uint8Array } | { kind: 'truncate'; length: number }

class Inode {
  current: Bytes = Buffer.alloc(0)
  durable: Bytes = Buffer.alloc(0)
  pending: PendingOp[] = []
}

type Bytes = Buffer<ArrayBufferLike>

export interface FaultRule {
  /** Which operation: 'write' (also dsync writes), 'datasync', 'open', 'rename', 'rmdir', 'syncDir'. */
  readonly op: 'write' | 'datasync' | 'open' | 'rename' | 'rmdir' | 'syncDir'
  /** errno code to fail with, e.g. 'ENOSPC' or 'EIO'. */
  readonly code: string
  /** Only paths containing this string; any path if absent. */
  readonly pathIncludes?: string
  /** How many matching calls to let through before failing. */
  readonly after?: number
  /** How many times to fail; 1 by default, Infinity for a dead disk. */
  readonly times?: number
}

interface ActiveRule {
  rule: FaultRule
  skip: number
  left: number
}

/** How a power loss treats unsynced writes (see the class comment). */
export type TearMode = 'prefix' | 'sectors'

export interface SimOptions {
  /** Default `prefix`. Kept by the filesystem that `restart` returns. */
  readonly tear?: TearMode
}

/** The unit a disk persists atomically, for `sectors` tearing. */
export const SECTOR_BYTES = 512

export interface SimStats {
  mutatingOps: number
  writes: number
  syncs: number
}

export class SimulatedFileSystem implements FileSystem {
  private readonly names = new Map<string, Inode>()
  private readonly durableNames = new Map<string, Inode>()
  private readonly dirs = new Set<string>(['/'])
  private readonly durableDirs = new Set<string>(['/'])
  private readonly rules: ActiveRule[] = []
  private crashed = false
  private crashAtOp = Infinity
  readonly stats: SimStats = { mutatingOps: 0, writes: 0, syncs: 0 }

  readonly tear: TearMode

  constructor(
    private readonly random: SeededRandom,
    options: SimOptions = {},
  ) {
    this.tear = options.tear ?? 'prefix'
  }

  /** Cuts the power when the Nth mutating operation from now starts (it may tear). */
  cutPowerAtOp(n: number): void {
    this.crashAtOp = this.stats.mutatingOps + n
  }

  injectFault(rule: FaultRule): void {
    this.rules.push({ rule, skip: rule.after ?? 0, left: rule.times ?? 1 })
  }

  clearFaults(): void {
    this.rules.length = 0
  }

  get isCrashed(): boolean {
    return this.crashed
  }

  /** Cuts the power now. */
  powerLoss(): void {
    this.crashed = true
  }

  /**
   * The machine after power comes back: a new filesystem holding what was
   * durable plus, per file, a seeded prefix of what was not.
   */
  restart(seed = this.random.nextU32()): SimulatedFileSystem {
    const random = new SeededRandom(seed)
    const next = new SimulatedFileSystem(random, { tear: this.tear })
    const survivors = new Map<Inode, Inode>()
    for (const [name, inode] of this.durableNames) {
      let copy = survivors.get(inode)
      if (!copy) {
        copy = this.tear === 'sectors' ? sectorImage(inode, random) : tornImage(inode, random)
        survivors.set(inode, copy)
      }
      next.names.set(name, copy)
      next.durableNames.set(name, copy)
    }
    for (const d of this.durableDirs) {
      next.dirs.add(d)
      next.durableDirs.add(d)
    }
    return next
  }

  /** A copy of everything as it is now, as if synced: for setting up fixtures. */
  snapshotDurable(): void {
    for (const inode of new Set(this.names.values())) {
      inode.durable = Buffer.from(inode.current)
      inode.pending = []
    }
    this.durableNames.clear()
    for (const [k, v] of this.names) this.durableNames.set(k, v)
    for (const d of this.dirs) this.durableDirs.add(d)
  }

  /** Direct access for tests that craft damage: the current bytes of a file. */
  peek(file: string): Bytes | undefined {
    return this.names.get(norm(file))?.current
  }

  /** Replaces a file's bytes, durably, as a bit flip on the platter would. */
  poke(file: string, bytes: Uint8Array): void {
    const p = norm(file)
    let inode = this.names.get(p)
    if (!inode) {
      inode = new Inode()
      this.names.set(p, inode)
      this.durableNames.set(p, inode)
    }
    inode.current = Buffer.from(bytes)
    inode.durable = Buffer.from(bytes)
    inode.pending = []
  }

  remove(file: string): void {
    const p = norm(file)
    this.names.delete(p)
    this.durableNames.delete(p)
  }

  // ---- FileSystem ----

  async open(file: string, mode: OpenMode, options: OpenOptions = {}): Promise<FileHandle> {
    await this.tick()
    const p = norm(file)
    this.fault('open', p)
    let inode = this.names.get(p)
    if (mode === 'create') {
      this.mutation()
      if (inode) throw errno('EEXIST', p)
      if (!this.dirs.has(path.dirname(p))) throw errno('ENOENT', p)
      inode = new Inode()
      this.names.set(p, inode)
    } else if (!inode) {
      throw errno('ENOENT', p)
    }
    return new SimFileHandle(this, inode, p, mode !== 'read', options.dsync === true)
  }

  async readFile(file: string): Promise<Uint8Array> {
    await this.tick()
    const inode = this.names.get(norm(file))
    if (!inode) throw errno('ENOENT', file)
    return Buffer.from(inode.current)
  }

  async readdir(dir: string): Promise<string[]> {
    await this.tick()
    const d = norm(dir)
    if (!this.dirs.has(d)) throw errno('ENOENT', d)
    const out = new Set<string>()
    for (const name of this.names.keys()) if (path.dirname(name) === d) out.add(path.basename(name))
    for (const sub of this.dirs) if (sub !== d && path.dirname(sub) === d) out.add(path.basename(sub))
    return [...out].sort()
  }

  async mkdirp(dir: string): Promise<void> {
    await this.tick()
    let d = norm(dir)
    const made: string[] = []
    while (!this.dirs.has(d)) {
      made.push(d)
      d = path.dirname(d)
    }
    // Directory creation is modelled as durable at once: the WAL syncs the parent anyway.
    for (const m of made) {
      this.dirs.add(m)
      this.durableDirs.add(m)
    }
  }

  async rename(from: string, to: string): Promise<void> {
    await this.tick()
    const f = norm(from)
    const t = norm(to)
    this.fault('rename', f)
    this.mutation()
    const inode = this.names.get(f)
    if (!inode) throw errno('ENOENT', f)
    this.names.delete(f)
    this.names.set(t, inode)
  }

  async unlink(file: string): Promise<void> {
    await this.tick()
    const p = norm(file)
    this.mutation()
    if (!this.names.delete(p)) throw errno('ENOENT', p)
  }

  /** Removed at once and durably, as mkdirp makes directories (whoever removes one syncs its parent anyway). */
  async rmdir(dir: string): Promise<void> {
    await this.tick()
    const d = norm(dir)
    this.fault('rmdir', d)
    this.mutation()
    if (!this.dirs.has(d)) throw errno(this.names.has(d) ? 'ENOTDIR' : 'ENOENT', d)
    const inside = (p: string): boolean => path.dirname(p) === d
    if ([...this.names.keys()].some(inside) || [...this.dirs].some((s) => s !== d && inside(s))) throw errno('ENOTEMPTY', d)
    this.dirs.delete(d)
    this.durableDirs.delete(d)
  }

  async stat(file: string): Promise<FileStat | undefined> {
    await this.tick()
    const p = norm(file)
    if (this.dirs.has(p)) return { size: 0, isFile: false, isDirectory: true }
    const inode = this.names.get(p)
    return inode ? { size: inode.current.length, isFile: true, isDirectory: false } : undefined
  }

  /** The simulated filesystem has no symbolic links. */
  lstat(file: string): Promise<FileStat | undefined> {
    return this.stat(file)
  }

  async realpath(file: string): Promise<string> {
    if (!(await this.stat(file))) throw errno('ENOENT', norm(file))
    return norm(file)
  }

  async syncDir(dir: string): Promise<void> {
    await this.tick()
    const d = norm(dir)
    this.fault('syncDir', d)
    this.mutation()
    for (const name of [...this.durableNames.keys()]) if (path.dirname(name) === d && !this.names.has(name)) this.durableNames.delete(name)
    for (const [name, inode] of this.names) if (path.dirname(name) === d) this.durableNames.set(name, inode)
  }

  // ---- used by SimFileHandle ----

  /** @internal */
  tick(): Promise<void> {
    if (this.crashed) return Promise.reject(new SimulatedCrashError())
    // A macrotask, so that writers queue behind an I/O in flight as they would on a real disk.
    return new Promise((resolve) => setImmediate(resolve))
  }

  /** @internal Counts a mutating operation; cuts power if this is the chosen one. Returns true if it tears. */
  mutation(): boolean {
    if (this.crashed) throw new SimulatedCrashError()
    this.stats.mutatingOps++
    if (this.stats.mutatingOps >= this.crashAtOp) {
      this.crashed = true
      return true
    }
    return false
  }

  /** @internal */
  fault(op: FaultRule['op'], p: string): string | undefined {
    for (const r of this.rules) {
      if (r.rule.op !== op || r.left <= 0) continue
      if (r.rule.pathIncludes !== undefined && !p.includes(r.rule.pathIncludes)) continue
      if (r.skip > 0) {
        r.skip--
        continue
      }
      r.left--
      if (op === 'write' || op === 'datasync') return r.rule.code // the handle decides what lands first
      throw errno(r.rule.code, p)
    }
    return undefined
  }

  /** @internal */
  get rng(): SeededRandom {
    return this.random
  }
}

class SimFileHandle implements FileHandle {
  private closed = false

  constructor(
    private readonly sim: SimulatedFileSystem,
    private readonly inode: Inode,
    private readonly name: string,
    private readonly writable: boolean,
    private readonly dsync: boolean,
  ) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    await this.sim.tick()
    this.check(true)
    const code = this.sim.fault('write', this.name)
    const tears = this.sim.mutation()
    this.sim.stats.writes++
    if (tears) {
      // Power went out during this write: some of it reached the page cache, none of it synced (with
      // `sectors` tearing all of it is pending, and the restart keeps a subset of its sectors).
      const landed = this.sim.tear === 'sectors' ? data : data.subarray(0, this.sim.rng.below(data.length + 1))
      applyWrite(this.inode, position, landed, false)
      throw new SimulatedCrashError()
    }
    if (code !== undefined) {
      const landed = data.subarray(0, this.sim.rng.below(data.length + 1))
      applyWrite(this.inode, position, landed, false)
      if (code === 'EIO' && this.dsync) dropUnsynced(this.inode)
      throw errno(code, this.name)
    }
    applyWrite(this.inode, position, data, this.dsync)
  }

  async read(into: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    await this.sim.tick()
    this.check(false)
    const src = this.inode.current
    if (position >= src.length) return 0
    const n = Math.min(length, src.length - position)
    src.copy(into, offset, position, position + n)
    return n
  }

  async datasync(): Promise<void> {
    await this.sim.tick()
    this.check(false)
    const code = this.sim.fault('datasync', this.name)
    if (this.sim.mutation()) throw new SimulatedCrashError()
    this.sim.stats.syncs++
    if (code !== undefined) {
      dropUnsynced(this.inode)
      throw errno(code, this.name)
    }
    this.inode.durable = Buffer.from(this.inode.current)
    this.inode.pending = []
  }

  async truncate(length: number): Promise<void> {
    await this.sim.tick()
    this.check(true)
    if (this.sim.mutation()) throw new SimulatedCrashError()
    const next = Buffer.alloc(length)
    this.inode.current.copy(next, 0, 0, Math.min(length, this.inode.current.length))
    this.inode.current = next
    this.inode.pending.push({ kind: 'truncate', length })
  }

  async size(): Promise<number> {
    await this.sim.tick()
    this.check(false)
    return this.inode.current.length
  }

  async close(): Promise<void> {
    this.closed = true
  }

  private check(write: boolean): void {
    if (this.closed) throw errno('EBADF', this.name)
    if (write && !this.writable) throw errno('EBADF', this.name)
  }
}

function applyWrite(inode: Inode, position: number, bytes: Uint8Array, durable: boolean): void {
  inode.current = writeInto(inode.current, position, bytes)
  if (durable) {
    // O_DSYNC: this write's bytes are durable on return; earlier unsynced ones are not thereby synced,
    // but where they overlap this write it superseded them: no power loss can bring them back.
    inode.durable = writeInto(inode.durable, position, bytes)
    inode.pending = supersede(inode.pending, position, position + bytes.length)
  } else {
    inode.pending.push({ kind: 'write', position, bytes: Uint8Array.from(bytes) })
  }
}

/** Unsynced writes with the bytes in [from, to) cut out, in order: a later durable write holds those bytes now. */
function supersede(pending: PendingOp[], from: number, to: number): PendingOp[] {
  const out: PendingOp[] = []
  for (const op of pending) {
    const end = op.kind === 'write' ? op.position + op.bytes.length : 0
    if (op.kind !== 'write' || end <= from || op.position >= to) {
      out.push(op)
      continue
    }
    if (op.position < from) out.push({ kind: 'write', position: op.position, bytes: op.bytes.subarray(0, from - op.position) })
    if (end > to) out.push({ kind: 'write', position: to, bytes: op.bytes.subarray(to - op.position) })
  }
  return out
}

/** After EIO from a sync, Linux may drop the dirty pages: they never reach the disk, yet reads still see them. */
function dropUnsynced(inode: Inode): void {
  inode.pending = []
}

function writeInto(buf: Bytes, position: number, bytes: Uint8Array): Bytes {
  const end = position + bytes.length
  let out = buf
  if (end > buf.length) {
    out = Buffer.alloc(end)
    buf.copy(out)
  }
  out.set(bytes, position)
  return out
}

/** What a file holds after power loss: its durable image plus a seeded prefix of its unsynced operations. */
function tornImage(inode: Inode, random: SeededRandom): Inode {
  const out = new Inode()
  let image: Bytes = Buffer.from(inode.durable)
  const total = inode.pending.reduce((n, op) => n + (op.kind === 'write' ? op.bytes.length : 1), 0)
  let budget = random.below(total + 1)
  for (const op of inode.pending) {
    if (budget <= 0) break
    if (op.kind === 'truncate') {
      const next = Buffer.alloc(op.length)
      image.copy(next, 0, 0, Math.min(op.length, image.length))
      image = next
      budget--
    } else {
      const n = Math.min(budget, op.bytes.length)
      image = writeInto(image, op.position, op.bytes.subarray(0, n))
      budget -= n
    }
  }
  out.current = image
  out.durable = Buffer.from(image)
  return out
}

/**
 * What a file holds after power loss with `sectors` tearing: its durable image
 * plus, in operation order, each 512-byte piece of each unsynced write kept or
 * not by a seeded coin (and each unsynced truncate kept or not).
 */
function sectorImage(inode: Inode, random: SeededRandom): Inode {
  const out = new Inode()
  let image: Bytes = Buffer.from(inode.durable)
  for (const op of inode.pending) {
    if (op.kind === 'truncate') {
      if (random.below(2) === 0) continue
      const next = Buffer.alloc(op.length)
      image.copy(next, 0, 0, Math.min(op.length, image.length))
      image = next
      continue
    }
    const end = op.position + op.bytes.length
    for (let at = op.position; at < end; at = (Math.floor(at / SECTOR_BYTES) + 1) * SECTOR_BYTES) {
      const pieceEnd = Math.min(end, (Math.floor(at / SECTOR_BYTES) + 1) * SECTOR_BYTES)
      if (random.below(2) === 1) image = writeInto(image, at, op.bytes.subarray(at - op.position, pieceEnd - op.position))
    }
  }
  out.current = image
  out.durable = Buffer.from(image)
  return out
}

function norm(p: string): string {
  return path.resolve('/', p)
}

function errno(code: string, p: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: simulated, ${p}`)
  err.code = code
  err.path = p
  return err
}
