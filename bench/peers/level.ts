/**
 * classic-level (LevelDB, memwal's default backend) as a peer, on a fresh
 * database with `{ sync: true }` writes: resolved after LevelDB's log write
 * and fsync (LevelDB groups concurrent writers into one log write).
 *
 * - put: one record per write (the agent shape: a batch of the record and its
 *   index entries, atomic, as one write);
 * - batch: `perBatch` records per synced batch, one batch at a time.
 */
import { posix as path } from 'node:path'
import { timedTrial, type Load, type Timing } from '../drive.js'
import { loadClassicLevel } from '../peer-modules.js'
import { indexKeys, type RecordShape } from '../records.js'
import type { TrialResult } from '../stats.js'

interface PutOp {
  readonly type: 'put'
  readonly key: string
  readonly value: string
}

function opsOf(shape: RecordShape, n: number, into: PutOp[]): void {
  into.push({ type: 'put', key: shape.key(n), value: shape.text(n) })
  for (const k of indexKeys(shape, n)) into.push({ type: 'put', key: k, value: '' })
}

export async function levelTrial(dir: string, shape: RecordShape, o: { readonly perBatch: number }, load: Load, timing: Timing): Promise<TrialResult> {
  const { ClassicLevel } = await loadClassicLevel()
  const db = new ClassicLevel<string, string>(path.join(dir, 'level'), { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  await db.open()
  try {
    let n = 0
    const plainPut = shape.id === 'plain' && o.perBatch === 1
    const op = (): Promise<void> => {
      if (plainPut) return db.put(shape.key(n), shape.text(n++), { sync: true })
      const ops: PutOp[] = []
      for (let i = 0; i < o.perBatch; i++) opsOf(shape, n++, ops)
      return db.batch(ops, { sync: true })
    }
    return await timedTrial(op, { ...load, perOp: o.perBatch }, timing)
  } finally {
    await db.close()
  }
}
