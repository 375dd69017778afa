/**
 * The backend's row written from a value's bytes as logged (spliceRow,
 * the apply path since record version 3) is byte for byte the row that
 * encoding it whole gives (encodeRow, backend-row.ts): rows keep layout 3, so a
 * store written either way reads the same, by this release and the ones
 * before it. rowBounds finds its fields' bytes (what an export copies) by
 * their msgpack headers alone.
 */
import fc from 'fast-check'
import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import { createPackr, packValue } from '../../engine/format/value-codec.js'
import { decodeRow, encodeRow, rowBounds, rowMeta, spliceRow } from '../../engine/sinks/backend-row.js'
import { contractValueArb, valueDifference } from '../support/values.js'

const runs = (n: number): number => Math.max(1, Math.round(n * Number(process.env.FUZZ_SCALE ?? 1)))

t.test('a row spliced from the packed value equals the row encoded whole, and decodes to the value', async (t) => {
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
      const packed = Buffer.from(packValue(packr, value))
      const whole = Buffer.from(encodeRow(packr, { value, ...meta }))
      const spliced = Buffer.from(spliceRow(packr, packed, meta))
      if (!spliced.equals(whole)) throw new Error(`spliced ${spliced.toString('hex')} != whole ${whole.toString('hex')}`)
      // rowBounds cuts the row into its fields by their headers alone (export reads them so).
      const b = rowBounds(spliced)
      if (!spliced.subarray(1, b.valueEnd).equals(packed)) throw new Error('the value bytes read out of the row are not the value as packed')
      if (!isDeepStrictEqual(packr.unpack(spliced.subarray(b.valueEnd, b.tagsEnd)), m.tags ?? null)) throw new Error('the tags read out of the row are not its tags')
      if (packr.unpack(spliced.subarray(b.expiresAtStart)) !== (m.expiresAt ?? null)) throw new Error('the expiresAt read out of the row is not its expiresAt')
      const back = decodeRow(packr, 'ns\u0000k', spliced)
      const diff = valueDifference(back.value, value)
      if (diff !== undefined) throw new Error(`value reads back changed: ${diff}`)
      if (back.lsn !== meta.lsn || back.createdAt !== meta.createdAt || back.updatedAt !== meta.updatedAt || back.expiresAt !== meta.expiresAt) throw new Error('metadata changed')
      // rowMeta skips the value undecoded: the same metadata as the whole decode, field for field, absent fields absent.
      const { value: _v, namespace: _n, key: _k, ...decoded } = back
      if (!isDeepStrictEqual(rowMeta(packr, spliced), decoded)) throw new Error(`rowMeta ${JSON.stringify(rowMeta(packr, spliced))} != ${JSON.stringify(decoded)}`)
      n++
      return true
    }),
    { numRuns: runs(1000) },
  )
  t.ok(n > 0, `${n} rows compared`)
})
