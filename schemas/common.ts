import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox'
import { ERROR_CODES, type ErrorCode } from '../lib/errors.js'

/**
 * A reference to a shared schema (added once with addSchema, a named OpenAPI component).
 * `description` becomes the description of the response that uses it.
 */
export const ref = <T extends TSchema>(schema: T, description?: string) =>
  Type.Unsafe<Static<T>>(Type.Ref(schema.$id as string, description === undefined ? {} : { description }))

export const Role = Type.Union([Type.Literal('user'), Type.Literal('admin')], {
  $id: 'Role',
  description: 'What the account may do: `admin` may use the admin API',
  example: 'user'
})
export type Role = Static<typeof Role>

export const HttpError = Type.Object({
  statusCode: Type.Integer({ example: 401 }),
  error: Type.String({ example: 'Unauthorized' }),
  message: Type.String({ example: 'Missing access token' }),
  // An enum, so generated clients can switch on it; lib/errors.ts says where the list comes from.
  code: Type.Optional(Type.Unsafe<ErrorCode>(Type.String({
    enum: [...ERROR_CODES],
    example: 'AUTH_INVALID_TOKEN',
    description: 'Stable machine-readable error code: `AUTH_*` from this service, `FST_ERR_*` from Fastify (input it cannot read or validate)'
  })))
}, { $id: 'HttpError', description: 'Fastify error shape: no stack trace, no SQL or Redis text' })
export type HttpError = Static<typeof HttpError>

// PostgreSQL text cannot hold NUL: a string that reaches a query must not carry one
// (it would be a 500, not a 400).
export const NO_NUL = '^[^\\u0000]*$'

// ajv's `uuid` format also accepts a `urn:uuid:` prefix, which PostgreSQL's uuid type
// refuses (a 500): the pattern pins the plain 8-4-4-4-12 form.
export const UUID_PATTERN = '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$'

export const Uuid = Type.String({ format: 'uuid', pattern: UUID_PATTERN })

export const IdParams = Type.Object({ id: Uuid })

export const Cursor = Type.String({
  pattern: '^[A-Za-z0-9_-]{1,200}$',
  description: 'Opaque cursor from a previous page\'s nextCursor'
})

/**
 * Properties that have a `default` are filled in by validation, so the handler always
 * sees them, but a client may leave them out: the document must not call them required.
 */
export function optionalDefaults<T extends TObject> (schema: T): T {
  const required = (schema.required ?? []).filter((key) => (schema.properties[key] as { default?: unknown }).default === undefined)
  const out = { ...schema, required }
  if (required.length === 0) delete (out as { required?: string[] }).required
  return out
}

export const PageQuery = optionalDefaults(Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 50, description: 'Page size' }),
  cursor: Type.Optional(Cursor)
}))

/** OpenAPI security requirement of the routes that need a signed-in user. */
export const bearer: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { oauth2: [] }]

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const commonSchemas: TSchema[] = [HttpError, Role]

const retryAfter = { 'retry-after': { type: 'integer', description: 'Seconds to wait before trying again' } }

// What each error status means in this service, with a body as the service sends it.
const ERRORS: Record<number, { description: string, example: HttpError, headers?: Record<string, unknown> }> = {
  400: {
    description: 'Invalid input: bad JSON, a missing field, a wrong type (JSON bodies are not coerced), an unknown enum value, a malformed id or cursor',
    example: { statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message: 'body/username must NOT have fewer than 3 characters' }
  },
  401: {
    description: 'No valid bearer token: missing, malformed, expired, badly signed or revoked (or, on login, bad credentials)',
    example: { statusCode: 401, code: 'AUTH_INVALID_TOKEN', error: 'Unauthorized', message: 'Access token has been revoked' },
    headers: { 'www-authenticate': { type: 'string', description: 'RFC 6750 challenge, e.g. `Bearer realm="auth", error="invalid_token"`' } }
  },
  403: {
    description: 'Signed in, but not allowed: the role is not enough, or the current password is wrong',
    example: { statusCode: 403, code: 'AUTH_FORBIDDEN', error: 'Forbidden', message: 'Requires role admin' }
  },
  404: {
    description: 'No such user or session (or not one of the caller\'s)',
    example: { statusCode: 404, code: 'AUTH_NOT_FOUND', error: 'Not Found', message: 'User not found' }
  },
  409: {
    description: 'Conflict: the username is taken (in any case), or the change would leave no admin',
    example: { statusCode: 409, code: 'AUTH_CONFLICT', error: 'Conflict', message: 'Username is already taken' }
  },
  413: {
    description: 'The body is larger than 16 KiB',
    example: { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE', error: 'Payload Too Large', message: 'Request body is too large' }
  },
  415: {
    description: 'The body is not JSON (or, for login, a form)',
    example: { statusCode: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', error: 'Unsupported Media Type', message: 'Unsupported Media Type' }
  },
  429: {
    description: 'Too many attempts from this IP, or too many failed logins for this username; see Retry-After',
    example: { statusCode: 429, code: 'AUTH_TOO_MANY_REQUESTS', error: 'Too Many Requests', message: 'Too many requests, retry in 1 minute' },
    headers: retryAfter
  },
  501: {
    description: 'This deployment is not configured for it; the message names the setting',
    example: { statusCode: 501, code: 'AUTH_NOT_CONFIGURED', error: 'Not Implemented', message: 'Security events need an asymmetric signing key: set JWT_PRIVATE_KEY or SSF_PRIVATE_KEY' }
  },
  503: {
    description: 'PostgreSQL or Redis is unreachable; nothing was changed, try again',
    example: { statusCode: 503, code: 'AUTH_UNAVAILABLE', error: 'Service Unavailable', message: 'Service temporarily unavailable, try again' },
    headers: retryAfter
  }
}

/**
 * Responses for the error statuses of a route: each the HttpError component, with what
 * the status means here and an example body. An entry may be `[code, description]`, or
 * `[code, description, example fields]`, to say what the status means for this route.
 */
export function errors (...codes: Array<number | [number, string, Partial<HttpError>?]>): Record<number, TSchema> {
  const out: Record<number, TSchema> = {}
  for (const entry of codes) {
    const [code, description, example] = Array.isArray(entry) ? entry : [entry, undefined, undefined]
    const known = ERRORS[code]
    if (known === undefined) throw new Error(`errors(): no description for status ${code}`)
    out[code] = Type.Unsafe<HttpError>({
      description: description ?? known.description,
      ...(known.headers === undefined ? {} : { headers: known.headers }),
      content: { 'application/json': { schema: Type.Ref('HttpError'), example: { ...known.example, ...example } } }
    })
  }
  return out
}
