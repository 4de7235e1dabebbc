import type { Config } from '../plugins/external/config.js'

// Start-up against dependencies that may not be up yet: containers start in any order, so
// an unreachable PostgreSQL or Redis is tried again with backoff for a bounded time
// (STARTUP_TIMEOUT), then start-up fails with one line that an operator can act on: the
// variable, the address (never the credentials) and the cause.

/** What start-up waits for: named as the operator configured it. */
export interface Target {
  /** The variable that points at it: DATABASE_URL, REDIS_URL. */
  variable: string
  /** PostgreSQL, Redis, Redis Cluster, … */
  what: string
  /** host:port (and /database), without credentials. */
  address: string
}

/** An expected start-up failure: its message is the one line printed, no stack. */
export class StartupError extends Error {
  override name = 'StartupError'
}

export interface Cause {
  text: string
  /** Worth trying again: the dependency may be on its way up. */
  transient: boolean
  /** The server answered and refused the credentials. */
  auth?: boolean
}

// PostgreSQL SQLSTATEs for authentication: invalid_password, and
// invalid_authorization_specification (no such role, no pg_hba.conf entry).
const AUTH_SQLSTATES = new Set(['28P01', '28000'])

/** Why a connection attempt failed, in the words an operator searches for. */
export function describeCause (err: unknown): Cause {
  const { code, message = '' } = (err ?? {}) as { code?: unknown, message?: string }
  if (code === 'ECONNREFUSED') return { text: 'connection refused', transient: true }
  // A container's name resolves only once it exists: keep trying an unknown host too.
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { text: 'unknown host', transient: true }
  if (code === 'ETIMEDOUT' || /timeout|timed out/i.test(message)) return { text: 'timed out', transient: true }
  if (typeof code === 'string' && AUTH_SQLSTATES.has(code)) return { text: `authentication failed (${message})`, transient: false, auth: true }
  // pg, when the server asks for a password and the URL has none.
  if (/^SASL: .*password must be a string/.test(message)) return { text: 'authentication failed (the server wants a password; the URL has none)', transient: false, auth: true }
  // Redis: WRONGPASS (bad credentials), NOAUTH (a password is required and none was given).
  if (/^WRONGPASS\b/.test(message)) return { text: 'authentication failed (WRONGPASS: wrong user or password)', transient: false, auth: true }
  if (/^NOAUTH\b/.test(message)) return { text: 'authentication failed (NOAUTH: the server wants a password; the URL has none)', transient: false, auth: true }
  // 57P03: the database system is starting up (or shutting down, or in recovery).
  if (code === '57P03') return { text: 'the server is starting up', transient: true }
  if (code === 'ECONNRESET' || /^Connection terminated/.test(message)) return { text: 'connection closed by the server', transient: true }
  // Anything else (TLS, a missing database the role may not create, …) will not mend itself.
  return { text: message.split('\n', 1)[0] || String(code ?? 'unknown error'), transient: false }
}

export interface WaitOptions {
  /** How long to keep trying, in ms; 0: one attempt. */
  timeoutMs: number
  /** Called once, at the first transient failure, to say start-up is waiting. */
  onWait?: (cause: string) => void
}

const FIRST_DELAY_MS = 250
const MAX_DELAY_MS = 2000
/** One attempt's own bound, so a black-holed address cannot use up the whole budget at once. */
export const ATTEMPT_TIMEOUT_MS = 2000

/**
 * Runs `attempt` until it resolves, a failure that will not mend itself, or the time is up;
 * then throws a StartupError naming the target. `attempt` gets the time it may take.
 */
export async function waitFor<T> (target: Target, opts: WaitOptions, attempt: (timeoutMs: number) => Promise<T>): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs
  let delay = FIRST_DELAY_MS
  let waiting = false
  for (;;) {
    try {
      // Each attempt gets its full bound, even the last: a slow answer is still an answer.
      return await attempt(ATTEMPT_TIMEOUT_MS)
    } catch (err) {
      const cause = describeCause(err)
      const remaining = deadline - Date.now()
      if (!cause.transient || remaining <= 0) throw unreachable(target, cause.text, opts.timeoutMs, cause.transient)
      if (!waiting) opts.onWait?.(cause.text)
      waiting = true
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, remaining)))
      delay = Math.min(delay * 2, MAX_DELAY_MS)
    }
  }
}

export function unreachable (target: Target, cause: string, timeoutMs: number, tried: boolean): StartupError {
  const after = tried && timeoutMs > 0 ? ` (tried for ${Math.round(timeoutMs / 1000)} s; STARTUP_TIMEOUT)` : ''
  return new StartupError(`${target.variable}: cannot connect to ${target.what} at ${target.address}: ${cause}${after}`)
}

/** host:port[/database] of a URL, without user or password. */
export function addressOf (url: string, defaultPort: number): string {
  const { hostname, port, pathname } = new URL(url)
  const path = pathname.length > 1 ? pathname : ''
  return `${hostname}:${port || defaultPort}${decodeURIComponent(path)}`
}

/** An address as it is written in a URL: IPv6 in brackets. */
export function hostForUrl (host: string): string {
  return host.includes(':') ? `[${host}]` : host
}

/**
 * The start-up line: where it listens, where the docs are, how it signs and what it talks
 * to. Addresses only: no user, password or key.
 */
export function startupSummary (config: Config, origin: string): { fields: Record<string, unknown>, message: string } {
  const redisMode = config.REDIS_MODE === 'standalone' ? '' : ` (${config.REDIS_MODE})`
  const fields = {
    url: origin,
    docs: `${origin}/docs`,
    signing: config.signingKeys?.alg ??
      (config.jwtKeyFile !== undefined
        ? `HS256 (development key in ${config.jwtKeyFile})`
        : config.jwtKeyGenerated ? 'HS256 (per-process key: JWT_SECRET not set)' : 'HS256'),
    postgres: addressOf(config.DATABASE_URL, 5432),
    redis: config.withoutRedis ? 'none (a single instance)' : addressOf(config.REDIS_URL, config.REDIS_MODE === 'sentinel' ? 26379 : 6379) + redisMode,
    metrics: config.metrics === 'api' ? `${origin}/metrics` : config.metrics === 'off' ? 'off' : `port ${config.metrics}`
  }
  return { fields, message: `listening on ${origin}, docs on ${fields.docs}` }
}
