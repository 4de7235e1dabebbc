// Background jobs that run inside the service (no cron outside it).
import type { FastifyInstance } from 'fastify'

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

/**
 * A plugin's periodic purge: `purge()` every `every` ms (0: never) on this instance, its
 * count logged when it deleted something, a failure logged and tried again next time,
 * stopped when the app closes. Every instance may run it: purges delete in batches that
 * skip the rows another instance is deleting.
 */
export function purgeEvery (fastify: FastifyInstance, every: number, what: string, purge: () => Promise<number>): void {
  if (every <= 0) return
  const stop = periodic(every, async () => {
    const n = await purge()
    if (n > 0) fastify.log.info({ purged: n }, `${what} purged`)
  }, (err) => fastify.log.warn({ err: { message: err.message } }, `${what} purge failed`))
  fastify.addHook('onClose', async () => await stop())
}
