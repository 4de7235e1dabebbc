// Entry point: read the environment, build the app, listen, shut down gracefully.
import { existsSync } from 'node:fs'
import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app from './app.js'
import { serverOptions } from './lib/server-options.js'
import { ConfigError, loadConfig } from './plugins/external/config.js'

// A .env file in the working directory fills in what the real environment does not set.
if (existsSync('.env')) process.loadEnvFile('.env')

let config
try {
  config = loadConfig(process.env)
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(err.message + '\n')
    process.exit(1)
  }
  throw err
}

const server = Fastify(serverOptions(config))
await server.register(app, { config })

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

// SIGINT/SIGTERM: stop accepting, let in-flight requests finish, close the pools.
closeWithGrace({ delay: 10_000, logger: server.log }, async ({ err, signal }) => {
  if (err) server.log.error({ err }, 'closing after an uncaught error')
  else server.log.info({ signal }, 'shutting down')
  await server.close()
})

try {
  await server.listen({ port: config.PORT, host: config.HOST })
} catch (err) {
  // Start-up failures (database or Redis unreachable, port taken) are one clear line.
  server.log.fatal({ err: { message: (err as Error).message } }, 'start-up failed')
  process.stderr.write(`start-up failed: ${(err as Error).message}\n`)
  process.exit(1)
}
