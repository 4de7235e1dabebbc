import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { NO_NUL, ref, Role } from './common.js'
import { Email, EMAIL_PATTERN, Username } from './users.js'

// A username is looked up only in the form registration accepts (ASCII letters, digits,
// `_ . -`): PostgreSQL's lower() and JavaScript's toLowerCase() agree on exactly these, so
// the account found and the lockout counter are keyed alike. A look-alike such as U+0130
// (İ, which PostgreSQL folds to i) is a 400 instead of a second counter for the same account.
const LoginUsername = Type.String({ minLength: Username.minLength, maxLength: Username.maxLength, pattern: Username.pattern, example: 'alice', description: 'Matched without regard to case' })

// Login takes the username or, once verified, the email (which always holds an `@`, which
// no username does). ASCII both, for the reason above.
const LoginName = Type.String({
  minLength: Username.minLength,
  maxLength: Email.maxLength,
  pattern: `^([A-Za-z0-9_.-]{${Username.minLength},${Username.maxLength}}|${EMAIL_PATTERN.slice(1, -1)})$`,
  example: 'alice',
  description: 'The username (matched without regard to case), or the account\'s verified email'
})

// 8–128 characters, every one counts (argon2 hashes the whole string); no NUL bytes.
// The upper bound keeps a hostile client from buying a slow hash with a huge password.
export const Password = Type.String({ minLength: 8, maxLength: 128, pattern: NO_NUL, example: 'correct horse battery' })

export const Credentials = Type.Object({
  username: Username,
  password: Password,
  email: Type.Optional({ ...Email, description: 'Optional, unique without regard to case; it starts unverified and gets a verification mail' })
}, { $id: 'Credentials', description: 'A new account\'s username, password and (optional) email' })
export type Credentials = Static<typeof Credentials>

// OAuth 2.0 password grant (RFC 6749 §4.3.2), as Swagger UI's Authorize sends it.
export const PasswordGrant = Type.Object({
  grant_type: Type.Optional(Type.Literal('password')),
  username: LoginName,
  password: Type.String({ minLength: 1, maxLength: 128, pattern: NO_NUL }),
  scope: Type.Optional(Type.String({ maxLength: 256 })),
  client_id: Type.Optional(Type.String({ maxLength: 256 }))
}, {
  $id: 'PasswordGrant',
  description: 'OAuth 2.0 resource owner password credentials grant (RFC 6749 §4.3.2), form-encoded',
  example: { grant_type: 'password', username: 'alice', password: 'correct horse battery' }
})

export const LoginBody = Type.Object({
  username: LoginName,
  password: Type.String({ minLength: 1, maxLength: 128, pattern: NO_NUL })
}, { $id: 'LoginBody', example: { username: 'alice', password: 'correct horse battery' } })
export type LoginBody = Static<typeof LoginBody>

export const TokenPair = Type.Object({
  access_token: Type.String({ description: 'JWT to send as `Authorization: Bearer <access_token>`' }),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer({ description: 'Access token lifetime in seconds' }),
  refresh_token: Type.String({ description: 'Opaque, single use: POST it to /auth/refresh for a new pair' })
}, {
  $id: 'TokenPair',
  description: 'OAuth 2.0 token response (RFC 6749 §5.1), sent with Cache-Control: no-store',
  example: {
    access_token: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIyZjFjNWEzZSJ9.c2lnbmF0dXJl',
    token_type: 'Bearer',
    expires_in: 900,
    refresh_token: 'q0Xn6yJ3c1m5u9sVxWz2bT4rY8pK7eLdGhFjAiCoNvM'
  }
})
export type TokenPair = Static<typeof TokenPair>

export const RefreshBody = Type.Object({
  refresh_token: Type.String({ minLength: 1, maxLength: 512 })
}, { $id: 'RefreshBody', example: { refresh_token: 'q0Xn6yJ3c1m5u9sVxWz2bT4rY8pK7eLdGhFjAiCoNvM' } })

export const Me = Type.Object({
  id: Type.String({ format: 'uuid' }),
  username: Type.String(),
  role: ref(Role)
}, {
  $id: 'Me',
  description: 'The signed-in user, as the access token says',
  example: { id: '2f1c5a3e-8b7d-4c6a-9e0f-1a2b3c4d5e6f', username: 'alice', role: 'user' }
})

export const ChangeRoleBody = Type.Object({
  username: LoginUsername,
  role: ref(Role)
}, { $id: 'ChangeRoleBody', example: { username: 'alice', role: 'admin' } })

export const CreateUserBody = Type.Object({
  username: Username,
  password: Password,
  role: Type.Optional(ref(Role)),
  email: Type.Optional({ ...Email, description: 'Optional, unique without regard to case; it starts unverified and gets a verification mail' })
}, {
  $id: 'CreateUserBody',
  description: 'A new account: the password follows the rules of registration; the role is `user` unless given; an email starts unverified',
  example: { username: 'bob', password: 'correct horse battery', role: 'user', email: 'bob@example.com' }
})
export type CreateUserBody = Static<typeof CreateUserBody>

export const SetPasswordBody = Type.Object({
  password: Password
}, {
  $id: 'SetPasswordBody',
  description: 'A temporary password: the user must choose a new one at the next login',
  example: { password: 'temporary horse battery' }
})

export const DeleteMeBody = Type.Object({
  password: Type.String({ minLength: 1, maxLength: 128 })
}, { $id: 'DeleteMeBody', description: 'The current password, to confirm', example: { password: 'correct horse battery' } })

export const PasswordChangeRequired = Type.Object({
  statusCode: Type.Literal(403),
  error: Type.Literal('Forbidden'),
  message: Type.String(),
  code: Type.Literal('AUTH_PASSWORD_CHANGE_REQUIRED'),
  reset_token: Type.String({ description: 'Single use, short-lived: POST it with a new password to /auth/password/reset' })
}, {
  $id: 'PasswordChangeRequired',
  description: 'The password was right, but an admin set it: no session starts until the user chooses a new one',
  example: {
    statusCode: 403,
    error: 'Forbidden',
    message: 'This password was set by an admin and must be changed: choose a new one with POST /auth/password/reset and the reset_token',
    code: 'AUTH_PASSWORD_CHANGE_REQUIRED',
    reset_token: 'Jm3sQk9vX2c4ZbT8yLw0pNq7RfU1eHd6GaVoKiCtY5s'
  }
})

export const ChangePasswordBody = Type.Object({
  currentPassword: Type.String({ minLength: 1, maxLength: 128 }),
  newPassword: Password
}, { $id: 'ChangePasswordBody', example: { currentPassword: 'correct horse battery', newPassword: 'battery staple horse' } })

export const Session = Type.Object({
  id: Type.String({ format: 'uuid' }),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.String({ format: 'date-time' }),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean({ description: 'True for the session of the token making this request' })
}, {
  $id: 'Session',
  description: 'A live sign-in (one login and the refreshes that followed it)',
  example: {
    id: '7d9e2b1a-3c4f-4a5b-8c6d-0e1f2a3b4c5d',
    createdAt: '2025-01-31T12:00:00.000Z',
    lastUsedAt: '2025-01-31T12:10:00.000Z',
    userAgent: 'curl/8.5.0',
    ip: '127.0.0.1',
    current: true
  }
})
export type Session = Static<typeof Session>

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const authSchemas: TSchema[] = [Credentials, LoginBody, PasswordGrant, TokenPair, RefreshBody, Me,
  ChangeRoleBody, ChangePasswordBody, Session, CreateUserBody, SetPasswordBody, DeleteMeBody, PasswordChangeRequired]
