// /clients: registered clients (other services that authenticate with HTTP Basic), admin
// only (here at the door, and again where each change commits), every change audited. A secret is shown once, when it is made.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { bearer, errors, IdParams, ref } from '../../schemas/common.js'
import { Client, ClientCredentials, NewClientBody, UpdateClientBody } from '../../schemas/clients.js'
import { auditContext } from '../../plugins/app/audit/audit-service.js'

const noStore = { 'cache-control': { type: 'string', enum: ['no-store'], description: 'Never cached: it holds a secret' } }

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { clients, authenticate, requireRole } = fastify
  // Answers hold secrets or the list of who may call this service: never cached.
  fastify.addHook('onRequest', function (_request, reply, done) {
    reply.header('cache-control', 'no-store')
    done()
  })
  fastify.addHook('onRequest', authenticate)
  fastify.addHook('onRequest', requireRole('admin'))
  const security = bearer

  fastify.post('', {
    schema: {
      tags: ['admin'],
      operationId: 'createClient',
      summary: 'Register a client: its id and secret (shown this once)',
      description: 'The client authenticates with HTTP Basic `clientId:clientSecret` (RFC 6749 §2.3.1). Only a hash of the secret is kept: store it now.',
      security,
      body: ref(NewClientBody),
      response: {
        201: { ...ref(ClientCredentials, 'The new client, with its secret'), headers: noStore },
        ...errors(400, 401, 403, [409, 'The name is taken (in any case)', { message: 'Client name is already taken' }], 413, 415, 503)
      }
    }
  }, async function (request, reply) {
    return reply.code(201).send(await clients.create(request.body.name, auditContext(request), request.body.backchannelLogoutUri ?? null))
  })

  fastify.get('', {
    schema: {
      tags: ['admin'],
      operationId: 'listClients',
      summary: 'Registered clients, oldest first (never their secrets)',
      security,
      response: { 200: Type.Array(ref(Client), { description: 'Every registered client' }), ...errors(401, 403, 503) }
    }
  }, async function () {
    return await clients.list()
  })

  fastify.patch('/:id', {
    schema: {
      tags: ['admin'],
      operationId: 'updateClient',
      summary: 'Set or clear a client\'s back-channel logout URI',
      description: 'With a `backchannelLogoutUri`, every session that ends (logout, logout-all, session deleted, refresh-token ' +
        'reuse, password change, role change, disable, delete) is announced to it with a logout token (OpenID Connect ' +
        'Back-Channel Logout 1.0), retried until it is accepted. null: none; logout tokens still waiting for it are dropped.',
      security,
      params: IdParams,
      body: ref(UpdateClientBody),
      response: {
        200: { ...ref(Client, 'The client as it is now'), headers: noStore },
        ...errors(400, 401, 403, [404, 'No client with this id', { message: 'Client not found' }], 413, 415, 503)
      }
    }
  }, async function (request) {
    return await clients.setBackchannelLogoutUri(request.params.id, request.body.backchannelLogoutUri, auditContext(request))
  })

  fastify.delete('/:id', {
    schema: {
      tags: ['admin'],
      operationId: 'deleteClient',
      summary: 'Delete a client; its credentials are refused at once',
      security,
      params: IdParams,
      response: {
        204: Type.Null({ description: 'Deleted' }),
        ...errors(400, 401, 403, [404, 'No client with this id', { message: 'Client not found' }], 503)
      }
    }
  }, async function (request, reply) {
    await clients.delete(request.params.id, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.post('/:id/secret', {
    schema: {
      tags: ['admin'],
      operationId: 'rotateClientSecret',
      summary: 'Give a client a new secret (shown this once); the old one is refused at once',
      security,
      params: IdParams,
      response: {
        200: { ...ref(ClientCredentials, 'The client with its new secret'), headers: noStore },
        ...errors(400, 401, 403, [404, 'No client with this id', { message: 'Client not found' }], 503)
      }
    }
  }, async function (request) {
    return await clients.rotateSecret(request.params.id, auditContext(request))
  })
}

export default routes
