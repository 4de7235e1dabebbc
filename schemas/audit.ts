import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Cursor, optionalDefaults, PageQuery, Uuid, UUID_PATTERN } from './common.js'

export const AuditType = Type.Union([
  'register', 'login', 'login_failed', 'login_locked', 'logout', 'logout_all', 'refresh_reuse',
  'role_changed', 'password_changed', 'user_disabled', 'user_enabled', 'user_deleted',
  'session_revoked', 'rate_limited', 'client_created', 'client_deleted', 'client_secret_rotated',
  'password_change_failed', 'lockout_cleared', 'password_reset_requested', 'password_reset',
  'email_changed', 'email_verified', 'client_updated', 'ssf_stream_created', 'ssf_stream_updated',
  'ssf_stream_deleted', 'mfa_challenge', 'mfa_failed', 'mfa_locked', 'mfa_enabled',
  'mfa_disabled', 'mfa_reset', 'mfa_recovery_used', 'mfa_recovery_regenerated', 'mfa_change_failed',
  'passkey_added', 'passkey_removed', 'passkey_cloned',
  // Administration (issue 16): an account an admin or the operator created, a temporary
  // password set, a login refused until it is changed, a wrong password when deleting oneself.
  'user_created', 'password_set', 'password_change_required', 'account_delete_failed'
].map((t) => Type.Literal(t)))
export type AuditType = Static<typeof AuditType>

export const AuditEvent = Type.Object({
  id: Type.String({ description: 'Increasing event number' }),
  at: Type.String({ format: 'date-time' }),
  type: AuditType,
  actorId: Type.Union([Uuid, Type.Null()]),
  subjectId: Type.Union([Uuid, Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  detail: Type.Record(Type.String(), Type.Unknown(), { description: 'Type-specific facts, e.g. `{ from, to }` of a role change' })
}, {
  $id: 'AuditEvent',
  description: 'A security event',
  example: {
    id: '42',
    at: '2025-01-31T12:00:00.000Z',
    type: 'role_changed',
    actorId: '0b6e1c2d-4f3a-4b5c-9d8e-7f6a5b4c3d2e',
    subjectId: '2f1c5a3e-8b7d-4c6a-9e0f-1a2b3c4d5e6f',
    ip: '127.0.0.1',
    detail: { from: 'user', to: 'admin' }
  }
})
export type AuditEvent = Static<typeof AuditEvent>

export const AuditPage = Type.Object({
  items: Type.Array(Type.Unsafe<AuditEvent>(Type.Ref('AuditEvent'))),
  nextCursor: Type.Union([Cursor, Type.Null()])
}, { $id: 'AuditPage', description: 'A page of audit events, newest first' })

export const AuditQuery = optionalDefaults(Type.Composite([PageQuery, Type.Object({
  userId: Type.Optional(Type.String({ format: 'uuid', pattern: UUID_PATTERN, description: 'Only events whose actor or subject is this user' }))
})]))

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const auditSchemas: TSchema[] = [AuditEvent, AuditPage]
