// Provides `fastify.audit`: security events in PostgreSQL (write and page through them),
// and their deletion after AUDIT_RETENTION_DAYS.
import fp from 'fastify-plugin'
import { periodic } from '../../../lib/periodic.js'
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

  // On every instance: batches skip the rows another instance is deleting.
  const every = opts.purgeIntervalMs ?? 10 * 60 * 1000
  if (every > 0) {
    const stop = periodic(every, async () => {
      const n = await audit.purgeOlderThan(opts.retentionDays)
      if (n > 0) fastify.log.info({ purged: n }, 'old audit events purged')
    }, (err) => fastify.log.warn({ err: { message: err.message } }, 'audit purge failed'))
    fastify.addHook('onClose', async () => await stop())
  }
}, { name: 'audit', dependencies: ['db'] })
