'use strict'
// The body object and Fastify's hooks: an onSend hook that replaces the
// payload must not leave the file (or its lease) open, and the write-based
// fallback drops a stalled client after sendTimeout like the sendfile path.
const test = require('node:test')
const assert = require('node:assert/strict')
const { startServer, openFdCount, eventually } = require('./helpers')
const { RawClient } = require('./raw-client')

test('an onSend hook that replaces the body: the file is closed, the lease let go, counted as replaced', async (t) => {
  const app = await startServer(t, {}, {
    route (app) {
      app.addHook('onSend', async (req, reply, payload) => (req.url.startsWith('/replaced') ? 'replaced' : payload))
      app.get('/*', (req, reply) => reply.sendFileZeroCopy('4k.bin'))
    }
  })
  await app.inject('/warm-up')
  const { native } = require('../dist/lib/native')
  await eventually(() => native.binding.leaseHeld() === 0)
  const before = openFdCount()
  // inject: no client sockets of its own to blur the fd count
  for (let i = 0; i < 50; i++) assert.equal((await app.inject('/replaced')).body, 'replaced')
  assert.equal(app.zeroCopy.stats().fallbacks.replaced, 50)
  assert.ok(await eventually(() => native.binding.leaseHeld() === 0, { timeoutMs: 5000 }), 'no lease left')
  assert.ok(await eventually(() => openFdCount() <= before, { timeoutMs: 5000 }), `fds ${openFdCount()} back to ${before}`)
  // and over a real socket
  const res = await fetch(`http://127.0.0.1:${app.server.address().port}/replaced`)
  assert.equal(await res.text(), 'replaced')
  assert.equal(app.zeroCopy.stats().fallbacks.replaced, 51)
})

test('write-based fallback: a client that takes nothing is dropped after sendTimeout', { timeout: 30000 }, async (t) => {
  const app = await startServer(t, { zeroCopy: false, sendTimeout: 300 })
  const client = new RawClient(app.server.address().port)
  t.after(() => client.destroy())
  client.socket.pause()
  client.send([['GET', '/64m.bin']])
  assert.ok(await eventually(() => app.zeroCopy.stats().timeouts === 1, { timeoutMs: 10000 }), 'timed out once')
  client.socket.resume() // a paused socket hears of the close only once it reads
  await client.closedWithin(10000)
  const r = client.responses[0]
  assert.ok(r === undefined || r.received < r.length, 'the body was cut short')
  assert.equal(app.zeroCopy.stats().responses.write, 1)
})

test('no onSend hook: the body skips the stream payload, yet onResponse hooks, the request log and headers set in the handler are all there', async (t) => {
  const { Writable } = require('node:stream')
  const lines = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(...chunk.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l))); cb() } })
  const seen = []
  const app = await startServer(t, {}, {
    fastifyOptions: { logger: { level: 'info', stream } },
    route (app) {
      app.addHook('onResponse', async (req, reply) => { seen.push({ status: reply.statusCode, transport: reply.zeroCopyTransport }) })
      app.get('/*', (req, reply) => reply.header('x-handler', 'kept').sendFileZeroCopy(req.params['*']))
    }
  })
  const res = await fetch(`http://127.0.0.1:${app.server.address().port}/4k.bin`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('x-handler'), 'kept')
  assert.equal(res.headers.get('content-length'), '4096')
  assert.equal((await res.arrayBuffer()).byteLength, 4096)
  assert.ok(await eventually(() => seen.length === 1), 'onResponse ran')
  assert.deepEqual(seen[0], { status: 200, transport: 'sendfile' })
  assert.ok(await eventually(() => lines.some((l) => l.msg === 'request completed' && l.res.statusCode === 200)), 'request logged')
})

test('an onSend hook that keeps the payload sees the file body and its headers (stream path), sendfile still used', async (t) => {
  const app = await startServer(t, {}, {
    route (app) {
      app.addHook('onSend', async (req, reply, payload) => {
        reply.header('x-on-send', typeof payload.pipe === 'function' ? 'stream' : typeof payload)
        return payload
      })
      app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
    }
  })
  const res = await fetch(`http://127.0.0.1:${app.server.address().port}/4k.bin`)
  assert.equal(res.headers.get('x-on-send'), 'stream')
  assert.equal((await res.arrayBuffer()).byteLength, 4096)
  assert.equal(app.zeroCopy.stats().responses.sendfile, 1)
})
