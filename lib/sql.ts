// SQL fragments for the one unit in which instants are compared (docs/revocation.md).

/**
 * SQL for a timestamptz as µs since the epoch (bigint): the one unit in which session
 * creation times and revoked_after are compared, in SQL, in tokens (`sca`) and in Redis
 * (`ra`). Defined once so no copy can round differently.
 */
export function epochUs (expr: string): string {
  return `(extract(epoch FROM ${expr}) * 1000000)::bigint`
}

/** The inverse of epochUs, exact (integer interval arithmetic, no floating point). */
export function fromEpochUs (expr: string): string {
  return `(timestamptz 'epoch' + ${expr}::bigint * interval '1 microsecond')`
}
