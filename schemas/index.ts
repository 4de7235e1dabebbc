// Every shared schema (those with an $id, referenced by routes and named as OpenAPI
// components), in the order the OpenAPI document lists them. app.ts adds them once.
import type { TSchema } from '@sinclair/typebox'
import { commonSchemas } from './common.js'
import { userSchemas } from './users.js'
import { authSchemas } from './auth.js'
import { auditSchemas } from './audit.js'
import { healthSchemas } from './health.js'
import { wellKnownSchemas } from './well-known.js'
import { clientSchemas } from './clients.js'
import { oauthSchemas } from './oauth.js'
import { recoverySchemas } from './recovery.js'
import { ssfSchemas } from './ssf.js'
import { mfaSchemas } from './mfa.js'
import { webauthnSchemas } from './webauthn.js'

export const sharedSchemas: TSchema[] = [...commonSchemas, ...userSchemas, ...authSchemas, ...auditSchemas,
  ...healthSchemas, ...wellKnownSchemas, ...clientSchemas, ...oauthSchemas, ...recoverySchemas, ...ssfSchemas, ...mfaSchemas,
  ...webauthnSchemas]
