// Provides `fastify.audit`: security events in PostgreSQL (write and page through them),
// and their deletion after AUDIT_RETENTION_DAYS.
import fp from 'fastify-plugin'
import { purgeEvery } from '../../../lib/periodic.js'
import { AuditRepository } from './audit-repository.js'
import { AuditService } from './audit-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    audit: AuditService
  }
}

export interface AuditOptions {
  retentionDays: number
  /** How often old events are purged (ms); 0 turns it off. */
  purgeIntervalMs?: number
}

export default fp<AuditOptions>(async function auditPlugin (fastify, opts) {
  const audit = new AuditService(new AuditRepository(fastify.db), fastify.log)
  fastify.decorate('audit', audit)

  purgeEvery(fastify, opts.purgeIntervalMs ?? 10 * 60 * 1000, 'old audit events', async () => await audit.purgeOlderThan(opts.retentionDays))
}, { name: 'audit', dependencies: ['db'] })
