import { MemwalError } from '../engine/index.js'

/**
 * Loads a framework the adapter plugs into. The frameworks are optional peer
 * dependencies: `import 'memwal'` never loads them, and an adapter imported
 * without its framework fails with one error that says what to install
 * (a static import would fail at link time with Node's bare
 * ERR_MODULE_NOT_FOUND instead, before any of our code could run).
 */
export async function importPeer<T>(specifier: string, adapter: string, install: string): Promise<T> {
  try {
    return (await import(specifier)) as T
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    if (code === 'ERR_MODULE_NOT_FOUND' && String((cause as Error).message).includes(packageOf(specifier))) {
      throw new MemwalError('ADAPTER_PEER_MISSING', `${adapter} needs the optional peer dependency ${packageOf(specifier)}: run \`npm install ${install}\``, {
        cause,
        details: { adapter, install },
      })
    }
    throw cause
  }
}

function packageOf(specifier: string): string {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string)
}
