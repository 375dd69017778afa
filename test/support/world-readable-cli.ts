/**
 * A copy of the `memwal` CLI that any user can run: for tests that run the
 * CLI as another user (`nobody`) to meet EACCES while the suite runs as root.
 *
 * That user may not be able to enter the checkout at all (a clone under
 * `mktemp -d`, mode 0700, or under /root), so the child cannot load tsx, the
 * sources or node_modules from there. This places, in a fresh temporary
 * directory of mode 0755, the engine and CLI sources transpiled to
 * JavaScript from the current checkout (never a stale dist/) and the
 * runtime dependencies' closure copied from node_modules, everything
 * world-readable. The copy is removed when the test ends.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import ts from 'typescript'
import { REPO_DIR } from './cli-run.js'

/** The sources the CLI runs: the engine and the CLI itself (bench/ is spawned only by `memwal bench`). */
const SOURCE_DIRS = ['engine', 'cli']
const DIR_MODE = 0o755
const FILE_MODE = 0o644

interface Teardown {
  teardown(fn: () => unknown): void
}

/** Builds the copy; returns the path of its `cli/main.js`, to run with `node`. */
export function worldReadableCli(t: Teardown): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-cli-copy-'))
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')) as { name: string; version: string; type: string }
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: pkg.name, version: pkg.version, type: pkg.type }))
  for (const dir of SOURCE_DIRS) transpileTree(path.join(REPO_DIR, dir), path.join(root, dir))
  for (const dep of runtimeClosure(REPO_DIR)) fs.cpSync(dep, path.join(root, path.relative(REPO_DIR, dep)), { recursive: true, dereference: true })
  openToAll(root)
  return path.join(root, 'cli', 'main.js')
}

/** Each .ts file under `from` as .js under `to` (types stripped; imports already name .js files). */
function transpileTree(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true })
  for (const e of fs.readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, e.name)
    if (e.isDirectory()) transpileTree(src, path.join(to, e.name))
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
      const out = ts.transpileModule(fs.readFileSync(src, 'utf8'), {
        fileName: src,
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
      })
      fs.writeFileSync(path.join(to, e.name.replace(/\.ts$/, '.js')), out.outputText)
    }
  }
}

/**
 * The top-level node_modules directories the package's runtime dependencies
 * need, found the way Node resolves them (a package's own node_modules first,
 * then each parent's); packages nested inside another come with it.
 */
export function runtimeClosure(repo: string): string[] {
  const top = new Set<string>()
  const seen = new Set<string>()
  const visit = (pkgDir: string): void => {
    if (seen.has(pkgDir)) return
    seen.add(pkgDir)
    const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>
    for (const name of [...Object.keys(pkg['dependencies'] ?? {}), ...Object.keys(pkg['optionalDependencies'] ?? {})]) {
      const found = resolvePackage(repo, pkgDir, name)
      if (!found) continue // an optional dependency for another platform
      if (path.dirname(found) === path.join(repo, 'node_modules') || path.dirname(path.dirname(found)) === path.join(repo, 'node_modules')) top.add(found)
      visit(found)
    }
  }
  visit(repo)
  return [...top]
}

function resolvePackage(repo: string, from: string, name: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name)
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate
    if (dir === repo || dir === path.dirname(dir)) return undefined
  }
}

/** Directories 0755, files 0644 (executables 0755): whatever umask the checkout was made under. */
function openToAll(dir: string): void {
  fs.chmodSync(dir, DIR_MODE)
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) openToAll(p)
    else if (e.isFile()) fs.chmodSync(p, (fs.statSync(p).mode & 0o111) !== 0 ? DIR_MODE : FILE_MODE)
  }
}
