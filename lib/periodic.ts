// Background jobs that run inside the service (no cron outside it).

/**
 * Runs `step` (a purge of at most `batch` rows, answering how many it deleted) until a
 * batch comes back short: one short statement at a time, never one huge one. The total.
 */
export async function inBatches (batch: number, step: (limit: number) => Promise<number>): Promise<number> {
  let total = 0
  for (;;) {
    const n = await step(batch)
    total += n
    if (n < batch) return total
  }
}

/**
 * Runs `job` every `ms` milliseconds until the returned stop() is called; a run that
 * is still going when the next is due is not doubled (a long purge is not raced by
 * itself). unref(): it never keeps the process alive. Errors go to `onError`. stop()
 * waits for a run in progress, so a plugin's onClose can stop it before the pool closes.
 */
export function periodic (ms: number, job: () => Promise<unknown>, onError: (err: Error) => void): () => Promise<void> {
  let running: Promise<void> | null = null
  const timer = setInterval(() => {
    if (running !== null) return
    running = job().then(() => {}, onError).finally(() => { running = null })
  }, ms)
  timer.unref()
  return async () => {
    clearInterval(timer)
    await running
  }
}
