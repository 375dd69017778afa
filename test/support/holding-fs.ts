/**
 * A filesystem that holds the one write carrying a marker (a value's bytes)
 * until `release()`: the record that write carries is in flight, appended to
 * the log but not acknowledged, for as long as a test needs.
 */
import type { FileHandle, OpenMode, OpenOptions } from '../../engine/index.js'
import { ForwardingFileHandle, ForwardingFileSystem } from './forwarding-fs.js'

export class HoldingFs extends ForwardingFileSystem {
  private marker: Buffer | undefined
  private releaseHold = (): void => undefined
  private reached = (): void => undefined

  /** Resolves once a write carrying `marker` is held. */
  hold(marker: string): Promise<void> {
    this.marker = Buffer.from(marker)
    return new Promise((resolve) => (this.reached = resolve))
  }

  release(): void {
    this.releaseHold()
  }

  override async open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    const fs = this
    return new (class extends ForwardingFileHandle {
      override async write(data: Uint8Array, position: number): Promise<void> {
        if (fs.marker && Buffer.from(data.buffer, data.byteOffset, data.byteLength).includes(fs.marker)) {
          fs.marker = undefined
          await new Promise<void>((resolve) => {
            fs.releaseHold = resolve
            fs.reached()
          })
        }
        return this.inner.write(data, position)
      }
    })(await this.inner.open(p, mode, options))
  }
}
