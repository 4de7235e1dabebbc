// What start-up runs against when nothing is configured: the defaults when something
// answers there, else (outside production) an embedded PostgreSQL kept in ./.data/ and no
// Redis at all (one instance, everything decided from PostgreSQL and its own memory), and
// in development a signing key kept in ./.data/ too, so that `npm ci && npm start` works on
// a machine with neither server and tokens survive a restart. Production never falls back:
// it needs DATABASE_URL and REDIS_URL.
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join, relative } from 'node:path'
import { ConfigError, type Config } from '../plugins/external/config.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.js'
import { addressOf } from './startup.js'

export interface DatabaseChoice {
  url: string
  /** Set when this process started an embedded PostgreSQL: stop it after the app closes. */
  embedded?: EmbeddedPostgres
  /** One line: which PostgreSQL, why, and what to set to change it. */
  line: string
}

/** Production runs only against what it was told to. */
export function requireTargets (config: Config): void {
  if (config.NODE_ENV !== 'production') return
  for (const [name, given] of [['DATABASE_URL', config.databaseUrlGiven], ['REDIS_URL', config.redisUrlGiven]] as const) {
    if (!given) throw new ConfigError(`Invalid configuration: ${name} is required when NODE_ENV=production (no default, no embedded fallback)`)
  }
}

/** Whether something accepts TCP connections at the URL's host and port. */
async function answers (url: string, defaultPort: number, timeoutMs = 1000): Promise<boolean> {
  const { hostname, port } = new URL(url)
  return await new Promise((resolve) => {
    const socket = connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port || defaultPort), timeout: timeoutMs })
    const done = (ok: boolean) => { socket.destroy(); resolve(ok) }
    socket.once('connect', () => done(true))
    socket.once('timeout', () => done(false))
    socket.once('error', () => done(false))
  })
}

/**
 * The PostgreSQL to use: DATABASE_URL when set; else the default address when something
 * answers there; else an embedded one in `dataDir` (never in production).
 */
export async function chooseDatabase (config: Config, dataDir: string, defaultUrl = config.DATABASE_URL): Promise<DatabaseChoice> {
  if (config.databaseUrlGiven) {
    return { url: config.DATABASE_URL, line: `database: PostgreSQL at ${addressOf(config.DATABASE_URL, 5432)} (DATABASE_URL)` }
  }
  const at = addressOf(defaultUrl, 5432)
  if (await answers(defaultUrl, 5432)) {
    return { url: defaultUrl, line: `database: PostgreSQL at ${at} (DATABASE_URL is not set: the default address answers)` }
  }
  const database = decodeURIComponent(new URL(defaultUrl).pathname.slice(1))
  const embedded = await startEmbeddedPostgres(dataDir, database)
  const where = relative(process.cwd(), embedded.dataDir) || embedded.dataDir
  return {
    url: embedded.url,
    embedded,
    line: `database: embedded PostgreSQL in ${where.startsWith('..') ? embedded.dataDir : `./${where}`} on 127.0.0.1:${embedded.port}${embedded.created ? ', created now' : ''} ` +
      `(DATABASE_URL is not set and nothing answers at ${at.split('/')[0]}); set DATABASE_URL to use a PostgreSQL of your own`
  }
}

export interface RedisChoice {
  /** Unset: run without Redis. */
  url?: string
  /** One line: which Redis or none, why, and what to set to change it. */
  line: string
}

/**
 * The Redis to use: REDIS_URL when set (or a topology named by REDIS_MODE); else the
 * default address when something answers there; else none (never in production, which
 * needs REDIS_URL): a single instance whose token checks read PostgreSQL every time and
 * whose rate limits and lockouts are counted in its own memory.
 */
export async function chooseRedis (config: Config, defaultUrl = config.REDIS_URL): Promise<RedisChoice> {
  if (config.redisUrlGiven || config.REDIS_MODE !== 'standalone') {
    const port = config.REDIS_MODE === 'sentinel' ? 26379 : 6379
    return { url: config.REDIS_URL, line: `redis: ${config.REDIS_MODE === 'standalone' ? 'Redis' : `Redis (${config.REDIS_MODE})`} at ${addressOf(config.REDIS_URL, port)} (REDIS_URL)` }
  }
  const at = addressOf(defaultUrl, 6379).split('/')[0]
  if (await answers(defaultUrl, 6379)) {
    return { url: defaultUrl, line: `redis: Redis at ${at} (REDIS_URL is not set: the default address answers)` }
  }
  return {
    line: 'redis: none, a single instance: token checks read PostgreSQL on every request, rate limits and lockouts are ' +
      `counted in this process (REDIS_URL is not set and nothing answers at ${at}); set REDIS_URL to run several instances`
  }
}

/**
 * In development without JWT_SECRET: a key generated once and kept in `dataDir` (mode
 * 0600), so that tokens survive a restart of `npm run dev`. Anywhere else a missing key
 * stays per-process (lib/config.ts): a file of secrets must not appear on a server unasked.
 */
export function developmentKey (config: Config, dataDir: string): Config {
  if (!config.jwtKeyGenerated || config.NODE_ENV !== 'development') return config
  const file = join(dataDir, 'jwt-secret')
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  try {
    writeFileSync(file, randomBytes(48).toString('base64') + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as { code?: string }).code !== 'EEXIST') throw err // kept from an earlier run
  }
  const key = readFileSync(file, 'utf8').trim()
  const shown = relative(process.cwd(), file)
  return { ...config, jwtKey: key, jwtKeyFile: shown.startsWith('..') ? file : `./${shown}` }
}
