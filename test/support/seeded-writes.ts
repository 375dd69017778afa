/**
 * What the writer children of the process tests have in common: a pure
 * random source per write (so the parent recomputes exactly what write
 * number `counter` of the child seeded `seed` was), and how a write's ops go
 * through MemWAL's public calls.
 */
import { SeededRandom } from '../../engine/io/random.js'
import type { Op } from '../../engine/format/record-codec.js'
import type { BatchOp, MemWAL } from '../../engine/index.js'

/** The random source of write `counter` of the writer seeded `seed` (`salt` separates writers that share a seed). */
export function writeRandom(seed: number, counter: number, salt = 0): SeededRandom {
  return new SeededRandom((Math.imul(seed, 0x9e3779b1) ^ Math.imul(counter + 1, 0x85ebca6b) ^ salt) >>> 0)
}

/** Issues one write: a lone put or delete through put()/delete(), anything else as one batch. */
export function issueWrite(engine: MemWAL, ops: readonly Op[]): Promise<{ lsn: number }> {
  const [op] = ops
  if (ops.length > 1 || !op) return engine.batch(ops as BatchOp[])
  if (op.type === 'del') return engine.delete(op.key, op.namespace !== undefined ? { namespace: op.namespace } : undefined)
  return engine.put(op.key, op.value, { ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) })
}
