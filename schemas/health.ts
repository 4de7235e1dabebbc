import { Type } from '@sinclair/typebox'

const Check = Type.Union([Type.Literal('ok'), Type.Literal('down')])

export const Health = Type.Object({ status: Type.Literal('ok') }, { $id: 'Health' })

export const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('down')]),
  checks: Type.Object({ postgres: Check, redis: Check })
}, { $id: 'Readiness' })
