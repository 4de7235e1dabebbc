// Security events: recorded by the services as they act, paged through by admins, and
// deleted after AUDIT_RETENTION_DAYS.
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { AuditEvent, AuditType } from '../../../schemas/audit.js'
import { decodeCursor, encodeCursor } from '../../../lib/cursor.js'
import { clientIp } from '../../../lib/client-ip.js'
import type { Queryable } from '../../external/db.js'
import type { AuditRepository } from './audit-repository.js'

export interface AuditRecord {
  type: AuditType
  actorId?: string | null
  subjectId?: string | null
  /**
   * Instead of subjectId: the username an event is about (a login refused for a locked
   * username); the subject is its user, when there is one. Resolved in the INSERT itself,
   * so the request that caused the event neither waits for nor reveals the lookup.
   */
  subjectUsername?: string
  ip?: string | null
  /** Never a password or a token: callers pass identifiers and reasons only. */
  detail?: Record<string, unknown>
}

/** Who acts and from where: what every event a request causes repeats. */
export interface AuditContext {
  actorId: string | null
  /** The session of the actor's token: a write checks it is still live when it commits. */
  sessionId?: string | null
  ip: string
}

/**
 * Who makes a change: a request (its AuditContext), or the operator at the admin command
 * line, who has no account, session or client address (all null).
 */
export interface ChangeContext extends Omit<AuditContext, 'ip'> {
  ip: string | null
}

/** The request's audit context: its signed-in user and session (none before authentication) and client IP. */
export function auditContext (request: FastifyRequest): AuditContext {
  return { actorId: request.user?.sub ?? null, sessionId: request.user?.sid ?? null, ip: clientIp(request) }
}

/** Events deleted per statement by the retention purge. */
const PURGE_BATCH = 5000

export class AuditService {
  constructor (private readonly repository: AuditRepository, private readonly log: FastifyBaseLogger) {}

  /**
   * Records an event. With `client`, inside the caller's transaction: the event commits
   * with the change it records, or neither does (a change is never left unrecorded).
   * Without one (events of failures that change nothing: a failed or refused login), it
   * never throws: an audit failure must not fail the request it records.
   */
  async record (event: AuditRecord, client?: Queryable): Promise<void> {
    if (client !== undefined) {
      await this.repository.insert(event, client)
      return
    }
    try {
      await this.repository.insert(event)
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message }, auditType: event.type }, 'audit event not recorded')
    }
  }

  /** Newest first; the cursor is the last id seen, so concurrent inserts never shift a page. */
  async list (opts: { limit: number, cursor?: string, userId?: string }): Promise<{ items: AuditEvent[], nextCursor: string | null }> {
    const before = opts.cursor === undefined ? null : decodeCursor(opts.cursor, [/^[0-9]{1,18}$/])[0]
    const rows = await this.repository.list(before, opts.userId ?? null, opts.limit + 1)
    const items = rows.slice(0, opts.limit)
    const nextCursor = rows.length > opts.limit ? encodeCursor([items[items.length - 1].id]) : null
    return { items, nextCursor }
  }

  /** Deletes the events older than `days` days, in batches; how many. */
  async purgeOlderThan (days: number): Promise<number> {
    let total = 0
    for (;;) {
      const n = await this.repository.deleteOlderThan(days, PURGE_BATCH)
      total += n
      if (n < PURGE_BATCH) return total
    }
  }
}
