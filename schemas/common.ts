import { Type, type Static, type TSchema } from '@sinclair/typebox'

/** A reference to a shared schema (added once with addSchema, a named OpenAPI component). */
export const ref = <T extends TSchema>(schema: T) =>
  Type.Unsafe<Static<T>>(Type.Ref(schema.$id as string))

export const HttpError = Type.Object({
  statusCode: Type.Integer({ example: 401 }),
  error: Type.String({ example: 'Unauthorized' }),
  message: Type.String({ example: 'Missing or invalid access token' }),
  code: Type.Optional(Type.String())
}, { $id: 'HttpError', description: 'Fastify error shape: no stack trace, no SQL or Redis text' })
export type HttpError = Static<typeof HttpError>

export const Uuid = Type.String({ format: 'uuid' })

export const IdParams = Type.Object({ id: Uuid })

export const Cursor = Type.String({
  pattern: '^[A-Za-z0-9_-]{1,200}$',
  description: 'Opaque cursor from a previous page\'s nextCursor'
})

export const PageQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
  cursor: Type.Optional(Cursor)
})

/** OpenAPI security requirement of the routes that need a signed-in user. */
export const bearer: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { oauth2: [] }]

/** Shared schemas every route may reference; registered once in app.ts. */
export const sharedSchemas: TSchema[] = [HttpError]

/** Responses for the error statuses of a route, by reference to HttpError. */
export function errors (...codes: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {}
  for (const code of codes) out[code] = ref(HttpError)
  return out
}
