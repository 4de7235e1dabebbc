// Token introspection (RFC 7662) and revocation (RFC 7009): what other services ask about
// this service's tokens. An access token is decided as every request's is (the signature,
// then one Redis read: plugins/app/revocation/); a refresh token by its row in PostgreSQL.
// Revoking either ends its session through the same revoking transaction as a logout.
import { looksLikeJwt } from '@auth-service/fastify-resource-server/tokens'
import { TokenError, type Tokens } from '../../../lib/tokens.js'
import type { Introspection } from '../../../schemas/oauth.js'
import type { AuditContext, AuditService } from '../audit/audit-service.js'
import type { RevocationService } from '../revocation/revocation-service.js'
import type { SessionsRepository } from '../sessions/sessions-repository.js'
import { hashToken, type SessionService } from '../sessions/sessions-service.js'

export interface OAuthOptions {
  issuer: string
  audience: string
}

const INACTIVE: Introspection = { active: false }
const inactive = Promise.resolve(INACTIVE)

/** What the token is and whose session it belongs to, when it is live. */
type Found = { kind: 'access_token' | 'refresh_token', userId: string, sid: string } | null

export class OAuthService {
  constructor (
    private readonly tokens: Tokens,
    private readonly revocation: RevocationService,
    private readonly sessions: SessionService,
    private readonly repository: SessionsRepository,
    private readonly audit: AuditService,
    private readonly opts: OAuthOptions
  ) {}

  /**
   * Introspection of an access token, or null when `token` is not shaped like one. Its Redis
   * read is issued before this returns, so that a caller that checks its client in the same
   * tick has both commands sent in one round trip (ioredis auto-pipelining).
   */
  introspectAccess (token: string): Promise<Introspection> | null {
    if (!looksLikeJwt(token)) return null
    let claims
    try {
      claims = this.tokens.verify(token)
    } catch (err) {
      if (err instanceof TokenError) return inactive
      throw err
    }
    const { sub, sid, sca } = claims
    return this.revocation.isLive(sub, sid, sca, claims.exp).then((live) => live
      ? {
          active: true,
          sub,
          username: claims.preferred_username,
          role: claims.role,
          sid,
          token_type: 'access_token',
          exp: claims.exp,
          iat: claims.iat,
          iss: claims.iss,
          aud: claims.aud,
          jti: claims.jti,
          ...(claims.amr === undefined ? {} : { amr: claims.amr }),
          client_id: this.opts.audience
        }
      : INACTIVE)
  }

  /** Introspection of a refresh token: live while unused, unexpired and its session live. */
  async introspectRefresh (token: string): Promise<Introspection> {
    const hash = hashToken(token)
    const found = await this.repository.findLiveRefreshToken(hash)
    if (found === null) return INACTIVE
    return {
      active: true,
      sub: found.userId,
      username: found.username,
      role: found.role,
      sid: found.sid,
      token_type: 'refresh_token',
      exp: found.exp,
      iat: found.iat,
      iss: this.opts.issuer,
      aud: this.opts.audience,
      // The token's identity as stored (its SHA-256), never the token itself.
      jti: hash.toString('base64url'),
      amr: found.amr,
      client_id: this.opts.audience
    }
  }

  /** Either kind, whatever the hint says (RFC 7662 §2.1: the hint only orders the search). */
  async introspect (token: string): Promise<Introspection> {
    return await (this.introspectAccess(token) ?? this.introspectRefresh(token))
  }

  /**
   * RFC 7009: ends the session of a live access or refresh token (audited as a logout);
   * anything else (unknown, expired, already revoked, not ours) changes nothing.
   */
  async revoke (token: string, ctx: AuditContext): Promise<void> {
    const found = await this.find(token)
    if (found === null) return
    if (!await this.sessions.end(found.userId, found.sid)) return
    await this.audit.record({
      ...ctx,
      type: 'logout',
      actorId: found.userId,
      subjectId: found.userId,
      detail: { sessionId: found.sid, via: 'oauth_revoke', tokenType: found.kind }
    })
  }

  private async find (token: string): Promise<Found> {
    if (looksLikeJwt(token)) {
      try {
        const { sub, sid } = this.tokens.verify(token)
        return { kind: 'access_token', userId: sub, sid }
      } catch (err) {
        if (err instanceof TokenError) return null
        throw err
      }
    }
    const found = await this.repository.findLiveRefreshToken(hashToken(token))
    return found === null ? null : { kind: 'refresh_token', userId: found.userId, sid: found.sid }
  }
}
