import { Type, type Static } from '@sinclair/typebox'
import { Username } from './users.js'

// 8–128 characters, every one counts (argon2 hashes the whole string); no NUL bytes.
// The upper bound keeps a hostile client from buying a slow hash with a huge password.
export const Password = Type.String({ minLength: 8, maxLength: 128, pattern: '^[^\\u0000]*$', example: 'correct horse battery' })

export const Credentials = Type.Object({
  username: Username,
  password: Password
}, { $id: 'Credentials' })
export type Credentials = Static<typeof Credentials>

// OAuth 2.0 password grant (RFC 6749 §4.3.2), as Swagger UI's Authorize sends it.
export const PasswordGrant = Type.Object({
  grant_type: Type.Optional(Type.Literal('password')),
  username: Type.String({ minLength: 1, maxLength: 32 }),
  password: Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000]*$' }),
  scope: Type.Optional(Type.String({ maxLength: 256 })),
  client_id: Type.Optional(Type.String({ maxLength: 256 }))
}, { $id: 'PasswordGrant' })

export const LoginBody = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 32 }),
  password: Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000]*$' })
}, { $id: 'LoginBody' })
export type LoginBody = Static<typeof LoginBody>

export const TokenPair = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer({ description: 'Access token lifetime in seconds' }),
  refresh_token: Type.String()
}, { $id: 'TokenPair', description: 'OAuth 2.0 token response (RFC 6749 §5.1)' })
export type TokenPair = Static<typeof TokenPair>

export const RefreshBody = Type.Object({
  refresh_token: Type.String({ minLength: 1, maxLength: 512 })
}, { $id: 'RefreshBody' })

export const Me = Type.Object({
  id: Type.String({ format: 'uuid' }),
  username: Type.String(),
  role: Type.Union([Type.Literal('user'), Type.Literal('admin')])
}, { $id: 'Me' })

export const ChangeRoleBody = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 32 }),
  role: Type.Union([Type.Literal('user'), Type.Literal('admin')])
}, { $id: 'ChangeRoleBody' })

export const ChangePasswordBody = Type.Object({
  currentPassword: Type.String({ minLength: 1, maxLength: 128 }),
  newPassword: Password
}, { $id: 'ChangePasswordBody' })

export const Session = Type.Object({
  id: Type.String({ format: 'uuid' }),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.String({ format: 'date-time' }),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean()
}, { $id: 'Session' })
export type Session = Static<typeof Session>
