/**
 * The environment for a child process a test spawns: without the test
 * runner's NODE_OPTIONS (its loader and process-tracking hooks slow a child's
 * start a lot) and without NODE_V8_COVERAGE (the child compiles the sources
 * with tsx, whose line maps differ from the runner's: merged, its coverage
 * would garble the report).
 */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra }
  delete env['NODE_OPTIONS']
  delete env['NODE_V8_COVERAGE']
  // The runner's process tracking puts its hooks back into every child; this keeps them from recording coverage.
  env['_TAPJS_PROCESSINFO_COVERAGE_'] = '0'
  return env
}
