import type { Packr } from 'msgpackr'
import { opIdentity, splitIdentity } from '../../format/identity.js'
import { keepsCreatedAt } from '../../format/expiry-key.js'
import { hlcMs, isLegacyDelete, opsOf, packedValueOf, type Op } from '../../format/record-codec.js'
import type { AppliedRecord } from '../sink.js'
import type { Columns } from './pg-schema.js'

/**
 * Versions of an identity as PgBackend orders them, and a batch's last
 * version of each identity as the columns of one upsert (apply, and the
 * repair of verifyLog).
 */

/** One identity's version in a batch: the last operation on it. */
export interface Version {
  readonly op: Op
  readonly lsn: number
  readonly hlc: number
  /** A delete of this identity came earlier in the batch, or a put of it that had expired by a later put's write time: a put starts its createdAt again. */
  readonly fresh: boolean
  /** The hlc a put's createdAt comes from when the stored row does not settle it: the first put of the batch's run of puts. */
  readonly createdHlc: number
}

/** A version-1 delete (no namespace): the key in every namespace. */
export interface LegacyDelete {
  readonly key: string
  readonly hlc: number
  readonly lsn: number
}

/**
 * The last operation on each identity, in LSN order (so also in HLC order:
 * one writer's clock never goes back), and the version-1 deletes, which the
 * apply runs first (they also delete what came before them in the batch).
 */
export function latestPerKey(records: readonly AppliedRecord[]): { versions: Map<string, Version>; legacy: LegacyDelete[] } {
  const versions = new Map<string, Version>()
  const legacy: LegacyDelete[] = []
  for (const r of records) {
    const hlc = r.record.hlc ?? 0
    for (const op of opsOf(r.record)) {
      if (isLegacyDelete(op)) {
        legacy.push({ key: op.key, hlc, lsn: r.lsn })
        for (const [id, v] of versions) if (v.op.key === op.key) versions.set(id, { op: { type: 'del', key: op.key, namespace: splitIdentity(id).namespace }, lsn: r.lsn, hlc, fresh: true, createdHlc: hlc })
        continue
      }
      const id = opIdentity(op)
      const prev = versions.get(id)
      // A put over an earlier put of the batch carries its run's createdAt unless that put had expired by this one's write time.
      const carried = prev !== undefined && prev.op.type === 'put' && (op.type === 'del' || keepsCreatedAt(prev.op.expiresAt, hlcMs(hlc))) ? prev : undefined
      const fresh = prev !== undefined && (carried === undefined || carried.fresh)
      versions.set(id, { op, lsn: r.lsn, hlc, fresh, createdHlc: carried?.createdHlc ?? hlc })
    }
  }
  return { versions, legacy }
}

/**
 * A put's value as stored (msgpack), packed once however many rows of an
 * apply carry it: the upsert's row of its identity and the change feed's row
 * of its operation share the bytes (one packer per apply: it holds them).
 */
export function valuePacker(packr: Packr): (op: PutOp) => Buffer {
  const packed = new Map<PutOp, Buffer>()
  return (op) => {
    let bytes = packed.get(op)
    if (bytes === undefined) {
      // Copied: msgpackr's encode returns a view into a buffer it reuses.
      bytes = Buffer.from(packedValueOf(packr, op))
      packed.set(op, bytes)
    }
    return bytes
  }
}

type PutOp = Extract<Op, { type: 'put' }>

/** The versions as the upsert's column arrays, one row per identity in identity order (so writers lock rows in the same order). */
export function columnsOf(versions: ReadonlyMap<string, Version>, pack: (op: PutOp) => Buffer): Columns {
  const ids = [...versions.keys()].sort()
  const c: Columns = { namespaces: [], keys: [], values: [], tags: [], hlcs: [], lsns: [], deleted: [], expires: [], fresh: [], created: [] }
  for (const id of ids) {
    const v = versions.get(id) as Version
    const put = v.op.type === 'put' ? v.op : undefined
    const { namespace, key } = splitIdentity(id)
    c.namespaces.push(namespace)
    c.keys.push(key)
    c.values.push(put ? pack(put) : null)
    c.tags.push(put?.tags ? JSON.stringify(put.tags) : null)
    c.hlcs.push(v.hlc)
    c.lsns.push(v.lsn)
    c.deleted.push(!put)
    c.expires.push(put?.expiresAt ?? null)
    c.fresh.push(v.fresh)
    c.created.push(v.createdHlc)
  }
  return c
}

/** -1, 0 or 1: versions order by HLC, then writer id (bytewise, as COLLATE "C" compares), then LSN. */
export function compareVersions(a: { readonly hlc: number; readonly writer: string; readonly lsn: number }, b: { readonly hlc: number; readonly writer: string; readonly lsn: number }): -1 | 0 | 1 {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1
  if (a.writer !== b.writer) return Buffer.compare(Buffer.from(a.writer), Buffer.from(b.writer)) as -1 | 1
  if (a.lsn !== b.lsn) return a.lsn < b.lsn ? -1 : 1
  return 0
}
