/**
 * What each data-directory fixture (fixtures/datadirs/, see its README) holds
 * and what fsck finds and repairs in it: written once, for every CLI test
 * that runs a tool on a fixture.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { CaseName, Manifest } from '../../fixtures/make-datadir-fixtures.js'
import { DATADIRS } from './cli-run.js'

/** The fixtures' manifest: per case, its segments and the LSNs or keys its fault touches. */
export const manifest = JSON.parse(fs.readFileSync(path.join(DATADIRS, 'manifest.json'), 'utf8')) as Manifest

export interface CaseExpect {
  /** Counts per finding kind, before and in the repair run. */
  readonly found: Record<string, number>
  readonly repaired: Record<string, number>
  /** Files in quarantine/ after the repair. */
  readonly quarantined: readonly string[]
  /** The LSNs the repaired log no longer holds (the cut), for log damage. */
  readonly cut?: readonly [number, number]
}

export function expectations(name: CaseName): CaseExpect {
  const m = manifest[name]
  switch (name) {
    case 'clean':
      return { found: {}, repaired: {}, quarantined: [] }
    case 'torn-tail':
      return { found: { 'torn-tail': 1 }, repaired: { 'torn-tail': 1 }, quarantined: [`${m.segment}.broken`] }
    case 'corrupt-middle-segment':
    case 'bitflip-payload':
    case 'corrupt-log-backend-down':
      // Only the damaged frame leaves the log: the verified frames after it are kept, in a new segment.
      return { found: { 'corrupt-frame': 1 }, repaired: { 'corrupt-frame': 1 }, quarantined: [`${m.segment}.broken`], cut: [m.lsnFirst as number, m.lsnLast as number] }
    case 'missing-segment':
      return { found: { 'missing-lsns': 1 }, repaired: { 'missing-lsns': 1 }, quarantined: [] }
    case 'backend-behind':
      // The index holds the keys the backend lost: orphans until the backend is repaired (which comes first).
      return { found: { 'backend-missing': 3, 'index-orphan': 3 }, repaired: { 'backend-missing': 3 }, quarantined: [] }
    case 'stale-index':
      return { found: { 'index-mismatch': 2 }, repaired: { 'index-mismatch': 2 }, quarantined: [] }
    case 'orphan-index':
      return { found: { 'index-orphan': 2 }, repaired: { 'index-orphan': 2 }, quarantined: [] }
  }
}
