import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { NO_NUL } from './common.js'

/**
 * The ways a login waiting for its second factor can be completed, as `methods` names them.
 * A factor another module adds (passkeys: `webauthn`) is added here and in the SQL that
 * finds a user's factors (plugins/app/mfa/mfa-repository.ts, FACTORS).
 */
export const MFA_METHODS = ['totp', 'recovery_code', 'webauthn'] as const
export type MfaMethod = typeof MFA_METHODS[number]

const Methods = Type.Array(Type.Unsafe<MfaMethod>(Type.String({ enum: [...MFA_METHODS] })), {
  description: 'What completes the login: `totp` (POST /auth/mfa/verify with `code`), `recovery_code` (with `recovery_code`), `webauthn` (a passkey: POST /auth/webauthn/login/options with `mfa_token`, then /auth/webauthn/login/verify)'
})

const MfaToken = Type.String({
  description: 'Single use, valid 5 minutes, for this login only: POST it to /auth/mfa/verify with a code, or to /auth/webauthn/login/options for a passkey'
})

const MFA_TOKEN_EXAMPLE = 'Jd3v0Qm1c5u9sVxWz2bT4rY8pK7eLdGhFjAiCoNvMq0'

export const MfaRequired = Type.Object({
  statusCode: Type.Literal(403),
  error: Type.Literal('Forbidden'),
  message: Type.String(),
  code: Type.Literal('AUTH_MFA_REQUIRED'),
  mfa_token: MfaToken,
  methods: Methods
}, {
  $id: 'MfaRequired',
  description: 'The password was right and the user has a second factor: complete the login with it',
  example: {
    statusCode: 403,
    error: 'Forbidden',
    message: 'A second factor is required',
    code: 'AUTH_MFA_REQUIRED',
    mfa_token: MFA_TOKEN_EXAMPLE,
    methods: ['totp', 'recovery_code']
  }
})
export type MfaRequired = Static<typeof MfaRequired>

// RFC 6749 §5.2's error shape, as an OAuth client of the password grant reads it, with the
// extension members a client needs to go on (the shape Auth0 and others use for it).
export const OAuthMfaRequired = Type.Object({
  error: Type.Literal('mfa_required'),
  error_description: Type.String(),
  mfa_token: MfaToken,
  methods: Methods
}, {
  $id: 'OAuthMfaRequired',
  description: 'The same, in OAuth 2.0 error form (RFC 6749 §5.2), for the form-encoded password grant',
  example: {
    error: 'mfa_required',
    error_description: 'A second factor is required',
    mfa_token: MFA_TOKEN_EXAMPLE,
    methods: ['totp', 'recovery_code']
  }
})
export type OAuthMfaRequired = Static<typeof OAuthMfaRequired>

/** Login's 403: a second factor is needed, or (issue 16) a temporary password must be changed first. */
export const LoginForbidden = Type.Union([Type.Ref('MfaRequired'), Type.Ref('OAuthMfaRequired'), Type.Ref('PasswordChangeRequired')], {
  $id: 'LoginForbidden',
  description: '`MfaRequired` (JSON) or `OAuthMfaRequired` (the password grant, a form) when the user has a second factor; `PasswordChangeRequired` when the password is a temporary one an admin set (checked first)'
})

const TotpCode = Type.String({ pattern: '^[0-9]{6}$', description: 'The 6 digits the authenticator app shows now', example: '123456' })

export const TotpEnrolment = Type.Object({
  secret: Type.String({ description: 'The shared secret, base32 (RFC 4648), to type into an authenticator app' }),
  otpauthUri: Type.String({ description: 'The same as an `otpauth://totp/…` URI (Key Uri Format), for a QR code' })
}, {
  $id: 'TotpEnrolment',
  description: 'A TOTP secret (RFC 6238: SHA-1, 6 digits, 30 s), not active until confirmed with a code',
  example: {
    secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP',
    otpauthUri: 'otpauth://totp/auth-service:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=auth-service&algorithm=SHA1&digits=6&period=30'
  }
})

export const TotpConfirmBody = Type.Object({
  code: TotpCode
}, { $id: 'TotpConfirmBody', example: { code: '123456' } })

export const RecoveryCodes = Type.Object({
  recoveryCodes: Type.Array(Type.String(), { minItems: 10, maxItems: 10 })
}, {
  $id: 'RecoveryCodes',
  description: 'Ten single-use recovery codes, shown this once (only their hashes are kept); a new set voids the old one',
  example: {
    recoveryCodes: ['k7d2-m4qp-x3vb-n6ta', 'r2wz-c5hj-p7mk-e3ds', 'b4nq-t6ve-w2xa-h5mr', 'f3pz-y7kc-s2dn-q6wb', 'j5tm-a4rx-v7hq-c2ze',
      'n6ws-d3bk-m5pt-z4ya', 'q2hv-x6fe-k3cr-t7nm', 'w5ad-p2zq-h6vs-b3kx', 'e7mt-n4yc-r5wh-d2qa', 'z3kb-s6qn-f4tx-m7vp']
  }
})

export const PasswordConfirmation = Type.Object({
  password: Type.String({ minLength: 1, maxLength: 128, pattern: NO_NUL, description: 'The current password' })
}, { $id: 'PasswordConfirmation', example: { password: 'correct horse battery' } })

export const MfaVerifyBody = Type.Object({
  mfa_token: Type.String({ minLength: 1, maxLength: 128 }),
  code: Type.Optional(TotpCode),
  recovery_code: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: NO_NUL, description: 'One of the recovery codes (dashes and case do not matter)' }))
}, {
  $id: 'MfaVerifyBody',
  description: 'The `mfa_token` of the login, and exactly one of `code` (TOTP) or `recovery_code`',
  example: { mfa_token: MFA_TOKEN_EXAMPLE, code: '123456' }
})
export type MfaVerifyBody = Static<typeof MfaVerifyBody>

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const mfaSchemas: TSchema[] = [MfaRequired, OAuthMfaRequired, LoginForbidden, TotpEnrolment, TotpConfirmBody,
  RecoveryCodes, PasswordConfirmation, MfaVerifyBody]
