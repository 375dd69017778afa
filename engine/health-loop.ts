import type { Clock } from './io/clock.js'

/**
 * Runs `check` every `intervalMs` on the injected clock, one at a time (the
 * next is scheduled when the last has settled), until stopped. The engine's
 * check probes idle sinks and re-decides the state, so that health() tells
 * the truth without traffic. Its timers never hold the process.
 */
export class HealthLoop {
  private cancel: (() => void) | undefined
  private running: Promise<void> = Promise.resolve()
  private stopped = false

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly check: () => Promise<void>,
  ) {}

  start(): void {
    this.schedule()
  }

  /** No check starts after this; resolves once the one running (if any) has settled. */
  async stop(): Promise<void> {
    this.stopped = true
    this.cancel?.()
    await this.running
  }

  private schedule(): void {
    if (this.stopped) return
    this.cancel = this.clock.setTimer(this.intervalMs, () => {
      this.cancel = undefined
      // A check that throws must not stop the loop: the engine's check logs its own failures.
      this.running = this.check().catch(() => undefined).then(() => this.schedule())
    })
  }
}
