/**
 * VersionGate (engine/version-gate.ts), with version sources the test
 * controls: a condition is never accepted on a stored version that a write
 * made stale while the deciding write waited, whether it waited for the read
 * itself or, in a batch, for another identity's write in flight.
 */
import t from 'tap'
import { gateState, STORED_READS_MAX, VersionGate, type Condition } from '../../engine/version-gate.js'

/** Versions as the pending log and the backend would give them, set by the test. */
class Sources {
  readonly pendingOf = new Map<string, number | null>()
  readonly storedOf = new Map<string, number | null>()
  reads = 0
  pending = (id: string): number | null | undefined => this.pendingOf.get(id)
  stored = async (id: string): Promise<number | null> => {
    this.reads++
    return this.storedOf.get(id) ?? null
  }
}

const cond = (id: string, expected: number | null): Condition => ({ id, namespace: 'default', key: id, expected })

t.test('a batch waiting for one identity re-reads another that was overwritten meanwhile: VERSION_MISMATCH, not a stale accept', async (t) => {
  const s = new Sources()
  s.storedOf.set('a', 5)
  s.storedOf.set('b', 7)
  const gate = new VersionGate(s)
  const state = gateState()
  // The batch: a at 5, b at 8 (the version b's write in flight below gets).
  const conditions = [cond('a', 5), cond('b', 8)]
  const read = gate.decide(conditions, state)
  t.not(read, true, 'nothing pending: the stored versions are read')
  const settleB = gate.appending(['b']) // b is written during the read: its stored version is not kept
  await read
  const waitB = gate.decide(conditions, state)
  t.not(waitB, true, 'b in flight: the batch waits for it')
  t.equal(state.stored.get('a')?.version, 5, 'a is remembered at 5 while the batch waits')
  // While it waits: a is overwritten, and that write leaves the pending log (applied) before the batch decides again.
  const settleA = gate.appending(['a'])
  s.storedOf.set('a', 9)
  settleA()
  s.pendingOf.set('b', 8)
  settleB()
  await waitB
  let decided: true | Promise<void> = gate.decide(conditions, state)
  t.not(decided, true, 'a is read again, not taken from before the wait')
  await decided
  t.throws(() => (decided = gate.decide(conditions, state)), { code: 'VERSION_MISMATCH', details: { key: 'a', expected: 5, current: 9 } })
  gate.release(state)
  t.equal(gate['watched'].size, 0, 'released: no identity stays watched')
})

t.test('a remembered version nothing wrote since is used without reading again, and released watches end', async (t) => {
  const s = new Sources()
  s.storedOf.set('a', 5)
  const gate = new VersionGate(s)
  const state = gateState()
  const conditions = [cond('a', 5), cond('b', 8)]
  const settleB = gate.appending(['b'])
  const waitB = gate.decide(conditions, state)
  s.pendingOf.set('b', 8)
  settleB()
  await waitB
  const read = gate.decide(conditions, state)
  t.not(read, true)
  await read
  const settleC = gate.appending(['c']) // another identity: a stays known
  settleC()
  t.equal(gate.decide(conditions, state), true, 'decided on the version read')
  t.equal(s.reads, 1, 'a read once')
  gate.release(state)
  t.equal(gate['watched'].size, 0)
})

t.test('an entry whose every read is overtaken by a write: ENGINE_GATE_BUSY (transient, not the backlog), after a bounded number of reads', async (t) => {
  const s = new Sources()
  const gate = new VersionGate(s)
  const raced = s.stored
  // Every read of a is overtaken by a write to a, settled before the read answers.
  s.stored = async (id) => {
    gate.appending([id])()
    return raced(id)
  }
  const state = gateState()
  const conditions = [cond('a', null)]
  let refusal: unknown
  try {
    for (let wait = gate.decide(conditions, state); wait !== true; wait = gate.decide(conditions, state)) await wait
  } catch (err) {
    refusal = err
  } finally {
    gate.release(state)
  }
  t.match(refusal, { code: 'ENGINE_GATE_BUSY', transient: true, details: { reads: STORED_READS_MAX + 1, identities: [{ namespace: 'default', key: 'a' }] } })
  t.equal(s.reads, STORED_READS_MAX, 'the reads are bounded')
})
