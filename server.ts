// Entry point: read the environment, build the app, listen, shut down gracefully.
import { existsSync } from 'node:fs'
import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app from './app.js'
import { serverOptions } from './lib/server-options.js'
import { ConfigError, loadConfig, type Config } from './plugins/external/config.js'
import { StartupError, startupSummary } from './lib/startup.js'
import { chooseDatabase, chooseRedis, developmentKey, requireTargets } from './lib/local-mode.js'
import type { EmbeddedPostgres } from './lib/embedded-postgres.js'

/** An expected start-up failure: one line on stderr, no stack, exit 1. */
function fail (message: string): never {
  process.stderr.write(message + '\n')
  process.exit(1)
}

// A .env file in the working directory fills in what the real environment does not set.
if (existsSync('.env')) process.loadEnvFile('.env')

// ./.data/ holds what a run with nothing configured keeps: the embedded PostgreSQL and the
// development signing key (lib/local-mode.ts).
const DATA_DIR = '.data'

let config: Config
try {
  config = developmentKey(loadConfig(process.env), DATA_DIR)
  requireTargets(config)
} catch (err) {
  if (err instanceof ConfigError) fail(err.message)
  throw err
}

const server = Fastify(serverOptions(config))

// Once shutdown begins, a request still in flight on a keep-alive connection answers with
// `Connection: close`; otherwise its idle connection would hold the shutdown open until
// the client hung up or the grace delay ran out (exit 1). Fastify closes only the
// connections that are idle when close() starts (test/integration/shutdown.test.ts).
let closing = false
server.addHook('preClose', async () => { closing = true })
// Callback-style: it runs on every response, and an async hook costs a promise each.
server.addHook('onSend', (_request, reply, payload, done) => {
  if (closing) reply.header('connection', 'close')
  done(null, payload)
})

// Started by this process when nothing else answers: stopped after the app has closed.
let embedded: EmbeddedPostgres | undefined

// SIGINT/SIGTERM: stop accepting, let in-flight requests finish, close the pools.
closeWithGrace({ delay: 10_000, logger: server.log }, async ({ err, signal }) => {
  if (err) server.log.error({ err }, 'closing after an uncaught error')
  else server.log.info({ signal }, 'shutting down')
  await server.close()
  await embedded?.stop()
})

try {
  // Tests point the default addresses at closed ports to see the fallbacks.
  const database = await chooseDatabase(config, DATA_DIR, process.env.AUTH_SERVICE_TEST_DEFAULT_DATABASE_URL)
  embedded = database.embedded
  server.log.info(database.line)
  const redis = await chooseRedis(config, process.env.AUTH_SERVICE_TEST_DEFAULT_REDIS_URL)
  server.log.info(redis.line)
  config = { ...config, DATABASE_URL: database.url, REDIS_URL: redis.url ?? config.REDIS_URL, withoutRedis: redis.url === undefined }
  await server.register(app, { config })
  await server.listen({ port: config.PORT, host: config.HOST })
  const { fields, message } = startupSummary(config, server.listeningOrigin)
  server.log.info(fields, message)
} catch (err) {
  // What an operator can get wrong (a dependency unreachable, a port taken) is one line
  // naming the setting; anything else is a bug, and keeps its stack.
  const code = (err as { code?: string }).code
  if (err instanceof StartupError || err instanceof ConfigError) fail(err.message)
  if (code === 'EADDRINUSE') fail(`PORT: ${config.HOST}:${config.PORT} is already in use`)
  if (code === 'EADDRNOTAVAIL') fail(`HOST: ${config.HOST} is not an address of this machine`)
  if (code === 'EACCES') fail(`PORT: not allowed to listen on ${config.HOST}:${config.PORT}`)
  fail(`start-up failed: ${(err as Error).stack ?? String(err)}`)
}
