import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { MemwalError } from '../errors.js'
import { limits } from '../limits.js'
import type { Random } from '../io/random.js'
import type { LevelStore } from '../sinks/level-store.js'

/**
 * Query cursors: opaque strings that say where a page ended, bound to the
 * store and to the query that made them.
 *
 *   base64url(JSON [1, queryHash, position]) "." base64url(HMAC-SHA256(secret, first part))
 *
 * `position` is the identity of the last entry returned (the next page starts
 * strictly after it in the query's order); `queryHash` is a hash of the
 * query's criteria and direction (queryFingerprint), so a cursor handed to
 * another query is refused; the HMAC key is this store's own secret (random
 * at first open, from the injected random source, kept in the store's meta),
 * so a cursor edited by hand or made by another store is refused. Refusals are
 * QUERY_INVALID_CURSOR, and never say which check failed beyond that.
 */
const VERSION = 1
const META_KEY = 'query-cursor-secret'

export class CursorSigner {
  constructor(private readonly secret: Uint8Array) {
    if (secret.length !== limits.queryCursorSecretBytes) throw new MemwalError('ASSERTION_FAILED', `a cursor secret has ${limits.queryCursorSecretBytes} bytes`)
  }

  /** A cursor that continues `fingerprint`'s query after `position`. */
  make(fingerprint: string, position: string): string {
    const body = Buffer.from(JSON.stringify([VERSION, hashOf(fingerprint), position]), 'utf8').toString('base64url')
    return `${body}.${this.mac(body).toString('base64url')}`
  }

  /** The position a cursor holds, if this store made it for this query; QUERY_INVALID_CURSOR otherwise. */
  open(fingerprint: string, cursor: string): string {
    if (cursor.length > limits.queryCursorCharsMax) throw invalid(`longer than ${limits.queryCursorCharsMax} characters`)
    const dot = cursor.indexOf('.')
    if (dot < 0) throw invalid('not a cursor')
    const body = cursor.slice(0, dot)
    const given = Buffer.from(cursor.slice(dot + 1), 'base64url')
    const want = this.mac(body)
    if (given.length !== want.length || !timingSafeEqual(given, want)) throw invalid('not made by this store (forged, altered, or from another data directory)')
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
    } catch {
      throw invalid('not a cursor')
    }
    if (!Array.isArray(parsed) || parsed[0] !== VERSION || typeof parsed[2] !== 'string') throw invalid('of an unknown version')
    if (parsed[1] !== hashOf(fingerprint)) throw invalid('made for a different query (criteria or direction changed)')
    return parsed[2]
  }

  private mac(body: string): Buffer {
    return createHmac('sha256', this.secret).update(body).digest()
  }
}

/** This store's cursor secret: read from the store's meta, or made from `random` and stored (synced) at its first open. */
export async function loadCursorSecret(store: LevelStore, random: Random): Promise<Uint8Array> {
  const stored = await store.meta.get(META_KEY)
  if (stored !== undefined && stored.length === limits.queryCursorSecretBytes) return Uint8Array.from(stored)
  const secret = Buffer.alloc(limits.queryCursorSecretBytes)
  for (let i = 0; i < secret.length; i += 4) secret.writeUInt32BE(random.nextU32() >>> 0, i)
  await store.writeBatch([{ type: 'put', sublevel: store.meta, key: META_KEY, value: secret }])
  return secret
}

function hashOf(fingerprint: string): string {
  return createHash('sha256').update(fingerprint).digest('base64url').slice(0, 22)
}

function invalid(why: string): MemwalError {
  return new MemwalError('QUERY_INVALID_CURSOR', `query cursor refused: ${why}`)
}
