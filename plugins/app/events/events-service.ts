// Security events for other services: what each change writes to the outbox (in the
// change's own transaction), the SSF streams registered clients manage, and poll delivery
// (RFC 8936). Pushing is the dispatcher's (dispatcher.ts). docs/integration.md, "Security
// events pushed to your service", is the receiver's side of it.
import { EventEmitter, once } from 'node:events'
import type { Client } from '../../../schemas/clients.js'
import type { PollRequest, PollResponse, SsfConfiguration, StreamConfig, StreamInput, StreamStatus } from '../../../schemas/ssf.js'
import { BadRequest, Conflict, InvalidClient, NotFound } from '../../../lib/errors.js'
import type { Db, Queryable } from '../../external/db.js'
import type { AuditService } from '../audit/audit-service.js'
import type { Revoked, RevocationReason } from '../revocation/revocation-service.js'
import type { EventsRepository, NewEvent, StreamFields, StreamRow } from './events-repository.js'
import { BACKCHANNEL_LOGOUT, EVENTS, POLL, PUSH, sessionSubject, SUPPORTED_EVENTS, userSubject, type EventSigner } from './tokens.js'

/** Who started a change, as CAEP's `initiating_entity` says it. */
export type InitiatingEntity = 'admin' | 'user' | 'policy' | 'system'

export interface CredentialChange {
  /** CAEP 1.0 credential types: `password`, `fido2-roaming`, `fido2-platform`, `app`, `x509`, … */
  credentialType: string
  changeType: 'create' | 'revoke' | 'update' | 'delete'
  initiatingEntity: InitiatingEntity
  /** A short machine-readable reason for admins (never a secret). */
  reason?: string
}

/** Streams one client may have: enough for a receiver's environments, not unbounded. */
export const MAX_STREAMS_PER_CLIENT = 10
/** A poll without `maxEvents` gets at most this many, and none gets more than POLL_MAX. */
const POLL_DEFAULT = 100
const POLL_MAX = 1000
/** A long poll waits at most this long for an event (RFC 8936 §2.4: the transmitter decides). */
const POLL_WAIT_MS = 30_000
/** …looking at the outbox this often, or at once when this instance commits an event. */
const POLL_RECHECK_MS = 500
/** A polled event not acknowledged within this long is returned by a later poll again. */
const POLL_LEASE_MS = 30_000

const INITIATED_BY: Record<RevocationReason, InitiatingEntity> = {
  logout: 'user',
  logout_all: 'user',
  session_deleted: 'user',
  password_changed: 'user',
  refresh_reuse: 'policy',
  lockout: 'policy',
  role_changed: 'admin',
  user_disabled: 'admin',
  user_deleted: 'admin',
  revoked: 'system'
}

export interface EventsOptions {
  /** The `iss` of the events: the access tokens' issuer (JWT_ISSUER), so `iss_sub` subjects match their claims. */
  issuer: string
  /** PUBLIC_URL: the service's external base URL, for the endpoints it advertises; unset, the request's own. */
  publicUrl?: string
}

export class EventsService {
  /** Emits 'committed' when this instance committed an event: a waiting long poll looks at once. */
  private readonly local = new EventEmitter()

  constructor (
    private readonly db: Db,
    private readonly repository: EventsRepository,
    /** Null when no asymmetric key is configured: then nothing is recorded, and the SSF endpoints answer 501. */
    readonly signer: EventSigner | null,
    private readonly audit: AuditService,
    private readonly opts: EventsOptions
  ) {
    this.local.setMaxListeners(0)
  }

  get enabled (): boolean {
    return this.signer !== null
  }

  private closing = false

  /** After a commit that wrote events (the dispatcher is woken beside this). */
  committed (): void {
    this.local.emit('committed')
  }

  /** The app is closing: long polls answer now rather than hold the shutdown. */
  close (): void {
    this.closing = true
    this.local.emit('committed')
  }

  // What changes write.

  /**
   * The events of the revocations one revoking transaction made, in its transaction
   * (RevocationService.onRevoke): for each, the specific event first (RISC account
   * disabled or purged), then CAEP session-revoked, which every revocation sends, so a
   * receiver that asks for that event alone learns of every one; and a logout token for
   * every client with a back-channel logout URI.
   */
  async recordRevocations (client: Queryable, revoked: readonly Revoked[]): Promise<void> {
    if (!this.enabled) return
    const iss = this.opts.issuer
    const now = Math.floor(Date.now() / 1000)
    const events: NewEvent[] = []
    for (const { userId, sid, reason } of revoked) {
      const subId = sid === null ? userSubject(iss, userId) : sessionSubject(iss, userId, sid)
      if (reason === 'user_disabled' || reason === 'user_deleted') {
        const type = reason === 'user_disabled' ? EVENTS.accountDisabled : EVENTS.accountPurged
        events.push({ subject: userId, eventType: type, claims: { sub_id: userSubject(iss, userId), events: { [type]: {} } } })
      }
      events.push({
        subject: userId,
        eventType: EVENTS.sessionRevoked,
        claims: {
          sub_id: subId,
          events: { [EVENTS.sessionRevoked]: { event_timestamp: now, initiating_entity: INITIATED_BY[reason], reason_admin: { en: reason } } }
        }
      })
      // Back-Channel Logout §2.4: without `sid`, every session of the user at the client ends.
      events.push({
        subject: userId,
        eventType: BACKCHANNEL_LOGOUT,
        claims: { sub: userId, ...(sid === null ? {} : { sid }), events: { [BACKCHANNEL_LOGOUT]: {} } }
      })
    }
    await this.repository.enqueue(client, events)
  }

  /**
   * CAEP credential-change for `userId`, in the caller's transaction: a password changed
   * or reset, a second factor added or removed. The sessions it ends send their own
   * session-revoked (through the revocation), after this one.
   */
  async credentialChange (client: Queryable, userId: string, change: CredentialChange): Promise<void> {
    await this.userEvent(client, userId, EVENTS.credentialChange, change.initiatingEntity, {
      credential_type: change.credentialType,
      change_type: change.changeType,
      ...(change.reason === undefined ? {} : { reason_admin: { en: change.reason } })
    })
  }

  /** CAEP token-claims-change: claims the user's tokens carry changed (a role), in the caller's transaction. */
  async claimsChange (client: Queryable, userId: string, claims: Record<string, string>, initiatingEntity: InitiatingEntity): Promise<void> {
    await this.userEvent(client, userId, EVENTS.tokenClaimsChange, initiatingEntity, { claims })
  }

  /** One CAEP event about a user, written in the caller's transaction. */
  private async userEvent (client: Queryable, userId: string, type: string, initiatingEntity: InitiatingEntity, body: Record<string, unknown>): Promise<void> {
    if (!this.enabled) return
    const event = { ...body, event_timestamp: Math.floor(Date.now() / 1000), initiating_entity: initiatingEntity }
    await this.repository.enqueue(client, [{
      subject: userId,
      eventType: type,
      claims: { sub_id: userSubject(this.opts.issuer, userId), events: { [type]: event } }
    }])
  }

  // The transmitter's description and streams (SSF 1.0).

  /** Where the endpoints are: PUBLIC_URL, or the origin the request came to. */
  base (requestOrigin: string): string {
    return (this.opts.publicUrl ?? requestOrigin).replace(/\/+$/, '')
  }

  configuration (base: string): SsfConfiguration {
    return {
      spec_version: '1_0',
      issuer: this.opts.issuer,
      jwks_uri: `${base}/.well-known/jwks.json`,
      delivery_methods_supported: [PUSH, POLL],
      configuration_endpoint: `${base}/ssf/streams`,
      status_endpoint: `${base}/ssf/streams/status`,
      verification_endpoint: `${base}/ssf/streams/verify`,
      authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:7617' }],
      default_subjects: 'ALL'
    }
  }

  private view (row: StreamRow, base: string): StreamConfig {
    return {
      stream_id: row.id,
      iss: this.opts.issuer,
      aud: row.aud,
      events_supported: SUPPORTED_EVENTS,
      events_requested: row.eventsRequested,
      events_delivered: row.eventsDelivered,
      delivery: row.deliveryMethod === 'push'
        ? { method: PUSH, endpoint_url: row.endpointUrl as string }
        : { method: POLL, endpoint_url: `${base}/ssf/poll/${row.id}` },
      ...(row.description === null ? {} : { description: row.description })
    }
  }

  /** A stream's fields from a receiver's body; what is left out is kept from `current`. */
  private fields (input: StreamInput, current?: StreamRow): StreamFields {
    const delivery = input.delivery
    const method = delivery === undefined ? current?.deliveryMethod ?? 'poll' : delivery.method === PUSH ? 'push' : 'poll'
    let endpointUrl: string | null = null
    let authorizationHeader: string | null = null
    if (method === 'push') {
      endpointUrl = delivery?.endpoint_url ?? current?.endpointUrl ?? null
      if (endpointUrl === null) throw new BadRequest('delivery.endpoint_url is required for push delivery')
      let url: URL
      try {
        url = new URL(endpointUrl)
      } catch {
        throw new BadRequest('delivery.endpoint_url is not a URL')
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new BadRequest('delivery.endpoint_url must be http(s)')
      authorizationHeader = delivery === undefined ? current?.authorizationHeader ?? null : delivery.authorization_header ?? null
    }
    const requested = input.events_requested ?? current?.eventsRequested ?? SUPPORTED_EVENTS
    return {
      deliveryMethod: method,
      endpointUrl,
      authorizationHeader,
      eventsRequested: requested,
      eventsDelivered: SUPPORTED_EVENTS.filter((e) => requested.includes(e)),
      description: input.description ?? current?.description ?? null
    }
  }

  /**
   * Inside a change's transaction, first: the client still exists when it commits (one
   * deleted while its request waited changes nothing: 401), and its streams are locked.
   */
  private async hold (tx: Queryable, client: Client): Promise<void> {
    if (!await this.repository.holdClient(tx, client.id)) throw new InvalidClient()
  }

  private async own (tx: Queryable, client: Client, streamId: string): Promise<StreamRow> {
    const [row] = await this.repository.streams(tx, client.id, streamId, true)
    if (row === undefined) throw new NotFound('Stream not found')
    return row
  }

  private async recordChange (tx: Queryable, client: Client, type: 'ssf_stream_created' | 'ssf_stream_updated' | 'ssf_stream_deleted', streamId: string, detail: Record<string, unknown> = {}): Promise<void> {
    await this.audit.record({ actorId: null, type, detail: { clientId: client.clientId, streamId, ...detail } }, tx)
  }

  async createStream (client: Client, input: StreamInput, base: string): Promise<StreamConfig> {
    return await this.db.transact(async (tx) => {
      // The client's row is locked first: two creations at once cannot both pass the cap.
      await this.hold(tx, client)
      const existing = await this.repository.streams(tx, client.id)
      if (existing.length >= MAX_STREAMS_PER_CLIENT) throw new Conflict(`A client may have at most ${MAX_STREAMS_PER_CLIENT} streams`)
      const id = await this.repository.insertStream(tx, client.id, this.fields(input))
      await this.recordChange(tx, client, 'ssf_stream_created', id)
      return this.view(await this.own(tx, client, id), base)
    })
  }

  async readStreams (client: Client, streamId: string | undefined, base: string): Promise<StreamConfig[]> {
    const rows = await this.repository.streams(this.db, client.id, streamId)
    if (streamId !== undefined && rows.length === 0) throw new NotFound('Stream not found')
    return rows.map((row) => this.view(row, base))
  }

  /** PATCH (`replace` false: what is left out is kept) or PUT (`replace` true: what is left out takes its default). */
  async updateStream (client: Client, streamId: string, input: StreamInput, base: string, replace: boolean): Promise<StreamConfig> {
    return await this.db.transact(async (tx) => {
      await this.hold(tx, client)
      const current = await this.own(tx, client, streamId)
      await this.repository.updateStream(tx, streamId, this.fields(input, replace ? undefined : current))
      await this.recordChange(tx, client, 'ssf_stream_updated', streamId)
      return this.view(await this.own(tx, client, streamId), base)
    })
  }

  async deleteStream (client: Client, streamId: string): Promise<void> {
    await this.db.transact(async (tx) => {
      await this.hold(tx, client)
      if (!await this.repository.deleteStream(tx, client.id, streamId)) throw new NotFound('Stream not found')
      await this.recordChange(tx, client, 'ssf_stream_deleted', streamId)
    })
  }

  async status (client: Client, streamId: string): Promise<StreamStatus> {
    const [row] = await this.repository.streams(this.db, client.id, streamId)
    if (row === undefined) throw new NotFound('Stream not found')
    return { stream_id: row.id, status: row.status, ...(row.statusReason === null ? {} : { reason: row.statusReason }) }
  }

  async setStatus (client: Client, update: StreamStatus): Promise<StreamStatus> {
    await this.db.transact(async (tx) => {
      await this.hold(tx, client)
      await this.own(tx, client, update.stream_id)
      await this.repository.setStatus(tx, update.stream_id, update.status, update.reason ?? null)
      await this.recordChange(tx, client, 'ssf_stream_updated', update.stream_id, { status: update.status })
    })
    return await this.status(client, update.stream_id)
  }

  /** SSF 1.0 §8.1.4: a verification event on the stream, delivered like any other. */
  async verify (client: Client, streamId: string, state: string | undefined): Promise<void> {
    await this.db.transact(async (tx) => {
      await this.hold(tx, client)
      const row = await this.own(tx, client, streamId)
      if (row.status !== 'enabled') throw new Conflict('The stream is not enabled')
      await this.repository.enqueue(tx, [{
        subject: `stream:${streamId}`,
        eventType: EVENTS.verification,
        streamId,
        claims: { sub_id: { format: 'opaque', id: streamId }, events: { [EVENTS.verification]: state === undefined ? {} : { state } } }
      }])
    })
  }

  /**
   * RFC 8936: acknowledges and reports errors first, then returns up to `maxEvents` SETs.
   * Without `returnImmediately`, waits (a long poll) until there is one, or at most
   * POLL_WAIT_MS.
   */
  async poll (client: Client, streamId: string, request: PollRequest, wait: { cancelled: () => boolean }): Promise<PollResponse> {
    const [row] = await this.repository.streams(this.db, client.id, streamId)
    if (row === undefined) throw new NotFound('Stream not found')
    if (row.deliveryMethod !== 'poll') throw new BadRequest('The stream delivers by push, not poll')
    await this.repository.acknowledge(this.db, streamId, request.ack ?? [])
    const errors = Object.entries(request.setErrs ?? {}).map(([jti, e]) => ({ jti, error: `${e.err}${e.description === undefined ? '' : ': ' + e.description}` }))
    await this.repository.reject(this.db, streamId, errors)
    const max = Math.min(request.maxEvents ?? POLL_DEFAULT, POLL_MAX)
    if (max === 0 || row.status !== 'enabled') return { sets: {} }
    const deadline = Date.now() + (request.returnImmediately === true ? 0 : POLL_WAIT_MS)
    for (;;) {
      const events = await this.repository.claimForPoll(this.db, streamId, max, POLL_LEASE_MS)
      if (events.length > 0) {
        const sets: Record<string, string> = {}
        for (const event of events) sets[event.jti] = (this.signer as EventSigner).sign(event, row.aud)
        const moreAvailable = events.length === max && await this.repository.hasDue(this.db, streamId)
        return { sets, ...(moreAvailable ? { moreAvailable } : {}) }
      }
      const left = deadline - Date.now()
      if (left <= 0 || wait.cancelled() || this.closing) return { sets: {} }
      await once(this.local, 'committed', { signal: AbortSignal.timeout(Math.min(left, POLL_RECHECK_MS)) }).catch(() => {})
    }
  }
}
