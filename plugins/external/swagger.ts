// Provides the OpenAPI 3 document (GET /docs/json) built from the routes' TypeBox
// schemas, and Swagger UI (GET /docs) whose Authorize button uses the password grant.
import fp from 'fastify-plugin'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import { DOCUMENT_HEADERS, securityHeaders } from './security.js'

export default fp(async function swaggerPlugin (fastify) {
  await fastify.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Auth service',
        version: '1.0.0',
        description: 'Registration, login and JWT access tokens that stop working on the very next request after a role change or the end of a session.'
      },
      tags: [
        { name: 'auth', description: 'Sign in, tokens and sessions' },
        { name: 'recovery', description: 'Password reset and email verification (mail over SMTP)' },
        { name: 'mfa', description: 'Second factors: TOTP, recovery codes, and the second step of a login' },
        { name: 'admin', description: 'Administration (role admin)' },
        { name: 'passkeys', description: 'WebAuthn passkeys: register, sign in without a password or as a second factor, list and delete' },
        { name: 'oauth', description: 'Token introspection and revocation for other services (RFC 7662, RFC 7009)' },
        { name: 'events', description: 'Security events for registered clients: Shared Signals streams (SSF 1.0, CAEP, RISC), push (RFC 8935) and poll (RFC 8936)' },
        { name: 'ops', description: 'Health and readiness' }
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          basicAuth: {
            type: 'http',
            scheme: 'basic',
            description: 'A registered client (POST /clients): `clientId:clientSecret`, each form-urlencoded first (RFC 6749 §2.3.1).'
          },
          oauth2: {
            type: 'oauth2',
            description: 'OAuth 2.0 password grant: Swagger UI\'s Authorize signs in through POST /auth/login.',
            flows: { password: { tokenUrl: '/auth/login', scopes: {} } }
          }
        }
      }
    },
    // Shared schemas keep their $id as the component name (#/components/schemas/User).
    refResolver: {
      buildLocalReference (json, _baseUri, _fragment, i) {
        return typeof json.$id === 'string' ? json.$id : `def-${i}`
      }
    }
  })
  // Swagger UI is the one HTML page: its routes (and only they) get the document headers,
  // over the API ones every response gets (plugins/external/security.ts).
  const documentHeaders = securityHeaders(DOCUMENT_HEADERS)
  await fastify.register(async function docs (instance) {
    instance.addHook('onRequest', function (_request, reply, done) {
      reply.headers(documentHeaders)
      done()
    })
    await instance.register(fastifySwaggerUi, {
      routePrefix: '/docs',
      uiConfig: { persistAuthorization: false }
    })
  })
}, { name: 'swagger' })
