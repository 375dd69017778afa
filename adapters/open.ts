import { MemWAL, MemwalError, type MemwalOptions } from '../engine/index.js'

/**
 * Opens the MemWAL an adapter owns. The adapters promise that a write has
 * reached the disk when it resolves, so they refuse the engine's weaker
 * durability settings rather than quietly break that promise.
 */
export async function openOwned(options: MemwalOptions, who: string): Promise<MemWAL> {
  if (options.durability !== undefined && options.durability !== 'sync') {
    throw new MemwalError('ADAPTER_INVALID_ARGUMENT', `${who} resolves a write only once it is durable: durability must be 'sync', not '${options.durability}'`)
  }
  return MemWAL.open(options)
}
