// The Redis revocation protocol, version 1: the keys the auth service writes, and the one
// decision every reader makes from them. The auth service and this plugin both import it,
// so the service's own check and a downstream service's check are the same code.
// Specification: docs/revocation.md, "The Redis protocol, version 1".

/** The protocol version this code reads and the service writes. */
export const PROTOCOL_VERSION = '1'

/**
 * The marker key (after the key prefix). The service writes PROTOCOL_VERSION there at
 * start-up and whenever it re-creates a user's hash (after a FLUSHALL); a reader that
 * finds anything else must not decide from Redis.
 */
export const PROTOCOL_KEY = 'revocation:protocol'

/**
 * `s:<sid>` values: a session found dead (`x`) or live in PostgreSQL (`ok`), each possibly
 * followed by `:<until>` (unix seconds until which the service keeps the field; readers
 * ignore it).
 */
export const SESSION_DEAD = 'x'
export const SESSION_LIVE = 'ok'

function isState (value: string, state: string): boolean {
  return value.startsWith(state) && (value.length === state.length || value.charCodeAt(state.length) === 58 /* : */)
}

/**
 * The key of a user's revocation hash, after the key prefix. The braces make the user id
 * a Redis Cluster hash tag: all of a user's state is in one slot.
 */
export function userKey (userId: string): string {
  return '{' + userId + '}'
}

/**
 * The hash fields a check reads, in the order `decide` takes their values: the user's
 * `ra` (revoked after, µs since the epoch on the database clock) and the session's state.
 */
export function checkFields (sid: string): [string, string] {
  return ['ra', 's:' + sid]
}

/**
 * What the cache says about a token: `live`, `revoked`, or `unknown` (a field is missing:
 * first use, eviction, FLUSHALL; ask the service, which reads PostgreSQL).
 */
export type CacheDecision = 'live' | 'revoked' | 'unknown'

/**
 * The decision from the values HMGET returned for `checkFields(sid)` (in that order) and
 * the token's `sca` claim (its session's creation time, µs). A session created at or
 * before the user's `ra` is dead (a tie counts as dead: both instants come from one clock).
 */
export function decide (values: ReadonlyArray<string | null>, sca: number): CacheDecision {
  const ra = values[0]
  const s = values[1]
  if (s !== null && s !== undefined && isState(s, SESSION_DEAD)) return 'revoked'
  if (ra === null || ra === undefined) return 'unknown'
  const revokedAfter = Number(ra)
  // Not a number: not written by this protocol; PostgreSQL decides.
  if (!Number.isFinite(revokedAfter)) return 'unknown'
  if (sca <= revokedAfter) return 'revoked'
  return s !== null && s !== undefined && isState(s, SESSION_LIVE) ? 'live' : 'unknown'
}
