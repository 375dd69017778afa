/**
 * MemWAL.open({ metricsPort }): GET /metrics answers a Prometheus scrape
 * (memwal's own registry when none is given), GET /health the health() JSON
 * (200 while the engine serves reads; it closes with the engine), loopback by
 * default; reopened on the same directory, it serves again and what it
 * reports survived (the log, the checkpoints, the data); a bad port is
 * INVALID_OPTIONS; a port in use refuses the open.
 */
import http from 'node:http'
import t from 'tap'
import { MemoryLevel } from 'memory-level'
import { Registry } from 'prom-client'
import { MemWAL, type LevelDatabase, type MemwalOptions } from '../../engine/index.js'
import { SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'

function openSim(extra: Partial<MemwalOptions>): Promise<MemWAL> {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
  return MemWAL.open({ dir: '/data', fs: new SimulatedFileSystem(new SeededRandom(2)), level: db as unknown as LevelDatabase, segmentBytes: 64 * 1024, ...extra })
}

function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }))
    }).on('error', reject)
  })
}

t.test('GET /metrics and /health on a port of its own, loopback by default; reopened on the same directory, the state survived', async (t) => {
  const dir = tmpDir(t)
  const engine = await MemWAL.open({ dir, metricsPort: 0 })
  const addr = engine.metricsAddress
  t.ok(addr, 'the address it bound')
  t.equal(addr?.host, '127.0.0.1', 'loopback by default')
  const port = addr?.port ?? 0
  await engine.put('a', 1)
  await engine.put('b', 2)
  const m = await get(port, '/metrics')
  t.equal(m.status, 200)
  t.match(m.type, /text\/plain/)
  t.match(m.body, /memwal_writes_total\{type="put"\} 2/, 'the scrape has the writes')
  t.match(m.body, /memwal_backlog_records/, 'and the gauges')
  const h = await get(port, '/health')
  t.equal(h.status, 200)
  t.equal((JSON.parse(h.body) as { state: string }).state, 'open', 'health() as JSON')
  t.equal((await get(port, '/nothing')).status, 404)
  await engine.flush()
  await engine.close()
  await t.rejects(get(port, '/health'), 'the endpoint closes with the engine')

  const again = await MemWAL.open({ dir, metricsPort: 0 })
  t.teardown(() => again.close())
  const port2 = again.metricsAddress?.port ?? 0
  const h2 = JSON.parse((await get(port2, '/health')).body) as { state: string; wal: { lastLsn: number }; sinks: Record<string, { checkpoint: number }>; backlog: { records: number } }
  t.equal(h2.state, 'open', 'the same directory, served again')
  t.equal(h2.wal.lastLsn, 2, 'the log kept both writes')
  t.equal(h2.sinks.backend?.checkpoint, 2, 'and the backend its checkpoint')
  t.equal(h2.backlog.records, 0, 'nothing to replay')
  t.match((await get(port2, '/metrics')).body, /memwal_sink_checkpoint\{sink="backend"\} 2/, 'the scrape says so')
  t.equal(await again.get('b'), 2, 'the data survived')
})

t.test("the caller's registry is the one served; /health answers 200 while read-only", async (t) => {
  const registry = new Registry()
  const engine = await openSim({ metricsPort: 0, metrics: registry })
  t.teardown(() => engine.close())
  await engine.put('a', 1)
  const body = (await get(engine.metricsAddress?.port ?? 0, '/metrics')).body
  t.equal(body, await registry.metrics(), 'the same exposition as the registry given')
  engine.setReadOnly(true, 'test')
  const h = await get(engine.metricsAddress?.port ?? 0, '/health')
  t.equal(h.status, 200, 'read-only still serves: 200')
  t.equal((JSON.parse(h.body) as { state: string }).state, 'read-only')
})

t.test('bad ports are refused; a port in use refuses the open', async (t) => {
  await t.rejects(openSim({ metricsPort: 70_000 }), { code: 'INVALID_OPTIONS', message: /metricsPort/ })
  await t.rejects(openSim({ metricsPort: 1.5 }), { code: 'INVALID_OPTIONS', message: /metricsPort/ })
  const first = await openSim({ metricsPort: 0 })
  t.teardown(() => first.close())
  await t.rejects(openSim({ metricsPort: first.metricsAddress?.port ?? 0 }), { code: 'INVALID_OPTIONS', message: /cannot serve metrics/ })
})
