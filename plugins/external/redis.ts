// Provides `fastify.redis` (ioredis): one Redis, a Redis Cluster or a Sentinel-managed
// master (REDIS_MODE), tuned to fail fast: Redis is a cache, and a request must fall back to
// PostgreSQL rather than wait for it. Null when the service runs as a single instance
// without Redis (lib/local-mode.ts): each user of it then keeps to PostgreSQL or its own
// memory, on the path it takes when Redis is unreachable.
import fp from 'fastify-plugin'
import { Cluster, Redis, type ClusterOptions, type RedisOptions as IORedisOptions } from 'ioredis'
import { addressOf, ATTEMPT_TIMEOUT_MS, describeCause, unreachable, type Target, type WaitOptions } from '../../lib/startup.js'

export type RedisMode = 'standalone' | 'cluster' | 'sentinel'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis | null
  }
}

export interface RedisOptions {
  /** Unset: no Redis at all (a single instance, lib/local-mode.ts). */
  url?: string
  keyPrefix: string
  /** How long start-up waits for Redis before giving up (ms). */
  startupTimeoutMs?: number
}

export interface RedisTopology {
  mode?: RedisMode
  /** More `host:port` seeds: cluster nodes or Sentinels besides the one in the URL. */
  nodes?: string
  /** Sentinel mode: the name of the monitored master. */
  sentinelMaster?: string
}

/** How long one command may take before the caller gives up and answers from PostgreSQL. */
export const COMMAND_TIMEOUT_MS = 250
/**
 * A connection that has commands outstanding and receives nothing for this long is torn
 * down and rebuilt. This is what notices a black-holed connection (a partition, a dead
 * host, a proxy that stopped forwarding): TCP alone would keep it "open" for minutes, and
 * every request would pay the command timeout. While it reconnects, the client is not
 * `ready` and requests skip Redis without waiting at all.
 */
export const SOCKET_TIMEOUT_MS = 1000

// Reconnect forever, at most 500 ms apart: back to normal well within 5 s.
const retryStrategy = (times: number) => Math.min(50 * times, 500)

function parseNodes (url: URL, extra: string | undefined, defaultPort: number): Array<{ host: string, port: number }> {
  const nodes = [{ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || defaultPort) }]
  for (const item of (extra ?? '').split(',')) {
    const hostPort = item.trim()
    if (hostPort === '') continue
    const at = hostPort.lastIndexOf(':')
    nodes.push({ host: hostPort.slice(0, at), port: Number(hostPort.slice(at + 1)) })
  }
  return nodes
}

/**
 * The ioredis client for the configured topology. The key layout is cluster-safe: every
 * key of a user carries the user id as a hash tag, and every Lua script touches one key
 * (or keys of one hash tag), so the same code runs against all three modes.
 */
export function createRedisClient (urlString: string, keyPrefix: string, topology: RedisTopology = {}): Redis {
  const url = new URL(urlString)
  const connection: IORedisOptions = {
    // Credentials, TLS (rediss:) and the database come from REDIS_URL in every mode.
    username: url.username === '' ? undefined : decodeURIComponent(url.username),
    password: url.password === '' ? undefined : decodeURIComponent(url.password),
    tls: url.protocol === 'rediss:' ? {} : undefined,
    commandTimeout: COMMAND_TIMEOUT_MS,
    socketTimeout: SOCKET_TIMEOUT_MS,
    connectTimeout: 1000,
    // No retries and no offline queue: while disconnected a command fails at once and
    // the caller answers from PostgreSQL, instead of piling up requests behind a dead socket.
    maxRetriesPerRequest: 0,
    // TCP keepalive notices a dead peer on an idle connection.
    keepAlive: 10_000,
    // Commands issued in the same tick (concurrent requests) share one socket write
    // instead of one write each.
    enableAutoPipelining: true
  }
  const mode = topology.mode ?? 'standalone'

  if (mode === 'cluster') {
    const options: ClusterOptions = {
      keyPrefix,
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: retryStrategy,
      // A moved slot or a failover is retried briefly; the command timeout still bounds it.
      retryDelayOnFailover: 50,
      retryDelayOnClusterDown: 50,
      slotsRefreshTimeout: 1000,
      enableAutoPipelining: true,
      redisOptions: { ...connection, keyPrefix: undefined }
    }
    // One code path for both: a Cluster has the same command interface as a Redis.
    return new Cluster(parseNodes(url, topology.nodes, 6379), options) as unknown as Redis
  }

  const common: IORedisOptions = {
    ...connection,
    db: Number(url.pathname.slice(1) || 0),
    keyPrefix,
    lazyConnect: true,
    enableOfflineQueue: false,
    retryStrategy
  }
  if (mode === 'sentinel') {
    return new Redis({
      ...common,
      sentinels: parseNodes(url, topology.nodes, 26379),
      name: topology.sentinelMaster ?? 'mymaster',
      // The Sentinels are assumed to share the master's credentials and TLS.
      sentinelUsername: common.username,
      sentinelPassword: common.password,
      enableTLSForSentinelMode: common.tls !== undefined,
      sentinelRetryStrategy: retryStrategy,
      // A demoted master refuses writes with READONLY: reconnect, and Sentinel names the
      // new one. (ioredis' failoverDetector is left off: a +switch-master arriving while
      // it reconnects ends the client for good.)
      reconnectOnError: (err: Error) => err.message.startsWith('READONLY')
    })
  }
  // Standalone: ioredis reads everything else from the URL itself.
  return new Redis(urlString, common)
}

/**
 * Resolves once the client is ready. ioredis keeps reconnecting by itself (retryStrategy,
 * at most 500 ms apart): this waits for that, up to `wait.timeoutMs`, and rejects at once on
 * refused credentials, which no retry mends.
 */
async function connected (client: Redis, target: Target, wait: WaitOptions): Promise<void> {
  const deadline = Date.now() + wait.timeoutMs
  let last: unknown = new Error('timed out')
  let waiting = false
  await new Promise<void>((resolve, reject) => {
    const finish = (err?: Error) => {
      clearTimeout(timer)
      client.off('error', onError)
      client.off('ready', onReady)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onReady = () => finish()
    const onError = (err: Error & { lastNodeError?: Error }) => {
      // A Cluster wraps the cause: "Failed to refresh slots cache" says little.
      last = err.lastNodeError ?? err
      const cause = describeCause(last)
      if (cause.auth === true) return finish(unreachable(target, cause.text, wait.timeoutMs, false))
      if (Date.now() >= deadline) return finish(unreachable(target, cause.text, wait.timeoutMs, true))
      if (!waiting) wait.onWait?.(cause.text)
      waiting = true
    }
    // A black-holed address errors only when a connect attempt times out.
    const timer = setTimeout(() => finish(unreachable(target, describeCause(last).text, wait.timeoutMs, true)),
      Math.max(wait.timeoutMs, ATTEMPT_TIMEOUT_MS))
    client.on('error', onError)
    client.once('ready', onReady)
    client.connect().catch(() => {})
  })
}

export default fp<RedisOptions>(async function redisPlugin (fastify, opts) {
  const { config } = fastify
  if (opts.url === undefined) {
    fastify.decorate('redis', null)
    return
  }
  const client = createRedisClient(opts.url, opts.keyPrefix, {
    mode: config.REDIS_MODE,
    nodes: config.REDIS_NODES,
    sentinelMaster: config.REDIS_SENTINEL_MASTER
  })
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

  // Deliberate start-up policy: wait for Redis for a bounded time (containers start in any
  // order), then refuse to start with one clear line, so a misconfigured REDIS_URL is caught
  // at deploy time. Once running, the service survives Redis going away (plugins/app/revocation).
  const what = config.REDIS_MODE === 'cluster' ? 'Redis Cluster' : config.REDIS_MODE === 'sentinel' ? 'Redis through Sentinel' : 'Redis'
  const target = { variable: 'REDIS_URL', what, address: addressOf(opts.url, config.REDIS_MODE === 'sentinel' ? 26379 : 6379) }
  const timeoutMs = opts.startupTimeoutMs ?? 0
  try {
    await connected(client, target, {
      timeoutMs,
      onWait: (cause) => fastify.log.warn(`${what} at ${target.address} is not answering (${cause}): trying again for up to ${Math.round(timeoutMs / 1000)} s`)
    })
  } catch (err) {
    client.disconnect()
    throw err
  }

  // ioredis reconnects by itself, except in a few corners (a connector that fails while
  // it reconnects) where the client ends for good: start it again, until the app closes.
  // (Only once started: a failed start-up must leave nothing running.)
  let closing = false
  client.on('end', () => {
    if (closing) return
    fastify.log.warn('Redis client ended: connecting again')
    setTimeout(() => { if (!closing) client.connect().catch(() => {}) }, 500).unref()
  })

  fastify.decorate('redis', client)
  fastify.metrics.gauge('auth_redis_up', '1 while the Redis client is connected and ready', () => Number(client.status === 'ready'))
  fastify.addHook('onClose', async () => {
    closing = true
    await client.quit().catch(() => client.disconnect())
  })
}, { name: 'redis', dependencies: ['config', 'metrics'] })
