/**
 * The logger port: the host's logger, pino-compatible
 * (`logger.warn({ sink }, 'message')`), injected like the clock, so that any layer may log without
 * knowing the engine's options.
 */
export interface Logger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

/** The default: says nothing. */
export const silentLogger: Logger = Object.freeze({ debug() {}, info() {}, warn() {}, error() {} })
