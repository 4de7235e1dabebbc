// Passkeys: the WebAuthn Level 3 JSON forms as they are (what
// PublicKeyCredential.parseCreationOptionsFromJSON / parseRequestOptionsFromJSON take, and
// what a credential's toJSON() gives), and the credentials as their owner sees them.
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { NO_NUL, Uuid } from './common.js'

// base64url without padding, as WebAuthn's JSON forms write bytes.
const Bytes = (maxLength: number, description: string) => Type.String({ pattern: '^[A-Za-z0-9_-]*$', maxLength, description })
// A credential id is at most 1023 bytes (WebAuthn §5.8.3): 1364 base64url characters.
const CredentialIdJson = Bytes(1364, 'The credential id, base64url')
// Values a later browser may add (a transport, a hint) are passed through, not refused.
const Word = Type.String({ maxLength: 64, pattern: NO_NUL })
const Words = Type.Array(Word, { maxItems: 16 })
// Extension inputs and outputs belong to the extensions: a client gets back what its browser said.
const Extensions = (description: string) => Type.Object({}, { additionalProperties: true, description })
const UserVerification = Type.Union([Type.Literal('required'), Type.Literal('preferred'), Type.Literal('discouraged')])

const CredentialDescriptor = Type.Object({
  id: CredentialIdJson,
  type: Type.Literal('public-key'),
  transports: Type.Optional(Words)
})

export const PasskeyCreationOptions = Type.Object({
  rp: Type.Object({ name: Type.String(), id: Type.Optional(Type.String()) }),
  user: Type.Object({
    id: Bytes(86, 'The user handle: opaque bytes, not the username'),
    name: Type.String(),
    displayName: Type.String()
  }),
  challenge: Bytes(86, 'Single use, valid for `timeout` ms; it identifies this ceremony to /register/verify'),
  pubKeyCredParams: Type.Array(Type.Object({ alg: Type.Integer(), type: Type.Literal('public-key') })),
  timeout: Type.Optional(Type.Integer()),
  excludeCredentials: Type.Optional(Type.Array(CredentialDescriptor, { description: 'The passkeys the user has already' })),
  authenticatorSelection: Type.Optional(Type.Object({
    authenticatorAttachment: Type.Optional(Type.Union([Type.Literal('platform'), Type.Literal('cross-platform')])),
    residentKey: Type.Optional(Type.Union([Type.Literal('required'), Type.Literal('preferred'), Type.Literal('discouraged')])),
    requireResidentKey: Type.Optional(Type.Boolean()),
    userVerification: Type.Optional(UserVerification)
  })),
  hints: Type.Optional(Words),
  attestation: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('indirect'), Type.Literal('direct'), Type.Literal('enterprise')])),
  attestationFormats: Type.Optional(Words),
  extensions: Type.Optional(Extensions('Extension inputs, e.g. `credProps`'))
}, {
  $id: 'PasskeyCreationOptions',
  description: 'A PublicKeyCredentialCreationOptionsJSON: give it to `PublicKeyCredential.parseCreationOptionsFromJSON()`, then to `navigator.credentials.create({ publicKey })`'
})

export const PasskeyRequestOptions = Type.Object({
  challenge: Bytes(86, 'Single use, valid for `timeout` ms; it identifies this ceremony to /login/verify'),
  timeout: Type.Optional(Type.Integer()),
  rpId: Type.Optional(Type.String()),
  allowCredentials: Type.Optional(Type.Array(CredentialDescriptor, { description: 'Empty for a passwordless sign-in (any discoverable credential); the user\'s passkeys for a second factor' })),
  userVerification: Type.Optional(UserVerification),
  hints: Type.Optional(Words),
  extensions: Type.Optional(Extensions('Extension inputs'))
}, {
  $id: 'PasskeyRequestOptions',
  description: 'A PublicKeyCredentialRequestOptionsJSON: give it to `PublicKeyCredential.parseRequestOptionsFromJSON()`, then to `navigator.credentials.get({ publicKey })`'
})

const Attachment = Type.Union([Type.Literal('platform'), Type.Literal('cross-platform'), Type.Null()])
// The envelope every credential's toJSON() shares.
const credentialJson = {
  id: CredentialIdJson,
  rawId: CredentialIdJson,
  type: Type.Literal('public-key'),
  authenticatorAttachment: Type.Optional(Attachment),
  clientExtensionResults: Extensions('The browser\'s extension outputs')
}
// clientDataJSON names the challenge, the origin and the ceremony; a few hundred bytes.
const ClientDataJson = Bytes(4096, 'The client data (type, challenge, origin) as the browser serialised it')

export const PasskeyRegistration = Type.Object({
  ...credentialJson,
  response: Type.Object({
    clientDataJSON: ClientDataJson,
    attestationObject: Bytes(12_000, 'The authenticator data and the attestation'),
    authenticatorData: Type.Optional(Bytes(4096, 'The authenticator data, for clients that read it')),
    transports: Type.Optional(Words),
    publicKeyAlgorithm: Type.Optional(Type.Integer()),
    publicKey: Type.Optional(Bytes(2048, 'The public key (SPKI), for clients that read it'))
  })
}, {
  $id: 'PasskeyRegistration',
  description: 'A RegistrationResponseJSON: the new credential\'s `toJSON()`, as `navigator.credentials.create()` returned it'
})
export type PasskeyRegistration = Static<typeof PasskeyRegistration>

export const PasskeyAssertion = Type.Object({
  ...credentialJson,
  response: Type.Object({
    clientDataJSON: ClientDataJson,
    authenticatorData: Bytes(4096, 'What the authenticator signed, with the counter and the flags'),
    signature: Bytes(2048, 'The signature over the authenticator data and the client data\'s hash'),
    userHandle: Type.Optional(Type.Union([Bytes(86, 'The user handle of a discoverable credential'), Type.Null()]))
  })
}, {
  $id: 'PasskeyAssertion',
  description: 'An AuthenticationResponseJSON: the credential\'s `toJSON()`, as `navigator.credentials.get()` returned it'
})
export type PasskeyAssertion = Static<typeof PasskeyAssertion>

const PasskeyName = Type.String({ minLength: 1, maxLength: 64, pattern: NO_NUL, description: 'A name to tell the passkey by', example: 'YubiKey 5C' })

export const PasskeyRegistrationStart = Type.Object({
  password: Type.String({ minLength: 1, maxLength: 128, description: 'The current password: a stolen access token must not be able to add a way in' }),
  name: Type.Optional(PasskeyName)
}, {
  $id: 'PasskeyRegistrationStart',
  description: 'The current password, and what to call the new passkey (default "Passkey")',
  example: { password: 'correct horse battery', name: 'YubiKey 5C' }
})

export const PasskeySignInStart = Type.Object({
  mfa_token: Type.Optional(Type.String({ minLength: 1, maxLength: 512, description: 'From a password login\'s 403 AUTH_MFA_REQUIRED: a passkey as its second factor' }))
}, {
  $id: 'PasskeySignInStart',
  description: '`{}` for a passwordless sign-in; `{ mfa_token }` for the second step of a password login',
  example: {}
})

export const Passkey = Type.Object({
  id: Uuid,
  name: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'The last sign-in with it' })
}, {
  $id: 'Passkey',
  description: 'A registered passkey (WebAuthn credential) of the signed-in user',
  example: { id: '5b0e7c1d-2a3f-4e5d-8c9b-0a1b2c3d4e5f', name: 'YubiKey 5C', createdAt: '2025-01-31T12:00:00.000Z', lastUsedAt: null }
})

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const webauthnSchemas: TSchema[] = [PasskeyCreationOptions, PasskeyRequestOptions, PasskeyRegistration,
  PasskeyAssertion, PasskeyRegistrationStart, PasskeySignInStart, Passkey]
