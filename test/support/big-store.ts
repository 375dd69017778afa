import path from 'node:path'
import { MemWAL } from '../../engine/index.js'
import { tmpDir } from './tmp-dir.js'

/** 20,000 entries of 2 kB (a 40 MB log and store): a command on it runs long enough to be caught part-way by a signal. */
export async function fortyMbStore(t: Parameters<typeof tmpDir>[0], prefix: string): Promise<string> {
  const dir = path.join(tmpDir(t, prefix), 'data')
  const db = await MemWAL.open({ dir })
  const value = 'v'.repeat(2000)
  for (let b = 0; b < 40; b++) await db.batch(Array.from({ length: 500 }, (_, i) => ({ type: 'put' as const, key: `k${b}-${i}`, value })))
  await db.close()
  return dir
}
