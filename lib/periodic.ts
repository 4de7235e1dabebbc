// Background jobs that run inside the service (no cron outside it).

/**
 * Runs `job` every `ms` milliseconds until the returned stop() is called; a run that
 * is still going when the next is due is not doubled (a long purge is not raced by
 * itself). unref(): it never keeps the process alive. Errors go to `onError`.
 */
export function periodic (ms: number, job: () => Promise<unknown>, onError: (err: Error) => void): () => void {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    job().catch(onError).finally(() => { running = false })
  }, ms)
  timer.unref()
  return () => clearInterval(timer)
}
