// Provides `fastify.config`: the validated environment (see .env.example and the README).
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import fp from 'fastify-plugin'
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { loadSigningKeys, type SigningKeys } from '../../lib/keys.js'
import { passwordProblem } from '../../lib/password-policy.js'
import { deriveKey, KEY_BYTES } from '../../lib/secret-box.js'

const PositiveInt = (def: number, description: string) =>
  Type.Integer({ minimum: 1, default: def, description })

export const EnvSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], { default: 'development' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  DATABASE_URL: Type.String({ default: 'postgres://postgres:postgres@127.0.0.1:5432/auth' }),
  DATABASE_POOL_SIZE: PositiveInt(10, 'PostgreSQL connections per instance'),
  // How long start-up waits for PostgreSQL and Redis to answer (containers start in any order).
  STARTUP_TIMEOUT: Type.Integer({ minimum: 0, default: 30, description: 'seconds' }),
  REDIS_URL: Type.String({ default: 'redis://127.0.0.1:6379' }),
  REDIS_KEY_PREFIX: Type.String({ default: 'auth:', pattern: '^[A-Za-z0-9:_.-]{0,64}$' }),
  // Redis topology (plugins/external/redis.ts): REDIS_URL names one node of a Cluster or one Sentinel;
  // REDIS_NODES lists more `host:port` seeds; credentials and TLS still come from REDIS_URL.
  REDIS_MODE: Type.Union([Type.Literal('standalone'), Type.Literal('cluster'), Type.Literal('sentinel')], { default: 'standalone' }),
  REDIS_NODES: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9.-]+:[0-9]{1,5}(,[A-Za-z0-9.-]+:[0-9]{1,5})*$' })),
  REDIS_SENTINEL_MASTER: Type.String({ minLength: 1, default: 'mymaster' }),
  JWT_SECRET: Type.Optional(Type.String()),
  // Asymmetric signing instead of JWT_SECRET: PEM keys (see lib/keys.ts and the README).
  JWT_PRIVATE_KEY: Type.Optional(Type.String()),
  JWT_PUBLIC_KEY: Type.Optional(Type.String()),
  JWT_ISSUER: Type.String({ minLength: 1, default: 'auth-service' }),
  JWT_AUDIENCE: Type.String({ minLength: 1, default: 'auth-service' }),
  ACCESS_TOKEN_TTL: PositiveInt(900, 'seconds'),
  REFRESH_TOKEN_TTL: PositiveInt(2592000, 'seconds'),
  // Seconds after a rotation during which the just-used refresh token gets the same
  // successor again (a client's retry, two tabs); 0: none, every reuse ends the session.
  REFRESH_REUSE_INTERVAL: Type.Integer({ minimum: 0, default: 10, description: 'seconds' }),
  // A session ends this long after its login however often it is refreshed (ASVS 3.3.2).
  SESSION_MAX_LIFETIME: PositiveInt(7776000, 'seconds'),
  REFRESH_RATE_LIMIT: PositiveInt(30, 'refreshes per minute per session'),
  ADMIN_USERNAME: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{3,32}$' })),
  ADMIN_PASSWORD: Type.Optional(Type.String({ minLength: 8, maxLength: 128 })),
  LOGIN_RATE_LIMIT: PositiveInt(10, 'login attempts per minute per client IP'),
  REGISTER_RATE_LIMIT: PositiveInt(5, 'registrations per minute per client IP'),
  LOCKOUT_THRESHOLD: PositiveInt(5, 'failed logins in a row from one client before that client is locked out of the username'),
  // Unset: 10 × LOCKOUT_THRESHOLD.
  LOCKOUT_GLOBAL_THRESHOLD: Type.Optional(Type.Integer({ minimum: 1, description: 'failed logins from all clients within a day before the username is throttled' })),
  // How to find the client behind proxies: a hop count or proxy addresses (parseTrustProxy).
  TRUST_PROXY: Type.Optional(Type.String()),
  // Comma-separated origins allowed to call the API from a browser; empty: CORS off.
  CORS_ORIGINS: Type.String({ default: '' }),
  // Where GET /metrics is served: unset, on PORT with the API; `off` (or 0), nowhere; a port
  // number, on a listener of its own (HOST, that port) serving only /metrics, so that the API's
  // public port does not expose it.
  METRICS_PORT: Type.Optional(Type.String({ pattern: '^(off|[0-9]{1,5})$' })),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info' }
  ),
  ARGON2_MEMORY_COST: Type.Integer({ minimum: 8192, default: 19456, description: 'KiB' }),
  ARGON2_TIME_COST: Type.Integer({ minimum: 1, default: 2 }),
  ARGON2_PARALLELISM: Type.Integer({ minimum: 1, maximum: 16, default: 1 }),
  AUDIT_RETENTION_DAYS: PositiveInt(365, 'audit events older than this many days are deleted'),
  // Outgoing mail (plugins/external/mail.ts): smtp:// or smtps://, credentials in the URL.
  // Unset: the flows that send mail answer 501.
  SMTP_URL: Type.Optional(Type.String()),
  MAIL_FROM: Type.Optional(Type.String({ minLength: 3, maxLength: 320, pattern: '^[^\\r\\n]+$' })),
  // A directory whose templates (password-reset.txt, .html, email-verify.txt, .html) replace the built-in ones.
  MAIL_TEMPLATES_DIR: Type.Optional(Type.String({ minLength: 1 })),
  // The web app that opens the links in mails: `${APP_URL}/reset-password?token=…`.
  APP_URL: Type.Optional(Type.String({ pattern: '^https?://[^\\s?#]+$' })),
  RECOVERY_RATE_LIMIT: PositiveInt(5, 'password-reset and email requests per minute per client IP'),
  RECOVERY_ACCOUNT_LIMIT: PositiveInt(3, 'recovery mails per hour per account'),
  // Security events (plugins/app/events/): the key that signs them when access tokens use
  // HS256, where the advertised endpoints are, and how the outbox is delivered and kept.
  SSF_PRIVATE_KEY: Type.Optional(Type.String()),
  PUBLIC_URL: Type.Optional(Type.String({ pattern: '^https?://[^\\s?#]+$' })),
  EVENTS_DISPATCH_INTERVAL_MS: PositiveInt(1000, 'how often each instance looks for security events to push; also the first retry delay'),
  EVENTS_DELIVERY_TIMEOUT_MS: PositiveInt(5000, 'one push gives up after this long'),
  EVENTS_RETRY_MAX_DELAY: PositiveInt(300, 'seconds: the retry backoff stops doubling here'),
  EVENTS_MAX_AGE: PositiveInt(259200, 'seconds: an event still undelivered this long after it was written is given up'),
  EVENTS_RETENTION: PositiveInt(86400, 'seconds: delivered and failed events are kept this long'),
  // 32 random bytes, base64: encrypts second-factor secrets at rest (lib/secret-box.ts).
  MFA_ENCRYPTION_KEY: Type.Optional(Type.String()),
  // Passkeys: the relying-party id (a domain: credentials are scoped to it and its
  // subdomains) and the comma-separated origins a ceremony may run on; unset, the one
  // origin of the service itself on that domain (parseWebAuthnOrigins).
  WEBAUTHN_RP_ID: Type.String({ default: 'localhost' }),
  WEBAUTHN_ORIGINS: Type.String({ default: '' })
})

export type Config = Static<typeof EnvSchema> & {
  /** CORS_ORIGINS, split. */
  corsOrigins: string[]
  /** The HS256 key actually in use (JWT_SECRET, or a random one outside production). */
  jwtKey: string
  /** True when no JWT_SECRET was given and a per-process key was generated. */
  jwtKeyGenerated: boolean
  /** Where the development key is kept, when server.ts uses one instead (lib/local-mode.ts). */
  jwtKeyFile?: string
  /** DATABASE_URL / REDIS_URL were set (or their _FILE): not the defaults. */
  databaseUrlGiven: boolean
  redisUrlGiven: boolean
  /**
   * No Redis at all: one instance, revocation read from PostgreSQL on every request, rate
   * limits and lockouts kept in its memory. Only server.ts sets it (lib/local-mode.ts).
   */
  withoutRedis: boolean
  /** EdDSA/ES256 keys when JWT_PRIVATE_KEY is set (then JWT_SECRET is not used). */
  signingKeys?: SigningKeys
  /** What signs security events: signingKeys, or SSF_PRIVATE_KEY's; none, no events. */
  eventKeys?: SigningKeys
  /** METRICS_PORT: `api` (on PORT), `off`, or the port of a listener of its own. */
  metrics: 'api' | 'off' | number
  /** LOCKOUT_GLOBAL_THRESHOLD, or its default. */
  lockoutGlobalThreshold: number
  /** TRUST_PROXY as Fastify's `trustProxy` takes it: off, a hop count, or proxy addresses. */
  trustProxy: false | number | string[]
  /** MFA_ENCRYPTION_KEY, decoded; unset outside production: derived (mfaEncryptionKey()). */
  mfaKey?: Buffer
  /** WEBAUTHN_ORIGINS, split, or its default. */
  webauthnOrigins: string[]
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal'])

/**
 * TRUST_PROXY: unset, `false` or `0` reads no X-Forwarded-For; a number is how many proxies
 * stand in front (the client is that many hops back); otherwise a comma-separated list of
 * proxy addresses, CIDRs or proxy-addr's names (loopback, linklocal, uniquelocal). `true`
 * is refused: it would take the first address a client wrote, and anyone could then
 * choose the IP that rate limits and lockouts are keyed on.
 */
export function parseTrustProxy (value: string | undefined): false | number | string[] {
  const text = value?.trim() ?? ''
  if (text === '' || text === 'false' || text === '0') return false
  if (text === 'true') {
    throw new ConfigError('Invalid configuration: TRUST_PROXY=true would trust any X-Forwarded-For a client sends; give the number of proxies in front of the service (e.g. 1) or their addresses/CIDRs')
  }
  if (/^[0-9]+$/.test(text)) return Number(text)
  const list = text.split(',').map((entry) => entry.trim())
  for (const entry of list) {
    const [address, bits, extra] = entry.split('/')
    const family = isIP(address)
    const prefixOk = bits === undefined || (/^[0-9]{1,3}$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32))
    if (!(PROXY_NAMES.has(entry) || (family !== 0 && prefixOk && extra === undefined))) {
      throw new ConfigError(`Invalid configuration: TRUST_PROXY entry ${JSON.stringify(entry)} is not a hop count, an IP address, a CIDR or one of loopback, linklocal, uniquelocal`)
    }
  }
  return list
}

/**
 * WEBAUTHN_ORIGINS: the origins (scheme, host, port) whose pages may run a passkey
 * ceremony, each on WEBAUTHN_RP_ID or a subdomain of it (a browser refuses any other
 * pairing), and https, but for localhost, which browsers treat as secure. Unset: the
 * service's own origin, http://localhost:PORT for the default relying party, else
 * https://WEBAUTHN_RP_ID.
 */
export function parseWebAuthnOrigins (value: string, rpId: string, port: number): string[] {
  // A domain, as WebAuthn wants it: lower case, no scheme, port or path, not an IP address.
  if (!/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(rpId) || isIP(rpId) !== 0) {
    throw new ConfigError(`Invalid configuration: WEBAUTHN_RP_ID must be a domain name such as example.com, without scheme, port or path (got ${JSON.stringify(rpId)})`)
  }
  const list = value.split(',').map((o) => o.trim()).filter((o) => o !== '')
  if (list.length === 0) return [rpId === 'localhost' ? `http://localhost:${port}` : `https://${rpId}`]
  for (const origin of list) {
    let url: URL | null = null
    try {
      url = new URL(origin)
    } catch {}
    const host = url?.hostname ?? ''
    const secure = url?.protocol === 'https:' || (url?.protocol === 'http:' && (host === 'localhost' || host.endsWith('.localhost')))
    if (url === null || url.origin !== origin || !secure || !(host === rpId || host.endsWith(`.${rpId}`))) {
      throw new ConfigError(`Invalid configuration: WEBAUTHN_ORIGINS entry ${JSON.stringify(origin)} is not an origin like https://${rpId} on WEBAUTHN_RP_ID (${rpId}) or a subdomain of it (http only for localhost)`)
    }
  }
  return list
}

/** At least this much random material in a production HS256 secret (RFC 7518 §3.2: the hash's size). */
const SECRET_BYTES = 32

/**
 * Why a production JWT_SECRET is not good enough, or null. It must be random bytes written
 * as hex, base64 or base64url, at least 256 bits of them: a phrase someone typed
 * (`passwordpasswordpassword12345678`) is refused however long it is. Randomness cannot be
 * proven, but what a person types can be caught: too few distinct characters for its
 * length, or runs of repeated or consecutive characters.
 */
export function secretProblem (secret: string): string | null {
  const hex = /^(?:[0-9a-f]{2})+$/i.test(secret)
  const base64 = /^[A-Za-z0-9+/]+={0,2}$/.test(secret) || /^[A-Za-z0-9_-]+$/.test(secret)
  if (!hex && !base64) return 'must be random bytes written as hex, base64 or base64url'
  const bytes = hex ? secret.length / 2 : Math.floor(secret.replace(/=+$/, '').length * 3 / 4)
  if (bytes < SECRET_BYTES) return `must hold at least ${SECRET_BYTES} random bytes (${SECRET_BYTES * 2} hex or ${Math.ceil(SECRET_BYTES * 4 / 3)} base64 characters)`
  const chars = [...secret.replace(/=+$/, '')]
  // A random string of this length over its alphabet (16 or 64 symbols) shows most of it.
  const alphabet = hex ? 16 : 64
  const expected = alphabet * (1 - Math.pow(1 - 1 / alphabet, chars.length))
  const distinct = new Set(hex ? secret.toLowerCase() : secret).size
  let runs = 0
  for (let i = 1; i < chars.length; i++) {
    if (Math.abs(chars[i].charCodeAt(0) - chars[i - 1].charCodeAt(0)) <= 1) runs++
  }
  // Neighbours equal or one apart: about 17 % of random hex pairs, 5 % of random base64 ones.
  if (distinct < expected * 0.6 || runs > chars.length * (hex ? 0.45 : 0.25)) return 'does not look random (too few distinct characters, or runs of repeated or consecutive ones)'
  return null
}

const URL_PROTOCOLS: Record<string, string[]> = {
  DATABASE_URL: ['postgres:', 'postgresql:'],
  REDIS_URL: ['redis:', 'rediss:']
}

/** SMTP_URL is smtp:// or smtps:// with a host; the message never repeats it (credentials). */
function smtpUrlCheck (value: string): void {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ConfigError('Invalid configuration: SMTP_URL is not a valid URL')
  }
  if (!['smtp:', 'smtps:'].includes(url.protocol) || url.hostname === '') {
    throw new ConfigError('Invalid configuration: SMTP_URL must be smtp://host:port or smtps://host:port (user and password in the URL when the server needs them)')
  }
}

/** The content of a *_FILE, without the line end an editor or `echo` leaves at its end. */
function readSecretFile (variable: string, path: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '')
  } catch (err) {
    throw new ConfigError(`Invalid configuration: ${variable}: cannot read ${path} (${(err as { code?: string }).code ?? (err as Error).message})`)
  }
}

/** What is wrong with a value, keeping the case of what it quotes (a pattern, a name). */
function problem (schema: TSchema, message: string): string {
  const literals = (schema.anyOf as TSchema[] | undefined)?.map((s) => s.const)
  if (literals !== undefined && literals.every((l) => typeof l === 'string')) return `must be one of ${literals.join(', ')}`
  return message.charAt(0).toLowerCase() + message.slice(1)
}

/**
 * Validates an environment (process.env or a test's overrides) into a Config.
 * Throws a ConfigError whose message is one line naming the offending variable.
 */
export function loadConfig (env: Record<string, string | number | boolean | undefined>): Config {
  const known = Object.keys(EnvSchema.properties)
  const raw: Record<string, unknown> = {}
  // An empty line in .env (`JWT_SECRET=`) means "not set", as in .env.example.
  const given = (value: unknown) => value !== undefined && value !== ''
  for (const key of known) {
    const value = env[key]
    const file = env[`${key}_FILE`]
    if (given(file)) {
      // Docker and Kubernetes secrets arrive as files: X_FILE names the file that holds X.
      if (given(value)) throw new ConfigError(`Invalid configuration: set ${key} or ${key}_FILE, not both`)
      raw[key] = readSecretFile(`${key}_FILE`, String(file))
    } else if (given(value)) {
      raw[key] = value
    }
  }
  // Before Value.Default, which fills the defaults into `raw` itself.
  const databaseUrlGiven = raw.DATABASE_URL !== undefined
  const redisUrlGiven = raw.REDIS_URL !== undefined
  const converted = Value.Default(EnvSchema, Value.Convert(EnvSchema, raw))
  const first = Value.Errors(EnvSchema, converted).First()
  if (first) {
    const name = first.path.replace(/^\//, '') || 'environment'
    const shown = ['JWT_SECRET', 'JWT_PRIVATE_KEY', 'SSF_PRIVATE_KEY', 'ADMIN_PASSWORD', 'SMTP_URL', 'MFA_ENCRYPTION_KEY'].includes(name) ? '' : ` (got ${JSON.stringify(raw[name])})`
    throw new ConfigError(`Invalid configuration: ${name} ${problem(first.schema, first.message)}${shown}`)
  }
  const cfg = converted as Static<typeof EnvSchema>

  for (const [name, protocols] of Object.entries(URL_PROTOCOLS)) {
    const value = cfg[name as keyof typeof cfg] as string
    let url: URL
    try {
      url = new URL(value)
    } catch {
      throw new ConfigError(`Invalid configuration: ${name} is not a valid URL`)
    }
    if (!protocols.includes(url.protocol)) {
      throw new ConfigError(`Invalid configuration: ${name} must start with ${protocols.join(' or ')}//`)
    }
  }
  if (new URL(cfg.DATABASE_URL).pathname.length < 2) {
    throw new ConfigError('Invalid configuration: DATABASE_URL must name a database')
  }

  const production = cfg.NODE_ENV === 'production'
  const secret = cfg.JWT_SECRET
  // HS256 keys shorter than the hash output are brute-forceable offline (RFC 7518 §3.2).
  if (secret !== undefined && Buffer.byteLength(secret) < 32) {
    throw new ConfigError('Invalid configuration: JWT_SECRET must be at least 32 bytes')
  }
  let signingKeys: SigningKeys | undefined
  if (cfg.JWT_PRIVATE_KEY !== undefined) {
    if (secret !== undefined) throw new ConfigError('Invalid configuration: set JWT_SECRET or JWT_PRIVATE_KEY, not both')
    try {
      signingKeys = loadSigningKeys(cfg.JWT_PRIVATE_KEY, cfg.JWT_PUBLIC_KEY)
    } catch (err) {
      throw new ConfigError(`Invalid configuration: ${(err as Error).message}`)
    }
  } else if (cfg.JWT_PUBLIC_KEY !== undefined) {
    throw new ConfigError('Invalid configuration: JWT_PUBLIC_KEY needs JWT_PRIVATE_KEY')
  }
  let eventKeys = signingKeys
  if (cfg.SSF_PRIVATE_KEY !== undefined) {
    // One key signs everything that leaves the service when access tokens are asymmetric.
    if (signingKeys !== undefined) throw new ConfigError('Invalid configuration: SSF_PRIVATE_KEY is for HS256 deployments; with JWT_PRIVATE_KEY set, security events are signed with it')
    try {
      eventKeys = loadSigningKeys(cfg.SSF_PRIVATE_KEY)
    } catch (err) {
      throw new ConfigError(`Invalid configuration: ${(err as Error).message.replace('JWT_PRIVATE_KEY', 'SSF_PRIVATE_KEY')}`)
    }
  }
  if (production && secret === undefined && signingKeys === undefined) {
    throw new ConfigError('Invalid configuration: JWT_SECRET is required when NODE_ENV=production')
  }
  if (production && secret !== undefined) {
    const problem = secretProblem(secret)
    if (problem !== null) throw new ConfigError(`Invalid configuration: JWT_SECRET ${problem} (generate one with \`openssl rand -base64 48\`)`)
  }
  if (cfg.REFRESH_TOKEN_TTL < cfg.ACCESS_TOKEN_TTL) {
    throw new ConfigError('Invalid configuration: REFRESH_TOKEN_TTL must not be shorter than ACCESS_TOKEN_TTL')
  }
  if ((cfg.ADMIN_USERNAME === undefined) !== (cfg.ADMIN_PASSWORD === undefined)) {
    throw new ConfigError('Invalid configuration: ADMIN_USERNAME and ADMIN_PASSWORD must be set together')
  }
  if (cfg.ADMIN_USERNAME !== undefined && cfg.ADMIN_PASSWORD !== undefined) {
    // The rules every password here follows: an admin anyone could guess is not created.
    const problem = passwordProblem(cfg.ADMIN_PASSWORD, cfg.ADMIN_USERNAME)
    if (problem !== null) throw new ConfigError(`Invalid configuration: ADMIN_PASSWORD: ${problem}`)
  }

  const mfaKey = cfg.MFA_ENCRYPTION_KEY === undefined ? undefined : parseMfaKey(cfg.MFA_ENCRYPTION_KEY)
  if (production && mfaKey === undefined) {
    throw new ConfigError('Invalid configuration: MFA_ENCRYPTION_KEY is required when NODE_ENV=production (generate one with `openssl rand -base64 32`)')
  }

  let metrics: Config['metrics'] = 'api'
  if (cfg.METRICS_PORT === 'off' || cfg.METRICS_PORT === '0') metrics = 'off'
  else if (cfg.METRICS_PORT !== undefined) {
    metrics = Number(cfg.METRICS_PORT)
    if (metrics > 65535) throw new ConfigError(`Invalid configuration: METRICS_PORT must be a port (1-65535), 0 or off (got "${cfg.METRICS_PORT}")`)
    if (metrics === cfg.PORT) throw new ConfigError('Invalid configuration: METRICS_PORT must differ from PORT (leave it unset to serve /metrics on PORT)')
  }

  if ((cfg.SMTP_URL === undefined) !== (cfg.MAIL_FROM === undefined)) {
    throw new ConfigError('Invalid configuration: SMTP_URL and MAIL_FROM must be set together')
  }
  if (cfg.SMTP_URL !== undefined) smtpUrlCheck(cfg.SMTP_URL)

  const corsOrigins = cfg.CORS_ORIGINS.split(',').map((o) => o.trim()).filter((o) => o !== '')
  for (const origin of corsOrigins) {
    if (!/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError(`Invalid configuration: CORS_ORIGINS entry ${JSON.stringify(origin)} is not an origin like https://app.example.com`)
    }
  }

  const trustProxy = parseTrustProxy(cfg.TRUST_PROXY)
  const webauthnOrigins = parseWebAuthnOrigins(cfg.WEBAUTHN_ORIGINS, cfg.WEBAUTHN_RP_ID, cfg.PORT)

  return {
    ...cfg,
    corsOrigins,
    trustProxy,
    webauthnOrigins,
    lockoutGlobalThreshold: cfg.LOCKOUT_GLOBAL_THRESHOLD ?? 10 * cfg.LOCKOUT_THRESHOLD,
    // Outside production a missing secret gets a random per-process key rather than a
    // well-known default: a forgotten setting must never make tokens forgeable.
    jwtKey: secret ?? randomBytes(48).toString('base64'),
    jwtKeyGenerated: secret === undefined && signingKeys === undefined,
    signingKeys,
    eventKeys,
    metrics,
    databaseUrlGiven,
    redisUrlGiven,
    withoutRedis: false,
    mfaKey
  }
}

/** MFA_ENCRYPTION_KEY: exactly 32 bytes, base64 (or base64url). */
function parseMfaKey (value: string): Buffer {
  const text = value.trim()
  const key = /^[A-Za-z0-9+/]+={0,2}$|^[A-Za-z0-9_-]+$/.test(text) ? Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64') : null
  if (key === null || key.length !== KEY_BYTES) {
    throw new ConfigError(`Invalid configuration: MFA_ENCRYPTION_KEY must be ${KEY_BYTES} bytes written as base64 (generate one with \`openssl rand -base64 32\`)`)
  }
  return key
}

/**
 * The key second-factor secrets are encrypted with: MFA_ENCRYPTION_KEY, or (outside
 * production, where it is required) one derived from the signing key in use, which in
 * development is kept across restarts (lib/local-mode.ts). Called once the signing key is
 * final, after developmentKey() may have replaced it.
 */
export function mfaEncryptionKey (config: Config): Buffer {
  return config.mfaKey ?? deriveKey(config.signingKeys?.privatePem ?? config.jwtKey, 'mfa-encryption-key')
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export default fp<{ config: Config }>(async function configPlugin (fastify, opts) {
  fastify.decorate('config', opts.config)
  if (opts.config.jwtKeyFile !== undefined) {
    fastify.log.info(`JWT_SECRET is not set: signing with the development key kept in ${opts.config.jwtKeyFile} (tokens survive a restart)`)
  } else if (opts.config.jwtKeyGenerated) {
    fastify.log.warn('JWT_SECRET is not set: using a random per-process key; tokens will not survive a restart or work across instances')
  }
  if (opts.config.mfaKey === undefined) {
    // Loud when the derived key will not outlive the process: enrolled second factors would not either.
    const line = 'MFA_ENCRYPTION_KEY is not set: second-factor secrets are encrypted with a key derived from the signing key'
    if (opts.config.jwtKeyGenerated && opts.config.jwtKeyFile === undefined) fastify.log.warn(`${line}, which is per-process: enrolled TOTP secrets will not survive a restart`)
    else fastify.log.info(line)
  }
}, { name: 'config' })
