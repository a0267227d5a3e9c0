'use strict'
// Connection-level behaviour of the real transports: keep-alive, pipelining,
// aborts, stalled clients, truncation, and the fallbacks (TLS, HTTP/2,
// inject). Everything runs on real sockets on 127.0.0.1, in process, so the
// server's open fds can be counted.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const net = require('node:net')
const tls = require('node:tls')
const http2 = require('node:http2')
const crypto = require('node:crypto')
const { once } = require('node:events')
const { spawn, spawnSync } = require('node:child_process')
const { Agent, request } = require('undici')
const {
  sha256, patternBytes, fixtures, startServer, urlOf, openFdCount, eventually
} = require('./helpers')

const { TEST_TIMEOUT, expected, ResponseParser, RawClient, fetchOnce, countConnections } = require('./raw-client')

/** The default catch-all route, keeping every reply so its transport can be read. */
function recordingRoute (replies) {
  return (app) => app.get('/*', (req, reply) => {
    replies.push(reply)
    return reply.sendFileZeroCopy(req.params['*'])
  })
}

/** Brings the process to the state a test measures fds against (root dir fd open). */
// The open-file cache keeps fds on purpose (counted in its stats): every
// other fd must be back.
const fdsOutsideCache = (app) => openFdCount() - app.zeroCopy.stats().cache.fds

async function fdBaseline (app) {
  await fetchOnce(app.server.address().port, 'hello.txt')
  // Let the closed warm-up sockets' fds go.
  await new Promise((resolve) => setImmediate(resolve))
  return { app, count: fdsOutsideCache(app) }
}

async function fdsBackToWithin (baseline, timeoutMs) {
  const ok = await eventually(() => fdsOutsideCache(baseline.app) <= baseline.count, { timeoutMs })
  assert.ok(ok, `open fds outside the cache ${fdsOutsideCache(baseline.app)} should return to the baseline ${baseline.count}`)
}
const fdsBackTo = (baseline) => fdsBackToWithin(baseline, 5000)

// ---------------------------------------------------------------------------
// Keep-alive and pipelining

test('keep-alive: 4 KiB, 1 MiB and 64 MiB on one socket, byte-exact, all sendfile', { timeout: TEST_TIMEOUT }, async (t) => {
  const replies = []
  const app = await startServer(t, {}, { route: recordingRoute(replies) })
  const conns = countConnections(app)
  const agent = new Agent({ connections: 1 })
  t.after(() => agent.close())

  for (const name of ['4k.bin', '1m.bin', '64m.bin']) {
    const res = await request(urlOf(app, `/${name}`), { dispatcher: agent })
    const body = Buffer.from(await res.body.arrayBuffer())
    assert.equal(res.statusCode, 200, name)
    assert.equal(Number(res.headers['content-length']), expected()[name].size, name)
    assert.equal(body.length, expected()[name].size, name)
    assert.equal(sha256(body), expected()[name].sha, name)
  }

  assert.equal(conns.count, 1, 'all three requests went over one TCP connection')
  assert.deepEqual(replies.map((r) => r.zeroCopyTransport), ['sendfile', 'sendfile', 'sendfile'])
  // 64 MiB goes out in a native transfer whose bytes are counted when its
  // callback runs, which can trail the client's last read; the callback
  // ends the response, so once it has ended the bytes are counted.
  for (const reply of replies) if (!reply.raw.writableEnded) await once(reply.raw, 'finish')
  const stats = app.zeroCopy.stats()
  assert.equal(stats.responses.sendfile, 3)
  assert.equal(stats.responses.write, 0)
  assert.equal(stats.bytes.sendfile, 4096 + (1 << 20) + (64 << 20))
  assert.deepEqual(stats.fallbacks, { native: 0, disabled: 0, inject: 0, tls: 0, http2: 0, refused: 0, piped: 0, replaced: 0 })
  assert.equal(stats.aborts, 0)
})

test('keep-alive: the same three files, in order, on one raw socket', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t)
  const conns = countConnections(app)
  const c = new RawClient(app.server.address().port)
  t.after(() => c.destroy())
  const names = ['4k.bin', '1m.bin', '64m.bin']
  for (const [i, name] of names.entries()) {
    c.send([['GET', `/${name}`]])
    await c.until((x) => x.responses.length === i + 1 && x.responses[i].done, { what: name })
    assert.equal(c.responses[i].status, 200)
    assert.equal(c.responses[i].sha, expected()[name].sha, name)
    assert.notEqual(c.responses[i].headers.connection, 'close')
  }
  assert.equal(c.closed, false, 'the connection stays open after the responses')
  assert.equal(conns.count, 1)
  assert.equal(app.zeroCopy.stats().responses.sendfile, 3)
})

for (const [label, sequence] of [
  ['GET 1m.bin, HEAD 4k.bin, GET 4k.bin', [['GET', '1m.bin'], ['HEAD', '4k.bin'], ['GET', '4k.bin']]],
  ['GET 64m.bin, GET hello.txt, GET 1m.bin', [['GET', '64m.bin'], ['GET', 'hello.txt'], ['GET', '1m.bin']]],
  ['GET hello.txt, GET 64m.bin, HEAD 1m.bin, GET 4k.bin', [['GET', 'hello.txt'], ['GET', '64m.bin'], ['HEAD', '1m.bin'], ['GET', '4k.bin']]]
]) {
  test(`pipelining: ${label} written at once come back in order, byte-exact`, { timeout: TEST_TIMEOUT }, async (t) => {
    const replies = []
    const app = await startServer(t, {}, { route: recordingRoute(replies) })
    const conns = countConnections(app)
    const c = new RawClient(app.server.address().port)
    t.after(() => c.destroy())
    await c.connected
    c.send(sequence.map(([m, name]) => [m, `/${name}`]), { lastClose: true })
    await c.until((x) => x.responses.length === sequence.length && x.responses.every((r) => r.done),
      { what: 'all pipelined responses' })
    await c.closedWithin()

    assert.equal(c.parser.error, null)
    assert.equal(c.parser.extra, 0, 'no bytes after the last response (HEAD sent no body)')
    for (const [i, [method, name]] of sequence.entries()) {
      const r = c.responses[i]
      assert.equal(r.status, 200, `${method} ${name}`)
      assert.equal(Number(r.headers['content-length']), expected()[name].size, `${method} ${name} content-length`)
      if (method === 'HEAD') {
        assert.equal(r.received, 0)
      } else {
        assert.equal(r.sha, expected()[name].sha, `${method} ${name} body`)
      }
    }
    assert.equal(conns.count, 1)
    const gets = sequence.filter(([m]) => m === 'GET').length
    const stats = app.zeroCopy.stats()
    assert.equal(stats.responses.sendfile, gets)
    assert.equal(stats.responses.none, sequence.length - gets)
    assert.equal(stats.responses.write, 0)
    assert.equal(stats.aborts, 0)
    assert.deepEqual(replies.map((r) => r.zeroCopyTransport), sequence.map(([m]) => m === 'HEAD' ? 'none' : 'sendfile'))
  })
}

test('pipelining: 100 requests (4 KiB, 1 MiB, 1 byte, empty, HEAD) in one write', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t)
  const c = new RawClient(app.server.address().port)
  t.after(() => c.destroy())
  await c.connected
  const kinds = [['GET', '4k.bin'], ['GET', 'hello.txt'], ['GET', '1m.bin'], ['GET', 'one.bin'], ['GET', 'empty.bin'], ['HEAD', '4k.bin']]
  const sequence = Array.from({ length: 100 }, (_, i) => kinds[i % kinds.length])
  c.send(sequence.map(([m, name]) => [m, `/${name}`]), { lastClose: true })
  await c.until((x) => x.responses.length === 100 && x.responses.every((r) => r.done), { what: '100 responses' })
  await c.closedWithin()
  assert.equal(c.parser.error, null)
  assert.equal(c.parser.extra, 0)
  const one = sha256(fs.readFileSync(path.join(fixtures(), 'one.bin')))
  const empty = sha256(Buffer.alloc(0))
  for (const [i, [method, name]] of sequence.entries()) {
    const r = c.responses[i]
    assert.equal(r.status, 200, `${i} ${method} ${name}`)
    const want = method === 'HEAD' || name === 'empty.bin' ? empty : name === 'one.bin' ? one : expected()[name].sha
    assert.equal(r.sha, want, `${i} ${method} ${name}`)
  }
  const stats = app.zeroCopy.stats()
  assert.equal(stats.responses.sendfile + stats.responses.none, 100)
  assert.equal(stats.responses.write, 0)
  assert.equal(stats.aborts, 0)
})

test('HTTP/1.0 (no keep-alive): the full 64 MiB, then the server closes the connection', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t)
  const c = new RawClient(app.server.address().port)
  t.after(() => c.destroy())
  c.parser.expect('GET')
  c.socket.write('GET /64m.bin HTTP/1.0\r\n\r\n')
  // A slow start, so the end of the body leaves from the event loop.
  c.socket.pause()
  await new Promise((resolve) => setTimeout(resolve, 20))
  c.socket.resume()
  await c.closedWithin()
  assert.equal(c.ended, true)
  assert.equal(c.responses.length, 1)
  assert.equal(c.responses[0].sha, expected()['64m.bin'].sha)
  assert.equal(c.parser.extra, 0)
  assert.equal(app.zeroCopy.stats().responses.sendfile, 1)
  assert.equal(app.zeroCopy.stats().aborts, 0)
})

/**
 * A pipelined client asks for 64m.bin, 1m.bin, 4k.bin at once, reads part of
 * the first body and disconnects: 1m.bin and 4k.bin are still queued behind
 * the first response (no socket yet) when the connection goes away.
 */
async function pipelinedAbort (t, pluginOptions) {
  const app = await startServer(t, pluginOptions)
  const port = app.server.address().port
  const baseline = await fdBaseline(app)
  const c = new RawClient(port)
  await c.connected
  c.send([['GET', '/64m.bin'], ['GET', '/1m.bin'], ['GET', '/4k.bin']])
  await c.until((x) => x.bytes >= 256 * 1024, { what: 'part of the first body' })
  c.destroy()
  await c.closedWithin()
  return { app, port, baseline }
}

test('pipelining: the client closes with responses still queued (sendfile)', { timeout: TEST_TIMEOUT }, async (t) => {
  const { app, port, baseline } = await pipelinedAbort(t, {})
  // The in-flight 64 MiB transfer ends as an abort and the server stays healthy.
  assert.ok(await eventually(() => app.zeroCopy.stats().aborts >= 1), 'the in-flight transfer is an abort')
  const r = await fetchOnce(port, '1m.bin')
  assert.equal(r.sha, expected()['1m.bin'].sha)

  await t.test('the queued responses never opened their files: fds back, only the in-flight one is an abort', async () => {
    // A queued pipelined response opens its file only when it is its turn
    // (index.ts), so the two behind the cut one never held an fd.
    await fdsBackToWithin(baseline, 1500)
    assert.equal(app.zeroCopy.stats().aborts, 1, 'one in flight, two never started')
    assert.equal(app.zeroCopy.stats().responses.sendfile, 3, 'the warm-up, the in-flight one and the check request')
  })
})

test('pipelining: the client closes with responses still queued (zeroCopy: false, write fallback)', { timeout: TEST_TIMEOUT }, async (t) => {
  const { port, baseline } = await pipelinedAbort(t, { zeroCopy: false })
  const r = await fetchOnce(port, '1m.bin')
  assert.equal(r.sha, expected()['1m.bin'].sha)

  await t.test('the queued responses\' files are closed', async () => {
    await fdsBackToWithin(baseline, 1500)
  })
})

// ---------------------------------------------------------------------------
// Aborts

for (const how of ['destroy', 'resetAndDestroy']) {
  test(`client abort mid-64 MiB (${how}) x20: server healthy, aborts counted, fds back to baseline`, { timeout: TEST_TIMEOUT }, async (t) => {
    const app = await startServer(t)
    const port = app.server.address().port
    const baseline = await fdBaseline(app)
    const abortsBefore = app.zeroCopy.stats().aborts

    const N = 20
    for (let i = 0; i < N; i++) {
      const c = new RawClient(port)
      c.send([['GET', '/64m.bin']])
      // Read part of the body (past the synchronous 2 MiB burst on some rounds).
      const want = (i % 2 === 0 ? 64 * 1024 : 3 * 1024 * 1024)
      await c.until((x) => x.bytes >= want, { what: `${want} bytes` })
      assert.ok(c.responses[0].received < c.responses[0].length)
      if (how === 'destroy') c.socket.destroy()
      else c.socket.resetAndDestroy()
      await c.closedWithin()
    }

    assert.ok(await eventually(() => app.zeroCopy.stats().aborts - abortsBefore === N),
      `aborts should be ${N}, got ${app.zeroCopy.stats().aborts - abortsBefore}`)
    await fdsBackTo(baseline)

    // Still healthy: a full 64 MiB and a small file come through.
    const big = await fetchOnce(port, '64m.bin')
    assert.equal(big.sha, expected()['64m.bin'].sha)
    const small = await fetchOnce(port, '4k.bin')
    assert.equal(small.sha, expected()['4k.bin'].sha)
    const stats = app.zeroCopy.stats()
    assert.equal(stats.timeouts, 0)
    assert.equal(stats.truncations, 0)
    await fdsBackTo(baseline)
  })
}

test('client abort mid-64 MiB on the write fallback (zeroCopy: false) x5: healthy, fds back', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t, { zeroCopy: false })
  const port = app.server.address().port
  const baseline = await fdBaseline(app)
  const N = 5
  for (let i = 0; i < N; i++) {
    const c = new RawClient(port)
    c.send([['GET', '/64m.bin']])
    await c.until((x) => x.bytes >= 256 * 1024, { what: 'part of the body' })
    c.socket.resetAndDestroy()
    await c.closedWithin()
  }
  await fdsBackTo(baseline)
  const r = await fetchOnce(port, '64m.bin')
  assert.equal(r.sha, expected()['64m.bin'].sha)
  assert.equal(app.zeroCopy.stats().fallbacks.disabled, N + 2)

  await t.test('stats().aborts counts the aborted write-fallback responses', async () => {
    assert.ok(await eventually(() => app.zeroCopy.stats().aborts === N, { timeoutMs: 1000 }),
      `aborts should be ${N}, got ${app.zeroCopy.stats().aborts}`)
  })
})

// ---------------------------------------------------------------------------
// Stalled client

test('stalled client: sendTimeout 300 closes the connection; others are served meanwhile', { timeout: TEST_TIMEOUT }, async (t) => {
  const replies = []
  const app = await startServer(t, { sendTimeout: 300 }, { route: recordingRoute(replies) })
  const port = app.server.address().port
  const baseline = await fdBaseline(app)

  const stalled = new RawClient(port)
  t.after(() => stalled.destroy())
  await stalled.connected
  stalled.socket.pause() // never reads: the kernel buffers fill, then sendfile hits EAGAIN
  stalled.send([['GET', '/64m.bin']])
  // The request reached the handler and the transfer began.
  assert.ok(await eventually(() => replies.length === 2 && replies[1].zeroCopyTransport === 'sendfile'))

  // Another client is served normally while the stalled one holds its transfer.
  const other = await fetchOnce(port, '1m.bin')
  assert.equal(other.status, 200)
  assert.equal(other.sha, expected()['1m.bin'].sha)
  const other2 = await fetchOnce(port, '64m.bin')
  assert.equal(other2.sha, expected()['64m.bin'].sha)

  assert.ok(await eventually(() => app.zeroCopy.stats().timeouts === 1), 'stats.timeouts becomes 1')

  // Now read what was buffered: the connection ends before the full body.
  stalled.socket.resume()
  await stalled.closedWithin()
  const r = stalled.responses[0]
  assert.equal(r.status, 200)
  assert.equal(r.length, 64 << 20)
  assert.ok(r.received < r.length, `received ${r.received} of ${r.length}`)
  assert.equal(r.done, false)
  const original = fs.readFileSync(path.join(fixtures(), '64m.bin'))
  assert.equal(ResponseParser.partialSha(r), sha256(original.subarray(0, r.received)), 'what arrived is the file prefix')

  const stats = app.zeroCopy.stats()
  assert.equal(stats.timeouts, 1)
  assert.equal(stats.aborts, 0)
  assert.equal(stats.truncations, 0)
  await fdsBackTo(baseline)
})

test('sendTimeout: a slow but progressing client is not dropped', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t, { sendTimeout: 300 })
  const port = app.server.address().port
  const c = new RawClient(port)
  t.after(() => c.destroy())
  // Reads in small steps with short pauses: progress every few ms, far below 300.
  c.socket.on('data', () => {
    c.socket.pause()
    setTimeout(() => c.socket.resume(), 2)
  })
  c.send([['GET', '/64m.bin']], { lastClose: true })
  await c.until((x) => x.responses.length === 1 && x.responses[0].done, { timeoutMs: 50000, what: 'the full body' })
  assert.equal(c.responses[0].sha, expected()['64m.bin'].sha)
  assert.equal(app.zeroCopy.stats().timeouts, 0)
})

// A client in another process reads the whole of 64 MiB at its own pace and
// prints what it got; "first" on stdout when the body starts.
const READER = `
const net = require('node:net'), crypto = require('node:crypto')
const s = net.connect(+process.argv[1], '127.0.0.1', () =>
  s.write('GET /64m.bin HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n'))
let head = null, pending = Buffer.alloc(0), body = 0, first = true
const hash = crypto.createHash('sha256')
s.on('data', (d) => {
  if (first) { first = false; process.stdout.write('first\\n') }
  if (head === null) {
    pending = Buffer.concat([pending, d])
    const i = pending.indexOf('\\r\\n\\r\\n')
    if (i < 0) return
    head = pending.subarray(0, i).toString('latin1')
    d = pending.subarray(i + 4)
  }
  body += d.length
  hash.update(d)
})
s.on('error', () => {})
s.on('close', () => process.stdout.write(JSON.stringify({ head, body, sha: hash.digest('hex') }) + '\\n'))
`

for (const variant of [
  { name: 'sendfile', options: {}, transport: 'sendfile' },
  { name: 'write fallback', options: { zeroCopy: false }, transport: 'write' }
]) {
  test(`sendTimeout (${variant.name}): a server loop that runs late does not drop a client that kept reading`, { timeout: TEST_TIMEOUT }, async (t) => {
    // A loop turn runs its timers before its I/O. After a turn that ran
    // longer than sendTimeout (a GC pause, a starved process), the timer is
    // due while the client's reads are still waiting to be seen: the client
    // did not stall, the server did. Here the server's loop is blocked for
    // 1 s mid-transfer while a client in another process drains the socket.
    const replies = []
    const app = await startServer(t, { ...variant.options, sendTimeout: 300 }, { route: recordingRoute(replies) })
    const port = app.server.address().port
    const child = spawn(process.execPath, ['-e', READER, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.after(() => child.kill())
    let out = ''
    const closed = new Promise((resolve) => child.stdout.on('data', (d) => {
      out += d
      if (out.includes('first\n') && !blocked) block()
      if (out.trimEnd().endsWith('}')) resolve(JSON.parse(out.trim().split('\n').pop()))
    }))
    let blocked = false
    let blockedMs = 0
    const block = () => {
      blocked = true
      // The body has begun and 64 MiB cannot fit in the socket buffers: the
      // transfer is in progress. Atomics.wait blocks this thread (and its loop).
      const at = Date.now()
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000)
      blockedMs = Date.now() - at
    }
    const got = await closed
    assert.ok(blocked && blockedMs >= 1000, `the loop was blocked ${blockedMs} ms mid-transfer`)
    assert.match(got.head, /^HTTP\/1\.1 200 /)
    assert.equal(got.body, 64 << 20, 'the whole body arrived')
    assert.equal(got.sha, expected()['64m.bin'].sha)
    assert.equal(replies[0].zeroCopyTransport, variant.transport)
    assert.equal(app.zeroCopy.stats().timeouts, 0)
  })
}

// ---------------------------------------------------------------------------
// Truncation

test('truncation: a file cut to 1 MiB during the transfer: short body, closed connection, counted', { timeout: TEST_TIMEOUT }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-trunc-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'shrinks.bin')
  const original = patternBytes(64 << 20, 4242)
  fs.writeFileSync(file, original)
  const CUT = 1 << 20

  // lease: false: this is about detecting a file cut under us (sendfile
  // returns 0), as on a file system without leases; truncating from this very
  // process under a lease would block its own event loop until
  // lease-break-time (test/leases.test.js covers truncation with a lease).
  const app = await startServer(t, { root: dir, lease: false })
  const port = app.server.address().port
  await fetchOnce(port, 'missing') // opens the root dir fd
  const baseline = { app, count: fdsOutsideCache(app) }

  const c = new RawClient(port, { keep: true })
  t.after(() => c.destroy())
  c.send([['GET', '/shrinks.bin']])
  await c.until((x) => x.bytes >= 128 * 1024, { what: 'the start of the body' })
  c.socket.pause()
  // The transfer is running: the body has started and is far from done.
  const r = c.responses[0]
  assert.equal(r.status, 200)
  assert.equal(r.length, 64 << 20)
  assert.ok(r.received < r.length)
  assert.equal(app.zeroCopy.stats().truncations, 0)

  fs.truncateSync(file, CUT)
  c.socket.resume()
  await c.closedWithin()

  // Fewer bytes than Content-Length, then the connection closed.
  assert.equal(r.done, false)
  assert.ok(r.received < r.length, `received ${r.received} < Content-Length ${r.length}`)
  assert.ok(r.received >= CUT, `received ${r.received}: at least what the file still has`)
  const body = Buffer.concat(r.chunks)
  assert.equal(body.length, r.received)
  // Up to the new end of the file the bytes are the original ones.
  assert.ok(body.subarray(0, CUT).equals(original.subarray(0, CUT)), 'the first 1 MiB is the original content')
  assert.ok(await eventually(() => app.zeroCopy.stats().truncations === 1), 'stats.truncations becomes 1')
  const stats = app.zeroCopy.stats()
  assert.equal(stats.aborts, 0)
  assert.equal(stats.timeouts, 0)
  await fdsBackTo(baseline)

  // The short file is now served whole, on a new connection.
  const again = await fetchOnce(port, 'shrinks.bin')
  assert.equal(again.sha, sha256(original.subarray(0, CUT)))

  await t.test('every received byte is a prefix of the original content (no zero padding after the cut)', {
    todo: 'sendfile hands page-cache pages to the socket by reference: bytes already sent but not yet read ' +
      'when the file is truncated come out as zeros between the new size and the end of the (large) page-cache ' +
      'folio (seen on ext4, Linux 6.18; not on tmpfs). lib/sendfile-transport.ts "never pad it" does not hold.'
  }, () => {
    let zeros = 0
    let firstDiff = -1
    for (let i = CUT; i < body.length; i++) {
      if (body[i] !== original[i]) {
        if (firstDiff < 0) firstDiff = i
        if (body[i] === 0) zeros++
      }
    }
    assert.equal(firstDiff, -1,
      `received ${body.length} bytes; from offset ${firstDiff} they differ from the original (${zeros} zero bytes where the file had data)`)
  })
})

test('truncation before the transfer reaches the cut: never zero padding', { timeout: TEST_TIMEOUT }, async (t) => {
  // Cut while the first 2 MiB burst is still in the socket buffers, to a
  // size that is not a multiple of the page size.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-trunc2-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'shrinks.bin')
  const original = patternBytes(64 << 20, 99)
  fs.writeFileSync(file, original)
  // lease: false: this is about detecting a file cut under us (sendfile
  // returns 0), as on a file system without leases; truncating from this very
  // process under a lease would block its own event loop until
  // lease-break-time (test/leases.test.js covers truncation with a lease).
  const app = await startServer(t, { root: dir, lease: false })
  const port = app.server.address().port
  const c = new RawClient(port)
  t.after(() => c.destroy())
  await c.connected
  c.socket.pause()
  c.send([['GET', '/shrinks.bin']])
  assert.ok(await eventually(() => app.zeroCopy.stats().responses.sendfile === 1))
  const cut = 48 * 1024 * 1024 + 12345
  fs.truncateSync(file, cut)
  c.socket.resume()
  await c.closedWithin()
  const r = c.responses[0]
  assert.ok(r.received <= cut, `received ${r.received} <= ${cut}`)
  assert.ok(r.received < r.length)
  assert.equal(ResponseParser.partialSha(r), sha256(original.subarray(0, r.received)))
  assert.ok(await eventually(() => app.zeroCopy.stats().truncations === 1))
})

// ---------------------------------------------------------------------------
// Fallbacks: TLS, HTTP/2, inject

function makeCert (t) {
  const probe = spawnSync('openssl', ['version'], { encoding: 'utf8' })
  if (probe.error) return null
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-tls-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const keyPath = path.join(dir, 'key.pem')
  const certPath = path.join(dir, 'cert.pem')
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
    '-days', '1', '-keyout', keyPath, '-out', certPath], { encoding: 'utf8', timeout: 30000 })
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`)
  return { key: fs.readFileSync(keyPath), cert: fs.readFileSync(certPath) }
}

test('TLS: write fallback, byte-exact 1 MiB and 64 MiB, fallbacks.tls counted', { timeout: TEST_TIMEOUT }, async (t) => {
  const creds = makeCert(t)
  if (creds === null) {
    t.skip('openssl is not installed: cannot make a self-signed certificate')
    return
  }
  const replies = []
  const app = await startServer(t, {}, { route: recordingRoute(replies), fastifyOptions: { https: creds } })
  const agent = new Agent({ connect: { rejectUnauthorized: false } })
  t.after(() => agent.close())
  const base = `https://127.0.0.1:${app.server.address().port}`
  for (const name of ['1m.bin', '64m.bin']) {
    const res = await request(`${base}/${name}`, { dispatcher: agent })
    const body = Buffer.from(await res.body.arrayBuffer())
    assert.equal(res.statusCode, 200)
    assert.equal(Number(res.headers['content-length']), expected()[name].size)
    assert.equal(sha256(body), expected()[name].sha, name)
  }
  assert.deepEqual(replies.map((r) => r.zeroCopyTransport), ['write', 'write'])
  const stats = app.zeroCopy.stats()
  assert.equal(stats.fallbacks.tls, 2)
  assert.equal(stats.responses.write, 2)
  assert.equal(stats.responses.sendfile, 0)
  assert.ok(await eventually(() => app.zeroCopy.stats().bytes.write === (1 << 20) + (64 << 20)))
  assert.equal(app.zeroCopy.stats().bytes.sendfile, 0)
})

test('TLS: pipelined requests are byte-exact and use the write path', { timeout: TEST_TIMEOUT }, async (t) => {
  // A pipelined response has no socket when the handler runs, so the plugin
  // picks sendfile and decides again when the socket arrives
  // (lib/sendfile-transport.ts writeHeaders -> fallBack).
  const creds = makeCert(t)
  if (creds === null) {
    t.skip('openssl is not installed: cannot make a self-signed certificate')
    return
  }
  const replies = []
  const app = await startServer(t, {}, { route: recordingRoute(replies), fastifyOptions: { https: creds } })
  const parser = new ResponseParser()
  const socket = tls.connect({ port: app.server.address().port, host: '127.0.0.1', rejectUnauthorized: false })
  t.after(() => socket.destroy())
  await new Promise((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  const sequence = ['1m.bin', '4k.bin', 'hello.txt']
  let text = ''
  for (const [i, name] of sequence.entries()) {
    text += `GET /${name} HTTP/1.1\r\nHost: 127.0.0.1\r\n${i === sequence.length - 1 ? 'Connection: close\r\n' : ''}\r\n`
    parser.expect('GET')
  }
  socket.on('data', (d) => parser.push(d))
  socket.write(text)
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('TLS pipelining timed out')), 20000)
    socket.once('close', () => { clearTimeout(timer); resolve() })
  })
  assert.equal(parser.error, null)
  assert.equal(parser.responses.length, sequence.length)
  for (const [i, name] of sequence.entries()) {
    assert.equal(parser.responses[i].done, true, name)
    assert.equal(parser.responses[i].sha, expected()[name].sha, name)
  }
  assert.deepEqual(replies.map((r) => r.zeroCopyTransport), ['write', 'write', 'write'])
  const stats = app.zeroCopy.stats()
  assert.equal(stats.responses.write, 3)

  await t.test('the counters say 3 write responses, 0 sendfile, 3 TLS fallbacks', () => {
    assert.equal(stats.responses.sendfile + stats.responses.write + stats.responses.none, 3,
      `responses add up to the 3 requests: ${JSON.stringify(stats.responses)}`)
    assert.equal(stats.responses.sendfile, 0)
    assert.equal(stats.fallbacks.tls, 3, JSON.stringify(stats.fallbacks))
  })
})

test('HTTP/2 (h2c): write fallback, byte-exact, fallbacks.http2 counted', { timeout: TEST_TIMEOUT }, async (t) => {
  const replies = []
  const app = await startServer(t, {}, { route: recordingRoute(replies), fastifyOptions: { http2: true } })
  const client = http2.connect(`http://127.0.0.1:${app.server.address().port}`)
  // Closed in the test body: app.close() (registered first) would otherwise
  // wait for this idle session until the keep-alive timeout.
  t.after(() => client.destroy())
  const get = (name) => new Promise((resolve, reject) => {
    const req = client.request({ ':path': `/${name}` })
    const hash = crypto.createHash('sha256')
    let headers = null
    let length = 0
    req.on('response', (h) => { headers = h })
    req.on('data', (d) => { hash.update(d); length += d.length })
    req.on('end', () => resolve({ headers, length, sha: hash.digest('hex') }))
    req.on('error', reject)
    req.end()
  })
  for (const name of ['1m.bin', '4k.bin', '64m.bin']) {
    const r = await get(name)
    assert.equal(r.headers[':status'], 200)
    assert.equal(Number(r.headers['content-length']), expected()[name].size)
    assert.equal(r.length, expected()[name].size)
    assert.equal(r.sha, expected()[name].sha, name)
  }
  await new Promise((resolve) => client.close(resolve))
  assert.deepEqual(replies.map((r) => r.zeroCopyTransport), ['write', 'write', 'write'])
  const stats = app.zeroCopy.stats()
  assert.equal(stats.fallbacks.http2, 3)
  assert.equal(stats.responses.write, 3)
  assert.equal(stats.responses.sendfile, 0)
})

test('inject: the same route returns the same bytes through the write fallback', { timeout: TEST_TIMEOUT }, async (t) => {
  const replies = []
  const app = await startServer(t, {}, { route: recordingRoute(replies), listen: false })
  for (const name of ['4k.bin', '1m.bin', '64m.bin']) {
    const res = await app.inject({ method: 'GET', url: `/${name}` })
    assert.equal(res.statusCode, 200)
    assert.equal(Number(res.headers['content-length']), expected()[name].size)
    assert.equal(sha256(res.rawPayload), expected()[name].sha, name)
  }
  const head = await app.inject({ method: 'HEAD', url: '/1m.bin' })
  assert.equal(head.statusCode, 200)
  assert.equal(Number(head.headers['content-length']), 1 << 20)
  assert.equal(head.rawPayload.length, 0)
  assert.deepEqual(replies.map((r) => r.zeroCopyTransport), ['write', 'write', 'write', 'none'])
  const stats = app.zeroCopy.stats()
  assert.equal(stats.fallbacks.inject, 3)
  assert.equal(stats.responses.write, 3)
  assert.equal(stats.responses.none, 1)
  assert.equal(stats.responses.sendfile, 0)
  assert.equal(stats.bytes.write, 4096 + (1 << 20) + (64 << 20))
})

test('inject and a real socket on the same listening app give the same bytes', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t)
  const port = app.server.address().port
  for (const name of ['4k.bin', '1m.bin', '64m.bin']) {
    const injected = await app.inject({ url: `/${name}` })
    const wire = await fetchOnce(port, name)
    assert.equal(sha256(injected.rawPayload), wire.sha, name)
    assert.equal(injected.headers.etag, wire.headers.etag)
    assert.equal(injected.headers['content-type'], wire.headers['content-type'])
  }
  const stats = app.zeroCopy.stats()
  assert.equal(stats.fallbacks.inject, 3)
  assert.equal(stats.responses.sendfile, 3)
  assert.equal(stats.responses.write, 3)
})
