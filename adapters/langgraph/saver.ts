import { isDeepStrictEqual } from 'node:util'
import type * as Lg from '@langchain/langgraph-checkpoint'
import type { RunnableConfig } from '@langchain/core/runnables'
import { MemwalError, type BatchOp, type MemWAL, type MemwalOptions, type Random } from '../../engine/index.js'
import { randomInt } from 'node:crypto'
import { compareStrings, invalid } from '../args.js'
import { KeySpace, type KeyParts, type ScanHit } from '../keyspace.js'
import { langgraph, openOwned, type Serialized } from './peer.js'

export interface MemwalSaverOptions extends MemwalOptions {
  /** LangGraph's serializer (default: its JsonPlusSerializer). */
  readonly serde?: Lg.SerializerProtocol
}

interface StoredCheckpoint {
  readonly c: Serialized
  readonly m: Serialized
  readonly p: string | null
}

interface StoredWrite {
  readonly task: string
  readonly channel: string
  readonly v: Serialized
  readonly path: string
}

/** A blob written for a channel that newVersions names but the checkpoint holds no value for. */
const EMPTY = 'empty'

/** The default source of attempt keys when none is injected (MemwalSaver.open passes the MemWAL's `random`). */
const cryptoRandom: Random = { nextU32: () => randomInt(0, 2 ** 32) >>> 0 }

/**
 * A LangGraph checkpoint saver on memwal. Every `put` and `putWrites` is one
 * atomic memwal record, acknowledged once durable in the log: a graph killed
 * after a step resolved resumes from that step.
 *
 * Layout (through KeySpace, one place to change when the engine gets
 * (namespace, key) identity):
 *   lg.cp   [thread, ns, checkpointId]            -> the checkpoint without channel_values, metadata, parent id
 *   lg.blob [thread, ns, channel, version]        -> one channel value at one version (written when newVersions names it)
 *   lg.w    [thread, ns, checkpointId, task, idx, attempt] -> one pending write (regular idx >= 0: `attempt` is
 *           random, one key per write, the earliest appended kept; special idx < 0: no `attempt`, replaced;
 *           stores written before attempts have regular writes without one too, read the same way)
 * A checkpoint is rebuilt from the blobs its channel_versions name, so each
 * step stores only the channels that changed.
 */
export class MemwalSaver extends langgraph.BaseCheckpointSaver<number> {
  private readonly checkpoints: KeySpace
  private readonly blobs: KeySpace
  private readonly writes: KeySpace
  private closed = false

  /**
   * A saver on a MemWAL the caller opened (and closes): the store and the
   * saver can share one data directory this way. Acknowledges durably only if
   * that MemWAL runs with `durability: 'sync'` (the default).
   */
  constructor(
    readonly db: MemWAL,
    serde?: Lg.SerializerProtocol,
    private readonly owned = false,
    /** Where a regular pending write's own key comes from (putWrites); a seeded one replays a test exactly. */
    private readonly random: Random = cryptoRandom,
  ) {
    super(serde)
    this.checkpoints = new KeySpace(db, 'lg.cp')
    this.blobs = new KeySpace(db, 'lg.blob')
    this.writes = new KeySpace(db, 'lg.w')
  }

  /** Opens its own MemWAL on `dir`; `close()` closes it. */
  static async open(options: MemwalSaverOptions): Promise<MemwalSaver> {
    const { serde, ...memwal } = options
    return new MemwalSaver(await openOwned(memwal, 'MemwalSaver'), serde, true, memwal.random)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.owned) await this.db.close()
  }

  async getTuple(config: RunnableConfig): Promise<Lg.CheckpointTuple | undefined> {
    const threadId = config.configurable?.['thread_id'] as unknown
    if (threadId === undefined) return undefined
    const thread = idOf('thread_id', threadId)
    const ns = nsOf(config)
    const id = langgraph.getCheckpointId(config)
    if (id) {
      const stored = (await this.checkpoints.get([thread, ns, idOf('checkpoint_id', id)])) as StoredCheckpoint | undefined
      return stored ? this.tupleOf(thread, ns, id, stored, config) : undefined
    }
    // Keys sort by checkpoint id, and uuid6 ids sort by time: the newest is the last key, read alone (not the thread's every checkpoint).
    const latest = await this.checkpoints.last([thread, ns])
    if (!latest) return undefined
    const latestId = latest.parts[2] as string
    return this.tupleOf(thread, ns, latestId, latest.value as StoredCheckpoint, configOf(thread, ns, latestId))
  }

  async *list(config: RunnableConfig, options: Lg.CheckpointListOptions = {}): AsyncGenerator<Lg.CheckpointTuple> {
    const { before, filter } = options
    let limit = options.limit
    const c = config.configurable ?? {}
    const thread = c['thread_id'] === undefined ? undefined : idOf('thread_id', c['thread_id'])
    const ns = c['checkpoint_ns'] === undefined ? undefined : nsOf(config)
    const onlyId = c['checkpoint_id'] === undefined || c['checkpoint_id'] === '' ? undefined : idOf('checkpoint_id', c['checkpoint_id'])
    const beforeId = before?.configurable?.['checkpoint_id'] as string | undefined
    for await (const h of this.newestFirst(thread, ns, beforeId)) {
      if (ns !== undefined && h.ns !== ns) continue
      if (onlyId !== undefined && h.id !== onlyId) continue
      if (beforeId !== undefined && h.id >= beforeId) continue
      if (filter) {
        const metadata = (await this.load(h.stored.m)) as Record<string, unknown>
        if (!Object.entries(filter).every(([k, v]) => isDeepStrictEqual(metadata[k], v))) continue
      }
      if (limit !== undefined) {
        if (limit <= 0) return
        limit--
      }
      yield await this.tupleOf(h.thread, h.ns, h.id, h.stored, configOf(h.thread, h.ns, h.id))
    }
  }

  /**
   * The checkpoints in scope, newest first within a thread's namespace, as
   * every LangGraph saver lists. One thread's namespace is its key range read
   * backwards, as the caller consumes it (a `limit` reads about that many, a
   * `before` starts there): its keys sort by checkpoint id, which for
   * LangGraph's ids (uuid6: ASCII) is the id order the sort below uses. A
   * wider scope is read whole and sorted.
   */
  private async *newestFirst(thread: string | undefined, ns: string | undefined, beforeId: string | undefined): AsyncGenerator<{ thread: string; ns: string; id: string; stored: StoredCheckpoint }> {
    if (thread !== undefined && ns !== undefined) {
      for await (const h of this.checkpoints.walk([thread, ns], { reverse: true, ...(beforeId !== undefined ? { before: [thread, ns, beforeId] } : {}) })) {
        yield { thread, ns, id: h.parts[2] as string, stored: h.value as StoredCheckpoint }
      }
      return
    }
    const scope: KeyParts = thread === undefined ? [] : [thread]
    const hits = (await this.checkpoints.scan(scope)).map((h) => ({ thread: h.parts[0] as string, ns: h.parts[1] as string, id: h.parts[2] as string, stored: h.value as StoredCheckpoint }))
    hits.sort((a, b) => compareStrings(a.thread, b.thread) || compareStrings(a.ns, b.ns) || compareStrings(b.id, a.id))
    yield* hits
  }

  async put(config: RunnableConfig, checkpoint: Lg.Checkpoint, metadata: Lg.CheckpointMetadata, newVersions: Lg.ChannelVersions): Promise<RunnableConfig> {
    this.throwIfClosed()
    const threadId = config.configurable?.['thread_id'] as unknown
    if (threadId === undefined) throw invalid('put needs config.configurable.thread_id')
    const thread = idOf('thread_id', threadId)
    const ns = nsOf(config)
    const id = idOf('checkpoint.id', checkpoint.id)
    const parent = config.configurable?.['checkpoint_id'] as string | undefined
    const copy = langgraph.copyCheckpoint(checkpoint)
    const ops: BatchOp[] = []
    for (const [channel, version] of Object.entries(newVersions)) {
      const has = Object.prototype.hasOwnProperty.call(copy.channel_values, channel)
      ops.push(this.blobs.putOp([thread, ns, channel, String(version)], has ? await this.dump(copy.channel_values[channel]) : [EMPTY, null]))
    }
    copy.channel_values = {}
    const stored: StoredCheckpoint = { c: await this.dump(copy), m: await this.dump(metadata), p: parent ? parent : null }
    // One record: a reader never sees the checkpoint without its blobs.
    ops.push(this.checkpoints.putOp([thread, ns, id], stored))
    await this.db.batch(ops)
    return configOf(thread, ns, id)
  }

  async putWrites(config: RunnableConfig, writes: Lg.PendingWrite[], taskId: string, taskPath?: string): Promise<void> {
    this.throwIfClosed()
    const c = config.configurable ?? {}
    if (c['thread_id'] === undefined) throw invalid('putWrites needs config.configurable.thread_id')
    if (c['checkpoint_id'] === undefined) throw invalid('putWrites needs config.configurable.checkpoint_id')
    const thread = idOf('thread_id', c['thread_id'])
    const ns = nsOf(config)
    const id = idOf('checkpoint_id', c['checkpoint_id'])
    const task = idOf('task_id', taskId)
    const ops: BatchOp[] = []
    for (const [i, [channel, value]] of writes.entries()) {
      const idx = langgraph.WRITES_IDX_MAP[channel] ?? i
      // Special writes (errors, interrupts: idx < 0) replace the one before, at one key. Regular writes are kept as first
      // written (a retried task must not replace them): each is stored at a key of its own, and pendingWrites keeps the
      // earliest appended. Deciding it here instead took a backend read per write, on every step of every graph (issue 13).
      const parts = idx < 0 ? [thread, ns, id, task, String(idx)] : [thread, ns, id, task, String(idx), this.attempt()]
      const w: StoredWrite = { task, channel, v: await this.dump(value), path: taskPath ?? '' }
      ops.push(this.writes.putOp(parts, w))
    }
    if (ops.length > 0) await this.db.batch(ops)
  }

  async deleteThread(threadId: string): Promise<void> {
    this.throwIfClosed()
    const thread = idOf('thread_id', threadId)
    // Checkpoints first: a crash part-way leaves only blobs and writes that no checkpoint reaches.
    await this.checkpoints.deleteAll([thread])
    await this.writes.deleteAll([thread])
    await this.blobs.deleteAll([thread])
  }

  private async tupleOf(thread: string, ns: string, id: string, stored: StoredCheckpoint, config: RunnableConfig): Promise<Lg.CheckpointTuple> {
    const checkpoint = (await this.load(stored.c)) as Lg.Checkpoint
    // The blobs and the pending writes are read at once, not one await after another.
    const [blobs, pendingWrites, metadata] = await Promise.all([
      Promise.all(Object.entries(checkpoint.channel_versions).map(async ([channel, version]) => [channel, (await this.blobs.get([thread, ns, channel, String(version)])) as Serialized | undefined] as const)),
      this.pendingWrites(thread, ns, id),
      this.load(stored.m),
    ])
    const values: Record<string, unknown> = {}
    for (const [channel, blob] of blobs) if (blob && blob[0] !== EMPTY) values[channel] = await this.load(blob)
    checkpoint.channel_values = values
    if (checkpoint.v < 4 && stored.p !== null) await this.migratePendingSends(checkpoint, thread, ns, stored.p)
    const tuple: Lg.CheckpointTuple = { config, checkpoint, metadata: metadata as Lg.CheckpointMetadata, pendingWrites }
    if (stored.p !== null) tuple.parentConfig = configOf(thread, ns, stored.p)
    return tuple
  }

  /**
   * Checkpoints of format v < 4 kept pending Send()s as writes to TASKS on
   * their parent; LangGraph now expects them as the TASKS channel value.
   */
  private async migratePendingSends(checkpoint: Lg.Checkpoint, thread: string, ns: string, parentId: string): Promise<void> {
    const sends = (await this.pendingWrites(thread, ns, parentId)).filter(([, channel]) => channel === langgraph.TASKS).map(([, , value]) => value)
    checkpoint.channel_values[langgraph.TASKS] = sends
    const versions = Object.values(checkpoint.channel_versions)
    checkpoint.channel_versions[langgraph.TASKS] = versions.length > 0 ? langgraph.maxChannelVersion(...versions) : this.getNextVersion(undefined)
  }

  /**
   * The checkpoint's pending writes in writesSortKey order, the order live
   * execution applies them in: of a task's several writes at one regular idx
   * (a retried task's, each at a key of its own, see putWrites) the earliest
   * appended, the lowest version; a special idx has one key, the last write.
   */
  private async pendingWrites(thread: string, ns: string, id: string): Promise<Lg.CheckpointPendingWrite[]> {
    const first = new Map<string, ScanHit>()
    for (const h of await this.writes.scan([thread, ns, id])) {
      const slot = `${h.parts[3] as string}\u0000${h.parts[4] as string}`
      const kept = first.get(slot)
      if (kept === undefined || h.version < kept.version) first.set(slot, h)
    }
    const hits = [...first.values()].map((h) => ({ w: h.value as StoredWrite, key: langgraph.writesSortKey((h.value as StoredWrite).path, h.parts[3] as string, Number(h.parts[4])) }))
    hits.sort((a, b) => langgraph.compareWritesSortKeys(a.key, b.key))
    const out: Lg.CheckpointPendingWrite[] = []
    for (const { w } of hits) out.push([w.task, w.channel, await this.load(w.v)])
    return out
  }

  /** 64 random bits in hex: a regular write's own key, distinct from any other attempt's, in this process or another. */
  private attempt(): string {
    return hex32(this.random.nextU32()) + hex32(this.random.nextU32())
  }

  private async dump(value: unknown): Promise<Serialized> {
    const [type, bytes] = await this.serde.dumpsTyped(value)
    return [type, bytes]
  }

  private async load(s: Serialized): Promise<unknown> {
    return this.serde.loadsTyped(s[0], s[1] as Uint8Array)
  }

  private throwIfClosed(): void {
    if (this.closed) throw new MemwalError('ENGINE_CLOSED', 'the saver is closed')
  }
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0')
}

function configOf(thread: string, ns: string, id: string): RunnableConfig {
  return { configurable: { thread_id: thread, checkpoint_ns: ns, checkpoint_id: id } }
}

function nsOf(config: RunnableConfig): string {
  const ns = config.configurable?.['checkpoint_ns'] as unknown
  if (ns === undefined) return ''
  if (typeof ns !== 'string') throw invalid(`checkpoint_ns must be a string, not ${typeof ns}`)
  return ns
}

function idOf(field: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) throw invalid(`${field} must be a non-empty string`)
  return v
}
