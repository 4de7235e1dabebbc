import { Type, type TSchema } from '@sinclair/typebox'

const Check = Type.Union([Type.Literal('ok'), Type.Literal('down')])
// `disabled`: a single instance running without Redis, as started with nothing configured.
const RedisCheck = Type.Union([Type.Literal('ok'), Type.Literal('down'), Type.Literal('disabled')])

export const Health = Type.Object({ status: Type.Literal('ok') }, { $id: 'Health', description: 'The process is up', example: { status: 'ok' } })

export const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('draining')]),
  checks: Type.Object({ postgres: Check, redis: RedisCheck })
}, {
  $id: 'Readiness',
  description: 'Whether PostgreSQL and Redis answer. `degraded`: one of them does not (the failing check is `down`) ' +
    'and the service answers from what is left; `draining`: this instance is shutting down. `redis: disabled`: a ' +
    'single instance running without Redis by choice (nothing configured, outside production), not an outage',
  example: { status: 'degraded', checks: { postgres: 'ok', redis: 'down' } }
})

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const healthSchemas: TSchema[] = [Health, Readiness]
