'use strict'
// Fastify + fastify-zero-copy (this repository). Used by zero-copy.js and
// zero-copy-fallback.js. GET /__bench/stats returns fastify.zeroCopy.stats()
// so the bench can show which path the responses really took.
const { args, ready, REPO_ROOT, exitOnSignals } = require('./_common')

module.exports = async function start (zeroCopy, options = {}) {
  const { dir, port, host } = args()
  const mod = require(REPO_ROOT)
  const plugin = mod && mod.default ? mod.default : mod
  const fastify = require('fastify')({ logger: false })
  fastify.register(plugin, { root: dir, zeroCopy, ...options })
  fastify.get('/__bench/stats', async () => (fastify.zeroCopy && typeof fastify.zeroCopy.stats === 'function') ? fastify.zeroCopy.stats() : null)
  fastify.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  await fastify.listen({ port, host })
  exitOnSignals(() => fastify.close())
  ready(fastify.server.address().port)
}
