import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Uuid } from './common.js'

// 3–64 characters: letters, digits, `_ . -`, single spaces between words. Unique without
// regard to case, so that two clients cannot pass for each other in the audit log.
export const ClientName = Type.String({
  minLength: 3,
  maxLength: 64,
  pattern: '^[A-Za-z0-9_.-]+( [A-Za-z0-9_.-]+)*$',
  description: 'What the client is, e.g. the service that uses it; unique without regard to case',
  example: 'billing-api'
})

export const ClientId = Type.String({
  pattern: '^[A-Za-z0-9_-]{22}$',
  description: 'The public half of the client\'s credentials: the user name of its HTTP Basic authentication',
  example: 'Zm9vYmFyYmF6cXV4cXV1eA'
})

// OpenID Connect Back-Channel Logout 1.0 §2.2 (`backchannel_logout_uri`): an absolute http(s)
// URL without a fragment. Named in camelCase here, as every body of this API is.
const BackchannelLogoutUri = Type.String({
  minLength: 8,
  maxLength: 2048,
  pattern: '^https?://[^\\s#]+$',
  description: 'Where logout tokens are POSTed when one of a user\'s sessions ends (OpenID Connect Back-Channel Logout 1.0: ' +
    'the client metadata `backchannel_logout_uri`); null or left out: none',
  example: 'https://billing.example.com/backchannel-logout'
})

export const NewClientBody = Type.Object({
  name: ClientName,
  backchannelLogoutUri: Type.Optional(Type.Union([BackchannelLogoutUri, Type.Null()]))
}, { $id: 'NewClientBody', description: 'The client to register', example: { name: 'billing-api' } })
export type NewClientBody = Static<typeof NewClientBody>

export const UpdateClientBody = Type.Object({
  backchannelLogoutUri: Type.Union([BackchannelLogoutUri, Type.Null()])
}, { $id: 'UpdateClientBody', description: 'What may change of a client (its name and secret do not change here)', example: { backchannelLogoutUri: 'https://billing.example.com/backchannel-logout' } })
export type UpdateClientBody = Static<typeof UpdateClientBody>

const clientFields = {
  id: Uuid,
  clientId: ClientId,
  name: Type.String({ description: 'As registered (case kept)' }),
  createdAt: Type.String({ format: 'date-time' }),
  backchannelLogoutUri: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'Where its logout tokens go (Back-Channel Logout 1.0), or null' }))
}

const example = {
  id: '7d3f0a4e-2b1c-4e5d-8f6a-9b0c1d2e3f4a',
  clientId: 'Zm9vYmFyYmF6cXV4cXV1eA',
  name: 'billing-api',
  createdAt: '2025-01-31T12:00:00.000Z',
  backchannelLogoutUri: null
}

export const Client = Type.Object(clientFields, {
  $id: 'Client',
  description: 'A registered client, without its secret (which is never shown again)',
  example
})
export type Client = Static<typeof Client>

export const ClientCredentials = Type.Object({
  ...clientFields,
  clientSecret: Type.String({
    pattern: '^[A-Za-z0-9_-]{43}$',
    description: 'The secret (256 random bits), shown this once: only its hash is kept. The password of the client\'s HTTP Basic authentication'
  })
}, {
  $id: 'ClientCredentials',
  description: 'A client with its new secret: store the secret now, it cannot be shown again',
  example: { ...example, clientSecret: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I' }
})
export type ClientCredentials = Static<typeof ClientCredentials>

/** Added once with addSchema (app.ts): named OpenAPI components. */
export const clientSchemas: TSchema[] = [NewClientBody, UpdateClientBody, Client, ClientCredentials]
