// What the security events say and how they are signed: Security Event Tokens (RFC 8417)
// carrying CAEP 1.0 / RISC events under SSF 1.0, and OpenID Connect Back-Channel Logout
// tokens. The catalogue and the subject formats are documented in docs/integration.md,
// "Security events pushed to your service".
import { createSigner, type Algorithm } from 'fast-jwt'
import type { AsymmetricAlgorithm } from '../../../lib/keys.js'

export const EVENTS = {
  sessionRevoked: 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
  credentialChange: 'https://schemas.openid.net/secevent/caep/event-type/credential-change',
  tokenClaimsChange: 'https://schemas.openid.net/secevent/caep/event-type/token-claims-change',
  accountDisabled: 'https://schemas.openid.net/secevent/risc/event-type/account-disabled',
  accountPurged: 'https://schemas.openid.net/secevent/risc/event-type/account-purged',
  verification: 'https://schemas.openid.net/secevent/ssf/event-type/verification'
} as const

/** What a stream may request; the verification event is always delivered. */
export const SUPPORTED_EVENTS: string[] = [EVENTS.sessionRevoked, EVENTS.credentialChange, EVENTS.tokenClaimsChange,
  EVENTS.accountDisabled, EVENTS.accountPurged]

/** The event of a logout token (OpenID Connect Back-Channel Logout 1.0 §2.4). */
export const BACKCHANNEL_LOGOUT = 'http://schemas.openid.net/event/backchannel-logout'

/** SSF delivery methods: push (RFC 8935) and poll (RFC 8936). */
export const PUSH = 'urn:ietf:rfc:8935'
export const POLL = 'urn:ietf:rfc:8936'

/**
 * A logout token is short-lived (the specification suggests two minutes): each delivery
 * attempt signs a fresh one with the same jti, so a retry hours later is still accepted.
 */
const LOGOUT_TOKEN_TTL_MS = 120_000

/** A key that signs events: the access tokens' asymmetric key, or SSF_PRIVATE_KEY. */
export interface EventKey {
  alg: AsymmetricAlgorithm
  kid: string
  privatePem: string
}

/** An outbox row as the signer needs it: the claims fixed when it was written. */
export interface OutgoingEvent {
  jti: string
  eventType: string
  claims: Record<string, unknown>
  createdAt: Date
}

/** RFC 9493 subject identifiers: a user is the `iss`/`sub` pair its access tokens carry. */
export function userSubject (issuer: string, userId: string): Record<string, unknown> {
  return { format: 'iss_sub', iss: issuer, sub: userId }
}

/** One session of a user: the user as above, the session by the `sid` of its tokens. */
export function sessionSubject (issuer: string, userId: string, sid: string): Record<string, unknown> {
  return { format: 'complex', user: userSubject(issuer, userId), session: { format: 'opaque', id: sid } }
}

export class EventSigner {
  private readonly signSet
  private readonly signLogout

  constructor (key: EventKey, readonly issuer: string) {
    const common = { key: key.privatePem, algorithm: key.alg as Algorithm, kid: key.kid, iss: issuer }
    // RFC 8417 §2.3: explicit typing, so a SET can never pass for an access or ID token.
    this.signSet = createSigner({ ...common, header: { alg: key.alg, typ: 'secevent+jwt' } })
    this.signLogout = createSigner({ ...common, header: { alg: key.alg, typ: 'logout+jwt' }, expiresIn: LOGOUT_TOKEN_TTL_MS })
  }

  /** The token for `aud` (the receiving client's id): a SET, or a logout token. */
  sign (event: OutgoingEvent, aud: string): string {
    if (event.eventType === BACKCHANNEL_LOGOUT) {
      return this.signLogout({ ...event.claims, aud, jti: event.jti })
    }
    return this.signSet({ ...event.claims, aud, jti: event.jti, iat: Math.floor(event.createdAt.getTime() / 1000) })
  }
}
