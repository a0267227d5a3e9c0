'use strict'
// 3. Fastify + @fastify/static with its defaults (wildcard route under "/").
const { args, ready, exitOnSignals } = require('./_common')

async function main () {
  const { dir, port, host } = args()
  const fastify = require('fastify')({ logger: false })
  fastify.register(require('@fastify/static'), { root: dir })
  await fastify.listen({ port, host })
  exitOnSignals(() => fastify.close())
  ready(fastify.server.address().port)
}
main().catch((err) => { console.error(err && err.stack ? err.stack : err); process.exit(1) })
