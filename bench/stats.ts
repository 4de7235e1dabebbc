// What one measurement (a load-generator run or the argon2 loop) reports, and percentiles.

export interface LoadResult {
  /** Successful (2xx) responses, or successful verifications. */
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  durationSec: number
  /** Successful responses per second. */
  rps: number
  /** Latency percentiles of successful responses, ms. */
  p50: number
  p99: number
  /** CPU used by the measuring process, % of one core. */
  genCpuPct: number
}

/** Nearest-rank percentile of an ascending array. */
export function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

export function median (values: number[]): number {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}
