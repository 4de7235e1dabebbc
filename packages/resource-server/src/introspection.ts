// Token introspection (RFC 7662) at the auth service, as a registered client: what decides
// when Redis cannot (a cache miss, Redis unreachable, a protocol it does not speak).

export interface IntrospectionOptions {
  /** `POST /oauth/introspect` of the auth service. */
  url: string
  clientId: string
  clientSecret: string
  /** The call gives up after this long (default 1 s): then the request is a 503. */
  timeoutMs?: number
}

/** RFC 7662 §2.2: `active`, and for an active token its claims. */
export interface IntrospectionResponse {
  active: boolean
  sub?: string
  sid?: string
  role?: string
  username?: string
  token_type?: string
  exp?: number
  [claim: string]: unknown
}

/** The auth service could not be asked, or did not answer as RFC 7662 says. */
export class IntrospectionError extends Error {}

// RFC 6749 §2.3.1: each half form-urlencoded before the Basic encoding.
function formEncode (value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+')
}

export type Introspect = (token: string) => Promise<IntrospectionResponse>

export function createIntrospector (opts: IntrospectionOptions): Introspect {
  const authorization = 'Basic ' + Buffer.from(`${formEncode(opts.clientId)}:${formEncode(opts.clientSecret)}`).toString('base64')
  const timeoutMs = opts.timeoutMs ?? 1000
  return async function introspect (token: string): Promise<IntrospectionResponse> {
    let res: Response
    try {
      res = await fetch(opts.url, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: `token=${encodeURIComponent(token)}&token_type_hint=access_token`,
        signal: AbortSignal.timeout(timeoutMs)
      })
    } catch (err) {
      throw new IntrospectionError(`introspection failed: ${(err as Error).message}`)
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {})
      // 401: this service's client credentials are wrong (or the client was deleted).
      throw new IntrospectionError(`introspection answered ${res.status}`)
    }
    let body: unknown
    try {
      body = await res.json()
    } catch {
      throw new IntrospectionError('introspection answered something that is not JSON')
    }
    if (typeof body !== 'object' || body === null || typeof (body as { active?: unknown }).active !== 'boolean') {
      throw new IntrospectionError('introspection answered without a boolean "active"')
    }
    return body as IntrospectionResponse
  }
}
