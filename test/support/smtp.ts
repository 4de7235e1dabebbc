// A real SMTP server in the test process (smtp-server), keeping what arrives parsed
// (mailparser): the mail flows are tested end to end, over a socket, as a deployment runs them.
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { SMTPServer } from 'smtp-server'
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser'

interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestSmtp {
  /** SMTP_URL for the app (with the credentials, when the server asks for them). */
  url: string
  port: number
  mails: ParsedMail[]
  /** The next mail to `to` not taken yet (waits up to `ms`). */
  next: (to: string, ms?: number) => Promise<ParsedMail>
  /** The mails to `to` that arrived so far. */
  to: (address: string) => ParsedMail[]
}

const recipients = (mail: ParsedMail): string[] => {
  const to = mail.to === undefined ? [] : Array.isArray(mail.to) ? mail.to : [mail.to]
  return to.flatMap((a: AddressObject) => a.value.map((v) => (v.address ?? '').toLowerCase()))
}

/** The token a mail carries (in its link and in its text). */
export function tokenOf (mail: ParsedMail): string {
  const match = /(?<![A-Za-z0-9_-])([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])/.exec(mail.text ?? '')
  if (match === null) throw new Error(`no token in the mail: ${mail.text ?? ''}`)
  return match[1]
}

/** Starts the server on a free loopback port; `auth`: it requires these credentials. */
export async function smtpServer (t: Teardown, opts: { auth?: { user: string, pass: string } } = {}): Promise<TestSmtp> {
  const mails: ParsedMail[] = []
  const taken = new Set<ParsedMail>()
  const waiters: Array<() => void> = []
  const server = new SMTPServer({
    disabledCommands: opts.auth === undefined ? ['AUTH', 'STARTTLS'] : ['STARTTLS'],
    allowInsecureAuth: true,
    authOptional: opts.auth === undefined,
    logger: false,
    onAuth (auth, _session, callback) {
      if (auth.username === opts.auth?.user && auth.password === opts.auth?.pass) callback(null, { user: auth.username })
      else callback(new Error('Invalid username or password'))
    },
    onData (stream, _session, callback) {
      simpleParser(stream).then((mail) => {
        mails.push(mail)
        for (const wake of waiters.splice(0)) wake()
        callback()
      }, callback)
    }
  })
  server.on('error', () => {})
  server.listen(0, '127.0.0.1')
  await once(server.server, 'listening')
  const port = (server.server.address() as AddressInfo).port
  t.teardown(async () => { await new Promise<void>((resolve) => server.close(() => resolve())) })
  const credentials = opts.auth === undefined ? '' : `${encodeURIComponent(opts.auth.user)}:${encodeURIComponent(opts.auth.pass)}@`

  const toAddress = (address: string) => mails.filter((m) => recipients(m).includes(address.toLowerCase()))
  return {
    url: `smtp://${credentials}127.0.0.1:${port}`,
    port,
    mails,
    to: toAddress,
    async next (to, ms = 5000) {
      const deadline = Date.now() + ms
      for (;;) {
        const mail = toAddress(to).find((m) => !taken.has(m))
        if (mail !== undefined) {
          taken.add(mail)
          return mail
        }
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`no mail to ${to} within ${ms} ms`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          waiters.push(() => { clearTimeout(timer); resolve() })
        })
      }
    }
  }
}
