'use strict'
// The same behaviour suite, run against every way a body can leave:
//   sendfile  real socket, default options       -> zero-copy (sendfile(2))
//   write     real socket, zeroCopy: false       -> the write-based fallback
//   inject    fastify.inject, default options    -> the write-based fallback
// Each case states the status, headers and file region it expects; every
// body is checked by sha256 against that region, and every response is
// proven to have gone through the transport under test (stats counters and
// reply.zeroCopyTransport). Then sendfile, write and inject are compared
// header by header on a matrix of sizes and ranges.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')
const { Agent, request } = require('undici')
const { sha256, SIZES, fixtures, startServer, urlOf, rawExchange, parseResponses, eventually } = require('./helpers')

const SLICE = { start: 100, end: 1099 } // 1000 bytes, inclusive end
const TEST_TIMEOUT = 60000

// ---------------------------------------------------------------- fixtures

const FILES = {
  'empty.bin': SIZES.empty,
  'one.bin': SIZES.one,
  '4k.bin': SIZES['4k'],
  '1m.bin': SIZES['1m'],
  '64m.bin': SIZES['64m']
}

const fileCache = new Map()
function fileBytes (name) {
  let buf = fileCache.get(name)
  if (buf === undefined) {
    buf = fs.readFileSync(path.join(fixtures(), name))
    fileCache.set(name, buf)
  }
  return buf
}

/** sha256 of the file region [start, end). */
function regionSha (name, start = 0, end = fileBytes(name).length) {
  return sha256(fileBytes(name).subarray(start, end))
}

// Headers that belong to the connection or the clock, not to the response.
const CONNECTION_LEVEL = new Set(['date', 'connection', 'keep-alive'])
function representationHeaders (headers) {
  const out = {}
  for (const [name, value] of Object.entries(headers)) {
    if (!CONNECTION_LEVEL.has(name)) out[name] = value
  }
  return out
}

// ------------------------------------------------------------------ server

let requestSeq = 0
const nextId = () => `r${++requestSeq}`

/**
 * Routes shared by every transport:
 *   /*                 sendFileZeroCopy(path)
 *   /slice/*           sendFileZeroCopy(path, { start: 100, end: 1099 })
 *   /download/*?name=  sendFileZeroCopy(path, { filename: name })
 *   /slice-tail/*      sendFileZeroCopy(path, { start: 4000, end: 99999 }) (end past EOF)
 *   /nf/*              reply.code(404).sendFileZeroCopy(path)
 *   /typed/*           x-app, content-type and cache-control set by the app first
 * and an onResponse hook recording, per x-req-id, what reply.zeroCopyTransport
 * and reply.statusCode were when the response finished.
 */
function routes (seen) {
  return (app) => {
    app.addHook('onResponse', async (req, reply) => {
      const id = req.headers['x-req-id']
      if (id !== undefined) seen.set(id, { transport: reply.zeroCopyTransport, status: reply.statusCode })
    })
    app.get('/slice/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { ...SLICE }))
    app.get('/slice-tail/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { start: 4000, end: 99999 }))
    app.get('/nf/*', (req, reply) => reply.code(404).sendFileZeroCopy(req.params['*']))
    app.get('/typed/*', (req, reply) => {
      reply.header('x-app', '1')
      reply.type('application/x-custom')
      reply.header('cache-control', 'no-store')
      return reply.sendFileZeroCopy(req.params['*'])
    })
    app.get('/download/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { filename: req.query.name }))
    app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  }
}

/** Reads an undici response body into a sha256 and a length (no 64 MiB buffer). */
async function drain (body) {
  const hash = crypto.createHash('sha256')
  let length = 0
  for await (const chunk of body) {
    hash.update(chunk)
    length += chunk.length
  }
  return { sha: hash.digest('hex'), length }
}

/**
 * A started transport: `send(method, url, headers)` returns
 * { status, headers, sha, length, id } and `expectTransport(res, kind)`
 * proves which transport served it ('body' means this transport's body path).
 */
async function startTransport (t, name) {
  const seen = new Map()
  const pluginOptions = name === 'write' ? { zeroCopy: false } : {}
  const app = await startServer(t, pluginOptions, { route: routes(seen), listen: name !== 'inject' })
  const bodyKind = name === 'sendfile' ? 'sendfile' : 'write'

  let send
  if (name === 'inject') {
    send = async (method, url, headers = {}) => {
      const id = nextId()
      const res = await app.inject({ method, url, headers: { ...headers, 'x-req-id': id } })
      return { id, status: res.statusCode, headers: res.headers, sha: sha256(res.rawPayload), length: res.rawPayload.length }
    }
  } else {
    const agent = new Agent({ keepAliveTimeout: 10000, connections: 4 })
    t.after(() => agent.close())
    send = async (method, url, headers = {}) => {
      const id = nextId()
      const res = await request(urlOf(app, url), {
        method,
        headers: { ...headers, 'x-req-id': id },
        dispatcher: agent,
        headersTimeout: 20000,
        bodyTimeout: 20000
      })
      const { sha, length } = await drain(res.body)
      return { id, status: res.statusCode, headers: res.headers, sha, length }
    }
  }

  let before = app.zeroCopy.stats()
  /** Sends one request, remembering the counters just before it. */
  async function exchange (method, url, headers) {
    before = app.zeroCopy.stats()
    return send(method, url, headers)
  }

  async function expectTransport (res, kind) {
    const expected = kind === 'body' ? bodyKind : 'none'
    const after = app.zeroCopy.stats()
    const delta = {
      sendfile: after.responses.sendfile - before.responses.sendfile,
      write: after.responses.write - before.responses.write,
      none: after.responses.none - before.responses.none
    }
    assert.deepEqual(delta, { sendfile: 0, write: 0, none: 0, [expected]: 1 },
      `${name}: stats.responses should count one '${expected}' response`)
    assert.ok(await eventually(() => seen.has(res.id)), `${name}: onResponse did not fire for ${res.id}`)
    assert.equal(seen.get(res.id).transport, expected, `${name}: reply.zeroCopyTransport`)
    assert.equal(seen.get(res.id).status, res.status, `${name}: reply.statusCode in onResponse`)
    if (expected !== 'none') {
      // Bytes are counted when the transport finishes, which may trail the client.
      const counted = await eventually(() => app.zeroCopy.stats().bytes[expected] - before.bytes[expected] === res.length)
      assert.ok(counted, `${name}: stats.bytes.${expected} should grow by ${res.length}, ` +
        `grew by ${app.zeroCopy.stats().bytes[expected] - before.bytes[expected]}`)
      const fallbacks = Object.entries(after.fallbacks).filter(([k, v]) => v !== before.fallbacks[k]).map(([k]) => k)
      const reason = { sendfile: [], write: ['disabled'], inject: ['inject'] }[name]
      assert.deepEqual(fallbacks, reason, `${name}: fallback reason`)
    }
  }

  return { name, app, exchange, expectTransport, bodyKind }
}

// ------------------------------------------------------------------- cases

/** Checks a body response against the file region it should carry. */
function assertBody (res, { status, file, start, end, total }) {
  assert.equal(res.status, status, 'status')
  assert.equal(res.headers['content-length'], String(end - start), 'content-length')
  assert.equal(res.length, end - start, 'body length')
  assert.equal(res.sha, regionSha(file, start, end), 'body sha256')
  assert.equal(res.headers['transfer-encoding'], undefined, 'no transfer-encoding')
  assert.equal(res.headers['accept-ranges'], 'bytes')
  if (status === 206) {
    assert.equal(res.headers['content-range'], `bytes ${start}-${end - 1}/${total}`, 'content-range')
  } else {
    assert.equal(res.headers['content-range'], undefined, 'no content-range on a 200')
  }
}

const CASES = []
const addCase = (name, run) => CASES.push({ name, run })

// Full GET of every size.
for (const [file, size] of Object.entries(FILES)) {
  addCase(`GET ${file} (${size} B) in full`, async (tr) => {
    const res = await tr.exchange('GET', `/${file}`)
    assertBody(res, { status: 200, file, start: 0, end: size, total: size })
    assert.equal(res.headers['content-type'], 'application/octet-stream')
    assert.match(res.headers.etag, /^"[^"]+"$/)
    await tr.expectTransport(res, size > 0 ? 'body' : 'none')
  })
}

// Single ranges: [file, Range header, start, end (exclusive)].
const RANGES = [
  ['4k.bin', 'bytes=0-0', 0, 1, 'first byte'],
  ['1m.bin', 'bytes=-1', SIZES['1m'] - 1, SIZES['1m'], 'last byte (suffix 1)'],
  ['4k.bin', 'bytes=1000-1999', 1000, 2000, 'middle'],
  ['1m.bin', 'bytes=100-', 100, SIZES['1m'], 'open-ended'],
  ['4k.bin', 'bytes=-100000', 0, SIZES['4k'], 'suffix larger than the file'],
  ['4k.bin', 'bytes=4000-99999', 4000, SIZES['4k'], 'last-pos past the end'],
  ['one.bin', 'bytes=0-', 0, 1, 'the only byte of a 1 B file'],
  ['64m.bin', 'bytes=67108000-', 67108000, SIZES['64m'], 'tail of the 64 MiB file'],
  ['64m.bin', 'bytes=33554000-33558999', 33554000, 33559000, 'inside the 64 MiB file, across 32 MiB']
]
for (const [file, range, start, end, label] of RANGES) {
  addCase(`Range ${range} on ${file} (${label})`, async (tr) => {
    const res = await tr.exchange('GET', `/${file}`, { range })
    assertBody(res, { status: 206, file, start, end, total: FILES[file] })
    await tr.expectTransport(res, 'body')
  })
}

// Unsatisfiable ranges: 416, no body, Content-Range bytes */size.
const UNSATISFIABLE = [
  ['4k.bin', 'bytes=4096-'],
  ['4k.bin', 'bytes=5000-6000'],
  ['one.bin', 'bytes=1-'],
  ['empty.bin', 'bytes=0-'],
  ['4k.bin', 'bytes=-0']
]
for (const [file, range] of UNSATISFIABLE) {
  addCase(`Range ${range} on ${file} -> 416`, async (tr) => {
    const res = await tr.exchange('GET', `/${file}`, { range })
    assert.equal(res.status, 416)
    assert.equal(res.headers['content-range'], `bytes */${FILES[file]}`)
    assert.equal(res.length, 0, 'no body')
    assert.equal(res.headers['transfer-encoding'], undefined)
    await tr.expectTransport(res, 'none')
  })
}

// A non-zero suffix is satisfiable on an empty file (RFC 9110 §14.1.1) but
// names no byte a Content-Range could carry: the empty file is sent whole.
addCase('Range bytes=-1 on empty.bin -> 200 with the empty body', async (tr) => {
  const res = await tr.exchange('GET', '/empty.bin', { range: 'bytes=-1' })
  assertBody(res, { status: 200, file: 'empty.bin', start: 0, end: 0, total: 0 })
  await tr.expectTransport(res, 'none')
})

// HEAD: the GET's headers, no body.
for (const file of ['empty.bin', 'one.bin', '4k.bin', '1m.bin']) {
  addCase(`HEAD ${file} has the headers of GET and no body`, async (tr) => {
    const get = await tr.exchange('GET', `/${file}`)
    const head = await tr.exchange('HEAD', `/${file}`)
    assert.equal(head.status, 200)
    assert.equal(head.length, 0)
    assert.equal(head.headers['content-length'], String(FILES[file]))
    assert.deepEqual(representationHeaders(head.headers), representationHeaders(get.headers))
    await tr.expectTransport(head, 'none')
  })
}
addCase('HEAD with Range describes the 200 (Range is for GET)', async (tr) => {
  const get = await tr.exchange('GET', '/4k.bin')
  const head = await tr.exchange('HEAD', '/4k.bin', { range: 'bytes=0-9' })
  assert.equal(head.status, 200)
  assert.equal(head.headers['content-range'], undefined)
  assert.deepEqual(representationHeaders(head.headers), representationHeaders(get.headers))
  await tr.expectTransport(head, 'none')
})

// Slices through per-call options: the slice is the representation.
addCase('slice {start: 100, end: 1099} of 4k.bin', async (tr) => {
  const full = await tr.exchange('GET', '/4k.bin')
  const res = await tr.exchange('GET', '/slice/4k.bin')
  assertBody(res, { status: 200, file: '4k.bin', start: 100, end: 1100, total: 1000 })
  assert.match(res.headers.etag, /^"[^"]+"$/)
  assert.notEqual(res.headers.etag, full.headers.etag, 'a slice has its own validator')
  await tr.expectTransport(res, 'body')
})
for (const [range, start, end] of [['bytes=10-19', 10, 20], ['bytes=-10', 990, 1000], ['bytes=900-', 900, 1000], ['bytes=0-5000', 0, 1000]]) {
  addCase(`slice of 4k.bin with Range ${range} (relative to the slice)`, async (tr) => {
    const res = await tr.exchange('GET', '/slice/4k.bin', { range })
    assert.equal(res.status, 206)
    assert.equal(res.headers['content-range'], `bytes ${start}-${end - 1}/1000`)
    assert.equal(res.headers['content-length'], String(end - start))
    assert.equal(res.sha, regionSha('4k.bin', SLICE.start + start, SLICE.start + end))
    await tr.expectTransport(res, 'body')
  })
}
addCase('slice of 4k.bin with a Range past the slice -> 416 bytes */1000', async (tr) => {
  const res = await tr.exchange('GET', '/slice/4k.bin', { range: 'bytes=1000-' })
  assert.equal(res.status, 416)
  assert.equal(res.headers['content-range'], 'bytes */1000')
  assert.equal(res.length, 0)
  await tr.expectTransport(res, 'none')
})
addCase('slice whose end is past EOF stops at EOF, Range relative to it', async (tr) => {
  const res = await tr.exchange('GET', '/slice-tail/4k.bin')
  assertBody(res, { status: 200, file: '4k.bin', start: 4000, end: 4096, total: 96 })
  await tr.expectTransport(res, 'body')
  const ranged = await tr.exchange('GET', '/slice-tail/4k.bin', { range: 'bytes=-10' })
  assert.equal(ranged.status, 206)
  assert.equal(ranged.headers['content-range'], 'bytes 86-95/96')
  assert.equal(ranged.sha, regionSha('4k.bin', 4086, 4096))
  await tr.expectTransport(ranged, 'body')
})
addCase('HEAD of a slice has the slice length', async (tr) => {
  const res = await tr.exchange('HEAD', '/slice/4k.bin')
  assert.equal(res.status, 200)
  assert.equal(res.headers['content-length'], '1000')
  assert.equal(res.length, 0)
  await tr.expectTransport(res, 'none')
})

// Content-Disposition from the filename option.
addCase('filename -> Content-Disposition: attachment', async (tr) => {
  const res = await tr.exchange('GET', '/download/hello.txt?name=report.txt')
  assertBody(res, { status: 200, file: 'hello.txt', start: 0, end: 13, total: 13 })
  assert.equal(res.headers['content-disposition'], 'attachment; filename="report.txt"')
  assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8')
  await tr.expectTransport(res, 'body')
})
addCase('non-ASCII filename -> ASCII fallback and RFC 8187 filename*', async (tr) => {
  const res = await tr.exchange('GET', `/download/4k.bin?name=${encodeURIComponent('résumé "1".bin')}`)
  assert.equal(res.status, 200)
  assert.equal(res.headers['content-disposition'],
    'attachment; filename="r_sum_ _1_.bin"; filename*=UTF-8\'\'r%C3%A9sum%C3%A9%20%221%22.bin')
  assert.equal(res.sha, regionSha('4k.bin'))
  await tr.expectTransport(res, 'body')
})

// The app around the call.
addCase('reply.code(404) keeps its status, and Range is not applied', async (tr) => {
  const res = await tr.exchange('GET', '/nf/page.html', { range: 'bytes=0-3' })
  assert.equal(res.status, 404)
  assert.equal(res.headers['content-range'], undefined)
  assert.equal(res.headers['content-type'], 'text/html; charset=utf-8')
  assert.equal(res.headers['content-length'], String(fileBytes('page.html').length))
  assert.equal(res.sha, regionSha('page.html'))
  await tr.expectTransport(res, 'body')
})
addCase('headers set by the app are sent; its content-type and cache-control win', async (tr) => {
  const res = await tr.exchange('GET', '/typed/hello.txt', { range: 'bytes=7-11' })
  assert.equal(res.status, 206)
  assert.equal(res.headers['x-app'], '1')
  assert.equal(res.headers['content-type'], 'application/x-custom')
  assert.equal(res.headers['cache-control'], 'no-store')
  assert.equal(res.headers['content-range'], 'bytes 7-11/13')
  assert.equal(res.sha, regionSha('hello.txt', 7, 12))
  await tr.expectTransport(res, 'body')
})

// Conditionals: no body, whatever the transport.
addCase('If-None-Match: * -> 304, no body', async (tr) => {
  const res = await tr.exchange('GET', '/1m.bin', { 'if-none-match': '*' })
  assert.equal(res.status, 304)
  assert.equal(res.length, 0)
  assert.equal(res.headers['content-length'], undefined)
  assert.match(res.headers.etag, /^"[^"]+"$/)
  await tr.expectTransport(res, 'none')
})
addCase('If-Match mismatch -> 412, no body', async (tr) => {
  const res = await tr.exchange('GET', '/1m.bin', { 'if-match': '"nope"' })
  assert.equal(res.status, 412)
  assert.equal(res.length, 0)
  await tr.expectTransport(res, 'none')
})
addCase('If-Range with the current etag -> 206, stale -> 200', async (tr) => {
  const { headers } = await tr.exchange('HEAD', '/1m.bin')
  const hit = await tr.exchange('GET', '/1m.bin', { range: 'bytes=10-19', 'if-range': headers.etag })
  assertBody(hit, { status: 206, file: '1m.bin', start: 10, end: 20, total: SIZES['1m'] })
  await tr.expectTransport(hit, 'body')
  const miss = await tr.exchange('GET', '/1m.bin', { range: 'bytes=10-19', 'if-range': '"stale"' })
  assertBody(miss, { status: 200, file: '1m.bin', start: 0, end: SIZES['1m'], total: SIZES['1m'] })
  await tr.expectTransport(miss, 'body')
})

// ------------------------------------------------- the suite, per transport

for (const transport of ['sendfile', 'write', 'inject']) {
  test(`behaviour suite over the ${transport} transport`, { timeout: TEST_TIMEOUT }, async (t) => {
    const tr = await startTransport(t, transport)
    if (transport === 'sendfile') {
      assert.equal(tr.app.zeroCopy.native, true, `native addon must be loaded: ${tr.app.zeroCopy.nativeUnavailableReason}`)
    }
    for (const c of CASES) {
      await t.test(c.name, () => c.run(tr))
    }
  })
}

// HEAD on a real socket: no byte after the header block (a stray body would
// corrupt the next response on a keep-alive connection).
test('HEAD over a real socket sends no body bytes (sendfile and write)', { timeout: TEST_TIMEOUT }, async (t) => {
  for (const options of [{}, { zeroCopy: false }]) {
    const app = await startServer(t, options)
    const port = app.server.address().port
    const raw = await rawExchange(port,
      'HEAD /1m.bin HTTP/1.1\r\nHost: x\r\n\r\n' +
      'GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    const [head, get] = parseResponses(raw, ['HEAD', 'GET'])
    assert.equal(head.status, 200)
    assert.equal(head.headers['content-length'], String(SIZES['1m']))
    assert.equal(get.status, 200)
    assert.equal(get.body.toString(), 'hello, world\n', 'the next response follows the HEAD header block directly')
    const end = raw.indexOf('hello, world\n') + 13
    assert.equal(end, raw.length, 'nothing after the last body')
  }
})

// ------------------------------------------------------ transports compared

const MATRIX_FILES = ['empty.bin', 'one.bin', '4k.bin', '1m.bin']
const MATRIX_RANGES = [
  null,
  'bytes=0-0',
  'bytes=-1',
  'bytes=1-',
  'bytes=0-',
  'bytes=2-3',
  'bytes=-100000000',
  'bytes=3-2', // invalid: ignored
  'bytes=x-y', // invalid: ignored
  'items=0-1', // other unit: ignored
  'bytes=0-0,2-3', // multi-range: served in full
  'bytes=0-1,2-3', // adjacent: coalesced
  'bytes=4096-', // unsatisfiable on all but 1m
  'bytes=99999999999999999999-' // unsatisfiable everywhere
]
const MATRIX_EXTRA = [
  ['64m.bin', 'bytes=67108000-'],
  ['64m.bin', 'bytes=-1'],
  ['64m.bin', 'bytes=67108864-']
]
// [url, request headers]: conditionals and app-shaped responses.
const MATRIX_VARIANTS = [
  ['/4k.bin', { 'if-none-match': '*' }],
  ['/4k.bin', { 'if-none-match': '"nope"' }],
  ['/4k.bin', { 'if-match': '"nope"' }],
  ['/4k.bin', { 'if-match': '*', range: 'bytes=5-9' }],
  ['/4k.bin', { 'if-modified-since': new Date(Date.now() + 3600e3).toUTCString() }],
  ['/4k.bin', { 'if-unmodified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' }],
  ['/4k.bin', { 'if-range': '"stale"', range: 'bytes=0-0' }],
  ['/4k.bin', { 'if-range': '"stale"', range: 'bytes=99999-' }],
  ['/nf/page.html', {}],
  ['/nf/page.html', { range: 'bytes=0-0', 'if-none-match': '*' }],
  ['/typed/hello.txt', {}],
  ['/typed/hello.txt', { range: 'bytes=-3' }],
  ['/download/hello.txt?name=a%20b.txt', { range: 'bytes=0-4' }],
  ['/slice/1m.bin', { range: 'bytes=-1' }],
  ['/slice/one.bin', {}],
  ['/slice/empty.bin', { range: 'bytes=0-' }]
]

test('sendfile, write and inject give identical status, headers and bytes', { timeout: TEST_TIMEOUT }, async (t) => {
  const sendfile = await startTransport(t, 'sendfile')
  const write = await startTransport(t, 'write')
  // inject through the sendfile server's own instance: the fallback is chosen per connection.
  const inject = {
    async exchange (method, url, headers) {
      const res = await sendfile.app.inject({ method, url, headers })
      return { status: res.statusCode, headers: res.headers, sha: sha256(res.rawPayload), length: res.rawPayload.length }
    }
  }

  const combos = []
  for (const file of MATRIX_FILES) {
    for (const range of MATRIX_RANGES) combos.push([file, range])
  }
  combos.push(...MATRIX_EXTRA)

  const exchanges = []
  for (const [file, range] of combos) {
    for (const method of ['GET', 'HEAD']) {
      for (const route of ['', '/slice']) {
        if (route === '/slice' && (file !== '4k.bin' || method === 'HEAD')) continue
        exchanges.push([method, `${route}/${file}`, range === null ? {} : { range }])
      }
    }
  }
  for (const [url, headers] of MATRIX_VARIANTS) {
    exchanges.push(['GET', url, headers], ['HEAD', url, headers])
  }

  let compared = 0
  let sawSendfile = 0
  for (const [method, url, headers] of exchanges) {
    const label = `${method} ${url} ${JSON.stringify(headers)}`
    const a = await sendfile.exchange(method, url, headers)
    const isBody = method === 'GET' && a.length > 0
    await sendfile.expectTransport(a, isBody ? 'body' : 'none')
    if (isBody) sawSendfile++
    const b = await write.exchange(method, url, headers)
    await write.expectTransport(b, isBody ? 'body' : 'none')
    const c = await inject.exchange(method, url, headers)

    assert.equal(a.headers['transfer-encoding'], undefined, `${label}: sendfile has no transfer-encoding`)
    assert.equal(b.headers['transfer-encoding'], undefined, `${label}: write has no transfer-encoding`)
    assert.equal(b.status, a.status, `${label}: status, write vs sendfile`)
    assert.equal(c.status, a.status, `${label}: status, inject vs sendfile`)
    const ha = representationHeaders(a.headers)
    assert.deepEqual(representationHeaders(b.headers), ha, `${label}: headers, write vs sendfile`)
    assert.deepEqual(representationHeaders(c.headers), ha, `${label}: headers, inject vs sendfile`)
    assert.equal(b.sha, a.sha, `${label}: body, write vs sendfile`)
    assert.equal(c.sha, a.sha, `${label}: body, inject vs sendfile`)
    assert.equal(a.length, method === 'HEAD' ? 0 : Number(a.headers['content-length'] ?? 0), `${label}: length`)
    compared++
  }
  assert.ok(compared > 100, `compared ${compared} exchanges`)
  assert.ok(sawSendfile > 30, `sendfile served ${sawSendfile} bodies`)
})

// One keep-alive connection, pipelined requests mixing body and bodyless
// responses: the bytes on the wire are the same for both transports, but
// for the Date line.
test('a pipelined keep-alive conversation is byte-identical over sendfile and write', { timeout: TEST_TIMEOUT }, async (t) => {
  const conversation = [
    ['GET', '/1m.bin', ''],
    ['HEAD', '/4k.bin', ''],
    ['GET', '/4k.bin', 'If-None-Match: *\r\n'],
    ['GET', '/64m.bin', 'Range: bytes=-5\r\n'],
    ['GET', '/hello.txt', ''],
    ['GET', '/empty.bin', ''],
    ['GET', '/4k.bin', 'Range: bytes=9999-\r\n'],
    ['GET', '/slice/4k.bin', 'Range: bytes=-10\r\n'],
    ['GET', '/nf/page.html', ''],
    ['GET', '/one.bin', 'Connection: close\r\n']
  ]
  const text = conversation.map(([m, u, extra]) => `${m} ${u} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`).join('')
  const wires = {}
  for (const name of ['sendfile', 'write']) {
    const seen = new Map()
    const app = await startServer(t, name === 'write' ? { zeroCopy: false } : {}, { route: routes(seen) })
    const raw = await rawExchange(app.server.address().port, text)
    const responses = parseResponses(raw, conversation.map(([m]) => m))
    assert.equal(responses.length, conversation.length, `${name}: every response arrived`)
    assert.equal(responses[0].status, 200)
    assert.equal(sha256(responses[0].body), regionSha('1m.bin'), `${name}: 1 MiB body`)
    assert.equal(sha256(responses[3].body), regionSha('64m.bin', SIZES['64m'] - 5), `${name}: 64 MiB tail`)
    assert.equal(responses[9].body.toString('latin1'), fileBytes('one.bin').toString('latin1'))
    const stats = app.zeroCopy.stats().responses
    assert.deepEqual(stats, name === 'sendfile'
      ? { sendfile: 6, write: 0, none: 4 }
      : { sendfile: 0, write: 6, none: 4 }, `${name}: transports used`)
    wires[name] = raw.toString('latin1').replace(/\r\nDate: [^\r]*\r\n/g, '\r\nDate: -\r\n')
  }
  assert.equal(wires.write.length, wires.sendfile.length)
  assert.ok(wires.write === wires.sendfile, 'the same bytes on the wire')
})

// An app-level onSend hook sees (and may change) the write fallback's reply,
// but the sendfile path hijacks the reply before onSend runs: the same app
// gets different headers depending on the transport.
test('an onSend hook applies to both transports', {
  timeout: TEST_TIMEOUT
}, async (t) => {
  const results = {}
  for (const name of ['sendfile', 'write', 'inject']) {
    const app = await startServer(t, name === 'write' ? { zeroCopy: false } : {}, {
      listen: name !== 'inject',
      route: (app) => {
        app.addHook('onSend', async (req, reply, payload) => {
          reply.header('x-on-send', 'yes')
          return payload
        })
        app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
      }
    })
    const res = name === 'inject'
      ? await app.inject('/4k.bin').then((r) => ({ status: r.statusCode, headers: r.headers }))
      : await getOnce(t, urlOf(app, '/4k.bin'))
    assert.equal(res.status, 200)
    results[name] = { transport: name === 'inject' ? 'write' : (app.zeroCopy.stats().responses.sendfile === 1 ? 'sendfile' : 'write'), header: res.headers['x-on-send'] }
  }
  assert.equal(results.sendfile.transport, 'sendfile')
  assert.deepEqual(results, {
    sendfile: { transport: 'sendfile', header: 'yes' },
    write: { transport: 'write', header: 'yes' },
    inject: { transport: 'write', header: 'yes' }
  })
})

/** One GET on its own short-lived agent. */
async function getOnce (t, url, headers = {}) {
  const agent = new Agent()
  t.after(() => agent.close())
  const res = await request(url, { headers, dispatcher: agent, headersTimeout: 20000, bodyTimeout: 20000 })
  const { sha, length } = await drain(res.body)
  return { status: res.statusCode, headers: res.headers, sha, length }
}

// Optional per-call options written out as `undefined` (`{ start: opts.start,
// end: opts.end }`, allowed by the `start?: number` types) must mean "not
// given". ajv skips undefined properties, then lib/options.ts resolve()
// spreads them over the defaults: start becomes undefined, the slice NaN.
test('a slice given as { start: undefined, end: undefined } is the whole file', {
  timeout: TEST_TIMEOUT
}, async (t) => {
  const route = (app) => {
    app.get('/u/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { start: undefined, end: undefined }))
    app.get('/u10/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { start: undefined, end: 9 }))
    app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  }
  const app = await startServer(t, {}, { route })
  const full = await getOnce(t, urlOf(app, '/4k.bin'))
  const res = await getOnce(t, urlOf(app, '/u/4k.bin'))
  assert.equal(res.status, 200)
  assert.equal(res.headers['content-length'], '4096')
  assert.equal(res.sha, regionSha('4k.bin'))
  assert.equal(res.headers.etag, full.headers.etag, 'no slice: the file\'s own etag')
  const first10 = await getOnce(t, urlOf(app, '/u10/4k.bin'))
  assert.equal(first10.headers['content-length'], '10')
  assert.equal(first10.sha, regionSha('4k.bin', 0, 10))
  assert.doesNotMatch(first10.headers.etag, /NaN/)
})

test('zeroCopy: undefined keeps the default (sendfile), per call and per plugin', {
  timeout: TEST_TIMEOUT
}, async (t) => {
  const perCall = await startServer(t, {}, {
    route: (app) => app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { zeroCopy: undefined }))
  })
  const plugin = await startServer(t, { zeroCopy: undefined })
  for (const app of [perCall, plugin]) {
    const res = await getOnce(t, urlOf(app, '/1m.bin'))
    assert.equal(res.status, 200)
    assert.equal(res.sha, regionSha('1m.bin'))
    const stats = app.zeroCopy.stats()
    assert.deepEqual(stats.responses, { sendfile: 1, write: 0, none: 0 })
    assert.equal(stats.fallbacks.disabled, 0)
  }
})
