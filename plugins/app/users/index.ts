// Provides `fastify.users`: accounts in PostgreSQL, argon2id password hashing, and every
// change that must revoke a user's tokens (role, disable, delete, password).
import fp from 'fastify-plugin'
import { UsersRepository } from './users-repository.js'
import { UserService, type HashOptions } from './users-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    users: UserService
  }
}

export default fp<HashOptions>(async function usersPlugin (fastify, opts) {
  const users = new UserService(new UsersRepository(fastify.db), fastify.revocation, fastify.audit, fastify.lockout, opts, fastify.events)
  await users.init()
  fastify.decorate('users', users)
}, { name: 'users', dependencies: ['db', 'revocation', 'audit', 'lockout', 'events'] })
