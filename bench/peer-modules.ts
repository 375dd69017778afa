/**
 * The peers' packages, loaded only when a peer runs. lmdb and better-sqlite3
 * are devDependencies of memwal: a user who installed memwal from its package
 * has neither, and `memwal bench` must then skip those peers with a note
 * instead of failing to load (issue 14, item 10). classic-level goes through
 * the same door, though memwal's own backend depends on it.
 */
export type PeerPackage = 'classic-level' | 'lmdb' | 'better-sqlite3'

export const PEER_PACKAGES: readonly PeerPackage[] = ['classic-level', 'lmdb', 'better-sqlite3']

export const loadClassicLevel = () => import('classic-level')
export const loadLmdb = () => import('lmdb')
export const loadBetterSqlite3 = (): Promise<{ readonly default: typeof import('better-sqlite3') }> => import('better-sqlite3')

const LOADERS: Readonly<Record<PeerPackage, () => Promise<unknown>>> = {
  'classic-level': loadClassicLevel,
  lmdb: loadLmdb,
  'better-sqlite3': loadBetterSqlite3,
}

/**
 * The packages that cannot be loaded here, each with the reason (not
 * installed, or a native build that failed to load). Loading one is what
 * running its peer would do first.
 */
export async function unavailablePeerPackages(): Promise<Map<PeerPackage, string>> {
  const missing = new Map<PeerPackage, string>()
  for (const name of PEER_PACKAGES) {
    try {
      await LOADERS[name]()
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      missing.set(name, e.code === 'ERR_MODULE_NOT_FOUND' ? 'not installed (a devDependency of memwal)' : `does not load: ${e.message.split('\n')[0] ?? ''}`)
    }
  }
  return missing
}
