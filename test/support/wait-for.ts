/** Polls `cond` every `everyMs` until it holds; rejects after `timeoutMs`, naming `what` was awaited. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000, everyMs = 2): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await sleep(everyMs)
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Lets the promises a fired timer started settle (a manual clock fires its timers synchronously): a few turns of the event loop. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r))
}
