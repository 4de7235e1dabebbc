import { Type, type Static } from '@sinclair/typebox'
import { Cursor, PageQuery, Uuid } from './common.js'

export const AuditType = Type.Union([
  'register', 'login', 'login_failed', 'login_locked', 'logout', 'logout_all', 'refresh_reuse',
  'role_changed', 'password_changed', 'user_disabled', 'user_enabled', 'user_deleted',
  'session_revoked', 'rate_limited'
].map((t) => Type.Literal(t)))
export type AuditType = Static<typeof AuditType>

export const AuditEvent = Type.Object({
  id: Type.String({ description: 'Increasing event number' }),
  at: Type.String({ format: 'date-time' }),
  type: AuditType,
  actorId: Type.Union([Uuid, Type.Null()]),
  subjectId: Type.Union([Uuid, Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  detail: Type.Record(Type.String(), Type.Unknown())
}, { $id: 'AuditEvent' })
export type AuditEvent = Static<typeof AuditEvent>

export const AuditPage = Type.Object({
  items: Type.Array(Type.Unsafe<AuditEvent>(Type.Ref('AuditEvent'))),
  nextCursor: Type.Union([Cursor, Type.Null()])
}, { $id: 'AuditPage' })

export const AuditQuery = Type.Composite([PageQuery, Type.Object({
  userId: Type.Optional(Uuid)
})])
