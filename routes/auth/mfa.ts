// /auth/mfa: second factors. TOTP enrolment (a secret, then a code to confirm it), its
// removal, recovery codes, and the second step of a login that asked for one.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { bearer, errors, ref, type HttpError } from '../../schemas/common.js'
import { MfaVerifyBody, PasswordConfirmation, RecoveryCodes, TotpConfirmBody, TotpEnrolment } from '../../schemas/mfa.js'
import { BadRequest } from '../../lib/errors.js'
import { auditContext } from '../../plugins/app/audit/audit-service.js'
import { clientMeta, tokenPair, tokenResponse } from './token-pair.js'

// Secrets and recovery codes are shown once: no cache may keep them.
const noStore = { 'cache-control': { type: 'string', enum: ['no-store'], description: 'Never cached: shown this once' } }

type ErrorEntry = [number, string, Partial<HttpError>?]
const wrongPassword: ErrorEntry = [403, 'The password is wrong; nothing changed', { code: 'AUTH_WRONG_PASSWORD', message: 'Current password is wrong' }]
const tooManyPasswords: ErrorEntry = [429, 'Too many wrong passwords from this client, or too many requests; see Retry-After']
const endedByPasswords: ErrorEntry = [401, 'No valid token, or too many wrong passwords in a row: this session has ended']

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { mfa, sessions, tokens, authenticate, config } = fastify
  const perMinute = (max: number) => ({ rateLimit: { max, timeWindow: 60_000 } })

  fastify.post('/totp', {
    onRequest: [authenticate],
    schema: {
      tags: ['mfa'],
      security: bearer,
      operationId: 'startTotp',
      summary: 'Start TOTP enrolment: a new secret and its otpauth:// URI, active once confirmed',
      description: 'Put the secret into an authenticator app (or show `otpauthUri` as a QR code), then POST a code it shows to ' +
        '/auth/mfa/totp/confirm. Until then nothing changes; calling this again replaces the secret.',
      response: {
        200: { ...ref(TotpEnrolment, 'The secret, shown this once'), headers: noStore },
        ...errors(401, [409, 'TOTP is already active: remove it first'], 503)
      }
    }
  }, async function (request) {
    return await mfa.startTotp(request.user.sub, request.user.preferred_username, auditContext(request))
  })

  fastify.post('/totp/confirm', {
    onRequest: [authenticate],
    schema: {
      tags: ['mfa'],
      security: bearer,
      operationId: 'confirmTotp',
      summary: 'Confirm TOTP with a code: it becomes a second factor, other sessions end',
      description: 'Returns ten recovery codes, shown this once (only their hashes are kept). Every other session of the user ' +
        'ends (their tokens are refused on the next request, at every instance); this one goes on.',
      body: ref(TotpConfirmBody),
      response: {
        200: { ...ref(RecoveryCodes, 'TOTP is active; the recovery codes, shown this once'), headers: noStore },
        ...errors([400, 'Invalid input, or the code is wrong (`AUTH_INVALID_CODE`)'], 401,
          [404, 'No enrolment to confirm: POST /auth/mfa/totp first'], [409, 'TOTP is already active'], 413, 415, 503)
      }
    }
  }, async function (request) {
    return await mfa.confirmTotp(request.user.sub, request.body.code, auditContext(request))
  })

  fastify.delete('/totp', {
    onRequest: [authenticate],
    // A stolen access token must not make an unlimited password oracle.
    config: perMinute(config.LOGIN_RATE_LIMIT),
    schema: {
      tags: ['mfa'],
      security: bearer,
      operationId: 'disableTotp',
      summary: 'Remove TOTP (and the recovery codes); other sessions end',
      description: 'Needs the password. A wrong one counts toward the username\'s lockout like a failed login; the one that ' +
        'reaches `LOCKOUT_THRESHOLD` in a row ends the session in use (401).',
      body: ref(PasswordConfirmation),
      response: {
        204: Type.Null({ description: 'Removed: the password alone signs in again' }),
        ...errors(400, endedByPasswords, wrongPassword, [404, 'TOTP is not active'], 413, 415, tooManyPasswords, 503)
      }
    }
  }, async function (request, reply) {
    await mfa.disableTotp(request.user.sub, request.body.password, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.post('/recovery-codes', {
    onRequest: [authenticate],
    config: perMinute(config.LOGIN_RATE_LIMIT),
    schema: {
      tags: ['mfa'],
      security: bearer,
      operationId: 'regenerateRecoveryCodes',
      summary: 'A new set of ten recovery codes; the old set stops working',
      description: 'Needs the password (counted by the lockout as for DELETE /auth/mfa/totp) and an active second factor.',
      body: ref(PasswordConfirmation),
      response: {
        200: { ...ref(RecoveryCodes, 'The new codes, shown this once'), headers: noStore },
        ...errors(400, endedByPasswords, wrongPassword, [409, 'No second factor is active'], 413, 415, tooManyPasswords, 503)
      }
    }
  }, async function (request) {
    return await mfa.regenerateRecoveryCodes(request.user.sub, request.body.password, auditContext(request))
  })

  fastify.post('/verify', {
    config: perMinute(config.LOGIN_RATE_LIMIT),
    schema: {
      tags: ['mfa'],
      operationId: 'verifyMfa',
      summary: 'Complete a login that asked for a second factor: a TOTP code or a recovery code',
      description: 'The `mfa_token` comes from the login\'s 403 `AUTH_MFA_REQUIRED`; it serves one login and lives 5 minutes. ' +
        'A TOTP code is accepted once (±30 s of clock skew); a recovery code once. The access token carries `amr: ["pwd", "otp"]`. ' +
        'Wrong codes count toward the username\'s lockout like wrong passwords, and five void the `mfa_token`. Rate-limited per client IP.',
      body: ref(MfaVerifyBody),
      response: {
        200: tokenResponse('Signed in: an access token (with `amr`) and a single-use refresh token'),
        ...errors([400, 'Invalid input, or not exactly one of `code` and `recovery_code`'],
          [401, 'A wrong or already used code, or an unknown, used or expired `mfa_token`', { code: 'AUTH_UNAUTHORIZED', message: 'Wrong or already used code' }],
          413, 415, [429, 'Too many wrong codes (or passwords) from this client, or too many requests; see Retry-After'], 503)
      }
    }
  }, async function (request, reply) {
    const { mfa_token: mfaToken, code, recovery_code: recoveryCode } = request.body
    if ((code === undefined) === (recoveryCode === undefined)) throw new BadRequest('Give exactly one of code and recovery_code')
    const meta = clientMeta(request)
    const check = code !== undefined ? mfa.totp(code) : mfa.recoveryCode(recoveryCode as string, meta)
    return tokenPair(reply, tokens, await sessions.completeLogin(mfaToken, meta, check))
  })
}

export default routes
