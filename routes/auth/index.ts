// /auth: registration, login, refresh, the caller's identity and sessions, change-role.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { bearer, errors, IdParams, ref, type HttpError } from '../../schemas/common.js'
import {
  ChangePasswordBody, ChangeRoleBody, Credentials, DeleteMeBody, LoginBody, Me, PasswordGrant, RefreshBody, Session
} from '../../schemas/auth.js'
import { LoginForbidden } from '../../schemas/mfa.js'
import { User } from '../../schemas/users.js'
import { auditContext } from '../../plugins/app/audit/audit-service.js'
import { clientMeta, tokenPair, tokenResponse } from './token-pair.js'

/**
 * The outcomes of a route the caller's own password guards (UserService.checkPassword):
 * a wrong one is 403 and counts toward the lockout; the one that reaches it ends the session.
 */
const ownPassword = (what: string): Array<[number, string, Partial<HttpError>?]> => [
  [401, `No valid token, or too many wrong ${what}s in a row: this session has ended`],
  [403, `The ${what} is wrong; nothing changed`, { code: 'AUTH_WRONG_PASSWORD', message: 'Current password is wrong' }],
  [429, 'Too many wrong passwords from this client, or too many requests; see Retry-After']
]

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { users, sessions, tokens, recovery, authenticate, requireRole, config } = fastify
  const perMinute = (max: number) => ({ rateLimit: { max, timeWindow: 60_000 } })

  fastify.post('/register', {
    config: perMinute(config.REGISTER_RATE_LIMIT),
    schema: {
      tags: ['auth'],
      operationId: 'register',
      summary: 'Create an account (role user; a role in the body is ignored)',
      description: 'Usernames are 3–32 characters of `A–Z a–z 0–9 _ . -`, unique without regard to case and kept as registered. Passwords are 8–128 characters, every one counts. An email is optional, unique without regard to case; it starts unverified and, with mail configured, gets a verification mail. Rate-limited per client IP.',
      body: ref(Credentials),
      response: {
        201: ref(User, 'The new account, role user'),
        ...errors(400, [409, 'The username is taken (in any case), or the email is another account\'s'], 413, 415, 429, 503)
      }
    }
  }, async function (request, reply) {
    const { username, password, email } = request.body
    const user = await users.register(username, password, 'user', auditContext(request), email ?? null)
    // A given email gets its verification mail after this answer (none without SMTP_URL).
    recovery.sendVerification(user)
    return reply.code(201).header('cache-control', 'no-store').send(user)
  })

  fastify.post('/login', {
    config: perMinute(config.LOGIN_RATE_LIMIT),
    schema: {
      tags: ['auth'],
      operationId: 'login',
      summary: 'Sign in: JSON credentials, or the OAuth 2.0 password grant as a form',
      description: 'Returns an OAuth 2.0 token pair (RFC 6749 §5.1, `Cache-Control: no-store`). The form body is the password grant, the `tokenUrl` of the `oauth2` security scheme. An unknown user, a wrong password and a disabled user get the same 401. Rate-limited per client IP; failures in a row lock the username for that client for a while, and many failures from all clients throttle it for clients the user has not signed in from (429 with Retry-After; see the README\'s security section). ' +
        'A user with a second factor gets 403 `AUTH_MFA_REQUIRED` with an `mfa_token` instead of tokens (for the form, in OAuth 2.0 error form): POST it to /auth/mfa/verify with a code. ' +
        'A right password that is a temporary one an admin set gets 403 `AUTH_PASSWORD_CHANGE_REQUIRED` with a `reset_token` instead, before any second factor is asked: POST it with a new password to /auth/password/reset, then sign in with that (and the second factor, if the user has one).',
      body: {
        content: {
          'application/json': { schema: ref(LoginBody) },
          'application/x-www-form-urlencoded': { schema: ref(PasswordGrant) }
        }
      },
      response: {
        200: tokenResponse('Signed in: an access token and a single-use refresh token'),
        ...errors(400, [401, 'Wrong username or password, or the user is disabled (one answer for all three)',
          { code: 'AUTH_BAD_CREDENTIALS', message: 'Invalid username or password' }], 413, 415, 429, 503),
        403: {
          ...ref(LoginForbidden, 'The password was right, but no session yet: the user has a second factor (`AUTH_MFA_REQUIRED`: POST the `mfa_token` to /auth/mfa/verify with a code), or the password is a temporary one an admin set (`AUTH_PASSWORD_CHANGE_REQUIRED`: choose a new password with the `reset_token` at /auth/password/reset)'),
          headers: { 'cache-control': { type: 'string', enum: ['no-store'], description: 'It carries a token (`mfa_token` or `reset_token`): never cached' } }
        }
      }
    }
  }, async function (request, reply) {
    const { username, password } = request.body as LoginBody
    const signedIn = await sessions.login(username, password, clientMeta(request))
    if (!('mfa' in signedIn)) return tokenPair(reply, tokens, signedIn)
    const { mfaToken, methods } = signedIn.mfa
    const message = 'A second factor is required'
    reply.code(403).header('cache-control', 'no-store').header('pragma', 'no-cache')
    // The password grant (a form) is an OAuth 2.0 client: it reads RFC 6749 §5.2's error shape.
    if (request.headers['content-type']?.startsWith('application/x-www-form-urlencoded') === true) {
      return { error: 'mfa_required' as const, error_description: message, mfa_token: mfaToken, methods }
    }
    return { statusCode: 403 as const, error: 'Forbidden' as const, message, code: 'AUTH_MFA_REQUIRED' as const, mfa_token: mfaToken, methods }
  })

  fastify.post('/refresh', {
    schema: {
      tags: ['auth'],
      operationId: 'refresh',
      summary: 'Exchange a refresh token (single use) for a new token pair',
      description: 'Presenting the refresh token just used again within `REFRESH_REUSE_INTERVAL` seconds (a retry, two tabs) returns a pair with the same new refresh token; presenting it later ends its whole session (theft detection). A session ends `SESSION_MAX_LIFETIME` after its login however often it is refreshed. Rate-limited per session (429 with Retry-After).',
      body: ref(RefreshBody),
      response: {
        200: tokenResponse('A new token pair; the refresh token presented is used up'),
        ...errors(400, [401, 'Unknown, expired, revoked or already used refresh token',
          { code: 'AUTH_UNAUTHORIZED', message: 'Invalid refresh token' }], 413, 415, [429, 'Too many refreshes of this session in a minute'], 503)
      }
    }
  }, async function (request, reply) {
    return tokenPair(reply, tokens, await sessions.refresh(request.body.refresh_token, clientMeta(request)))
  })

  fastify.get('/me', {
    onRequest: [authenticate],
    schema: {
      tags: ['auth'],
      security: bearer,
      operationId: 'getMe',
      summary: 'The signed-in user (served from the token and one Redis read)',
      response: { 200: ref(Me, 'The signed-in user'), ...errors(401, 503) }
    }
  }, async function (request) {
    const { sub, preferred_username: username, role } = request.user
    return { id: sub, username, role }
  })

  fastify.post('/change-role', {
    onRequest: [authenticate, requireRole('admin')],
    schema: {
      tags: ['admin'],
      operationId: 'changeRole',
      summary: 'Set a user\'s role; the user\'s tokens stop working on the next request',
      description: 'Admin only. The user signs in again to get a token with the new role. Setting the role a user already has changes and revokes nothing.',
      security: bearer,
      body: ref(ChangeRoleBody),
      response: {
        200: ref(User, 'The user with its new role'),
        ...errors(400, 401, [403, 'The caller is not an admin'], [404, 'No user of that name'],
          [409, 'Demoting the last admin', { message: 'The last admin cannot be demoted, disabled or deleted' }], 413, 415, 503)
      }
    }
  }, async function (request) {
    return await users.update({ username: request.body.username }, { role: request.body.role }, auditContext(request))
  })

  fastify.post('/logout', {
    onRequest: [authenticate],
    schema: {
      tags: ['auth'],
      security: bearer,
      operationId: 'logout',
      summary: 'End the current session: its access and refresh tokens',
      response: { 204: Type.Null({ description: 'Signed out: this session\'s tokens no longer work' }), ...errors(401, 503) }
    }
  }, async function (request, reply) {
    await sessions.logout(request.user.sub, request.user.sid, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.post('/logout-all', {
    onRequest: [authenticate],
    schema: {
      tags: ['auth'],
      security: bearer,
      operationId: 'logoutAll',
      summary: 'End every session of the signed-in user',
      response: { 204: Type.Null({ description: 'Every session of the user has ended, this one included' }), ...errors(401, 503) }
    }
  }, async function (request, reply) {
    await sessions.endAll(request.user.sub, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.get('/sessions', {
    onRequest: [authenticate],
    schema: {
      tags: ['auth'],
      security: bearer,
      operationId: 'listSessions',
      summary: 'The signed-in user\'s live sessions; `current` marks the caller\'s',
      response: { 200: Type.Array(ref(Session), { description: 'The live sessions, newest first' }), ...errors(401, 503) }
    }
  }, async function (request) {
    return await sessions.list(request.user.sub, request.user.sid)
  })

  fastify.delete('/sessions/:id', {
    onRequest: [authenticate],
    schema: {
      tags: ['auth'],
      security: bearer,
      operationId: 'deleteSession',
      summary: 'End one of the signed-in user\'s sessions',
      params: IdParams,
      response: {
        204: Type.Null({ description: 'The session has ended' }),
        ...errors(400, 401, [404, 'No live session with this id belongs to the caller', { message: 'Session not found' }], 503)
      }
    }
  }, async function (request, reply) {
    await sessions.endOwn(request.user.sub, request.params.id, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.post('/change-password', {
    onRequest: [authenticate],
    // A stolen access token must not make an unlimited password oracle.
    config: perMinute(config.LOGIN_RATE_LIMIT),
    schema: {
      tags: ['auth'],
      security: bearer,
      operationId: 'changePassword',
      summary: 'Change the password; every session of the user ends, this one included',
      description: 'A wrong current password counts toward the username\'s lockout like a failed login; the one that reaches `LOCKOUT_THRESHOLD` in a row ends the session in use (401). Rate-limited per client IP.',
      body: ref(ChangePasswordBody),
      response: {
        204: Type.Null({ description: 'Changed; sign in again with the new password' }),
        ...errors(400, ...ownPassword('current password'), 413, 415, 503)
      }
    }
  }, async function (request, reply) {
    await users.changePassword(request.user.sub, request.body.currentPassword, request.body.newPassword, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.delete('/me', {
    onRequest: [authenticate],
    // As change-password: a stolen access token must not make an unlimited password oracle.
    config: perMinute(config.LOGIN_RATE_LIMIT),
    schema: {
      tags: ['auth'],
      security: bearer,
      operationId: 'deleteMe',
      summary: 'Delete the signed-in user\'s own account; every session ends',
      description: 'The password confirms it. A wrong one counts toward the username\'s lockout like a failed login, as in change-password; the one that reaches `LOCKOUT_THRESHOLD` in a row ends the session in use (401). The last active admin cannot delete itself (409). Audited as `user_deleted` (the user as actor and subject).',
      body: ref(DeleteMeBody),
      response: {
        204: Type.Null({ description: 'Deleted: the account is gone and its tokens stop working at once' }),
        ...errors(400, ...ownPassword('password'), [409, 'The caller is the last active admin', { message: 'The last admin cannot be demoted, disabled or deleted' }],
          413, 415, 503)
      }
    }
  }, async function (request, reply) {
    await users.deleteOwn(request.user.sub, request.body.password, auditContext(request))
    return reply.code(204).send(null)
  })
}

export default routes
