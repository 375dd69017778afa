import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

/** The part of a tap Test this helper needs. */
interface Teardown {
  teardown(fn: () => unknown): void
}

/**
 * A fresh directory under os.tmpdir() (mode 0700, from mkdtemp), removed with
 * everything in it when the test ends.
 */
export function tmpDir(t: Teardown, prefix = 'memwal-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}
