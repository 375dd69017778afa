/**
 * `memwal deadletter list` names each operation of a dead letter with the
 * entry it writes, (namespace, key), deletes included: it reads the record
 * through the engine's opsOf, not a copy of it (a delete used to be shown
 * without its namespace). A version-1 delete, which named none, removed the
 * key in every namespace, and says so.
 */
import t from 'tap'
import { describeDeadLetter } from '../../cli/commands/deadletter.js'
import { RecordCodec, encodeVersion1, type WalRecord } from '../../engine/testing.js'
import type { DeadLetter } from '../../engine/index.js'

function letter(lsn: number, record: WalRecord): DeadLetter {
  return { sink: 'backend', lsn, record, keys: [], entries: [] }
}

t.test('puts and deletes, each with its namespace', async (t) => {
  const batch: WalRecord = {
    type: 3,
    ops: [
      { type: 'put', key: 'a', value: 1, namespace: 'agents/7' },
      { type: 'del', key: 'b', namespace: 'agents/7' },
      { type: 'del', key: 'c', namespace: 'default' },
    ],
  }
  t.equal(describeDeadLetter(letter(9, batch)), 'LSN 9\tbackend\tput "a" in "agents/7", delete "b" in "agents/7", delete "c" in "default"')
  t.equal(describeDeadLetter(letter(3, { type: 2, op: { type: 'del', key: 'x', namespace: 'ns' } })), 'LSN 3\tbackend\tdelete "x" in "ns"')
})

t.test('a version-1 delete: the key in every namespace', async (t) => {
  const codec = new RecordCodec()
  const v1 = encodeVersion1(codec, { type: 2, op: { type: 'del', key: 'old' } })
  const decoded = codec.decode(2, v1)
  t.equal(describeDeadLetter(letter(4, decoded)), 'LSN 4\tbackend\tdelete "old" in every namespace')
})
