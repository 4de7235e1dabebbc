import { Type, type Static, type TSchema } from '@sinclair/typebox'

export const Jwks = Type.Object({
  keys: Type.Array(Type.Object({
    kty: Type.String(),
    crv: Type.String(),
    x: Type.String(),
    y: Type.Optional(Type.String()),
    kid: Type.String(),
    alg: Type.String(),
    use: Type.String()
  }))
}, { $id: 'Jwks', description: 'JWK set (RFC 7517)' })
export type Jwks = Static<typeof Jwks>

/** The shared schemas of this file, added once with addSchema (schemas/index.ts). */
export const wellKnownSchemas: TSchema[] = [Jwks]
