// The mail plugin: templates (built in, or replaced file by file from MAIL_TEMPLATES_DIR),
// SMTP credentials from the URL, a bounded queue, and what start-up says about a bad setting.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Fastify from 'fastify'
import mailPlugin, { render } from '../../../plugins/external/mail.js'
import metricsPlugin from '../../../plugins/external/metrics.js'
import { build, context } from '../../helper.js'
import { smtpServer } from '../../support/smtp.js'

const ctx = await context(t)

t.test('render: variables, HTML escaping, optional sections', async (t) => {
  const vars = { name: 'a<b>&"\'', link: '', token: 'T' }
  t.equal(render('{{name}}/{{token}}/{{missing}}', vars), 'a<b>&"\'/T/')
  t.equal(render('{{name}}', vars, (s) => s.replace(/</g, '&lt;')), 'a&lt;b>&"\'')
  t.equal(render('x{{#link}}[{{link}}]{{/link}}y{{#token}}({{token}}){{/token}}', vars), 'xy(T)')
})

t.test('MAIL_TEMPLATES_DIR replaces templates file by file; credentials come from SMTP_URL', async (t) => {
  const smtp = await smtpServer(t, { auth: { user: 'mailer', pass: 'p@ss word' } })
  const dir = t.testdir({ 'password-reset.txt': 'Subject: Your {{username}} reset\n\nCode: {{token}} ({{minutes}} min)\n' })
  const app = await build(t, ctx, { SMTP_URL: smtp.url, MAIL_FROM: 'auth@example.com', MAIL_TEMPLATES_DIR: dir })
  const username = ctx.username('tpl')
  const email = `${username}@example.com`
  await app.inject({ method: 'POST', url: '/auth/register', payload: { username, password: 'correct horse battery', email } })
  const verification = await smtp.next(email)
  t.equal(verification.subject, 'Confirm your email address', 'a template not in the directory stays built in')
  await app.db.query('UPDATE users SET email_verified = true WHERE lower(username) = lower($1)', [username])
  await app.inject({ method: 'POST', url: '/auth/password/forgot', payload: { username } })
  const mail = await smtp.next(email)
  t.equal(mail.subject, `Your ${username} reset`)
  t.match(mail.text, /^Code: [A-Za-z0-9_-]{43} \(30 min\)/)
  t.match(mail.html, 'Someone (we hope you) asked to reset the password', 'the HTML part is the built-in one')
  t.notMatch(mail.html, 'href', 'without APP_URL, no link')
  t.notMatch(mail.html, '{{', 'every variable and section was rendered')
})

t.test('a bad template directory stops start-up with one line', async (t) => {
  // The plugin alone (it needs only the metrics registry): start-up fails before anything else opens.
  const start = async (templatesDir: string) => {
    const server = Fastify()
    t.teardown(() => server.close())
    await server.register(metricsPlugin)
    await server.register(mailPlugin, { smtpUrl: 'smtp://127.0.0.1:1', from: 'auth@example.com', templatesDir })
    await server.ready()
  }
  await t.rejects(start('/nonexistent/mail'), { name: 'StartupError', message: 'MAIL_TEMPLATES_DIR: /nonexistent/mail does not exist' })
  const dir = t.testdir({})
  writeFileSync(join(dir, 'email-verify.txt'), 'no subject line here')
  await t.rejects(start(dir), { name: 'StartupError', message: /email-verify\.txt must start with a "Subject: …" line/ })
})

t.test('at most 200 mails pending: more are dropped and counted', async (t) => {
  const app = await build(t, ctx, { SMTP_URL: 'smtp://127.0.0.1:1', MAIL_FROM: 'auth@example.com' })
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const queued = []
  for (let i = 0; i < 201; i++) queued.push(app.mail.later('email-verify', async () => { await gate; return null }))
  t.equal(queued.filter((q) => q).length, 200)
  t.equal(queued[200], false)
  t.match((await app.inject('/metrics')).body, /auth_mail_failures_total\{template="email-verify",reason="queue_full"\} 1/)
  release()
  await app.mail.idle()
  t.ok(app.mail.later('email-verify', async () => null), 'room again once they are done')
  await app.mail.idle()
})

t.test('without SMTP_URL mail is off', async (t) => {
  const app = await build(t, ctx)
  t.equal(app.mail.enabled, false)
  t.equal(app.mail.later('password-reset', async () => null), false)
})
