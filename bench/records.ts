/**
 * The records every system writes, in two shapes:
 *
 * - `plain`: a string value sized so that the Wal's encoded PUT payload is
 *   350 bytes (382-byte frames), no namespace, no tags: the log's own figure.
 * - `agent`: an agent-memory record, what users of memwal store: an object of
 *   about 350 bytes as JSON (id, agent, type, content, three tags, metadata),
 *   put with a namespace and the three tags, so that memwal's index works.
 *   Peers store the same object (as JSON text, or lmdb-js's own msgpack) and,
 *   in the same atomic write, one index entry for the namespace and one per
 *   tag, as an agent-memory library on them would to answer the same queries.
 *
 * Keys have a constant length. Pure: no I/O.
 */
import { RecordCodec, RecordType, type WalRecord } from '../engine/testing.js'

export type ShapeId = 'plain' | 'agent'
export const SHAPES: readonly ShapeId[] = ['plain', 'agent']

export interface AgentMemory {
  readonly id: string
  readonly agent: string
  readonly type: string
  readonly content: string
  readonly tags: readonly string[]
  readonly metadata: { readonly source: string; readonly session: string; readonly confidence: number; readonly createdAt: number }
}

export interface RecordShape {
  readonly id: ShapeId
  readonly key: (n: number) => string
  /** What MemWAL and the Wal store: a string (plain) or an AgentMemory object. */
  readonly value: (n: number) => string | AgentMemory
  /** The value as text, for peers that store strings (JSON of the object). */
  readonly text: (n: number) => string
  /** The namespace and tags of record n (agent), or undefined (plain). */
  readonly labels: (n: number) => { readonly namespace: string; readonly tags: readonly string[] } | undefined
  /** The Wal's encoded PUT payload of record 0, in bytes. */
  readonly payloadBytes: number
  /** What the value weighs as text (JSON for agent), in bytes. */
  readonly valueBytes: number
}

/** Target size of the plain PUT payload and of the agent record's JSON. */
export const PAYLOAD_BYTES = 350
export const FRAME_HEADER_BYTES = 32

const key = (n: number): string => `key-${String(n).padStart(10, '0')}`

function letters(length: number, seed = 3): string {
  let s = ''
  for (let i = 0; i < length; i++) s += String.fromCharCode(97 + ((i * 7 + seed) % 26))
  return s
}

/** The largest length whose size stays at or under `target` (size grows with length). */
function fit(size: (length: number) => number, target: number): number {
  let length = 0
  while (size(length + 1) <= target) length++
  return length
}

/** The Wal record of a put of record n of `shape`. */
export function walPut(shape: RecordShape, n: number): WalRecord {
  const labels = shape.labels(n)
  return { type: RecordType.PUT, op: { type: 'put', key: shape.key(n), value: shape.value(n), ...(labels ? { namespace: labels.namespace, tags: labels.tags } : {}) } }
}

/** The index entries a peer writes with record n: one for the namespace, one per tag (none for plain). */
export function indexKeys(shape: RecordShape, n: number): string[] {
  const labels = shape.labels(n)
  if (!labels) return []
  const k = shape.key(n)
  return [`~ns/${labels.namespace}/${k}`, ...labels.tags.map((t) => `~tag/${t}/${k}`)]
}

function payloadBytesOf(shape: Omit<RecordShape, 'payloadBytes'>): number {
  return new RecordCodec().encode(walPut({ ...shape, payloadBytes: 0 }, 0)).length
}

export function plainShape(): RecordShape {
  const codec = new RecordCodec()
  const size = (length: number): number => codec.encode({ type: RecordType.PUT, op: { type: 'put', key: key(0), value: letters(length) } }).length
  const value = letters(fit(size, PAYLOAD_BYTES))
  const base = { id: 'plain' as const, key, value: () => value, text: () => value, labels: () => undefined, valueBytes: Buffer.byteLength(value) }
  return { ...base, payloadBytes: payloadBytesOf(base) }
}

const AGENT_NAMESPACE = 'agent-7'

function agentMemory(n: number, content: string): AgentMemory {
  return {
    id: key(n),
    agent: AGENT_NAMESPACE,
    type: 'observation',
    content,
    tags: ['memory', `topic-${n % 16}`, 'priority-normal'],
    metadata: { source: 'tool:web-search', session: 'session-0042', confidence: 0.87, createdAt: 1_764_547_200_000 + n },
  }
}

export function agentShape(): RecordShape {
  // The largest record (n with the most digits in createdAt and topic) sets the content's length.
  const content = letters(fit((length) => JSON.stringify(agentMemory(15, letters(length, 11))).length, PAYLOAD_BYTES), 11)
  const value = (n: number): AgentMemory => agentMemory(n, content)
  const base = {
    id: 'agent' as const,
    key,
    value,
    text: (n: number) => JSON.stringify(value(n)),
    labels: (n: number) => ({ namespace: AGENT_NAMESPACE, tags: value(n).tags }),
    valueBytes: JSON.stringify(value(15)).length,
  }
  return { ...base, payloadBytes: payloadBytesOf(base) }
}

export const shapeOf = (id: ShapeId): RecordShape => (id === 'plain' ? plainShape() : agentShape())
