// Fastify's own options: the one place that sets logging, limits, request ids and how
// input is validated. server.ts and the tests build the server with them.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { LogController, type FastifyServerOptions } from 'fastify'
import AjvCompiler from '@fastify/ajv-compiler'
import { pino, type DestinationStream } from 'pino'
import type { Config } from '../plugins/external/config.js'

/** Largest accepted body, JSON or form (@fastify/formbody has its own limit: app.ts). */
export const BODY_LIMIT = 16 * 1024

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

const ajvCompiler = AjvCompiler()

/**
 * JSON bodies are validated without coercion (12345678 or true where a string is expected
 * is a 400), while query strings and params are coerced as usual (?limit=20): two
 * compilers over the same shared schemas, chosen by the part of the request.
 */
const buildValidator: AjvCompiler.BuildCompilerFromPool = (externalSchemas, options) => {
  const rest = ajvCompiler(externalSchemas, options)
  // JTD schemas (not used here) have no coercion to turn off.
  if (options?.mode === 'JTD') return rest
  const body = ajvCompiler(externalSchemas, { ...options, customOptions: { ...options?.customOptions, coerceTypes: false } })
  // @fastify/ajv-compiler's types call the argument a schema; Fastify passes the route
  // definition, { schema, method, url, httpPart }.
  return (route) => (route as AjvCompiler.RouteDefinition).httpPart === 'body' ? body(route) : rest(route)
}

/**
 * Log lines go to stdout through pino's asynchronous destination, in blocks: the request
 * path never waits on a write(2). The request-logging plugin flushes it every second and
 * on close; pino flushes it on exit.
 */
function logDestination (): DestinationStream {
  return pino.destination({ dest: 1, minLength: 4096, sync: false })
}

function hopsTrusted (hops: number) {
  return (_address: string, hop: number) => hop < hops
}

/** `logStream`: where log lines go (tests pass their own); stdout by default. */
export function serverOptions (config: Config, logStream: DestinationStream = logDestination()): FastifyServerOptions {
  return {
    logger: {
      level: config.LOG_LEVEL,
      // Defence in depth: no log line here holds headers or bodies, but if one ever does,
      // secrets come out as [Redacted]. Explicit paths only: wildcards cost every line.
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]',
          'body.password', 'body.currentPassword', 'body.newPassword', 'body.refresh_token',
          'body.access_token', 'body.mfa_token', 'body.code', 'body.recovery_code', 'body.secret',
          'body.recoveryCodes'],
        censor: '[Redacted]'
      },
      stream: logStream
    },
    // One log line per request (plugins/external/request-logging.ts), not Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // A hop count as proxy-addr takes it (Fastify's types lack the number form).
    trustProxy: typeof config.trustProxy === 'number' ? hopsTrusted(config.trustProxy) : config.trustProxy,
    bodyLimit: BODY_LIMIT,
    // A client's X-Request-Id is kept when it is sane, so logs join up across services.
    requestIdHeader: false,
    genReqId: (req: IncomingMessage) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    // `example` is OpenAPI's annotation keyword: known to ajv, validates nothing.
    ajv: { customOptions: { allErrors: false, keywords: ['example'] } },
    schemaController: { compilersFactory: { buildValidator } },
    routerOptions: { maxParamLength: 200 },
    // During shutdown, a request already on an open connection is answered (Fastify adds
    // `Connection: close`) rather than refused: /ready says 503 `draining` itself.
    return503OnClosing: false
  }
}
