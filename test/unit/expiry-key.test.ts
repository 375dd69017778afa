/**
 * The expiry posting (engine/format/expiry-key.ts): keys sort in expiry order
 * as bytes, parse back to what was written, and the expired range holds
 * exactly the postings with expiresAt <= now.
 */
import t from 'tap'
import fc from 'fast-check'
import { EXPIRY_POSTING_PREFIX, expiredRange, expiryPosting, isExpired, parseExpiryPosting } from '../../engine/format/expiry-key.js'
import { limits } from '../../engine/limits.js'

const timeArb = fc.integer({ min: 0, max: limits.expiresAtMax })
/** Identities hold anything, NUL included (namespace NUL key). */
const idArb = fc.string({ unit: 'binary', maxLength: 20 })

t.test('a posting parses back to its expiry and identity', async (t) => {
  fc.assert(fc.property(timeArb, idArb, (at, id) => {
    const p = parseExpiryPosting(expiryPosting(at, id))
    return p !== undefined && p.expiresAt === at && p.identity === id
  }))
  t.same(parseExpiryPosting(expiryPosting(limits.expiresAtMax, 'ns\u0000k')), { expiresAt: limits.expiresAtMax, identity: 'ns\u0000k' })
})

t.test('postings sort by expiry first, as bytes', async (t) => {
  fc.assert(fc.property(timeArb, idArb, timeArb, idArb, (a, ida, b, idb) => {
    if (a === b) return true
    const ka = Buffer.from(expiryPosting(a, ida))
    const kb = Buffer.from(expiryPosting(b, idb))
    return Math.sign(Buffer.compare(ka, kb)) === Math.sign(a - b)
  }))
  t.pass()
})

t.test('the expired range holds exactly the postings with expiresAt <= now', async (t) => {
  fc.assert(fc.property(timeArb, idArb, fc.integer({ min: 0, max: limits.expiresAtMax + 10 }), (at, id, now) => {
    const k = expiryPosting(at, id)
    const r = expiredRange(now)
    const inside = k >= r.gte && k < r.lt
    return inside === (at <= now) && inside === isExpired(at, now)
  }))
  // The edges: one ms before, at, and one after.
  const k = expiryPosting(1000, 'k')
  const inRange = (now: number): boolean => k >= expiredRange(now).gte && k < expiredRange(now).lt
  t.same([inRange(999), inRange(1000), inRange(1001)], [false, true, true])
  t.notOk(isExpired(undefined, Number.MAX_SAFE_INTEGER), 'no expiry never expires')
})

t.test('what is not a posting does not parse', async (t) => {
  for (const k of ['', 'x', EXPIRY_POSTING_PREFIX, `${EXPIRY_POSTING_PREFIX}123\u0000id`, `${EXPIRY_POSTING_PREFIX}00000000000000a1\u0000id`, `${EXPIRY_POSTING_PREFIX}0000000000000001id`, `f\u00000000000000000001\u0000id`]) {
    t.equal(parseExpiryPosting(k), undefined, JSON.stringify(k))
  }
})

t.test('an expiry outside the accepted range is a bug, asserted', async (t) => {
  for (const bad of [-1, 1.5, limits.expiresAtMax + 1, Number.NaN]) {
    t.throws(() => expiryPosting(bad, 'k'), { code: 'ASSERTION_FAILED' }, String(bad))
  }
})
