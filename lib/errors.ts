// HTTP errors the service throws, and the classification of dependency failures.
import { STATUS_CODES } from 'node:http'
import createError from '@fastify/error'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'

export const BadRequest = createError('FST_ERR_VALIDATION', '%s', 400)
export const InvalidToken = createError('AUTH_INVALID_TOKEN', '%s', 401)
export const MissingToken = createError('AUTH_MISSING_TOKEN', 'Missing access token', 401)
export const BadCredentials = createError('AUTH_BAD_CREDENTIALS', 'Invalid username or password', 401)
export const Unauthorized = createError('AUTH_UNAUTHORIZED', '%s', 401)
/** A registered client's HTTP Basic credentials are missing or wrong (introspection). */
export const InvalidClient = createError('AUTH_INVALID_CLIENT', 'Client authentication failed', 401)
export const Forbidden = createError('AUTH_FORBIDDEN', '%s', 403)
export const NotFound = createError('AUTH_NOT_FOUND', '%s', 404)
export const Conflict = createError('AUTH_CONFLICT', '%s', 409)
export const WeakPassword = createError('AUTH_WEAK_PASSWORD', '%s', 400)
export const WrongPassword = createError('AUTH_WRONG_PASSWORD', 'Current password is wrong', 403)
/** A passkey's registration was refused: its challenge, origin, relying party or attestation. */
export const PasskeyRejected = createError('AUTH_PASSKEY_REJECTED', '%s', 400)
/** The token's login had no second factor, and this check asks for one (`/auth/verify?amr=otp`). */
export const MfaRequired = createError('AUTH_MFA_REQUIRED', '%s', 403)
/** A wrong second-factor code where the step cannot go on without a right one (enrolment). */
export const InvalidCode = createError('AUTH_INVALID_CODE', 'Wrong code: enter the one the authenticator app shows now', 400)
export const TooManyRequests = createError('AUTH_TOO_MANY_REQUESTS', '%s', 429)
/** A password-reset or email-verification token that is unknown, used, expired or superseded. */
export const InvalidRecoveryToken = createError('AUTH_INVALID_RECOVERY_TOKEN', 'Invalid or expired token', 400)
/** The password is a temporary one an admin set: the login hands out a reset token instead of tokens. */
export const PasswordChangeRequired = createError('AUTH_PASSWORD_CHANGE_REQUIRED',
  'This password was set by an admin and must be changed: choose a new one with POST /auth/password/reset and the reset_token', 403)
/** A feature this deployment has not been configured for (the message names the setting). */
export const NotConfigured = createError('AUTH_NOT_CONFIGURED', '%s', 501)
const UnavailableError = createError('AUTH_UNAVAILABLE', 'Service temporarily unavailable, try again', 503)

/**
 * Every `code` an error response can carry: this service's own (the error classes of lib/),
 * and Fastify's that reach a client (a body or URL it cannot read). The OpenAPI document
 * lists them as the enum of HttpError.code; test/lib/errors.test.ts holds this list equal to
 * the codes the classes produce and the ones Fastify is seen to send. A 404 for an unknown
 * route, and a 500, carry no code.
 */
export const ERROR_CODES = [
  'AUTH_INVALID_TOKEN', 'AUTH_MISSING_TOKEN', 'AUTH_BAD_CREDENTIALS', 'AUTH_UNAUTHORIZED',
  'AUTH_FORBIDDEN', 'AUTH_NOT_FOUND', 'AUTH_CONFLICT', 'AUTH_TOO_MANY_REQUESTS', 'AUTH_UNAVAILABLE',
  'AUTH_BAD_CURSOR', 'AUTH_WEAK_PASSWORD', 'AUTH_WRONG_PASSWORD', 'AUTH_INVALID_CLIENT', 'AUTH_NOT_CONFIGURED',
  'AUTH_MFA_REQUIRED', 'AUTH_INVALID_CODE', 'AUTH_PASSKEY_REJECTED', 'AUTH_PASSWORD_CHANGE_REQUIRED',
  'AUTH_INVALID_RECOVERY_TOKEN',
  'FST_ERR_VALIDATION', 'FST_ERR_CTP_INVALID_JSON_BODY', 'FST_ERR_CTP_EMPTY_JSON_BODY',
  'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'FST_ERR_CTP_BODY_TOO_LARGE', 'FST_ERR_BAD_URL'
] as const
export type ErrorCode = typeof ERROR_CODES[number]

/** The shared dependency a 503 was about, for the operator's log line. */
export type Dependency = 'postgres' | 'redis'

/** A 503 that names the dependency it was about (logged, never sent). */
export class Unavailable extends UnavailableError {
  constructor (readonly dependency: Dependency) {
    super()
  }
}

declare module 'fastify' {
  interface FastifyReply {
    /** The `code` of the error this reply answers with, for the request's log line. */
    errorCode?: string
  }
}

/**
 * A 4xx whose body also carries what the client needs for its next step (a token for it):
 * the error handler adds `fields` to the body and sends it with `Cache-Control: no-store`.
 */
export function withFields<E extends Error> (err: E, fields: Record<string, string | string[]>): E {
  return Object.assign(err, { fields })
}

/** A 429 that tells the client when to try again (the error handler sends Retry-After). */
export function tooManyRequests (message: string, retryAfterSeconds: number): Error {
  return Object.assign(new TooManyRequests(message), { retryAfter: retryAfterSeconds })
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH',
  'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED'
])
// PostgreSQL SQLSTATEs that mean "the database is not there right now".
const PG_UNAVAILABLE = new Set(['57P01', '57P02', '57P03', '53300', '57014', '40001', '40P01'])
const DRIVER_MESSAGES = [
  /^Connection terminated/, /timeout exceeded when trying to connect/, /^Query read timeout/,
  /not queryable/, /^Client was closed/, /Stream isn't writeable/, /^Connection is closed/,
  /^Command timed out/, /Reached the max retries per request/, /^Cannot use a pool after calling end/
]

// Messages only ioredis gives: with no offline queue, a command on a broken connection
// fails with one of these (the socket's own error never reaches a command). Every other
// dependency failure (a SQLSTATE, a socket error, pg's messages) comes from PostgreSQL.
const REDIS_MESSAGES = [/Stream isn't writeable/, /^Connection is closed/, /^Command timed out/, /Reached the max retries per request/]

/** Which dependency a failure that isDependencyError() accepted came from. */
export function dependencyOf (err: unknown): Dependency {
  const { dependency, message, name } = err as { dependency?: Dependency, message?: unknown, name?: unknown }
  if (dependency !== undefined) return dependency
  if (name === 'MaxRetriesPerRequestError') return 'redis'
  return typeof message === 'string' && REDIS_MESSAGES.some((re) => re.test(message)) ? 'redis' : 'postgres'
}

/** True for failures of PostgreSQL or Redis (down, unreachable, timed out): answered 503. */
export function isDependencyError (err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const { code, message, name } = err as { code?: unknown, message?: unknown, name?: unknown }
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code) || PG_UNAVAILABLE.has(code) || code.startsWith('08')) return true
  }
  if (name === 'MaxRetriesPerRequestError') return true
  return typeof message === 'string' && DRIVER_MESSAGES.some((re) => re.test(message))
}

/**
 * The one error handler: 4xx keep their message; anything else becomes a generic 500
 * (or 503 for a dependency outage) so that no stack, SQL or Redis text reaches a client.
 */
export function errorHandler (this: unknown, err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  let status = err.statusCode ?? 500
  let message = err.message
  let code: string | undefined = err.code
  if (err.validation) {
    status = 400
  } else if (status === 503 || (status >= 500 && isDependencyError(err))) {
    status = 503
    message = 'Service temporarily unavailable, try again'
    code = 'AUTH_UNAVAILABLE'
    const dependency = dependencyOf(err)
    // An answered request's own line carries the code; this one says what failed, and how.
    request.log.warn({ dependency, err: { message: err.message, code: err.code } }, `${dependency} unavailable`)
    reply.header('retry-after', '1')
  } else if (status < 400 || (status >= 500 && err.code !== 'AUTH_NOT_CONFIGURED')) {
    request.log.error({ err }, 'unexpected error')
    status = 500
    message = 'Internal Server Error'
    code = undefined
  }
  const { retryAfter } = err as { retryAfter?: unknown }
  if (status === 429 && typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter))
  if (status === 401) {
    // RFC 6750 §3: every 401 names the scheme; an error code only when a token was presented.
    // A client's credentials are HTTP Basic (RFC 6749 §2.3.1, RFC 7617).
    reply.header('www-authenticate', code === 'AUTH_INVALID_TOKEN'
      ? 'Bearer realm="auth", error="invalid_token"'
      : code === 'AUTH_INVALID_CLIENT' ? 'Basic realm="auth", charset="UTF-8"' : 'Bearer realm="auth"')
  }
  // For the request's log line (the reason of a 4xx from auth, or AUTH_UNAVAILABLE).
  reply.errorCode = code
  const { fields } = err as { fields?: Record<string, unknown> }
  if (fields !== undefined && status < 500) {
    reply.header('cache-control', 'no-store')
    reply.code(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message, code, ...fields })
    return
  }
  reply.code(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message, code })
}
