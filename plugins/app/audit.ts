// Provides `fastify.audit`: security events in PostgreSQL (write and page through them).
import fp from 'fastify-plugin'
import type { AuditEvent, AuditType } from '../../schemas/audit.js'
import { decodeCursor, encodeCursor } from '../../lib/cursor.js'

declare module 'fastify' {
  interface FastifyInstance {
    audit: AuditService
  }
}

export interface AuditRecord {
  type: AuditType
  actorId?: string | null
  subjectId?: string | null
  ip?: string | null
  /** Never a password or a token: callers pass identifiers and reasons only. */
  detail?: Record<string, unknown>
}

interface Db { query: (text: string, values?: unknown[]) => Promise<{ rows: any[] }> }
interface Log { warn: (obj: object, msg: string) => void }

function toEvent (row: any): AuditEvent {
  return {
    id: String(row.id),
    at: row.at.toISOString(),
    type: row.type,
    actorId: row.actor_id,
    subjectId: row.subject_id,
    ip: row.ip,
    detail: row.detail
  }
}

export class AuditService {
  constructor (private readonly db: Db, private readonly log: Log) {}

  /** Records an event. Never throws: an audit failure must not fail the request it records. */
  async record (event: AuditRecord): Promise<void> {
    try {
      await this.db.query(
        'INSERT INTO audit_events (type, actor_id, subject_id, ip, detail) VALUES ($1, $2, $3, $4, $5)',
        [event.type, event.actorId ?? null, event.subjectId ?? null, event.ip ?? null, event.detail ?? {}])
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message }, auditType: event.type }, 'audit event not recorded')
    }
  }

  /** Newest first; the cursor is the last id seen, so concurrent inserts never shift a page. */
  async list (opts: { limit: number, cursor?: string, userId?: string }): Promise<{ items: AuditEvent[], nextCursor: string | null }> {
    const before = opts.cursor === undefined ? null : decodeCursor(opts.cursor, [/^[0-9]{1,18}$/])[0]
    const { rows } = await this.db.query(
      `SELECT id, at, type, actor_id, subject_id, ip, detail FROM audit_events
        WHERE ($1::bigint IS NULL OR id < $1::bigint)
          AND ($2::uuid IS NULL OR actor_id = $2::uuid OR subject_id = $2::uuid)
        ORDER BY id DESC LIMIT $3`,
      [before, opts.userId ?? null, opts.limit + 1])
    const items = rows.slice(0, opts.limit).map(toEvent)
    const nextCursor = rows.length > opts.limit ? encodeCursor([items[items.length - 1].id]) : null
    return { items, nextCursor }
  }
}

export default fp(async function auditPlugin (fastify) {
  fastify.decorate('audit', new AuditService(fastify.db, fastify.log))
}, { name: 'audit', dependencies: ['db'] })
