/**
 * A filesystem that notes, in order, the calls that make a file durable
 * (mkdirp, rename, syncDir): to show that a file was renamed into place and
 * its directory synced right after, before something else was made.
 */
import type { FileSystem } from '../../engine/index.js'
import { ForwardingFileSystem } from './forwarding-fs.js'

export class RecordingFileSystem extends ForwardingFileSystem {
  readonly calls: string[] = []
  constructor(inner: FileSystem) {
    super(inner)
  }

  override mkdirp(p: string): Promise<void> {
    this.calls.push(`mkdirp ${p}`)
    return super.mkdirp(p)
  }

  override rename(from: string, to: string): Promise<void> {
    this.calls.push(`rename ${to}`)
    return super.rename(from, to)
  }

  override syncDir(p: string): Promise<void> {
    this.calls.push(`syncDir ${p}`)
    return super.syncDir(p)
  }
}
