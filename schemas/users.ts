import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Cursor, ref, Role, Uuid } from './common.js'

// Role lives in common.ts (registered with the shared schemas); re-exported for its users.
export { Role }

// 3–32 characters of A–Z a–z 0–9 _ . - (the contract); unique without regard to case.
export const Username = Type.String({ minLength: 3, maxLength: 32, pattern: '^[A-Za-z0-9_.-]+$', example: 'alice' })

// An email address in ASCII (local part as RFC 5322's dot-atom, a domain of LDH labels), at
// most 254 characters (RFC 5321). ASCII only: PostgreSQL's lower() and JavaScript's
// toLowerCase() then agree, so the unique index, login by email and the per-account rate
// limit all see one address. It always holds an `@`, which a username never does.
export const EMAIL_PATTERN = "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
export const Email = Type.String({ minLength: 3, maxLength: 254, pattern: EMAIL_PATTERN, example: 'alice@example.com' })

export const User = Type.Object({
  id: Uuid,
  username: Type.String({ description: 'As registered (case kept)' }),
  role: ref(Role),
  disabled: Type.Boolean({ description: 'A disabled user cannot sign in and its tokens are revoked' }),
  email: Type.Union([Type.String(), Type.Null()], { description: 'Optional; unique without regard to case' }),
  emailVerified: Type.Boolean({ description: 'The user proved the address (a link mailed to it): only then does it receive password-reset mail and sign in' }),
  mfaEnabled: Type.Boolean({ description: 'The user has a second factor: login asks for it after the password' }),
  createdAt: Type.String({ format: 'date-time' })
}, {
  $id: 'User',
  description: 'An account',
  example: { id: '2f1c5a3e-8b7d-4c6a-9e0f-1a2b3c4d5e6f', username: 'alice', role: 'user', disabled: false, email: 'alice@example.com', emailVerified: true, mfaEnabled: false, createdAt: '2025-01-31T12:00:00.000Z' }
})
export type User = Static<typeof User>

export const UserPage = Type.Object({
  items: Type.Array(Type.Unsafe<User>(Type.Ref('User'))),
  nextCursor: Type.Union([Cursor, Type.Null()])
}, { $id: 'UserPage', description: 'A page of users, oldest first' })

export const PatchUserBody = Type.Object({
  role: Type.Optional(ref(Role)),
  disabled: Type.Optional(Type.Boolean())
}, { $id: 'PatchUserBody', description: 'The fields to change; absent fields stay as they are', example: { disabled: true } })
export type PatchUserBody = Static<typeof PatchUserBody>

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const userSchemas: TSchema[] = [User, UserPage, PatchUserBody]
