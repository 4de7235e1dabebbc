// Provides `fastify.clients`: registered clients (other services), their secrets, and the
// HTTP Basic check of their credentials (clients-service.ts).
import fp from 'fastify-plugin'
import { ClientsRepository } from './clients-repository.js'
import { ClientsService } from './clients-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    clients: ClientsService
  }
}

export default fp(async function clientsPlugin (fastify) {
  const { db, redis, users, audit } = fastify
  fastify.decorate('clients', new ClientsService(new ClientsRepository(), db, redis, users, audit))
}, { name: 'clients', dependencies: ['db', 'redis', 'users', 'audit'] })
