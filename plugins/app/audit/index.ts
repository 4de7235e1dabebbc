// Provides `fastify.audit`: security events in PostgreSQL (write and page through them).
import fp from 'fastify-plugin'
import { AuditRepository } from './audit-repository.js'
import { AuditService } from './audit-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    audit: AuditService
  }
}

export default fp(async function auditPlugin (fastify) {
  fastify.decorate('audit', new AuditService(new AuditRepository(fastify.db), fastify.log))
}, { name: 'audit', dependencies: ['db'] })
