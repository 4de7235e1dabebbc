// /ssf: Shared Signals Framework 1.0 stream management and RFC 8936 poll delivery, for
// registered clients (HTTP Basic, as for introspection). Each client sees and changes only
// its own streams; another client's stream is "not found". Bodies use the specifications'
// member names. docs/integration.md, "Security events pushed to your service".
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { errors, ref, Uuid } from '../../schemas/common.js'
import type { Client } from '../../schemas/clients.js'
import { PollRequest, PollResponse, StreamConfig, StreamInput, StreamList, StreamQuery, StreamStatus, StreamUpdate, VerificationRequest } from '../../schemas/ssf.js'
import { InvalidClient, NotConfigured } from '../../lib/errors.js'
import type { EventsService } from '../../plugins/app/events/events-service.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The registered client a /ssf request authenticated as. */
    ssfClient: Client | null
  }
}

/** 501 while no key can sign events (the message says which settings would). */
export function requireEvents (events: EventsService) {
  return async function (): Promise<void> {
    if (!events.enabled) throw new NotConfigured('Security events need an asymmetric signing key: set JWT_PRIVATE_KEY or SSF_PRIVATE_KEY')
  }
}

const noStore = { 'cache-control': { type: 'string', enum: ['no-store'], description: 'Never cached' } }
const invalidClient = {
  ...errors([401, 'Missing or wrong client credentials', { code: 'AUTH_INVALID_CLIENT', message: 'Client authentication failed' }])[401],
  headers: { 'www-authenticate': { type: 'string', description: 'RFC 7617 challenge: `Basic realm="auth", charset="UTF-8"`' } }
}
const notFound: [number, string, { message: string }] = [404, 'No such stream of this client', { message: 'Stream not found' }]
const security = [{ basicAuth: [] }]
const RequiredStreamQuery = Type.Object({ stream_id: Uuid })

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { clients, events } = fastify
  fastify.decorateRequest('ssfClient', null)
  fastify.addHook('onRequest', async function (_request: FastifyRequest, reply: FastifyReply) {
    // Answers describe a client's receivers (and carry SETs): never cached.
    reply.header('cache-control', 'no-store')
  })
  fastify.addHook('onRequest', requireEvents(events))
  fastify.addHook('onRequest', async function (request: FastifyRequest) {
    const client = await clients.authenticateBasic(request.headers.authorization)
    if (client === null) throw new InvalidClient()
    request.ssfClient = client
  })
  const me = (request: FastifyRequest) => request.ssfClient as Client
  const base = (request: FastifyRequest) => events.base(`${request.protocol}://${request.host}`)
  const common = { tags: ['events'], security }

  fastify.post('/streams', {
    schema: {
      ...common,
      operationId: 'createStream',
      summary: 'Create a stream (SSF 1.0 §8.1.1.1)',
      description: 'Every user\'s events are in every stream (`default_subjects: ALL`). Push streams get each SET POSTed to ' +
        '`delivery.endpoint_url`; poll streams fetch them from the `endpoint_url` this answer gives. A client may have at most 10 streams.',
      body: ref(StreamInput),
      response: {
        201: { ...ref(StreamConfig, 'The new stream'), headers: noStore },
        ...errors(400, [409, 'The client has as many streams as it may', { message: 'A client may have at most 10 streams' }], 413, 415, 501, 503),
        401: invalidClient
      }
    }
  }, async function (request, reply) {
    return reply.code(201).send(await events.createStream(me(request), request.body, base(request)))
  })

  fastify.get('/streams', {
    schema: {
      ...common,
      operationId: 'readStreams',
      summary: 'A stream\'s configuration, or every stream of the client (SSF 1.0 §8.1.1.2)',
      querystring: StreamQuery,
      response: {
        200: { ...ref(StreamList, 'With `stream_id`, that stream; without, all of the client\'s (oldest first)'), headers: noStore },
        ...errors(400, notFound, 501, 503),
        401: invalidClient
      }
    }
  }, async function (request) {
    const streams = await events.readStreams(me(request), request.query.stream_id, base(request))
    return request.query.stream_id === undefined ? streams : streams[0]
  })

  for (const [method, replace] of [['PATCH', false], ['PUT', true]] as const) {
    fastify.route({
      method,
      url: '/streams',
      schema: {
        ...common,
        operationId: replace ? 'replaceStream' : 'updateStream',
        summary: replace ? 'Replace a stream\'s configuration (SSF 1.0 §8.1.1.4)' : 'Update a stream\'s configuration (SSF 1.0 §8.1.1.3)',
        body: ref(StreamUpdate),
        response: {
          200: { ...ref(StreamConfig, 'The stream as it is now'), headers: noStore },
          ...errors(400, notFound, 413, 415, 501, 503),
          401: invalidClient
        }
      },
      handler: async function (request) {
        const { stream_id: streamId, ...input } = request.body as StreamUpdate
        return await events.updateStream(me(request), streamId, input, base(request), replace)
      }
    })
  }

  fastify.delete('/streams', {
    schema: {
      ...common,
      operationId: 'deleteStream',
      summary: 'Delete a stream and the events it still held (SSF 1.0 §8.1.1.5)',
      querystring: RequiredStreamQuery,
      response: { 204: Type.Null({ description: 'Deleted' }), ...errors(400, notFound, 501, 503), 401: invalidClient }
    }
  }, async function (request, reply) {
    await events.deleteStream(me(request), request.query.stream_id)
    return reply.code(204).send(null)
  })

  fastify.get('/streams/status', {
    schema: {
      ...common,
      operationId: 'streamStatus',
      summary: 'A stream\'s status (SSF 1.0 §8.1.2.1)',
      querystring: RequiredStreamQuery,
      response: { 200: { ...ref(StreamStatus), headers: noStore }, ...errors(400, notFound, 501, 503), 401: invalidClient }
    }
  }, async function (request) {
    return await events.status(me(request), request.query.stream_id)
  })

  fastify.post('/streams/status', {
    schema: {
      ...common,
      operationId: 'updateStreamStatus',
      summary: 'Enable, pause or disable a stream (SSF 1.0 §8.1.2.2)',
      description: 'Paused: events are kept and delivered once enabled again (each for up to `EVENTS_MAX_AGE`). Disabled: ' +
        'events are not kept, and those held are dropped.',
      body: ref(StreamStatus),
      response: { 200: { ...ref(StreamStatus), headers: noStore }, ...errors(400, notFound, 413, 415, 501, 503), 401: invalidClient }
    }
  }, async function (request) {
    return await events.setStatus(me(request), request.body)
  })

  fastify.post('/streams/verify', {
    schema: {
      ...common,
      operationId: 'verifyStream',
      summary: 'Send a verification event on a stream (SSF 1.0 §8.1.4)',
      body: ref(VerificationRequest),
      response: {
        204: Type.Null({ description: 'Queued: it is delivered like any other event' }),
        ...errors(400, notFound, [409, 'The stream is not enabled', { message: 'The stream is not enabled' }], 413, 415, 501, 503),
        401: invalidClient
      }
    }
  }, async function (request, reply) {
    await events.verify(me(request), request.body.stream_id, request.body.state)
    return reply.code(204).send(null)
  })

  fastify.post('/poll/:streamId', {
    schema: {
      ...common,
      operationId: 'pollEvents',
      summary: 'Fetch and acknowledge a poll stream\'s SETs (RFC 8936)',
      description: 'Acknowledged SETs (`ack`) are not sent again, nor those reported in `setErrs`; SETs returned and not ' +
        'acknowledged within 30 s are returned again. Each SET is signed like a pushed one; dedupe by `jti`.',
      params: Type.Object({ streamId: Uuid }),
      body: ref(PollRequest),
      response: {
        200: { ...ref(PollResponse, 'SETs, oldest first (none when the wait ended without one)'), headers: noStore },
        ...errors([400, 'Invalid input, or the stream delivers by push'], notFound, 413, 415, 501, 503),
        401: invalidClient
      }
    }
  }, async function (request) {
    return await events.poll(me(request), request.params.streamId, request.body, { cancelled: () => request.raw.destroyed })
  })
}

export default routes
