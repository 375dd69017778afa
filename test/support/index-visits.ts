/**
 * Counts the index entries a store reads, for tests that bound what a query
 * costs by what it returns (read-path.test.ts, claude-flow-query.test.ts).
 */
import type { Sink } from '../../engine/index.js'

/** Counts the index entries read (each key or entry an iterator of the index's sublevel returns, one by one or in batches), through the wrapSink option. */
export class IndexVisits {
  visited = 0
  readonly wrap = <S extends Sink>(s: S): S => {
    if (s.name !== 'index') return s
    // The index sink's LevelDB sublevel: reaching a private field is this test's business (the count is what it measures).
    type It = { next(): Promise<unknown>; nextv(n: number): Promise<unknown[]> }
    const idx = (s as unknown as { store: { index: Record<'keys' | 'iterator', (o?: object) => It> } }).store.index
    for (const m of ['keys', 'iterator'] as const) {
      const open = idx[m].bind(idx)
      idx[m] = (o) => {
        const it = open(o)
        const next = it.next.bind(it)
        const nextv = it.nextv.bind(it)
        it.next = async () => {
          const item = await next()
          if (item !== undefined) this.visited++
          return item
        }
        it.nextv = async (n) => {
          const items = await nextv(n)
          this.visited += items.length
          return items
        }
        return it
      }
    }
    return s
  }
}
