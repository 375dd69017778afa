import { compareCodePoints } from '../format/identity.js'
import type { ScanMeta, Seeked, SeekableIds } from '../sinks/index-sink.js'

/**
 * The ids every one of `scans` holds, in their (shared) direction: a
 * leapfrog join. Each scan in turn jumps to the largest id any has reached;
 * when all stand on one id it is a result. Every jump moves a scan forward,
 * and no id is read that a jump can step over, so the cost follows the
 * smallest posting and the intersection, not the largest posting: with the
 * scans' own batching (index-scan.ts), a near id is a comparison, a far one a
 * seek. `skip` may reject an id the scans agree on and say where the next
 * acceptable one can start (key and namespace constraints no posting holds);
 * the first scan's meta is handed out with each result.
 */
export async function* leapfrog(scans: readonly SeekableIds[], reverse: boolean, skip: (id: string) => { readonly target: string; readonly exclusive: boolean } | undefined): AsyncGenerator<[string, ScanMeta]> {
  const n = scans.length
  if (n === 0) return
  let target: string | undefined
  let exclusive = false
  // The target came from `skip` (past ids the query cannot match): the scans jump there rather than read on.
  let far = false
  let agree = 0
  for (let i = 0; ; i = (i + 1) % n) {
    const s = (scans[i] as SeekableIds).seek(target, exclusive, far)
    const id = s instanceof Promise ? await s : s
    if (id === undefined) return
    if (id === target && !exclusive) agree++
    else {
      target = id
      exclusive = false
      far = false
      agree = 1
    }
    if (agree < n) continue
    const jump = skip(id)
    if (jump === undefined) yield [id, (scans[0] as SeekableIds).meta()]
    // Past this id (or to where `skip` says the next candidate may be): the next scan moves first.
    const further = jump !== undefined && (reverse ? -1 : 1) * compareCodePoints(jump.target, id) > 0
    target = further ? (jump as { target: string }).target : id
    exclusive = further ? (jump as { exclusive: boolean }).exclusive : true
    far = further
    agree = 0
  }
}

/**
 * The union of several scans as one seekable scan (a query's `tags.any`):
 * each seek moves every member to the target, and the nearest id ahead is
 * the union's; its meta is that member's.
 */
export class UnionScan implements SeekableIds {
  private at: SeekableIds | undefined
  /** The nearest id ahead the seek in progress has found. */
  private best: string | undefined
  private readonly heads: (string | undefined)[]
  private readonly done: boolean[]

  constructor(private readonly members: readonly SeekableIds[], private readonly reverse: boolean) {
    this.heads = members.map(() => undefined)
    this.done = members.map(() => false)
  }

  seek(target: string | undefined, exclusive: boolean, far = false): Seeked {
    this.at = undefined
    this.best = undefined
    for (let i = 0; i < this.members.length; i++) {
      const s = this.step(i, target, exclusive, far)
      // A member that must read: the rest of the seek waits for it (each member in turn, as they answer).
      if (s instanceof Promise) return this.readOn(i, s, target, exclusive, far)
      this.take(i, s)
    }
    return this.best
  }

  /** The seek from member `i` on, once member `i`'s read is in. */
  private async readOn(i: number, reading: Promise<string | undefined>, target: string | undefined, exclusive: boolean, far: boolean): Promise<string | undefined> {
    this.take(i, await reading)
    for (let j = i + 1; j < this.members.length; j++) {
      const s = this.step(j, target, exclusive, far)
      this.take(j, s instanceof Promise ? await s : s)
    }
    return this.best
  }

  /** Member `i` moved to the target: its head as it is (one at or past the target, or done, need not move), or its seek. */
  private step(i: number, target: string | undefined, exclusive: boolean, far: boolean): Seeked {
    const head = this.heads[i]
    if (this.done[i] === true) return undefined
    const stays = head !== undefined && target !== undefined && this.order(head, target) > (exclusive ? 0 : -1)
    return stays ? head : (this.members[i] as SeekableIds).seek(target, exclusive, far)
  }

  /** Member `i` is at `id` (undefined: at its end): the nearest id ahead is the union's. */
  private take(i: number, id: string | undefined): void {
    this.heads[i] = id
    if (id === undefined) {
      this.done[i] = true
      return
    }
    if (this.best === undefined || this.order(id, this.best) < 0) {
      this.best = id
      this.at = this.members[i]
    }
  }

  meta(): ScanMeta {
    return (this.at as SeekableIds).meta()
  }

  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.close()))
  }

  private order(a: string, b: string): number {
    return (this.reverse ? -1 : 1) * compareCodePoints(a, b)
  }
}
