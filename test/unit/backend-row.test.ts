/**
 * The backend's row written from a value's bytes as logged (LevelBackend.row,
 * the apply path since record version 3) is byte for byte the row that
 * encoding it whole gives (LevelBackend.encode): rows keep layout 3, so a
 * store written either way reads the same, by this release and the ones
 * before it.
 */
import fc from 'fast-check'
import { MemoryLevel } from 'memory-level'
import t from 'tap'
import type { LevelDatabase } from '../../engine/index.js'
import { createPackr, packValue } from '../../engine/format/value-codec.js'
import { decodeRow, LevelBackend } from '../../engine/sinks/level-backend.js'
import { LevelStore } from '../../engine/sinks/level-store.js'
import { contractValueArb, valueDifference } from '../support/values.js'

const runs = (n: number): number => Math.max(1, Math.round(n * Number(process.env.FUZZ_SCALE ?? 1)))

t.test('a row spliced from the packed value equals the row encoded whole, and decodes to the value', async (t) => {
  const store = await LevelStore.open('mem', new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as LevelDatabase)
  t.teardown(() => store.close())
  const backend = new LevelBackend(store)
  const packr = createPackr()
  const metaArb = fc.record({
    tags: fc.option(fc.array(fc.string(), { maxLength: 4 }), { nil: undefined }),
    lsn: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    createdAt: fc.integer({ min: -1, max: 2 ** 45 }),
    updatedAt: fc.integer({ min: 0, max: 2 ** 45 }),
    expiresAt: fc.option(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), { nil: undefined }),
  })
  let n = 0
  fc.assert(
    fc.property(contractValueArb, metaArb, (value, m) => {
      const meta = { lsn: m.lsn, createdAt: m.createdAt, updatedAt: m.updatedAt, ...(m.tags ? { tags: m.tags } : {}), ...(m.expiresAt !== undefined ? { expiresAt: m.expiresAt } : {}) }
      const whole = Buffer.from(backend.encode({ value, ...meta }))
      const spliced = Buffer.from(backend.row(Buffer.from(packValue(packr, value)), meta))
      if (!spliced.equals(whole)) throw new Error(`spliced ${spliced.toString('hex')} != whole ${whole.toString('hex')}`)
      const back = decodeRow(store, 'ns\u0000k', spliced)
      const diff = valueDifference(back.value, value)
      if (diff !== undefined) throw new Error(`value reads back changed: ${diff}`)
      if (back.lsn !== meta.lsn || back.createdAt !== meta.createdAt || back.updatedAt !== meta.updatedAt || back.expiresAt !== meta.expiresAt) throw new Error('metadata changed')
      n++
      return true
    }),
    { numRuns: runs(1000) },
  )
  t.ok(n > 0, `${n} rows compared`)
})
