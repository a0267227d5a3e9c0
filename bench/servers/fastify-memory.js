'use strict'
// 4. Fastify sending the same bytes from memory: every file of DIR is read into
// a Buffer at start and sent with reply.send(buffer). No file I/O per request:
// this is the framework's ceiling for any file-serving plugin.
const fs = require('node:fs')
const path = require('node:path')
const { args, ready, exitOnSignals } = require('./_common')

async function main () {
  const { dir, port, host } = args()
  const files = new Map()
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name)
    if (fs.statSync(p).isFile()) files.set(name, fs.readFileSync(p))
  }
  const fastify = require('fastify')({ logger: false })
  fastify.get('/*', (req, reply) => {
    const buf = files.get(req.params['*'])
    if (!buf) return reply.code(404).send()
    return reply.header('content-type', 'application/octet-stream').send(buf)
  })
  await fastify.listen({ port, host })
  exitOnSignals(() => fastify.close())
  ready(fastify.server.address().port)
}
main().catch((err) => { console.error(err && err.stack ? err.stack : err); process.exit(1) })
