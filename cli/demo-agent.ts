import { writeSync } from 'node:fs'
import { MemWAL, type Sink } from '../engine/index.js'
import { AGENT_NAMESPACE, keyOf, memoryOf, topicOf } from './demo-memory.js'

/**
 * The agent of `npm run demo`: stores memories in memwal while its backend is
 * down (every apply to the LevelDB backend fails, as if it were unreachable),
 * and prints each acknowledgement the moment it happens, until it is killed.
 */
const dir = process.argv[2]
if (!dir) throw new Error('usage: demo-agent <dir>')

function backendDown<S extends Sink>(sink: S): S {
  if (sink.name !== 'backend') return sink
  sink.apply = () => Promise.reject(Object.assign(new Error('backend unreachable (simulated outage)'), { code: 'ECONNREFUSED' }))
  return sink
}

const db = await MemWAL.open({ dir, wrapSink: backendDown, resilience: { retryDelayMsMin: 20, retryDelayMsMax: 200, breakerThreshold: 3, breakerHalfOpenMs: 500 } })
db.on('sink-down', ({ sink }: { sink: string }) => writeSync(2, `agent: sink ${sink} is down; writes are still acknowledged from the log\n`))
writeSync(1, 'ready\n')
for (let i = 1; ; i++) {
  const key = keyOf(i)
  const { lsn } = await db.put(key, memoryOf(i), { namespace: AGENT_NAMESPACE, tags: [topicOf(i)] })
  writeSync(1, `ack ${lsn} ${key}\n`)
}
