// Shared Signals Framework 1.0 bodies (stream management, RFC 8936 poll). Their member names
// are the specifications' (snake_case, `maxEvents`), as token responses follow OAuth's.
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { NO_NUL, Uuid, UUID_PATTERN } from './common.js'

const PUSH = 'urn:ietf:rfc:8935'
const POLL = 'urn:ietf:rfc:8936'

const EventType = Type.String({ minLength: 1, maxLength: 256, pattern: NO_NUL, description: 'An event type URI' })

const Delivery = Type.Object({
  method: Type.Union([Type.Literal(PUSH), Type.Literal(POLL)], { description: '`urn:ietf:rfc:8935` push (this service POSTs each SET) or `urn:ietf:rfc:8936` poll (the receiver fetches them)' }),
  endpoint_url: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, pattern: NO_NUL, description: 'Push: where the SETs are POSTed (http or https). Poll: set by this service' })),
  authorization_header: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, pattern: '^[\\x20-\\x7e]+$', description: 'Push: sent as the `Authorization` header of every POST. Never shown back' }))
})

const streamInputFields = {
  delivery: Type.Optional(Delivery),
  events_requested: Type.Optional(Type.Array(EventType, { maxItems: 32, description: 'Event types wanted; left out: every supported one' })),
  description: Type.Optional(Type.String({ maxLength: 256, pattern: NO_NUL }))
}

export const StreamInput = Type.Object(streamInputFields, {
  $id: 'SsfStreamInput',
  description: 'A stream to create (SSF 1.0 §8.1.1.1); read-only members (`iss`, `aud`, `events_supported`, …) are ignored',
  example: { delivery: { method: PUSH, endpoint_url: 'https://receiver.example.com/events', authorization_header: 'Bearer receiver-secret' }, events_requested: ['https://schemas.openid.net/secevent/caep/event-type/session-revoked'] }
})
export type StreamInput = Static<typeof StreamInput>

export const StreamUpdate = Type.Object({ stream_id: Uuid, ...streamInputFields }, {
  $id: 'SsfStreamUpdate',
  description: 'PATCH: the members given change; PUT: the whole configuration (what is left out takes its default)'
})
export type StreamUpdate = Static<typeof StreamUpdate>

export const StreamConfig = Type.Object({
  stream_id: Uuid,
  iss: Type.String({ description: 'The `iss` of every SET: the access tokens\' issuer' }),
  aud: Type.String({ description: 'The `aud` of every SET: the owning client\'s `clientId`' }),
  events_supported: Type.Array(Type.String()),
  events_requested: Type.Array(Type.String()),
  events_delivered: Type.Array(Type.String(), { description: 'What the stream gets: the requested types this service supports' }),
  delivery: Type.Object({ method: Type.String(), endpoint_url: Type.String() }),
  description: Type.Optional(Type.String())
}, { $id: 'SsfStream', description: 'A stream\'s configuration (SSF 1.0 §8.1.1)' })
export type StreamConfig = Static<typeof StreamConfig>

export const StreamList = Type.Union([Type.Ref('SsfStream'), Type.Array(Type.Ref('SsfStream'))], {
  $id: 'SsfStreams',
  description: 'With `stream_id`, that stream; without, every stream of the client (oldest first)'
})

export const StreamStatus = Type.Object({
  stream_id: Uuid,
  status: Type.Union([Type.Literal('enabled'), Type.Literal('paused'), Type.Literal('disabled')], {
    description: '`enabled`: delivering. `paused`: events are kept (up to EVENTS_MAX_AGE) and delivered once enabled. `disabled`: events are not kept'
  }),
  reason: Type.Optional(Type.String({ maxLength: 256, pattern: NO_NUL }))
}, { $id: 'SsfStreamStatus', description: 'SSF 1.0 §8.1.2' })
export type StreamStatus = Static<typeof StreamStatus>

export const VerificationRequest = Type.Object({
  stream_id: Uuid,
  state: Type.Optional(Type.String({ maxLength: 256, pattern: NO_NUL, description: 'Echoed in the verification event' }))
}, { $id: 'SsfVerificationRequest', description: 'SSF 1.0 §8.1.4.2' })
export type VerificationRequest = Static<typeof VerificationRequest>

export const StreamQuery = Type.Object({ stream_id: Type.Optional(Uuid) })

const Jti = Type.String({ pattern: UUID_PATTERN })

export const PollRequest = Type.Object({
  maxEvents: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: 'At most this many SETs (default 100); 0 only acknowledges' })),
  returnImmediately: Type.Optional(Type.Boolean({ description: 'true: answer at once, even with none; false (default): wait up to 30 s for one' })),
  ack: Type.Optional(Type.Array(Jti, { maxItems: 1000, description: 'jti of SETs received and processed: not sent again' })),
  setErrs: Type.Optional(Type.Record(Jti, Type.Object({
    err: Type.String({ maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$' }),
    description: Type.Optional(Type.String({ maxLength: 128, pattern: NO_NUL }))
  }), { maxProperties: 1000, description: 'SETs that could not be processed: recorded as failed, not sent again' }))
}, { $id: 'SsfPollRequest', description: 'RFC 8936 §2.4' })
export type PollRequest = Static<typeof PollRequest>

export const PollResponse = Type.Object({
  sets: Type.Record(Type.String(), Type.String(), { description: 'SETs by jti, oldest first' }),
  moreAvailable: Type.Optional(Type.Boolean())
}, { $id: 'SsfPollResponse', description: 'RFC 8936 §2.5' })
export type PollResponse = Static<typeof PollResponse>

export const SsfConfiguration = Type.Object({
  spec_version: Type.String(),
  issuer: Type.String(),
  jwks_uri: Type.String(),
  delivery_methods_supported: Type.Array(Type.String()),
  configuration_endpoint: Type.String(),
  status_endpoint: Type.String(),
  verification_endpoint: Type.String(),
  authorization_schemes: Type.Array(Type.Object({ spec_urn: Type.String() })),
  default_subjects: Type.String()
}, { $id: 'SsfConfiguration', description: 'SSF 1.0 §7.1 transmitter configuration metadata' })
export type SsfConfiguration = Static<typeof SsfConfiguration>

/** Added once with addSchema (schemas/index.ts): named OpenAPI components. */
export const ssfSchemas: TSchema[] = [StreamInput, StreamUpdate, StreamConfig, StreamList, StreamStatus, VerificationRequest, PollRequest,
  PollResponse, SsfConfiguration]
