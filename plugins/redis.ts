// Provides `fastify.redis` (ioredis through @fastify/redis), tuned to fail fast: Redis is a
// cache, and a request must fall back to PostgreSQL rather than wait for it.
import fp from 'fastify-plugin'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'

export interface RedisOptions {
  url: string
  keyPrefix: string
  /** How long start-up waits for Redis before giving up. */
  connectTimeoutMs?: number
}

export function createRedisClient (url: string, keyPrefix: string): Redis {
  return new Redis(url, {
    keyPrefix,
    lazyConnect: true,
    // No offline queue: while disconnected a command fails at once and the caller
    // answers from PostgreSQL, instead of piling up requests behind a dead socket.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 250,
    connectTimeout: 1000,
    // Reconnect forever, at most 500 ms apart: back to normal well within 5 s.
    retryStrategy: (times: number) => Math.min(50 * times, 500)
  })
}

export default fp<RedisOptions>(async function redisPlugin (fastify, opts) {
  const client = createRedisClient(opts.url, opts.keyPrefix)
  let down = false
  client.on('error', (err: Error) => {
    // Log a connection loss once, not once per reconnect attempt.
    if (!down) fastify.log.warn({ err: { message: err.message } }, 'Redis connection error')
    down = true
  })
  client.on('ready', () => {
    if (down) fastify.log.info('Redis connection restored')
    down = false
  })

  // Deliberate start-up policy: refuse to start without Redis (one clear line, exit 1),
  // so a misconfigured REDIS_URL is caught at deploy time. Once running, the service
  // survives Redis going away (see plugins/revocation.ts).
  const timeoutMs = opts.connectTimeoutMs ?? 5000
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      client.connect(),
      new Promise((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), timeoutMs)
      })
    ])
  } catch {
    client.disconnect()
    const { hostname, port } = new URL(opts.url)
    throw new Error(`REDIS_URL: cannot connect to Redis at ${hostname}:${port || 6379}`)
  } finally {
    clearTimeout(timer)
  }

  await fastify.register(fastifyRedis, { client, closeClient: false })
  fastify.addHook('onClose', async () => {
    await client.quit().catch(() => client.disconnect())
  })
}, { name: 'redis', dependencies: ['config'] })
