import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Uuid } from './common.js'

// Any string a client might hold: what is not a live token of ours is simply not active
// (introspection) or nothing to revoke (revocation), never a 400.
const Token = Type.String({
  minLength: 1,
  maxLength: 8192,
  description: 'An access token (JWT) or a refresh token of this service'
})

const TokenTypeHint = Type.String({
  maxLength: 64,
  description: '`access_token` or `refresh_token` (RFC 7009 §2.1). Only a hint: the token is looked up as either kind, and other values are ignored'
})

/** The body both endpoints take (RFC 7662 §2.1, RFC 7009 §2.1): a token, and a hint of its kind. */
function tokenRequest ($id: string, description: string, example: { token: string, token_type_hint: string }) {
  return Type.Object({ token: Token, token_type_hint: Type.Optional(TokenTypeHint) }, { $id, description, example })
}

export const IntrospectionRequest = tokenRequest('IntrospectionRequest', 'RFC 7662 §2.1, usually form-encoded',
  { token: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIyZjFjNWEzZSJ9.c2lnbmF0dXJl', token_type_hint: 'access_token' })
export type IntrospectionRequest = Static<typeof IntrospectionRequest>

export const RevocationRequest = tokenRequest('RevocationRequest', 'RFC 7009 §2.1, form-encoded or JSON',
  { token: 'q0Xn6yJ3c1m5u9sVxWz2bT4rY8pK7eLdGhFjAiCoNvM', token_type_hint: 'refresh_token' })
export type RevocationRequest = Static<typeof RevocationRequest>

const ActiveToken = Type.Object({
  active: Type.Literal(true),
  sub: Uuid,
  username: Type.String({ description: 'The username as registered (the access token\'s `preferred_username`)' }),
  role: Type.Union([Type.Literal('user'), Type.Literal('admin')], { description: 'Current: a role change revokes the user\'s tokens' }),
  sid: Uuid,
  token_type: Type.Union([Type.Literal('access_token'), Type.Literal('refresh_token')], {
    description: 'Which kind of token this is (the token type hint values of RFC 7009): a resource server accepts only `access_token`'
  }),
  exp: Type.Integer({ description: 'Expiry, seconds since the epoch' }),
  iat: Type.Integer({ description: 'Issue time, seconds since the epoch' }),
  iss: Type.String(),
  aud: Type.String(),
  jti: Type.String({ description: 'The access token\'s `jti`; for a refresh token, the base64url SHA-256 of the token (what this service stores)' }),
  amr: Type.Optional(Type.Array(Type.String(), {
    description: 'How the session\'s login was authenticated (RFC 8176): `["pwd"]`, `["pwd", "otp"]` with a second factor; absent from access tokens issued before second factors'
  })),
  client_id: Type.String({ description: 'The client the token was issued to: this service\'s own sign-in, named by its audience (`JWT_AUDIENCE`)' })
})

const InactiveToken = Type.Object({
  active: Type.Literal(false)
}, { description: 'Revoked, expired, malformed, unknown or not this service\'s: nothing more is said' })

export const Introspection = Type.Union([InactiveToken, ActiveToken], {
  $id: 'Introspection',
  description: 'RFC 7662 §2.2 introspection response',
  example: {
    active: true,
    sub: '2f1c5a3e-8b7d-4c6a-9e0f-1a2b3c4d5e6f',
    username: 'alice',
    role: 'user',
    sid: '7d3f0a4e-2b1c-4e5d-8f6a-9b0c1d2e3f4a',
    token_type: 'access_token',
    exp: 1738328400,
    iat: 1738327500,
    iss: 'auth-service',
    aud: 'auth-service',
    jti: '0b6e1c2d-4f3a-4b5c-9d8e-7f6a5b4c3d2e',
    amr: ['pwd', 'otp'],
    client_id: 'auth-service'
  }
})
export type Introspection = Static<typeof Introspection>

export const RevocationResult = Type.Object({}, {
  $id: 'RevocationResult',
  description: 'RFC 7009 §2.2: nothing to say. The token (if it was a live token of this service) no longer works, nor does anything else of its session',
  example: {}
})

/** Added once with addSchema (app.ts): named OpenAPI components. */
export const oauthSchemas: TSchema[] = [IntrospectionRequest, RevocationRequest, Introspection, RevocationResult]
