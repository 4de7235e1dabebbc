import { Type, type Static } from '@sinclair/typebox'
import { Cursor, Uuid } from './common.js'

export const Role = Type.Union([Type.Literal('user'), Type.Literal('admin')], { $id: 'Role' })
export type Role = Static<typeof Role>

// 3–32 characters of A–Z a–z 0–9 _ . - (the contract); unique without regard to case.
export const Username = Type.String({ minLength: 3, maxLength: 32, pattern: '^[A-Za-z0-9_.-]+$', example: 'alice' })

export const User = Type.Object({
  id: Uuid,
  username: Type.String(),
  role: Type.Union([Type.Literal('user'), Type.Literal('admin')]),
  disabled: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' })
}, { $id: 'User' })
export type User = Static<typeof User>

export const UserPage = Type.Object({
  items: Type.Array(Type.Unsafe<User>(Type.Ref('User'))),
  nextCursor: Type.Union([Cursor, Type.Null()])
}, { $id: 'UserPage' })

export const PatchUserBody = Type.Object({
  role: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('admin')])),
  disabled: Type.Optional(Type.Boolean())
}, { $id: 'PatchUserBody' })
export type PatchUserBody = Static<typeof PatchUserBody>
