import type { Clock } from './io/clock.js'

/**
 * Runs `check` every `intervalMs` on the injected clock, one at a time (the
 * next is scheduled when the last has settled), until stopped. The engine's
 * check probes idle sinks and re-decides the state, so that health() tells
 * the truth without traffic. Its timers never hold the process. `stop`
 * aborts the signal the check was given: a check waiting on a sink that does
 * not answer gives up at once instead of holding the close for a timeout.
 */
export class HealthLoop {
  private cancel: (() => void) | undefined
  private running: Promise<void> = Promise.resolve()
  private stopped = false
  private readonly stopping = new AbortController()

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly check: (stop: AbortSignal) => Promise<void>,
  ) {}

  start(): void {
    this.schedule()
  }

  /** No check starts after this; the one running (if any) is told to stop, and this resolves once it has settled. */
  async stop(): Promise<void> {
    this.stopped = true
    this.cancel?.()
    this.stopping.abort()
    await this.running
  }

  private schedule(): void {
    if (this.stopped) return
    this.cancel = this.clock.setTimer(this.intervalMs, () => {
      this.cancel = undefined
      // A check that throws must not stop the loop: the engine's check logs its own failures.
      this.running = this.check(this.stopping.signal).catch(() => undefined).then(() => this.schedule())
    })
  }
}
