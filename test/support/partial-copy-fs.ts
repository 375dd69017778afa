/**
 * The real filesystem, with a hook awaited before every write into the
 * `store/` or `wal/` of a backup's or a restore's partial directory
 * (`<target>.partial-<8 hex>`): to slow or pause a copy part-way, after its
 * sentinel and marker are written and before the store's tables are.
 */
import type { FileHandle, OpenMode, OpenOptions } from '../../engine/index.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { ForwardingFileHandle, ForwardingFileSystem } from './forwarding-fs.js'

const COPIED_DATA = /\.partial-[0-9a-f]{8}\/(store|wal)\//

export class PartialCopyFs extends ForwardingFileSystem {
  constructor(private readonly beforeWrite: (file: string) => Promise<void>) {
    super(new NodeFileSystem())
  }

  override async open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    const h = await this.inner.open(p, mode, options)
    if (mode !== 'create' || !COPIED_DATA.test(p)) return h
    const beforeWrite = this.beforeWrite
    return new (class extends ForwardingFileHandle {
      override async write(data: Uint8Array, position: number): Promise<void> {
        await beforeWrite(p)
        return super.write(data, position)
      }
    })(h)
  }
}

/** A PartialCopyFs whose copy waits at its first write until `go()`; `copying` resolves when it got there. */
export function pausedCopyFs(): { readonly fs: PartialCopyFs; readonly copying: Promise<void>; go(): void } {
  let paused = true
  const waiting: (() => void)[] = []
  let started: () => void = () => undefined
  const copying = new Promise<void>((resolve) => {
    started = resolve
  })
  const fs = new PartialCopyFs(async () => {
    started()
    if (paused) await new Promise<void>((resolve) => waiting.push(resolve))
  })
  return {
    fs,
    copying,
    go: () => {
      paused = false
      for (const w of waiting.splice(0)) w()
    },
  }
}
