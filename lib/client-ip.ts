// The client's address: what is stored (sessions, audit) and what limits are keyed on.
import { isIP } from 'node:net'
import type { FastifyRequest } from 'fastify'

/**
 * The client's IP address as TRUST_PROXY lets Fastify find it, provided it is one. An
 * `X-Forwarded-For` entry that is not an address (a proxy that passes the client's header
 * on unchecked, a hop count set too high) never becomes the client: the nearest hop that
 * is an address stands in for it, so nothing but an IP address is stored or keyed on.
 */
export function clientIp (request: FastifyRequest): string {
  const ip = request.ip
  if (isIP(ip) !== 0) return ip
  // Only with TRUST_PROXY: the socket's address first, the claimed client last.
  const hops = request.ips ?? []
  for (let i = hops.length - 2; i >= 0; i--) {
    if (isIP(hops[i]) !== 0) return hops[i]
  }
  return request.socket?.remoteAddress ?? '0.0.0.0'
}

/**
 * What per-client limits (rate limits, lockouts) are keyed on: an IPv4 address as it is,
 * an IPv6 address by its /64. One IPv6 host usually holds a whole /64 and can change
 * address within it at will; keyed by address, every new one would start afresh.
 * IPv4-mapped IPv6 addresses count as their IPv4 address.
 */
export function clientKey (ip: string): string {
  if (isIP(ip) !== 6) return ip
  const groups = ipv6Groups(ip)
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff].join('.')
  }
  return groups.slice(0, 4).map((g) => g.toString(16)).join(':') + '::/64'
}

/** The eight 16-bit groups of a valid IPv6 address (zone dropped, IPv4 tail converted). */
function ipv6Groups (ip: string): number[] {
  let text = ip.split('%', 1)[0].toLowerCase()
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number)
    text = text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16)
  }
  const [head, tail] = text.split('::')
  const parse = (part: string | undefined) => part === undefined || part === '' ? [] : part.split(':').map((g) => parseInt(g, 16))
  const left = parse(head)
  const right = parse(tail)
  return [...left, ...new Array(8 - left.length - right.length).fill(0), ...right]
}
