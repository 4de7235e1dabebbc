import { Type, type TSchema } from '@sinclair/typebox'

const Check = Type.Union([Type.Literal('ok'), Type.Literal('down')])

export const Health = Type.Object({ status: Type.Literal('ok') }, { $id: 'Health', description: 'The process is up', example: { status: 'ok' } })

export const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('down')]),
  checks: Type.Object({ postgres: Check, redis: Check })
}, {
  $id: 'Readiness',
  description: 'Whether PostgreSQL and Redis answer; `status` is `down` when either does not',
  example: { status: 'ok', checks: { postgres: 'ok', redis: 'ok' } }
})

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const healthSchemas: TSchema[] = [Health, Readiness]
