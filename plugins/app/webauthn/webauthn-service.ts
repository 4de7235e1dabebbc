// Passkeys (WebAuthn Level 3) with @simplewebauthn/server: registering credentials,
// passwordless sign-in with a discoverable credential, a passkey as the second factor
// of a password login, and listing and deleting credentials (docs/passkeys.md).
import { randomBytes } from 'node:crypto'
import type {
  AuthenticationResponseJSON, AuthenticatorTransportFuture, PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON
} from '@simplewebauthn/server'
import { BadCredentials, Conflict, NotFound, PasskeyRejected, Unauthorized } from '../../../lib/errors.js'
import { inBatches } from '../../../lib/periodic.js'
import type { Db, Queryable } from '../../external/db.js'
import type { AuditContext, AuditService } from '../audit/audit-service.js'
import type { RevocationService, RevocationSet } from '../revocation/revocation-service.js'
import { mfaTokenHash, type FactorCheck, type MfaService } from '../mfa/mfa-service.js'
import type { ClientMeta, IssuedSession, SessionService } from '../sessions/sessions-service.js'
import type { UserService } from '../users/users-service.js'
import type { PasskeyAssertion, PasskeyRegistration } from '../../../schemas/webauthn.js'
import type { Challenge, CredentialInfo, WebAuthnRepository } from './webauthn-repository.js'

// Loaded on the first passkey request, not at start-up: a deployment without passkeys never
// holds the library in memory. Each method loads it before touching the database, so that a
// failed load leaves no challenge written or consumed.
let library: Promise<typeof import('@simplewebauthn/server')> | undefined
const simpleWebAuthn = async () => await (library ??= import('@simplewebauthn/server'))

export interface WebAuthnSettings {
  /** WEBAUTHN_RP_ID: the domain credentials are scoped to. */
  rpId: string
  /** WEBAUTHN_ORIGINS: the origins a ceremony may run on (clientDataJSON.origin). */
  origins: string[]
  /** Shown by some authenticators beside the username. */
  rpName: string
}

/** The signed-in caller of a registration or a credential's deletion. */
export interface Caller {
  userId: string
  username: string
  sessionId: string
}

/** RFC 8176: proof of possession of a hardware-secured key, or of a software-secured one. */
export type KeyAmr = 'hwk' | 'swk'

/**
 * A ceremony's challenge is good for this long: what the browser is told (`timeout`)
 * and how long the row may be presented. Long enough to find a security key and enter
 * its PIN; short, because a challenge is all a phishing relay needs.
 */
export const CHALLENGE_TTL_S = 300
/** Passkeys per user: a cap on the table, and more than anyone carries. */
export const MAX_CREDENTIALS = 20
/** Expired challenges deleted per statement by the purge. */
const PURGE_BATCH = 5000
// Ed25519, ES256, RS256: what authenticators in use create, strongest first.
const ALGORITHMS = [-8, -7, -257]

/** A 401 that says nothing of why: no oracle for which credentials or challenges exist. */
const signInFailed = () => new Unauthorized('Passkey sign-in failed')

/** The user handle of the WebAuthn ceremonies: the user id's 16 bytes (no username, no PII). */
export function userHandle (userId: string): Buffer {
  return Buffer.from(userId.replaceAll('-', ''), 'hex')
}

/** The challenge a response answers, read from its clientDataJSON; null if there is none. */
function challengeOf (clientDataJSON: string): Buffer | null {
  try {
    const { challenge } = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) as { challenge?: unknown }
    if (typeof challenge !== 'string') return null
    const bytes = Buffer.from(challenge, 'base64url')
    return bytes.length === 32 ? bytes : null
  } catch {
    return null
  }
}

export class WebAuthnService {
  constructor (
    private readonly db: Db,
    readonly repository: WebAuthnRepository,
    private readonly revocation: RevocationService,
    private readonly sessions: SessionService,
    private readonly audit: AuditService,
    private readonly mfa: MfaService,
    private readonly users: UserService,
    private readonly settings: WebAuthnSettings
  ) {}

  private async newChallenge (c: Challenge): Promise<Buffer> {
    const challenge = randomBytes(32)
    await this.repository.insertChallenge(challenge, c, CHALLENGE_TTL_S)
    return challenge
  }

  /**
   * Options for navigator.credentials.create(): a discoverable credential for the caller,
   * after the current password (a passkey signs in on its own: a stolen access token must
   * not be able to add one, and with it a way in that outlives the token).
   */
  async registrationOptions (caller: Caller, password: string, name: string | undefined, ctx: AuditContext): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const { generateRegistrationOptions } = await simpleWebAuthn()
    await this.users.checkPassword(caller.userId, password, ctx, 'mfa_change_failed')
    const existing = await this.repository.descriptors(caller.userId)
    if (existing.length >= MAX_CREDENTIALS) throw new Conflict(`At most ${MAX_CREDENTIALS} passkeys: delete one first`)
    const challenge = await this.newChallenge({ purpose: 'register', userId: caller.userId, sessionId: caller.sessionId, mfaTokenHash: null, name: name ?? null })
    return await generateRegistrationOptions({
      rpName: this.settings.rpName,
      rpID: this.settings.rpId,
      userID: new Uint8Array(userHandle(caller.userId)),
      userName: caller.username,
      userDisplayName: caller.username,
      challenge: new Uint8Array(challenge),
      timeout: CHALLENGE_TTL_S * 1000,
      attestationType: 'none',
      // The authenticator refuses to create a second credential for this account.
      excludeCredentials: existing.map((d) => ({ id: d.credentialId.toString('base64url'), transports: d.transports as AuthenticatorTransportFuture[] })),
      // Discoverable, so that it signs in without a username; user verification is asked
      // for here and required at a passwordless sign-in.
      authenticatorSelection: { residentKey: 'required', userVerification: 'preferred' },
      supportedAlgorithmIDs: ALGORITHMS
    })
  }

  /**
   * Verifies the attestation and stores the credential. The caller's session must still
   * be live when it commits; the user's other sessions end, as when any second factor
   * is enrolled (they were signed in without it).
   */
  async register (caller: Caller, response: PasskeyRegistration, ctx: AuditContext): Promise<CredentialInfo> {
    const { verifyRegistrationResponse } = await simpleWebAuthn()
    const bytes = challengeOf(response.response.clientDataJSON)
    const challenge = bytes === null ? null : await this.repository.takeChallenge(bytes)
    if (bytes === null || challenge?.purpose !== 'register' || challenge.userId !== caller.userId || challenge.sessionId !== caller.sessionId) {
      throw new PasskeyRejected('Unknown or expired challenge: ask for new options')
    }
    let verification
    try {
      verification = await verifyRegistrationResponse({
        // Transports the library does not know are kept as strings, as the browser sent them.
        response: response as RegistrationResponseJSON,
        expectedChallenge: bytes.toString('base64url'),
        expectedOrigin: this.settings.origins,
        expectedRPID: this.settings.rpId,
        requireUserVerification: false,
        supportedAlgorithmIDs: ALGORITHMS
      })
    } catch {
      throw new PasskeyRejected('The passkey could not be verified')
    }
    if (!verification.verified) throw new PasskeyRejected('The passkey could not be verified')
    const { credential, credentialDeviceType } = verification.registrationInfo
    return await this.revocation.revoke(async (client, revoked) => {
      await this.revocation.requireLiveSession(client, caller.userId, caller.sessionId)
      const stored = await this.repository.insert(caller.userId, {
        credentialId: Buffer.from(credential.id, 'base64url'),
        publicKey: Buffer.from(credential.publicKey),
        counter: credential.counter,
        transports: credential.transports ?? [],
        backupEligible: credentialDeviceType === 'multiDevice',
        name: challenge.name ?? 'Passkey'
      }, MAX_CREDENTIALS, client)
      if (stored === null) throw new Conflict('This passkey is registered already, or there are too many')
      // A second factor from now on: a password alone no longer signs in (users.mfa).
      await this.mfa.repository.syncFlag(caller.userId, client)
      await this.endSessions(client, revoked, caller.userId, { keep: caller.sessionId })
      await this.audit.record({ ...ctx, type: 'passkey_added', subjectId: caller.userId, detail: { credentialId: stored.id } }, client)
      return stored
    })
  }

  /** The caller's passkeys, oldest first. */
  async list (userId: string): Promise<CredentialInfo[]> {
    return await this.repository.list(userId)
  }

  /**
   * Deletes one of the caller's passkeys ("not found" for anyone else's). The sessions it
   * signed in end, and so do the user's other sessions, as when any second factor is
   * removed; the caller's own session goes on unless that passkey started it. The
   * caller's session must still be live when it commits.
   */
  async delete (caller: Caller, id: string, ctx: AuditContext): Promise<void> {
    await this.revocation.revoke(async (client, revoked) => {
      // The user's row (requireLiveSession), then the credential's, as a sign-in with it
      // takes them: one that has not committed is waited for, and the session it started
      // is ended below.
      await this.revocation.requireLiveSession(client, caller.userId, caller.sessionId)
      if (!await this.repository.lock(caller.userId, id, client)) throw new NotFound('Passkey not found')
      await this.endSessions(client, revoked, caller.userId, { keep: caller.sessionId, credentialId: id })
      await this.repository.delete(id, client)
      await this.mfa.repository.syncFlag(caller.userId, client)
      await this.audit.record({ ...ctx, type: 'passkey_removed', subjectId: caller.userId, detail: { credentialId: id } }, client)
    })
  }

  /**
   * Options for navigator.credentials.get(). Without an mfa_token: a passwordless
   * sign-in, any discoverable credential of this relying party, user verification
   * required. With one: the second step of that password login, one of its user's
   * passkeys (nothing else is offered, so nothing else can answer).
   */
  async authenticationOptions (mfaToken: string | undefined): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const { generateAuthenticationOptions } = await simpleWebAuthn()
    let challenge: Challenge = { purpose: 'login', userId: null, sessionId: null, mfaTokenHash: null, name: null }
    let allow: Array<{ credentialId: Buffer, transports: string[] }> = []
    if (mfaToken !== undefined) {
      const login = await this.mfa.pending(mfaToken)
      allow = login === null ? [] : await this.repository.descriptors(login.userId)
      if (login === null || allow.length === 0) throw new Unauthorized('Invalid or expired mfa_token, or no passkey for it')
      // Only the token's hash is kept, as the mfa module keeps it.
      challenge = { ...challenge, purpose: 'mfa', userId: login.userId, mfaTokenHash: mfaTokenHash(mfaToken) }
    }
    return await generateAuthenticationOptions({
      rpID: this.settings.rpId,
      challenge: new Uint8Array(await this.newChallenge(challenge)),
      timeout: CHALLENGE_TTL_S * 1000,
      allowCredentials: allow.map((d) => ({ id: d.credentialId.toString('base64url'), transports: d.transports as AuthenticatorTransportFuture[] })),
      userVerification: mfaToken === undefined ? 'required' : 'preferred'
    })
  }

  /**
   * Verifies an assertion and starts a session: amr ["hwk"] or ["swk"] for a passwordless
   * sign-in, ["pwd", …] for the second step of a password login. Every failure is the
   * same 401. A signature counter that did not move forward means a copy of the key is
   * in use: the credential is deleted and the sessions it started end (see cloned()).
   */
  async authenticate (response: PasskeyAssertion, meta: ClientMeta): Promise<IssuedSession> {
    const { verifyAuthenticationResponse } = await simpleWebAuthn()
    const bytes = challengeOf(response.response.clientDataJSON)
    const challenge = bytes === null ? null : await this.repository.takeChallenge(bytes)
    if (bytes === null || challenge === null || challenge.purpose === 'register') throw signInFailed()
    const credential = response.rawId === response.id ? await this.repository.find(Buffer.from(response.id, 'base64url')) : null
    if (credential === null) throw signInFailed()
    if (challenge.purpose === 'login'
      ? response.response.userHandle !== userHandle(credential.userId).toString('base64url')
      : challenge.userId !== credential.userId) throw signInFailed()
    let verification
    try {
      verification = await verifyAuthenticationResponse({
        response: { ...response, response: { ...response.response, userHandle: response.response.userHandle ?? undefined } } as AuthenticationResponseJSON,
        expectedChallenge: bytes.toString('base64url'),
        expectedOrigin: this.settings.origins,
        expectedRPID: this.settings.rpId,
        // The counter is checked where it is stored, atomically (repository.use), so
        // that two sign-ins at once cannot both pass with the same value.
        credential: { id: credential.credentialId.toString('base64url'), publicKey: new Uint8Array(credential.publicKey), counter: 0 },
        requireUserVerification: challenge.purpose === 'login'
      })
    } catch {
      throw signInFailed()
    }
    const { verified, authenticationInfo: info } = verification
    if (!verified) throw signInFailed()
    // The backup-eligible flag is in the signed authenticator data: a key that may be
    // synced to other devices is software-protected; one that never leaves its
    // authenticator is hardware-protected (docs/passkeys.md).
    const key: KeyAmr = credential.backupEligible || info.credentialDeviceType === 'multiDevice' ? 'swk' : 'hwk'
    const ctx = { actorId: credential.userId, ip: meta.ip }
    if (challenge.purpose === 'mfa') {
      const mfaToken = challenge.mfaTokenHash
      if (mfaToken === null) throw signInFailed()
      // The second step of a password login: the mfa module's, with this passkey as the
      // factor, checked in the transaction that uses the mfa_token up (its user's row is
      // locked first there, then the credential's).
      let regressed = false
      const check: FactorCheck = async (userId, client) => {
        if (userId !== credential.userId) return null
        if (!await this.repository.use(credential.id, info.newCounter, client)) {
          regressed = true
          return null
        }
        return { amr: [key], credentialId: credential.id }
      }
      try {
        return await this.sessions.completeLogin({ hash: mfaToken }, meta, check)
      } catch (err) {
        if (regressed) await this.cloned(credential.id, credential.userId, ctx)
        throw err
      }
    }
    const started = await this.db.transact(async (client) => {
      await this.repository.shareUser(credential.userId, client)
      if (!await this.repository.use(credential.id, info.newCounter, client)) return 'cloned' as const
      // A temporary password an admin set holds for a passkey too (the counter still moves).
      if (await this.users.hasTemporaryPassword(credential.userId, client)) return 'temporary' as const
      try {
        return await this.sessions.start(credential.userId, null, meta, [key], undefined, client, credential.id)
      } catch (err) {
        // The user was disabled or deleted: the same answer as every other failure.
        throw err instanceof BadCredentials ? signInFailed() : err
      }
    })
    if (started === 'temporary') return await this.users.refuseTemporaryPassword(credential.userId, ctx)
    return started === 'cloned' ? await this.cloned(credential.id, credential.userId, ctx) : started
  }

  /**
   * A valid signature whose counter did not move forward: two copies of the key exist
   * (or an assertion was held back and replayed, which the single-use challenge already
   * rules out). Which copy is genuine cannot be told, so neither may sign in any more:
   * the credential is deleted, the sessions it started end, and the event is audited;
   * the user signs in otherwise and registers a new passkey. Always a 401.
   */
  private async cloned (id: string, userId: string, ctx: AuditContext): Promise<never> {
    await this.revocation.revoke(async (client, revoked) => {
      await this.repository.shareUser(userId, client)
      if (!await this.repository.lock(userId, id, client)) return // deleted meanwhile
      await this.endSessions(client, revoked, userId, { credentialId: id })
      await this.repository.delete(id, client)
      await this.mfa.repository.syncFlag(userId, client)
      await this.audit.record({ ...ctx, actorId: null, type: 'passkey_cloned', subjectId: userId, detail: { credentialId: id } }, client)
    })
    throw signInFailed()
  }

  /**
   * Inside a revoking transaction, through the revocation path: ends every live session
   * of the user but `keep`, and every one the passkey `credentialId` signed in (`keep`
   * included).
   */
  private async endSessions (client: Queryable, revoked: RevocationSet, userId: string, which: { keep?: string, credentialId?: string }): Promise<void> {
    await this.revocation.holdUser(client, userId)
    const sids = [
      ...(which.keep === undefined ? [] : await this.sessions.repository.revokeOthers(userId, which.keep, client)),
      ...(which.credentialId === undefined ? [] : await this.repository.endSessions(which.credentialId, client))
    ]
    for (const sid of sids) revoked.session(userId, sid)
  }

  /** Deletes the challenges that expired, in batches; how many. */
  async purgeChallenges (): Promise<number> {
    return await inBatches(PURGE_BATCH, async (limit) => await this.repository.deleteExpiredChallenges(limit))
  }
}
