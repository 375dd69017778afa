import fs from 'node:fs'
import { posix as path } from 'node:path'

export interface PrivateCopyOptions {
  /** Where the copy's directory is made (its own, from mkdtemp, mode 0700). */
  readonly tmpRoot: string
  /** Files never changed in place once written: hard-linked where the filesystem allows. */
  readonly link: (name: string) => boolean
  /** Files left out of the copy. */
  readonly skip: (name: string) => boolean
}

export interface PrivateCopy {
  readonly dir: string
  /** Removes the copy (and only it: a link's file stays where it was). */
  remove(): Promise<void>
}

/**
 * A private copy of the flat directory `from`, for a program that rewrites
 * what it opens (LevelDB has no read-only open): whatever it writes, renames
 * or deletes is in the copy. Files `link` accepts are hard links (no bytes
 * copied; a link that cannot be made, across filesystems (EXDEV) or where
 * links are not allowed (EPERM), is a copy); safe only for files nobody
 * changes in place, and the copy's modes must not be changed (a link shares
 * its file's). The others are copied; those `skip` accepts are left out.
 */
export async function privateCopy(from: string, o: PrivateCopyOptions): Promise<PrivateCopy> {
  const dir = await fs.promises.mkdtemp(path.join(o.tmpRoot, 'memwal-view-'))
  const remove = (): Promise<void> => fs.promises.rm(dir, { recursive: true, force: true })
  try {
    for (const e of await fs.promises.readdir(from, { withFileTypes: true })) {
      if (!e.isFile() || o.skip(e.name)) continue
      const source = path.join(from, e.name)
      const target = path.join(dir, e.name)
      if (o.link(e.name) && (await linked(source, target))) continue
      await fs.promises.copyFile(source, target)
    }
  } catch (err) {
    await remove()
    throw err
  }
  return { dir, remove }
}

async function linked(source: string, target: string): Promise<boolean> {
  try {
    await fs.promises.link(source, target)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EXDEV' || code === 'EPERM' || code === 'ENOTSUP' || code === 'EMLINK') return false
    throw err
  }
}
