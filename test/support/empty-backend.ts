/**
 * A backend of one's own (a BackendSink the user writes) that holds nothing,
 * named as asked: no exportSnapshot (export refuses it), and a data directory
 * records it as `custom` with its name.
 */
import { BackendSink, type StoredEntry } from '../../engine/index.js'

export class EmptyBackend extends BackendSink {
  constructor(readonly name: string = 'backend') {
    super()
  }

  protected async _open(): Promise<number> {
    return 0
  }
  protected async _apply(): Promise<void> {}
  protected async _close(): Promise<void> {}
  async get(): Promise<StoredEntry | undefined> {
    return undefined
  }
  async *entries(): AsyncIterable<[string, StoredEntry]> {}
  async repair(): Promise<void> {}
}
