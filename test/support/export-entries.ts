/**
 * What the export tests share: an export stream gathered into one Buffer,
 * a store's entries, and the comparison import must pass (every entry equal
 * with its type, namespace, tags and expiresAt).
 */
import type { Test } from 'tap'
import type { Entry, MemWAL } from '../../engine/index.js'
import { valueDifference } from './values.js'

export async function collect(stream: AsyncIterable<string | Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of stream) parts.push(typeof c === 'string' ? Buffer.from(c) : c)
  return Buffer.concat(parts)
}

/** Every entry of a store, in (namespace, key) order. */
export async function all(db: MemWAL): Promise<Entry[]> {
  const out: Entry[] = []
  for await (const e of db.query({ limit: 100_000 })) out.push(e)
  return out
}

/** Entries compared as import must keep them: identity, value (exactly), tags, expiresAt. */
export function sameEntries(t: Test, got: readonly Entry[], want: readonly Entry[], what: string): void {
  const id = (e: Entry): string => JSON.stringify([e.namespace, e.key])
  t.strictSame(got.map(id), want.map(id), `${what}: the same identities`)
  for (let i = 0; i < Math.min(got.length, want.length); i++) {
    const g = got[i] as Entry
    const w = want[i] as Entry
    const d = valueDifference(w.value, g.value)
    if (d !== undefined) t.fail(`${what}: ${id(w)}: ${d}`)
    t.strictSame([g.tags, g.expiresAt], [w.tags, w.expiresAt], `${what}: ${id(w)} tags and expiresAt`)
  }
}
