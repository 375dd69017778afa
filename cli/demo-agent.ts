import { writeSync } from 'node:fs'
import { MemWAL, type Sink } from '../engine/index.js'

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
const topics = ['weather', 'groceries', 'meeting', 'birthday', 'project', 'travel']
for (let i = 1; ; i++) {
  const topic = topics[i % topics.length] ?? 'misc'
  const key = `memory/${String(i).padStart(6, '0')}`
  const { lsn } = await db.put(key, { text: `note ${i} about ${topic}`, at: i }, { namespace: 'agent-1', tags: [topic] })
  writeSync(1, `ack ${lsn} ${key}\n`)
}
