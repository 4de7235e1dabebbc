// Yardstick 1: the cheapest Fastify route there is. Same framework, no logging, no I/O.
import Fastify from 'fastify'

const app = Fastify()
app.get('/', async function () {
  return { hello: 'world' }
})
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
