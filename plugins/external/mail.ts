// Provides `fastify.mail`: outgoing mail over SMTP (nodemailer, SMTP_URL and MAIL_FROM),
// rendered from plain-text and HTML templates a deployment may replace (MAIL_TEMPLATES_DIR),
// and sent in the background: the request that asks for a mail is answered first and never
// waits for the SMTP server. A failed send is logged (never with the mail's content: it
// carries a token) and counted in /metrics. Without SMTP_URL, `enabled` is false and the
// flows that need mail answer 501.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fp from 'fastify-plugin'
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js'
import { Counter } from 'prom-client'
import { StartupError } from '../../lib/startup.js'
import { withTimeout } from '../../lib/timeout.js'

declare module 'fastify' {
  interface FastifyInstance {
    mail: Mail
  }
}

export const MAIL_TEMPLATES = ['password-reset', 'email-verify'] as const
export type MailTemplate = typeof MAIL_TEMPLATES[number]

/** What a queued job decides to send: the recipient and the template's variables. */
export interface Outgoing {
  to: string
  vars: Record<string, string>
}

export interface Mail {
  /** SMTP_URL is set. */
  readonly enabled: boolean
  /**
   * Runs `job` after the current request has been answered and sends what it returns (null:
   * nothing). The job may read and write the database: a request whose answer must not
   * depend on it (a password reset for an account that may not exist) does the same work
   * whatever the job finds. False when too many mails are pending (dropped and counted).
   */
  later: (template: MailTemplate, job: () => Promise<Outgoing | null>) => boolean
  /** Resolves once every queued mail has been sent or has failed (tests, shutdown). */
  idle: () => Promise<void>
}

export interface MailOptions {
  smtpUrl?: string
  from?: string
  templatesDir?: string
}

/**
 * Mails queued or in flight at most: each is a little memory and, once its job has run, an
 * SMTP connection. The per-client and per-account limits keep real traffic far below it;
 * beyond it (an SMTP server that hangs while requests keep coming) mails are dropped.
 */
const MAX_PENDING = 200
// A send gives up after these (nodemailer's own timeouts, then a last bound on the whole).
const CONNECTION_TIMEOUT_MS = 5000
const SOCKET_TIMEOUT_MS = 10_000
const SEND_TIMEOUT_MS = 30_000
/** Shutdown waits this long at most for mails still pending. */
const CLOSE_WAIT_MS = 5000

const BUILT_IN = fileURLToPath(new URL('mail-templates/', import.meta.url))

interface Template {
  subject: string
  text: string
  html: string
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }
const escapeHtml = (value: string) => value.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c])

/**
 * `{{name}}` is replaced by the variable (HTML-escaped in the HTML part); `{{#name}}…{{/name}}`
 * is kept only when the variable is not empty. Nothing else is interpreted.
 */
export function render (template: string, vars: Record<string, string>, escape: (s: string) => string = (s) => s): string {
  return template
    .replace(/\{\{#(\w+)\}\}([\s\S]*?)\{\{\/\1\}\}/g, (_all, name: string, inner: string) => (vars[name] ?? '') === '' ? '' : inner)
    .replace(/\{\{(\w+)\}\}/g, (_all, name: string) => escape(vars[name] ?? ''))
}

/**
 * A template: `<name>.txt`, whose first line is `Subject: …` and the rest the plain-text
 * body, and `<name>.html`. Each file is taken from `dir` when it is there, else built in.
 */
export function loadTemplate (name: MailTemplate, dir: string | undefined): Template {
  const read = (file: string) => {
    const path = dir !== undefined && existsSync(join(dir, file)) ? join(dir, file) : join(BUILT_IN, file)
    return readFileSync(path, 'utf8')
  }
  const txt = read(`${name}.txt`)
  const match = /^Subject:[ \t]*(.+)\r?\n\r?\n?([\s\S]*)$/.exec(txt)
  if (match === null) throw new StartupError(`MAIL_TEMPLATES_DIR: ${name}.txt must start with a "Subject: …" line`)
  return { subject: match[1].trim(), text: match[2], html: read(`${name}.html`) }
}

/** The address of an SMTP_URL, for a log line: host and port, never the credentials. */
function smtpAddress (url: string): string {
  const { hostname, port, protocol } = new URL(url)
  return `${hostname}:${port === '' ? (protocol === 'smtps:' ? '465' : '587') : port}`
}

export default fp<MailOptions>(async function mailPlugin (fastify, opts) {
  const counters = {
    sent: new Counter({
      name: 'auth_mails_sent_total',
      help: 'Mails accepted by the SMTP server, by template',
      labelNames: ['template'],
      registers: [fastify.metrics.registry]
    }),
    failed: new Counter({
      name: 'auth_mail_failures_total',
      help: 'Mails not sent, by template and reason: smtp (the server refused or could not be reached), job (preparing it failed), queue_full',
      labelNames: ['template', 'reason'],
      registers: [fastify.metrics.registry]
    })
  }
  for (const template of MAIL_TEMPLATES) {
    counters.sent.inc({ template }, 0)
    for (const reason of ['smtp', 'job', 'queue_full']) counters.failed.inc({ template, reason }, 0)
  }

  if (opts.smtpUrl === undefined || opts.from === undefined) {
    fastify.log.info('mail is off (SMTP_URL is not set): forgot-password and email changes answer 501')
    fastify.decorate('mail', { enabled: false, later: () => false, idle: async () => {} } satisfies Mail)
    return
  }

  if (opts.templatesDir !== undefined && !existsSync(opts.templatesDir)) {
    throw new StartupError(`MAIL_TEMPLATES_DIR: ${opts.templatesDir} does not exist`)
  }
  const templates = Object.fromEntries(MAIL_TEMPLATES.map((name) => [name, loadTemplate(name, opts.templatesDir)])) as Record<MailTemplate, Template>
  const from = opts.from
  // nodemailer takes the credentials from the URL; its own logger stays off (it would log
  // the conversation, the token included).
  const options: SMTPTransport.Options = {
    url: opts.smtpUrl,
    connectionTimeout: CONNECTION_TIMEOUT_MS,
    greetingTimeout: CONNECTION_TIMEOUT_MS,
    socketTimeout: SOCKET_TIMEOUT_MS,
    logger: false
  }
  // Loaded only when mail is configured: without SMTP_URL the library stays out of memory.
  const { default: nodemailer } = await import('nodemailer')
  const transport = nodemailer.createTransport(options)

  const pending = new Set<Promise<void>>()

  async function deliver (template: MailTemplate, job: () => Promise<Outgoing | null>): Promise<void> {
    let outgoing: Outgoing | null
    try {
      outgoing = await job()
    } catch (err) {
      counters.failed.inc({ template, reason: 'job' })
      fastify.log.warn({ template, err: { message: (err as Error).message } }, 'mail not prepared')
      return
    }
    if (outgoing === null) return
    const t = templates[template]
    try {
      await withTimeout(transport.sendMail({
        from,
        to: outgoing.to,
        subject: render(t.subject, outgoing.vars),
        text: render(t.text, outgoing.vars),
        html: render(t.html, outgoing.vars, escapeHtml)
      }), SEND_TIMEOUT_MS, () => Object.assign(new Error('send timed out'), { code: 'ETIMEDOUT' }))
      counters.sent.inc({ template })
    } catch (err) {
      counters.failed.inc({ template, reason: 'smtp' })
      // Codes only: a server's reply text may quote the recipient, and the mail holds a token.
      const { code, responseCode, command } = err as { code?: string, responseCode?: number, command?: string }
      fastify.log.warn({ template, err: { code, responseCode, command } }, 'mail not sent')
    }
  }

  const mail: Mail = {
    enabled: true,
    later (template, job) {
      if (pending.size >= MAX_PENDING) {
        counters.failed.inc({ template, reason: 'queue_full' })
        fastify.log.warn({ template }, 'mail not sent: too many pending')
        return false
      }
      // setImmediate: after the current request's answer has been written.
      const done: Promise<void> = new Promise<void>((resolve) => setImmediate(resolve))
        .then(async () => await deliver(template, job))
        .finally(() => pending.delete(done))
      pending.add(done)
      return true
    },
    async idle () {
      while (pending.size > 0) await Promise.all([...pending])
    }
  }
  fastify.decorate('mail', mail)
  fastify.log.info(`mail: SMTP at ${smtpAddress(opts.smtpUrl)}, from ${from}`)
  // Before the database pool closes (onClose runs in reverse order of registration): the
  // jobs still pending may need it.
  fastify.addHook('onClose', async () => {
    await withTimeout(mail.idle(), CLOSE_WAIT_MS, () => new Error('timeout')).catch(() => {
      fastify.log.warn({ pending: pending.size }, 'shutting down with mails still pending')
    })
    transport.close()
  })
}, { name: 'mail', dependencies: ['metrics'] })
