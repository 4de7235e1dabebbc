import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Password } from './auth.js'
import { Email, Username } from './users.js'

// What a mail carries: 256 bits in base64url (43 characters). Anything else of this shape
// is simply not a token (400, like an unknown one).
const RecoveryToken = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$', description: 'The token from the mail', example: 'Jx1dQm0Lr8vK3yT6pW9zB2nC5fH7gA4sE0uI-oP_qRw' })

// One of the two, not both (JSON Schema's oneOf: a body with both matches both and is a 400).
export type ForgotPasswordBody = { username: string, email?: undefined } | { email: string, username?: undefined }
export const ForgotPasswordBody = Type.Unsafe<ForgotPasswordBody>({
  $id: 'ForgotPasswordBody',
  description: 'The account, by username or by email (one of the two)',
  oneOf: [Type.Object({ username: Username }), Type.Object({ email: Email })],
  example: { email: 'alice@example.com' }
})

export const ForgotPasswordAccepted = Type.Object({
  message: Type.String()
}, {
  $id: 'ForgotPasswordAccepted',
  description: 'The same answer whether or not the account exists',
  example: { message: 'If the account exists and has a verified email, a mail with a reset token is on its way' }
})

export const ResetPasswordBody = Type.Object({
  token: RecoveryToken,
  newPassword: Password
}, { $id: 'ResetPasswordBody', example: { token: 'Jx1dQm0Lr8vK3yT6pW9zB2nC5fH7gA4sE0uI-oP_qRw', newPassword: 'battery staple horse' } })
export type ResetPasswordBody = Static<typeof ResetPasswordBody>

export const VerifyEmailBody = Type.Object({
  token: RecoveryToken
}, { $id: 'VerifyEmailBody', example: { token: 'Jx1dQm0Lr8vK3yT6pW9zB2nC5fH7gA4sE0uI-oP_qRw' } })
export type VerifyEmailBody = Static<typeof VerifyEmailBody>

export const UpdateMeBody = Type.Object({
  email: Type.Optional(Type.Union([Email, Type.Null()], { description: 'A new address (starts unverified, a verification mail goes to it), the current one again (the mail again if it is unverified), or null to remove it' }))
}, { $id: 'UpdateMeBody', description: 'The fields to change; absent fields stay as they are', example: { email: 'alice@example.com' } })
export type UpdateMeBody = Static<typeof UpdateMeBody>

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const recoverySchemas: TSchema[] = [ForgotPasswordBody, ForgotPasswordAccepted, ResetPasswordBody, VerifyEmailBody, UpdateMeBody]
