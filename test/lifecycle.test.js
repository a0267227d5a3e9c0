'use strict'
// The plugin across a server's life: close() with transfers in flight, many
// concurrent and slow clients, the handler styles Fastify allows, and the
// error path. Real sockets on 127.0.0.1, in process, so fds can be counted.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const net = require('node:net')
const crypto = require('node:crypto')
const { Writable } = require('node:stream')
const { Agent, request } = require('undici')
const {
  sha256, fixtures, startServer, urlOf, openFdCount, eventually
} = require('./helpers')
const { TEST_TIMEOUT, expected, ResponseParser, RawClient, fetchOnce, countConnections } = require('./raw-client')

/** Brings the process to the state a test measures fds against (root dir fd open). */
async function fdBaseline (app) {
  await fetchOnce(app.server.address().port, 'hello.txt')
  // Let the closed warm-up sockets' fds go.
  await new Promise((resolve) => setImmediate(resolve))
  return { app, count: fdsOutsideCache(app) }
}

// The open-file cache keeps fds on purpose (counted in its stats): every
// other fd must be back. A plain number is a count taken with no app alive.
const fdsOutsideCache = (app) => openFdCount() - (app === null ? 0 : app.zeroCopy.stats().cache.fds)

async function fdsBackToWithin (baseline, timeoutMs) {
  const { app, count } = typeof baseline === 'number' ? { app: null, count: baseline } : baseline
  const ok = await eventually(() => fdsOutsideCache(app) <= count, { timeoutMs })
  assert.ok(ok, `open fds outside the cache ${fdsOutsideCache(app)} should return to the baseline ${count}`)
}
const fdsBackTo = (baseline) => fdsBackToWithin(baseline, 5000)

async function warmUpLeases (t) {
  const app = await startServer(t)
  const res = await fetch(`http://127.0.0.1:${app.server.address().port}/4k.bin`)
  await res.arrayBuffer()
  await app.close()
  await eventually(() => require('../dist/lib/native').native.binding.leaseHeld() === 0)
}


/** Closes an undici Agent unless the test already did. */
const closeAgent = (agent) => (agent.closed || agent.destroyed ? undefined : agent.close())

/** Resolves with what `promise` resolves to, or rejects after timeoutMs with `what`. */
async function within (promise, timeoutMs, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Starts a 64 MiB download on a raw client and pauses it once the body has begun. */
async function pausedBigDownload (port) {
  const c = new RawClient(port)
  c.send([['GET', '/64m.bin']])
  await c.until((x) => x.responses.length === 1 && x.responses[0].received >= 64 * 1024, { what: 'the start of the body' })
  c.socket.pause()
  return c
}

// ---------------------------------------------------------------------------
// close() with a transfer in flight

test('close() with a 64 MiB transfer in flight (forceCloseConnections: true): resolves, client cut, fds back', { timeout: TEST_TIMEOUT }, async (t) => {
  expected()
  // The lease machinery opens its process-wide fds (signal pipe, netlink
  // socket) once, on the first lease: make sure that happened before the
  // baseline, so what is measured is what this server leaves behind.
  await warmUpLeases(t)
  const before = openFdCount()
  const app = await startServer(t, {}, { fastifyOptions: { forceCloseConnections: true } })
  const c = await pausedBigDownload(app.server.address().port)
  t.after(() => c.destroy())
  assert.equal(app.zeroCopy.stats().responses.sendfile, 1)

  await within(app.close(), 10000, 'app.close()')

  // The client can still read what was buffered, then the connection ends short.
  c.socket.resume()
  await c.closedWithin(10000)
  const r = c.responses[0]
  assert.equal(r.done, false)
  assert.ok(r.received < r.length, `received ${r.received} of ${r.length}`)
  const original = fs.readFileSync(path.join(fixtures(), '64m.bin'))
  assert.equal(ResponseParser.partialSha(r), sha256(original.subarray(0, r.received)), 'what arrived is the file prefix')
  assert.ok(await eventually(() => app.zeroCopy.stats().aborts === 1), `aborts ${app.zeroCopy.stats().aborts}`)
  await fdsBackTo(before)
})

test('close() with a 64 MiB transfer in flight (default forceCloseConnections): waits for the transfer', { timeout: TEST_TIMEOUT }, async (t) => {
  // What the default does: Fastify 5 closes only *idle* keep-alive
  // connections; one with a response in progress is left alone, so close()
  // waits until the transfer ends. The response began before close(), so it
  // still says keep-alive: after the body the connection stays open (idle)
  // until the client closes it or keepAliveTimeout (72 s) expires.
  expected()
  const before = openFdCount()
  const app = await startServer(t)
  const c = await pausedBigDownload(app.server.address().port)
  t.after(() => c.destroy())

  let closed = false
  const closing = app.close().then(() => { closed = true })
  // The stalled transfer holds close() (sendTimeout is 60 s by default).
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.equal(closed, false, 'close() waits while the transfer is in flight')

  c.socket.resume()
  await c.until((x) => x.responses[0].done, { what: 'the full body' })
  const r = c.responses[0]
  assert.equal(r.sha, expected()['64m.bin'].sha, 'the in-flight response completes byte-exact')
  assert.equal(r.headers.connection, 'keep-alive')
  assert.equal(app.zeroCopy.stats().aborts, 0)

  // The connection is idle now; the client hangs up and close() resolves.
  c.socket.end()
  await within(closing, 10000, 'app.close() after the client hung up')
  await c.closedWithin()
  await fdsBackTo(before)
})

test('close() (default) with a client that never reads: resolves once sendTimeout drops it', { timeout: TEST_TIMEOUT }, async (t) => {
  expected()
  const before = openFdCount()
  const app = await startServer(t, { sendTimeout: 300 })
  const c = await pausedBigDownload(app.server.address().port)
  t.after(() => c.destroy())
  await within(app.close(), 10000, 'app.close()')
  assert.equal(app.zeroCopy.stats().timeouts, 1)
  c.socket.resume()
  await c.closedWithin()
  assert.ok(c.responses[0].received < c.responses[0].length)
  await fdsBackTo(before)
})

test('requests during close() get 503 and the in-flight transfer finishes', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t)
  const port = app.server.address().port
  const c = await pausedBigDownload(port)
  t.after(() => c.destroy())
  const closing = app.close()
  // A second request on the same keep-alive connection, pipelined behind the
  // transfer, is answered by Fastify's closing guard.
  c.send([['GET', '/4k.bin']])
  c.socket.resume()
  await c.until((x) => x.responses.length === 2 && x.responses[1].done, { what: 'both responses' })
  assert.equal(c.responses[0].sha, expected()['64m.bin'].sha)
  assert.equal(c.responses[1].status, 503)
  await c.closedWithin()
  await within(closing, 10000, 'app.close()')
  assert.equal(app.zeroCopy.stats().responses.sendfile, 1)
})

// ---------------------------------------------------------------------------
// Many clients

test('200 concurrent requests of 1m.bin over 16 keep-alive connections', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t)
  const baseline = await fdBaseline(app)
  const conns = countConnections(app) // after the warm-up connection
  const agent = new Agent({ connections: 16 })
  t.after(() => closeAgent(agent))

  const one = async () => {
    const res = await request(urlOf(app, '/1m.bin'), { dispatcher: agent })
    const hash = crypto.createHash('sha256')
    let length = 0
    for await (const chunk of res.body) {
      hash.update(chunk)
      length += chunk.length
    }
    return { status: res.statusCode, length, sha: hash.digest('hex') }
  }
  const results = await Promise.all(Array.from({ length: 200 }, one))
  for (const r of results) {
    assert.equal(r.status, 200)
    assert.equal(r.length, 1 << 20)
    assert.equal(r.sha, expected()['1m.bin'].sha)
  }
  assert.ok(conns.count <= 16 && conns.count > 1, `connections: ${conns.count}`)
  const stats = app.zeroCopy.stats()
  assert.equal(stats.responses.sendfile, 200 + 1) // + the warm-up request
  assert.equal(stats.responses.write, 0)
  assert.equal(stats.bytes.sendfile, 200 * (1 << 20) + 13)
  assert.equal(stats.aborts, 0)

  await agent.close()
  await fdsBackTo(baseline)
})

test('20 slow readers (1m.bin and 64m.bin, throttled with pause/resume) complete byte-exact', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t)
  const port = app.server.address().port
  const baseline = await fdBaseline(app)
  const names = Array.from({ length: 20 }, (_, i) => (i % 4 === 0 ? '64m.bin' : '1m.bin'))
  const clients = names.map((name, i) => {
    const c = new RawClient(port)
    // Each chunk is followed by a short pause: the server meets EAGAIN over
    // and over and resumes from the event loop.
    c.socket.on('data', () => {
      c.socket.pause()
      setTimeout(() => c.socket.resume(), 1 + (i % 3))
    })
    c.send([['GET', `/${name}`]], { lastClose: true })
    return c
  })
  t.after(() => clients.forEach((c) => c.destroy()))
  await Promise.all(clients.map((c, i) => c.until((x) => x.responses.length === 1 && x.responses[0].done,
    { timeoutMs: 50000, what: `client ${i} ${names[i]}` })))
  for (const [i, c] of clients.entries()) {
    assert.equal(c.responses[0].status, 200)
    assert.equal(c.responses[0].sha, expected()[names[i]].sha, `client ${i} ${names[i]}`)
  }
  await Promise.all(clients.map((c) => c.closedWithin()))
  const stats = app.zeroCopy.stats()
  assert.equal(stats.responses.sendfile, 21)
  assert.equal(stats.timeouts, 0)
  assert.equal(stats.aborts, 0)
  await fdsBackTo(baseline)
})

// ---------------------------------------------------------------------------
// Handler styles

/** A Fastify logger writing JSON lines into `lines`. */
function captureLogs () {
  const lines = []
  const stream = new Writable({
    write (chunk, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line))
      cb()
    }
  })
  return { lines, logger: { level: 'debug', stream } }
}

const handlerStyles = {
  // async, returning the reply
  a: (app) => app.get('/a/*', async (req, reply) => reply.sendFileZeroCopy(req.params['*'])),
  // sync, returning the reply
  s: (app) => app.get('/s/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'])),
  // async, calling it without returning it, then `return reply`
  n: (app) => app.get('/n/*', async (req, reply) => {
    reply.sendFileZeroCopy(req.params['*'])
    return reply
  }),
  // sync, calling it and returning nothing
  v: (app) => app.get('/v/*', (req, reply) => { reply.sendFileZeroCopy(req.params['*']) }),
  // async, awaiting the reply (a thenable that settles when the response ends)
  w: (app) => app.get('/w/*', async (req, reply) => {
    await reply.sendFileZeroCopy(req.params['*'])
  })
}

test('handler styles: async/sync, returning the reply or not, all work without "already sent" warnings', { timeout: TEST_TIMEOUT }, async (t) => {
  const { lines, logger } = captureLogs()
  const app = await startServer(t, {}, {
    fastifyOptions: { logger },
    route: (app) => Object.values(handlerStyles).forEach((add) => add(app))
  })
  const port = app.server.address().port
  const prefixes = Object.keys(handlerStyles)

  for (const p of prefixes) {
    // Over a real socket: sendfile, including pipelining (the socket arrives later).
    const c = new RawClient(port)
    t.after(() => c.destroy())
    c.send([['GET', `/${p}/4k.bin`], ['GET', `/${p}/64m.bin`], ['HEAD', `/${p}/1m.bin`],
      ['GET', `/${p}/missing.bin`], ['GET', `/${p}/hello.txt`]], { lastClose: true })
    await c.until((x) => x.responses.length === 5 && x.responses.every((r) => r.done), { what: `/${p}/ responses` })
    await c.closedWithin()
    const [small, big, head, missing, hello] = c.responses
    assert.equal(small.sha, expected()['4k.bin'].sha, `/${p}/4k.bin`)
    assert.equal(big.sha, expected()['64m.bin'].sha, `/${p}/64m.bin`)
    assert.equal(head.status, 200)
    assert.equal(Number(head.headers['content-length']), 1 << 20)
    assert.equal(missing.status, 404, `/${p}/missing.bin`)
    assert.equal(hello.sha, expected()['hello.txt'].sha, `/${p}/hello.txt`)

    // Through inject: the write fallback.
    for (const name of ['4k.bin', '1m.bin']) {
      const res = await app.inject({ url: `/${p}/${name}` })
      assert.equal(res.statusCode, 200)
      assert.equal(sha256(res.rawPayload), expected()[name].sha, `inject /${p}/${name}`)
    }
    const res404 = await app.inject({ url: `/${p}/nope` })
    assert.equal(res404.statusCode, 404)
    assert.equal(res404.json().code, 'FST_ZEROCOPY_NOT_FOUND')
  }

  const stats = app.zeroCopy.stats()
  assert.equal(stats.responses.sendfile, 3 * prefixes.length)
  assert.equal(stats.responses.write, 2 * prefixes.length)
  assert.equal(stats.aborts, 0)

  const text = lines.map((l) => JSON.stringify(l)).join('\n')
  assert.doesNotMatch(text, /already sent/i)
  assert.doesNotMatch(text, /fulfilled with 'undefined'/i)
  const loud = lines.filter((l) => l.level >= 40)
  assert.deepEqual(loud, [], 'no warnings or errors in the logs')
  // The logger really captured the requests.
  assert.ok(lines.some((l) => l.msg === 'incoming request'))
})

// ---------------------------------------------------------------------------
// Errors

test('errors: missing file and directory are 404 JSON FST_ZEROCOPY_NOT_FOUND; 200 of them leak no fd', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t)
  const baseline = await fdBaseline(app)
  const agent = new Agent({ connections: 4 })
  t.after(() => closeAgent(agent))

  const get = async (p) => {
    const res = await request(urlOf(app, p), { dispatcher: agent })
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  }
  for (const p of ['/nope.bin', '/sub', '/sub/', '/sub/nope.txt', '/', '/hello.txt/x']) {
    const r = await get(p)
    assert.equal(r.status, 404, p)
    assert.match(r.headers['content-type'], /^application\/json/, p)
    const body = JSON.parse(r.body)
    assert.equal(body.statusCode, 404, p)
    assert.equal(body.code, 'FST_ZEROCOPY_NOT_FOUND', p)
    assert.equal(body.error, 'Not Found', p)
    assert.equal(typeof body.message, 'string')
  }
  const injected = await app.inject({ url: '/sub' })
  assert.equal(injected.statusCode, 404)
  assert.equal(injected.json().code, 'FST_ZEROCOPY_NOT_FOUND')

  const paths = ['/nope.bin', '/sub', '/sub/', '/sub/missing/deeper.bin']
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => get(paths[i % paths.length])))
  assert.ok(results.every((r) => r.status === 404))
  const stats = app.zeroCopy.stats()
  assert.equal(stats.responses.sendfile, 1) // the warm-up only
  assert.equal(stats.responses.write, 0)

  // Still serving files afterwards.
  const ok = await get('/4k.bin')
  assert.equal(ok.status, 200)
  await agent.close()
  await fdsBackTo(baseline)
})
