// /auth/webauthn: passkeys. Registering one (signed in), signing in with one (anyone: a
// discoverable credential; or the holder of an mfa_token: the second factor of a password
// login), and the caller's list of them. Bodies are WebAuthn Level 3's JSON forms
// (schemas/webauthn.ts); docs/passkeys.md has the whole flow.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyRequest } from 'fastify'
import { bearer, errors, IdParams, ref } from '../../schemas/common.js'
import {
  Passkey, PasskeyAssertion, PasskeyCreationOptions, PasskeyRegistration, PasskeyRegistrationStart,
  PasskeyRequestOptions, PasskeySignInStart
} from '../../schemas/webauthn.js'
import { PasswordChangeRequired } from '../../schemas/auth.js'
import { auditContext } from '../../plugins/app/audit/audit-service.js'
import type { Caller } from '../../plugins/app/webauthn/webauthn-service.js'
import { clientMeta, tokenPair, tokenResponse } from './token-pair.js'

function caller (request: FastifyRequest): Caller {
  return { userId: request.user.sub, username: request.user.preferred_username, sessionId: request.user.sid }
}

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { webauthn, tokens, authenticate, config } = fastify
  // Ceremonies write a challenge each: limited per client IP like logins.
  const limited = { rateLimit: { max: config.LOGIN_RATE_LIMIT, timeWindow: 60_000 } }

  fastify.post('/register/options', {
    onRequest: [authenticate],
    config: limited,
    schema: {
      tags: ['passkeys'],
      security: bearer,
      operationId: 'passkeyRegistrationOptions',
      summary: 'Start registering a passkey: options for navigator.credentials.create()',
      description: 'Needs the current password: a passkey signs in on its own, so a stolen access token must not be able to add one. A wrong password counts toward the username\'s lockout like a failed login; the one that reaches `LOCKOUT_THRESHOLD` in a row ends the session in use (401). The challenge is single use and valid for `timeout` ms, for this session only. The credential is discoverable (it signs in without a username). Rate-limited per client IP.',
      body: ref(PasskeyRegistrationStart),
      response: {
        200: ref(PasskeyCreationOptions, 'Creation options (PublicKeyCredentialCreationOptionsJSON)'),
        ...errors(400, [401, 'No valid token, or too many wrong passwords in a row: this session has ended'],
          [403, 'The password is wrong; nothing changed', { code: 'AUTH_WRONG_PASSWORD', message: 'Current password is wrong' }],
          [409, 'The user has as many passkeys as allowed', { message: 'At most 20 passkeys: delete one first' }], 413, 415,
          [429, 'Too many wrong passwords from this client, or too many requests; see Retry-After'], 503)
      }
    }
  }, async function (request) {
    return await webauthn.registrationOptions(caller(request), request.body.password, request.body.name, auditContext(request))
  })

  fastify.post('/register/verify', {
    onRequest: [authenticate],
    config: limited,
    schema: {
      tags: ['passkeys'],
      security: bearer,
      operationId: 'passkeyRegister',
      summary: 'Finish registering a passkey: the new credential\'s toJSON()',
      description: 'Checks the challenge (single use), the origin (`WEBAUTHN_ORIGINS`) and the relying party (`WEBAUTHN_RP_ID`), and stores the credential. A passkey is a second factor: every other session of the user ends, and a password login then asks for it (403 `AUTH_MFA_REQUIRED`).',
      body: ref(PasskeyRegistration),
      response: {
        201: ref(Passkey, 'Registered'),
        ...errors([400, 'Invalid input, or the passkey was refused (unknown, used or expired challenge, wrong origin or relying party)',
          { code: 'AUTH_PASSKEY_REJECTED', message: 'The passkey could not be verified' }], 401,
        [409, 'This passkey is registered already, or the user has as many as allowed'], 413, 415, 429, 503)
      }
    }
  }, async function (request, reply) {
    const passkey = await webauthn.register(caller(request), request.body, auditContext(request))
    return reply.code(201).send(passkey)
  })

  fastify.post('/login/options', {
    config: limited,
    schema: {
      tags: ['passkeys'],
      operationId: 'passkeySignInOptions',
      summary: 'Start signing in with a passkey: options for navigator.credentials.get()',
      description: 'With `{}`: a passwordless sign-in with any discoverable credential (user verification required). With `{ mfa_token }`: the second step of a password login, with one of that user\'s passkeys. The challenge is single use and valid for `timeout` ms. Rate-limited per client IP.',
      body: ref(PasskeySignInStart),
      response: {
        200: ref(PasskeyRequestOptions, 'Request options (PublicKeyCredentialRequestOptionsJSON)'),
        ...errors(400, [401, 'The mfa_token is unknown, used or expired, or its user has no passkey',
          { code: 'AUTH_UNAUTHORIZED', message: 'Invalid or expired mfa_token' }], 413, 415, 429, 503)
      }
    }
  }, async function (request, reply) {
    reply.header('cache-control', 'no-store')
    return await webauthn.authenticationOptions(request.body.mfa_token)
  })

  fastify.post('/login/verify', {
    config: limited,
    schema: {
      tags: ['passkeys'],
      operationId: 'passkeySignIn',
      summary: 'Sign in with a passkey: the credential\'s toJSON() from navigator.credentials.get()',
      description: 'The challenge in the assertion says which ceremony it answers. Returns an OAuth 2.0 token pair whose access token has `amr` `["hwk"]` (a key bound to its device) or `["swk"]` (a synced passkey), or `["pwd", "hwk"|"swk"]` as a second factor. While the user\'s password is a temporary one an admin set, a passwordless sign-in gets 403 `AUTH_PASSWORD_CHANGE_REQUIRED` with a `reset_token` instead, as the password login does. A signature counter that did not move forward (a cloned key) deletes the passkey and ends the sessions it started. Rate-limited per client IP.',
      body: ref(PasskeyAssertion),
      response: {
        200: tokenResponse('Signed in: an access token and a single-use refresh token'),
        ...errors(400, [401, 'The assertion was refused (one answer for every reason: unknown credential, used or expired challenge, wrong origin, bad signature, cloned key, disabled user)',
          { code: 'AUTH_UNAUTHORIZED', message: 'Passkey sign-in failed' }], 413, 415, 429, 503),
        403: {
          ...ref(PasswordChangeRequired, 'The passkey was right, but the user\'s password is a temporary one an admin set: no session until the user chooses a new password with the `reset_token` at /auth/password/reset'),
          headers: { 'cache-control': { type: 'string', enum: ['no-store'], description: 'It carries a token: never cached' } }
        }
      }
    }
  }, async function (request, reply) {
    return tokenPair(reply, tokens, await webauthn.authenticate(request.body, clientMeta(request)))
  })

  fastify.get('/credentials', {
    onRequest: [authenticate],
    schema: {
      tags: ['passkeys'],
      security: bearer,
      operationId: 'listPasskeys',
      summary: 'The signed-in user\'s passkeys, oldest first',
      response: { 200: Type.Array(ref(Passkey), { description: 'The passkeys' }), ...errors(401, 503) }
    }
  }, async function (request) {
    return await webauthn.list(request.user.sub)
  })

  fastify.delete('/credentials/:id', {
    onRequest: [authenticate],
    schema: {
      tags: ['passkeys'],
      security: bearer,
      operationId: 'deletePasskey',
      summary: 'Delete one of the signed-in user\'s passkeys; the sessions it signed in end',
      description: 'Removing a second factor ends the user\'s other sessions too; the caller\'s own goes on, unless this passkey signed it in.',
      params: IdParams,
      response: {
        204: Type.Null({ description: 'Deleted' }),
        ...errors(400, 401, [404, 'No passkey with this id belongs to the caller', { message: 'Passkey not found' }], 503)
      }
    }
  }, async function (request, reply) {
    await webauthn.delete(caller(request), request.params.id, auditContext(request))
    return reply.code(204).send(null)
  })
}

export default routes
