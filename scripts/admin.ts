// `npm run admin -- <command>` (in the container: `node dist/scripts/admin.js <command>`):
// what an operator needs without a token. It builds the same services as the API
// (app.ts's services(), no SQL of its own) against DATABASE_URL and REDIS_URL, so what it
// revokes is refused at every instance on the next request, and what it changes is audited
// (no actor, no client address: the operator). One line per outcome on stdout, one line per
// failure on stderr; exit 0 on success, 1 on failure, 2 on a usage error.
//
// Passwords are never arguments (argv shows in `ps` and in shell history): they are read
// from the terminal without echo, or from the first line of standard input when it is not
// a terminal (`printf '%s\n' "$PASSWORD" | npm run admin -- create-admin alice`).
import { existsSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import { services } from '../app.js'
import { ConfigError, loadConfig } from '../plugins/external/config.js'
import { StartupError } from '../lib/startup.js'
import { chooseDatabase, chooseRedis, requireTargets } from '../lib/local-mode.js'
import type { EmbeddedPostgres } from '../lib/embedded-postgres.js'
import { dependencyOf, isDependencyError } from '../lib/errors.js'
import { passwordProblem } from '../lib/password-policy.js'
import { Username } from '../schemas/users.js'
import { Password } from '../schemas/auth.js'
import type { ChangeContext } from '../plugins/app/audit/audit-service.js'

const USAGE = `usage: npm run admin -- <command> <username> [options]

commands:
  create-admin <username>     create an admin; the password is read from the terminal
                              (or the first line of standard input)
  reset-password <username>   set a temporary password, printed here (or read like
                              create-admin's with --password-stdin); every session of the
                              user ends, and the next login must choose a new password
  unlock <username>           clear the username's failed-login lockout, for every client
  sessions <username>         list the user's live sessions
  revoke-sessions <username>  end every session of the user

Configuration as the service's: DATABASE_URL, REDIS_URL, REDIS_KEY_PREFIX, … (and .env).`

/** A mistake in how the command was called: the message, then the usage; exit 2. */
class UsageError extends Error {}

/** A command this setup cannot carry out: the message; exit 1. */
class Refused extends Error {}

/** The operator: no account, no session, no client address (audited as such). */
const OPERATOR: ChangeContext = { actorId: null, sessionId: null, ip: null }

const USERNAME = new RegExp(Username.pattern as string)

function username (value: string | undefined): string {
  if (value === undefined) throw new UsageError('a username is needed')
  if (value.length < 3 || value.length > 32 || !USERNAME.test(value)) {
    throw new UsageError(`not a username: 3 to 32 characters of A-Z a-z 0-9 _ . - (got ${JSON.stringify(value)})`)
  }
  return value
}

/** The terminal, without echo. */
async function prompt (question: string): Promise<string> {
  const input = process.stdin
  process.stderr.write(question)
  input.setRawMode(true)
  input.setEncoding('utf8')
  input.resume()
  try {
    return await new Promise<string>((resolve, reject) => {
      let value = ''
      input.on('data', (chunk: string) => {
        for (const ch of chunk) {
          if (ch === '\r' || ch === '\n') return resolve(value)
          if (ch === '\u0003' || ch === '\u0004') return reject(new UsageError('cancelled'))
          value = ch === '\u007f' || ch === '\b' ? value.slice(0, -1) : value + ch
        }
      })
    })
  } finally {
    input.removeAllListeners('data')
    input.setRawMode(false)
    input.pause()
    process.stderr.write('\n')
  }
}

/** A password from the terminal (asked twice) or the first line of standard input. */
async function readPassword (forUser: string): Promise<string> {
  let password: string
  if (process.stdin.isTTY) {
    password = await prompt(`password for ${forUser}: `)
    if (await prompt('the same again: ') !== password) throw new UsageError('the two passwords differ')
  } else {
    let text = ''
    for await (const chunk of process.stdin) text += String(chunk)
    password = text.split(/\r?\n/, 1)[0]
  }
  if (password.length < (Password.minLength as number) || password.length > (Password.maxLength as number) || password.includes('\u0000')) {
    throw new UsageError(`the password must be ${Password.minLength} to ${Password.maxLength} characters`)
  }
  return password
}

/** 120 random bits, URL-safe, that the password rules accept for this user. */
function temporaryPassword (forUser: string): string {
  for (;;) {
    const password = randomBytes(15).toString('base64url')
    if (passwordProblem(password, forUser) === null) return password
  }
}

type Command = (app: FastifyInstance, args: string[]) => Promise<string>

const COMMANDS: Record<string, Command> = {
  async 'create-admin' (app, [name]) {
    const user = await app.users.create(username(name), await readPassword(name), 'admin', null, OPERATOR)
    return `created admin ${user.username} (${user.id})`
  },
  async 'reset-password' (app, [name, option]) {
    if (option !== undefined && option !== '--password-stdin') throw new UsageError(`unknown option ${option}`)
    const user = await app.users.get({ username: username(name) })
    const password = option === undefined ? temporaryPassword(user.username) : await readPassword(user.username)
    await app.users.setTemporaryPassword({ id: user.id }, password, OPERATOR)
    const shown = option === undefined ? `: ${password}` : ''
    return `${user.username}: temporary password set, every session ended; a new one must be chosen at the next login${shown}`
  },
  async unlock (app, [name]) {
    const user = await app.users.get({ username: username(name) })
    await app.users.clearLockout({ id: user.id }, OPERATOR)
    return `${user.username}: lockout cleared`
  },
  async sessions (app, [name]) {
    const user = await app.users.get({ username: username(name) })
    const live = await app.sessions.list(user.id, '')
    if (live.length === 0) return `${user.username} has no live sessions`
    const rows = live.map((s) => [s.id, s.createdAt, s.lastUsedAt, s.ip ?? '-', s.userAgent ?? '-'].join('\t'))
    return ['session\tcreated\tlast used\tip\tuser agent', ...rows].join('\n')
  },
  async 'revoke-sessions' (app, [name]) {
    const user = await app.users.get({ username: username(name) })
    await app.sessions.endAll(user.id, OPERATOR)
    return `${user.username}: every session ended`
  }
}

/** One line an operator can act on, never a stack. */
function describe (err: unknown): string {
  if (err instanceof UsageError || err instanceof Refused || err instanceof StartupError || err instanceof ConfigError) return err.message
  const { statusCode, message } = err as { statusCode?: number, message?: string }
  if (statusCode === 503 || isDependencyError(err)) {
    const which = dependencyOf(err) === 'redis' ? 'Redis' : 'PostgreSQL'
    return `${which} is unavailable: nothing was changed, try again`
  }
  if (statusCode !== undefined && statusCode < 500) return String(message)
  return `unexpected error: ${String(message ?? err).split('\n', 1)[0]}`
}

async function main (argv: string[]): Promise<number> {
  const [name, ...args] = argv
  const command = name === undefined ? undefined : COMMANDS[name]
  if (command === undefined) {
    process.stderr.write(`${name === undefined || name === 'help' || name === '--help' ? '' : `unknown command ${name}\n`}${USAGE}\n`)
    return name === 'help' || name === '--help' ? 0 : 2
  }
  if (existsSync('.env')) process.loadEnvFile('.env')
  let app: FastifyInstance | undefined
  let embedded: EmbeddedPostgres | undefined
  try {
    const config = loadConfig(process.env)
    requireTargets(config)
    const database = await chooseDatabase(config, '.data')
    embedded = database.embedded
    if (embedded !== undefined) process.stderr.write(database.line + '\n')
    // The Redis the service would use; none: the service reads PostgreSQL on every token
    // check (it sees what this revokes), but counts lockouts in its own memory.
    const redis = await chooseRedis(config)
    if (redis.url === undefined && name === 'unlock') {
      throw new Refused('without Redis the service counts lockouts in its own memory: restart it to clear them')
    }
    // Errors only, as JSON lines on stderr: what goes wrong with the command is its one line
    // (a dependency's connection warnings would repeat it).
    app = Fastify({ logger: { level: 'error', stream: process.stderr } })
    // It signs no tokens: a missing JWT_SECRET is not worth the service's warning here.
    const url = { DATABASE_URL: database.url, REDIS_URL: redis.url ?? config.REDIS_URL, withoutRedis: redis.url === undefined }
    await services(app, { config: { ...config, ...url, jwtKeyGenerated: false }, purgeIntervalMs: 0 })
    await app.ready()
    process.stdout.write(await command(app, args) + '\n')
    return 0
  } catch (err) {
    process.stderr.write(`admin: ${describe(err)}\n`)
    if (err instanceof UsageError && err.message !== 'cancelled') process.stderr.write(USAGE + '\n')
    return err instanceof UsageError ? 2 : 1
  } finally {
    await app?.close()
    await embedded?.stop()
  }
}

process.exitCode = await main(process.argv.slice(2))
