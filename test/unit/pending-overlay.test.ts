/**
 * A query's pending overlay reads the op of a pending identity only when the
 * query's range, namespaces and key range admit it (issue 13: a narrow query
 * under a large backlog read the op of every pending identity, most of a
 * LangGraph getTuple's cost), and its answer is the same as before: the hits
 * and the identities it overrides within what the query admits.
 */
import t from 'tap'
import { pendingOverlay } from '../../engine/query/pending-overlay.js'
import { parseQuery } from '../../engine/query/query-spec.js'
import { identityOf } from '../../engine/format/identity.js'
import type { PendingLog } from '../../engine/apply/pending-log.js'
import type { Op } from '../../engine/format/record-codec.js'

const LIMITS = { keyBytesMax: 1024, labelBytesMax: 256, tagsMax: 64, batchOpsMax: 10_000 }

/** A pending log of `ids` (a put each, but `deleted`), counting the ops read. */
function pendingOf(ids: readonly string[], deleted: ReadonlySet<string> = new Set()): { log: PendingLog; reads: string[] } {
  const reads: string[] = []
  const log = {
    keys: () => ids[Symbol.iterator](),
    latestOp: (id: string): { lsn: number; op: Op; updatedAt: number } => {
      reads.push(id)
      const key = id.slice(id.indexOf('\u0000') + 1)
      return { lsn: 1, op: deleted.has(id) ? { type: 'del', key } : { type: 'put', key, value: 1 }, updatedAt: 1 }
    },
  }
  return { log: log as unknown as PendingLog, reads }
}

t.test('a prefix query reads the ops of the pending identities under its prefix only', async (t) => {
  const ids: string[] = []
  for (let i = 0; i < 200; i++) ids.push(identityOf('default', `other\u0000${i}`), identityOf('elsewhere', `lg.cp\u0000t1\u0000${i}`))
  const mine = [identityOf('default', 'lg.cp\u0000t1\u0000a'), identityOf('default', 'lg.cp\u0000t1\u0000b'), identityOf('default', 'lg.cp\u0000t1\u0000c')]
  ids.splice(100, 0, ...mine)
  const deleted = new Set([mine[1] as string])
  const { log, reads } = pendingOf(ids, deleted)
  const spec = parseQuery({ namespace: 'default', prefix: 'lg.cp\u0000t1\u0000', reverse: true, limit: 1 }, LIMITS)
  const overlay = pendingOverlay(log, spec, 0, () => true)
  t.same(reads.sort(), [...mine].sort(), 'only the identities the query admits had their op read')
  t.same(overlay.hits, [mine[2], mine[0]], 'the pending puts it returns, in the query order (the delete is none)')
  t.same([...overlay.overridden].sort(), [...mine].sort(), 'the pending identities it overrides, the delete included')
})

t.test('within (the range, the cursor) is asked before any op is read', async (t) => {
  const ids = Array.from({ length: 50 }, (_, i) => identityOf('n', `k${String(i).padStart(2, '0')}`))
  const { log, reads } = pendingOf(ids)
  const after = identityOf('n', 'k39')
  const overlay = pendingOverlay(log, parseQuery({ namespace: 'n' }, LIMITS), 0, (id) => id > after)
  t.equal(reads.length, 10, 'the ops of the 10 identities after the cursor')
  t.same(overlay.hits, ids.slice(40))
})
