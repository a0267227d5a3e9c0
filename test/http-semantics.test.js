'use strict'
// RFC 9110 behaviour of file responses, over real sockets, on the zero-copy
// transport: representation metadata (Content-Type, Last-Modified, ETag,
// Cache-Control, Accept-Ranges), the options that switch them off,
// conditional requests (§13), Range (§14), and how the plugin composes with
// the app around it (headers, status, hooks, logging).
// Every response with a body is proven to have been sent with sendfile.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')
const { Writable } = require('node:stream')
const { Agent, request } = require('undici')
const { sha256, SIZES, fixtures, startServer, urlOf, rawExchange, parseResponses, eventually } = require('./helpers')

const TEST_TIMEOUT = 30000
const HOUR = 3600 * 1000

const fileCache = new Map()
function fileBytes (name) {
  let buf = fileCache.get(name)
  if (buf === undefined) {
    buf = fs.readFileSync(path.join(fixtures(), name))
    fileCache.set(name, buf)
  }
  return buf
}
const regionSha = (name, start = 0, end = fileBytes(name).length) => sha256(fileBytes(name).subarray(start, end))
const mtimeOf = (name) => fs.statSync(path.join(fixtures(), name)).mtimeMs
const httpDate = (ms) => new Date(ms).toUTCString()

/**
 * A started app plus a client. `get(url, headers, method)` returns
 * { status, headers, body: Buffer, transport } where transport is the
 * reply.zeroCopyTransport the server recorded for that very request.
 */
async function setup (t, pluginOptions = {}, { route, fastifyOptions } = {}) {
  const seen = new Map()
  let seq = 0
  const app = await startServer(t, pluginOptions, {
    fastifyOptions,
    route: (app) => {
      app.addHook('onResponse', async (req, reply) => {
        const id = req.headers['x-req-id']
        if (id !== undefined) seen.set(id, { transport: reply.zeroCopyTransport, status: reply.statusCode })
      })
      if (route) route(app)
      app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
    }
  })
  const agent = new Agent({ keepAliveTimeout: 10000, connections: 2 })
  t.after(() => agent.close())

  async function get (url, headers = {}, method = 'GET') {
    const id = `q${++seq}`
    const res = await request(urlOf(app, url), {
      method,
      headers: { ...headers, 'x-req-id': id },
      dispatcher: agent,
      headersTimeout: 10000,
      bodyTimeout: 10000
    })
    const chunks = []
    for await (const chunk of res.body) chunks.push(chunk)
    assert.ok(await eventually(() => seen.has(id)), `onResponse did not fire for ${method} ${url}`)
    const record = seen.get(id)
    assert.equal(record.status, res.statusCode, 'reply.statusCode seen by onResponse')
    return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), transport: record.transport }
  }
  return { app, get }
}

/** A 200/206 with a body went out through sendfile(2), and its bytes are the region. */
function assertSentfile (res, file, start = 0, end = fileBytes(file).length) {
  assert.equal(res.transport, 'sendfile', 'served by sendfile')
  assert.equal(res.headers['content-length'], String(end - start), 'content-length')
  assert.equal(res.body.length, end - start, 'body length')
  assert.equal(sha256(res.body), regionSha(file, start, end), 'body sha256')
}

/** A response with no body: the 'none' transport and zero body bytes. */
function assertNoBody (res) {
  assert.equal(res.transport, 'none', 'no body transport')
  assert.equal(res.body.length, 0, 'no body bytes')
}

function assert304 (res, etag) {
  assert.equal(res.status, 304)
  assertNoBody(res)
  assert.equal(res.headers['content-length'], undefined, '304 has no content-length')
  assert.equal(res.headers['content-type'], undefined, '304 has no content-type')
  assert.equal(res.headers['content-range'], undefined)
  assert.equal(res.headers.etag, etag, '304 carries the current etag')
}

// ------------------------------------------------------- representation

test('Content-Type follows the extension', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t)
  const cases = [
    ['hello.txt', 'text/plain; charset=utf-8'],
    ['sub/nested.txt', 'text/plain; charset=utf-8'],
    ['page.html', 'text/html; charset=utf-8'],
    ['4k.bin', 'application/octet-stream'],
    ['one.bin', 'application/octet-stream']
  ]
  for (const [file, type] of cases) {
    const res = await get(`/${file}`)
    assert.equal(res.status, 200, file)
    assert.equal(res.headers['content-type'], type, file)
    assertSentfile(res, file)
  }
})

test('Content-Type: more extensions, case-insensitive, none or unknown -> octet-stream', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t)
  const tag = `${process.pid}-${crypto.randomBytes(3).toString('hex')}`
  const cases = [
    [`ct-${tag}.JSON`, 'application/json; charset=utf-8'],
    [`ct-${tag}.css`, 'text/css; charset=utf-8'],
    [`ct-${tag}.svg`, 'image/svg+xml; charset=utf-8'],
    [`ct-${tag}.png`, 'image/png'],
    [`ct-${tag}.Txt`, 'text/plain; charset=utf-8'],
    [`ct-${tag}.unknownext`, 'application/octet-stream'],
    [`ct-${tag}`, 'application/octet-stream']
  ]
  for (const [name] of cases) {
    const full = path.join(fixtures(), name)
    fs.writeFileSync(full, `content of ${name}\n`)
    t.after(() => fs.rmSync(full, { force: true }))
  }
  for (const [name, type] of cases) {
    const res = await get(`/${name}`)
    assert.equal(res.status, 200, name)
    assert.equal(res.headers['content-type'], type, name)
    assert.equal(res.body.toString(), `content of ${name}\n`)
    assert.equal(res.transport, 'sendfile')
  }
})

test('Last-Modified is the file mtime as an HTTP-date; ETag is strong; Accept-Ranges: bytes; default Cache-Control', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t)
  for (const file of ['hello.txt', '4k.bin', '1m.bin']) {
    const res = await get(`/${file}`)
    assert.equal(res.status, 200)
    assertSentfile(res, file)
    assert.equal(res.headers['last-modified'], httpDate(mtimeOf(file)), `${file}: last-modified`)
    assert.match(res.headers['last-modified'], /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/)
    assert.match(res.headers.etag, /^"[\x21\x23-\x7e]+"$/, `${file}: strong etag`)
    assert.equal(res.headers['accept-ranges'], 'bytes')
    assert.equal(res.headers['cache-control'], 'public, max-age=0')
  }
  const a = await get('/hello.txt')
  const b = await get('/4k.bin')
  assert.notEqual(a.headers.etag, b.headers.etag, 'different files, different etags')
  const again = await get('/hello.txt')
  assert.equal(again.headers.etag, a.headers.etag, 'stable while the file is unchanged')
})

test('ETag and Last-Modified change when the file is rewritten', { timeout: TEST_TIMEOUT }, async (t) => {
  // Every request looks at the path again: the rename-replace below is
  // what only a stat() sees, and the default cache does that at most once a
  // second (its freshness bound: test/file-cache.test.js).
  const { get } = await setup(t, { cache: { validateMs: 0 } })
  const name = `etag-${process.pid}-${crypto.randomBytes(4).toString('hex')}.txt`
  const full = path.join(fixtures(), name)
  t.after(() => fs.rmSync(full, { force: true }))

  fs.writeFileSync(full, 'version one\n')
  const v1 = await get(`/${name}`)
  assert.equal(v1.status, 200)
  assert.equal(v1.body.toString(), 'version one\n')
  assert.equal(v1.transport, 'sendfile')

  // Same size, different bytes, in place (same inode): only the mtime moves.
  // Rewritten until the file system's timestamp granularity shows it.
  const mtimeBefore = fs.statSync(full, { bigint: true }).mtimeNs
  const inoBefore = fs.statSync(full).ino
  for (let i = 0; i < 60; i++) {
    await new Promise((resolve) => setTimeout(resolve, i === 0 ? 5 : 50))
    fs.writeFileSync(full, 'version two\n')
    if (fs.statSync(full, { bigint: true }).mtimeNs !== mtimeBefore) break
  }
  assert.equal(fs.statSync(full).ino, inoBefore, 'rewritten in place')
  const v2 = await get(`/${name}`)
  assert.equal(v2.body.toString(), 'version two\n')
  assert.notEqual(v2.headers.etag, v1.headers.etag, 'in-place rewrite of the same size changes the etag')
  assert.match(v2.headers.etag, /^"[^"]+"$/)

  // A different size.
  fs.writeFileSync(full, 'version three, longer\n')
  const v3 = await get(`/${name}`)
  assert.equal(v3.body.toString(), 'version three, longer\n')
  assert.notEqual(v3.headers.etag, v2.headers.etag)

  // Replaced by rename with the very same mtime and size: the inode differs.
  const tmp = `${full}.tmp`
  fs.writeFileSync(tmp, 'version four, longer!\n')
  const st = fs.statSync(full)
  fs.utimesSync(tmp, st.atime, st.mtime)
  fs.renameSync(tmp, full)
  const v4 = await get(`/${name}`)
  assert.equal(v4.body.toString(), 'version four, longer!\n')
  assert.notEqual(v4.headers.etag, v3.headers.etag, 'a rename with the same size and mtime changes the etag')

  // An explicit mtime an hour back shows in Last-Modified, and the old etag no longer validates.
  const past = Math.floor((Date.now() - HOUR) / 1000) * 1000
  fs.utimesSync(full, new Date(past), new Date(past))
  const v5 = await get(`/${name}`)
  assert.equal(v5.headers['last-modified'], httpDate(past))
  assert.notEqual(v5.headers.etag, v4.headers.etag)
  const stale = await get(`/${name}`, { 'if-none-match': v4.headers.etag })
  assert.equal(stale.status, 200)
  assert.equal(stale.body.toString(), 'version four, longer!\n')
})

test('Cache-Control: maxAge and immutable', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t, { maxAge: '1d', immutable: true }, {
    route: (app) => {
      app.get('/hour/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { maxAge: 3600 * 1000, immutable: false }))
    }
  })
  const res = await get('/hello.txt')
  assert.equal(res.headers['cache-control'], 'public, max-age=86400, immutable')
  assertSentfile(res, 'hello.txt')
  const hour = await get('/hour/hello.txt')
  assert.equal(hour.headers['cache-control'], 'public, max-age=3600')
  assertSentfile(hour, 'hello.txt')
})

test('options switch headers off: etag, lastModified, cacheControl, acceptRanges, contentType', { timeout: TEST_TIMEOUT }, async (t) => {
  const per = {
    noetag: { etag: false },
    nolm: { lastModified: false },
    nocc: { cacheControl: false },
    noranges: { acceptRanges: false },
    notype: { contentType: false }
  }
  const { get } = await setup(t, {}, {
    route: (app) => {
      app.get('/opt/:set/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], per[req.params.set]))
    }
  })
  const lm = httpDate(mtimeOf('4k.bin'))
  const base = await get('/4k.bin')

  const noEtag = await get('/opt/noetag/4k.bin')
  assert.equal(noEtag.headers.etag, undefined)
  assert.equal(noEtag.headers['last-modified'], lm)
  assertSentfile(noEtag, '4k.bin')
  // Without an etag, If-None-Match cannot match anything but "*".
  const noEtagInm = await get('/opt/noetag/4k.bin', { 'if-none-match': base.headers.etag })
  assert.equal(noEtagInm.status, 200)
  assertSentfile(noEtagInm, '4k.bin')
  // And an If-Range etag cannot be validated: the full body.
  const noEtagIfRange = await get('/opt/noetag/4k.bin', { range: 'bytes=0-9', 'if-range': base.headers.etag })
  assert.equal(noEtagIfRange.status, 200)
  assertSentfile(noEtagIfRange, '4k.bin')

  const noLm = await get('/opt/nolm/4k.bin')
  assert.equal(noLm.headers['last-modified'], undefined)
  assert.equal(noLm.headers.etag, base.headers.etag)
  assertSentfile(noLm, '4k.bin')
  const noLmIms = await get('/opt/nolm/4k.bin', { 'if-modified-since': httpDate(Date.now() + HOUR) })
  assert.equal(noLmIms.status, 200, 'If-Modified-Since ignored without Last-Modified')
  assertSentfile(noLmIms, '4k.bin')

  const noCc = await get('/opt/nocc/4k.bin')
  assert.equal(noCc.headers['cache-control'], undefined)
  assertSentfile(noCc, '4k.bin')

  const noRanges = await get('/opt/noranges/4k.bin', { range: 'bytes=0-9' })
  assert.equal(noRanges.status, 200, 'Range ignored')
  assert.equal(noRanges.headers['accept-ranges'], undefined)
  assert.equal(noRanges.headers['content-range'], undefined)
  assertSentfile(noRanges, '4k.bin')
  const noRanges416 = await get('/opt/noranges/4k.bin', { range: 'bytes=999999-' })
  assert.equal(noRanges416.status, 200, 'an unsatisfiable Range is ignored too')
  assertSentfile(noRanges416, '4k.bin')

  const noType = await get('/opt/notype/hello.txt')
  assert.equal(noType.headers['content-type'], undefined)
  assertSentfile(noType, 'hello.txt')
})

test('plugin-level options off: no validators, no cache-control, no ranges, no type', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t, { etag: false, lastModified: false, cacheControl: false, acceptRanges: false, contentType: false })
  const res = await get('/hello.txt', { range: 'bytes=0-1', 'if-none-match': '"x"', 'if-modified-since': httpDate(Date.now() + HOUR) })
  assert.equal(res.status, 200)
  for (const name of ['etag', 'last-modified', 'cache-control', 'accept-ranges', 'content-type', 'content-range']) {
    assert.equal(res.headers[name], undefined, name)
  }
  assertSentfile(res, 'hello.txt')
  // If-None-Match: * still matches: the file exists.
  const star = await get('/hello.txt', { 'if-none-match': '*' })
  assert.equal(star.status, 304)
  assertNoBody(star)
})

// --------------------------------------------------------- conditionals

test('If-None-Match: matching forms give 304 without body, length or type', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t)
  const { headers } = await get('/4k.bin')
  const etag = headers.etag
  for (const value of [etag, `W/${etag}`, `"nope", ${etag}`, `"a",  W/${etag} , "b"`, '*']) {
    const res = await get('/4k.bin', { 'if-none-match': value })
    assert304(res, etag)
    assert.equal(res.headers['last-modified'], headers['last-modified'], '304 keeps Last-Modified')
    assert.equal(res.headers['cache-control'], headers['cache-control'], '304 keeps Cache-Control')
  }
  // HEAD is conditional too.
  assert304(await get('/4k.bin', { 'if-none-match': etag }, 'HEAD'), etag)
  // Conditionals come before Range (§13.2.2): a fresh cache gets 304, not 206 or 416.
  assert304(await get('/4k.bin', { 'if-none-match': etag, range: 'bytes=0-9' }), etag)
  assert304(await get('/4k.bin', { 'if-none-match': etag, range: 'bytes=99999-' }), etag)
  for (const value of ['"nope"', `"${etag}"`, 'W/"nope"', etag.slice(0, -2) + '"']) {
    const res = await get('/4k.bin', { 'if-none-match': value })
    assert.equal(res.status, 200, `If-None-Match: ${value}`)
    assertSentfile(res, '4k.bin')
  }
})

test('a 304 puts no body bytes on the wire and the connection stays usable', { timeout: TEST_TIMEOUT }, async (t) => {
  const { app, get } = await setup(t)
  const etag = (await get('/hello.txt')).headers.etag
  const raw = await rawExchange(app.server.address().port,
    `GET /1m.bin HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n` +
    `GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${etag}\r\n\r\n` +
    'GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  const [a, b, c] = parseResponses(raw, ['GET', 'GET', 'GET'])
  assert.equal(a.status, 304)
  assert.equal(a.headers['content-length'], undefined)
  assert.equal(a.headers['transfer-encoding'], undefined)
  assert.equal(b.status, 304)
  assert.equal(b.headers.etag, etag)
  assert.equal(c.status, 200)
  assert.equal(c.body.toString(), 'hello, world\n')
  assert.equal(raw.length, raw.lastIndexOf('hello, world\n') + 13, 'nothing but the headers before the last body')
})

test('If-Modified-Since: equal or later -> 304, earlier -> 200', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t)
  const first = await get('/hello.txt')
  const lm = first.headers['last-modified']
  const mtime = Date.parse(lm)
  assert304(await get('/hello.txt', { 'if-modified-since': lm }), first.headers.etag)
  assert304(await get('/hello.txt', { 'if-modified-since': httpDate(mtime + HOUR) }), first.headers.etag)
  // The obsolete date forms are accepted too (RFC 9110 §5.6.7).
  const d = new Date(mtime)
  const days = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
  const p2 = (n) => String(n).padStart(2, '0')
  const month = lm.split(' ')[2]
  const rfc850 = `${days[d.getUTCDay()]}, ${p2(d.getUTCDate())}-${month}-${p2(d.getUTCFullYear() % 100)} ${lm.split(' ')[4]} GMT`
  assert304(await get('/hello.txt', { 'if-modified-since': rfc850 }), first.headers.etag)
  const before = await get('/hello.txt', { 'if-modified-since': httpDate(mtime - 1000) })
  assert.equal(before.status, 200)
  assertSentfile(before, 'hello.txt')
  const garbage = await get('/hello.txt', { 'if-modified-since': 'yesterday' })
  assert.equal(garbage.status, 200, 'an invalid date is ignored')
  assertSentfile(garbage, 'hello.txt')
})

test('If-None-Match takes precedence over If-Modified-Since', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t)
  const { headers } = await get('/hello.txt')
  const later = httpDate(Date.parse(headers['last-modified']) + HOUR)
  const earlier = httpDate(Date.parse(headers['last-modified']) - HOUR)
  const miss = await get('/hello.txt', { 'if-none-match': '"other"', 'if-modified-since': later })
  assert.equal(miss.status, 200, 'a non-matching If-None-Match wins over a fresh If-Modified-Since')
  assertSentfile(miss, 'hello.txt')
  assert304(await get('/hello.txt', { 'if-none-match': headers.etag, 'if-modified-since': earlier }), headers.etag)
})

test('If-Match and If-Unmodified-Since', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t)
  const { headers } = await get('/4k.bin')
  const mtime = Date.parse(headers['last-modified'])

  const mismatch = await get('/4k.bin', { 'if-match': '"nope"' })
  assert.equal(mismatch.status, 412)
  assertNoBody(mismatch)
  const weak = await get('/4k.bin', { 'if-match': `W/${headers.etag}` })
  assert.equal(weak.status, 412, 'If-Match uses the strong comparison')
  assertNoBody(weak)

  for (const value of ['*', headers.etag, `"nope", ${headers.etag}`]) {
    const res = await get('/4k.bin', { 'if-match': value })
    assert.equal(res.status, 200, `If-Match: ${value}`)
    assertSentfile(res, '4k.bin')
  }
  // If-Match passes, Range still applies.
  const ranged = await get('/4k.bin', { 'if-match': headers.etag, range: 'bytes=0-99' })
  assert.equal(ranged.status, 206)
  assertSentfile(ranged, '4k.bin', 0, 100)

  const ius = await get('/4k.bin', { 'if-unmodified-since': httpDate(mtime - HOUR) })
  assert.equal(ius.status, 412)
  assertNoBody(ius)
  for (const date of [headers['last-modified'], httpDate(mtime + HOUR)]) {
    const res = await get('/4k.bin', { 'if-unmodified-since': date })
    assert.equal(res.status, 200)
    assertSentfile(res, '4k.bin')
  }
  // If-Match present: If-Unmodified-Since is not evaluated (§13.2.2 step 2).
  const both = await get('/4k.bin', { 'if-match': '*', 'if-unmodified-since': httpDate(mtime - HOUR) })
  assert.equal(both.status, 200)
  assertSentfile(both, '4k.bin')
  // 412 comes before 304 (§13.2.2).
  const order = await get('/4k.bin', { 'if-match': '"nope"', 'if-none-match': headers.etag })
  assert.equal(order.status, 412)
})

test('If-Range: current etag or exact date -> 206; stale, weak or other date -> 200 full', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t)
  const { headers } = await get('/4k.bin')
  const range = 'bytes=100-199'

  for (const ifRange of [headers.etag, headers['last-modified']]) {
    const res = await get('/4k.bin', { range, 'if-range': ifRange })
    assert.equal(res.status, 206, `If-Range: ${ifRange}`)
    assert.equal(res.headers['content-range'], 'bytes 100-199/4096')
    assertSentfile(res, '4k.bin', 100, 200)
  }
  // If-Range passes: the Range is evaluated, unsatisfiable included.
  const unsat = await get('/4k.bin', { range: 'bytes=5000-', 'if-range': headers.etag })
  assert.equal(unsat.status, 416)
  assert.equal(unsat.headers['content-range'], 'bytes */4096')
  assertNoBody(unsat)
  // If-Range fails: the Range is ignored, unsatisfiable or not.
  const ignored = await get('/4k.bin', { range: 'bytes=5000-', 'if-range': '"stale"' })
  assert.equal(ignored.status, 200)
  assertSentfile(ignored, '4k.bin')

  const lm = Date.parse(headers['last-modified'])
  for (const ifRange of ['"stale"', `W/${headers.etag}`, httpDate(lm - 1000), httpDate(lm + HOUR), 'not a validator']) {
    const res = await get('/4k.bin', { range, 'if-range': ifRange })
    assert.equal(res.status, 200, `If-Range: ${ifRange}`)
    assert.equal(res.headers['content-range'], undefined)
    assertSentfile(res, '4k.bin')
  }
})

test('a slice (per-call start/end) has its own validator for conditionals and If-Range', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t, {}, {
    route: (app) => app.get('/slice/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { start: 100, end: 1099 }))
  })
  const file = await get('/4k.bin')
  const slice = await get('/slice/4k.bin')
  assert.equal(slice.status, 200)
  assertSentfile(slice, '4k.bin', 100, 1100)
  assert.match(slice.headers.etag, /^"[^"]+"$/)
  assert.notEqual(slice.headers.etag, file.headers.etag)
  assert.equal(slice.headers['last-modified'], file.headers['last-modified'])
  assert304(await get('/slice/4k.bin', { 'if-none-match': slice.headers.etag }), slice.headers.etag)
  const other = await get('/slice/4k.bin', { 'if-none-match': file.headers.etag })
  assert.equal(other.status, 200, "the whole file's etag does not validate the slice")
  assertSentfile(other, '4k.bin', 100, 1100)
  const hit = await get('/slice/4k.bin', { range: 'bytes=0-9', 'if-range': slice.headers.etag })
  assert.equal(hit.status, 206)
  assert.equal(hit.headers['content-range'], 'bytes 0-9/1000')
  assertSentfile(hit, '4k.bin', 100, 110)
  const miss = await get('/slice/4k.bin', { range: 'bytes=0-9', 'if-range': file.headers.etag })
  assert.equal(miss.status, 200)
  assertSentfile(miss, '4k.bin', 100, 1100)
})

// ----------------------------------------------------------------- Range

test('Range: multi-range served in full; overlapping or adjacent ranges coalesce', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t)
  for (const range of ['bytes=0-0,10-20', 'bytes=0-9,20-29,40-', 'bytes=-10,0-0']) {
    const res = await get('/4k.bin', { range })
    assert.equal(res.status, 200, range)
    assert.equal(res.headers['content-range'], undefined)
    assert.doesNotMatch(res.headers['content-type'], /multipart/)
    assertSentfile(res, '4k.bin')
  }
  for (const [range, start, end] of [
    ['bytes=0-10,5-20', 0, 21],
    ['bytes=0-9,10-19', 0, 20],
    ['bytes=10-19,0-9', 0, 20],
    ['bytes=100-200, 150-160', 100, 201],
    ['bytes=4000-,-50', 4000, 4096],
    ['bytes=0-0, 5000-6000', 0, 1] // the unsatisfiable member is dropped
  ]) {
    const res = await get('/4k.bin', { range })
    assert.equal(res.status, 206, range)
    assert.equal(res.headers['content-range'], `bytes ${start}-${end - 1}/4096`, range)
    assertSentfile(res, '4k.bin', start, end)
  }
  const bad = await get('/4k.bin', { range: 'bytes=0-0,x' })
  assert.equal(bad.status, 200, 'a malformed member makes the whole header ignored')
  assertSentfile(bad, '4k.bin')
  const tail = await get('/64m.bin', { range: 'bytes=-1000' })
  assert.equal(tail.status, 206)
  assert.equal(tail.headers['content-range'], `bytes ${SIZES['64m'] - 1000}-${SIZES['64m'] - 1}/${SIZES['64m']}`)
  assertSentfile(tail, '64m.bin', SIZES['64m'] - 1000, SIZES['64m'])
})

test('Range on a POST route is ignored', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t, {}, {
    route: (app) => app.post('/upload/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  })
  const res = await get('/upload/4k.bin', { range: 'bytes=0-9' }, 'POST')
  assert.equal(res.status, 200)
  assert.equal(res.headers['content-range'], undefined)
  assertSentfile(res, '4k.bin')
  const unsat = await get('/upload/4k.bin', { range: 'bytes=99999-' }, 'POST')
  assert.equal(unsat.status, 200, 'no 416 for a method Range does not apply to')
  assertSentfile(unsat, '4k.bin')
  // §13.1.3: If-Modified-Since is for GET/HEAD only.
  const ims = await get('/upload/4k.bin', { 'if-modified-since': httpDate(Date.now() + HOUR) }, 'POST')
  assert.equal(ims.status, 200)
  assertSentfile(ims, '4k.bin')
  // §13.1.2: a matching If-None-Match on another method is a failed precondition, not a 304.
  const inm = await get('/upload/4k.bin', { 'if-none-match': '*' }, 'POST')
  assert.equal(inm.status, 412)
  assertNoBody(inm)
})

// ------------------------------------------------------- the app around

test('headers set by the app (handler and onRequest hook) are sent with the file', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t, {}, {
    route: (app) => {
      app.addHook('onRequest', async (req, reply) => { reply.header('x-hook', 'on-request') })
      app.get('/app/*', (req, reply) => {
        reply.header('x-app', '1')
        return reply.sendFileZeroCopy(req.params['*'])
      })
      app.get('/override/*', (req, reply) => {
        reply.header('content-type', 'application/x-custom')
        reply.header('cache-control', 'no-store')
        return reply.sendFileZeroCopy(req.params['*'])
      })
    }
  })
  const res = await get('/app/hello.txt')
  assert.equal(res.status, 200)
  assert.equal(res.headers['x-app'], '1')
  assert.equal(res.headers['x-hook'], 'on-request')
  assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8')
  assertSentfile(res, 'hello.txt')
  const ranged = await get('/app/4k.bin', { range: 'bytes=1-2' })
  assert.equal(ranged.status, 206)
  assert.equal(ranged.headers['x-app'], '1')
  assert.equal(ranged.headers['x-hook'], 'on-request')
  assertSentfile(ranged, '4k.bin', 1, 3)

  const over = await get('/override/hello.txt')
  assert.equal(over.status, 200)
  assert.equal(over.headers['content-type'], 'application/x-custom', 'the app content-type wins')
  assert.equal(over.headers['cache-control'], 'no-store', 'the app cache-control wins')
  assert.equal(over.headers['x-hook'], 'on-request')
  assert.ok(over.headers.etag, 'the plugin still sets its validators')
  assertSentfile(over, 'hello.txt')
})

test('app-set content-type and cache-control appear once on the wire', { timeout: TEST_TIMEOUT }, async (t) => {
  const app = await startServer(t, {}, {
    route: (app) => {
      app.get('/override/*', (req, reply) => {
        reply.type('application/x-custom')
        reply.header('cache-control', 'no-store')
        return reply.sendFileZeroCopy(req.params['*'])
      })
    }
  })
  const raw = await rawExchange(app.server.address().port, 'GET /override/hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  const head = raw.subarray(0, raw.indexOf('\r\n\r\n')).toString('latin1').toLowerCase().split('\r\n')
  assert.equal(head.filter((l) => l.startsWith('content-type:')).length, 1, head.join('\n'))
  assert.equal(head.filter((l) => l.startsWith('cache-control:')).length, 1, head.join('\n'))
  assert.ok(head.includes('content-type: application/x-custom'))
  assert.ok(head.includes('cache-control: no-store'))
  assert.equal(raw.subarray(raw.indexOf('\r\n\r\n') + 4).toString(), 'hello, world\n')
  assert.equal(app.zeroCopy.stats().responses.sendfile, 1)
})

test('reply.code(404).sendFileZeroCopy sends the page with 404, without 304/206/416 processing', { timeout: TEST_TIMEOUT }, async (t) => {
  const { get } = await setup(t, {}, {
    route: (app) => app.get('/missing', (req, reply) => reply.code(404).sendFileZeroCopy('page.html'))
  })
  const page = await get('/page.html')
  const plain = await get('/missing')
  assert.equal(plain.status, 404)
  assert.equal(plain.headers['content-type'], 'text/html; charset=utf-8')
  assertSentfile(plain, 'page.html')
  for (const headers of [
    { 'if-none-match': page.headers.etag },
    { 'if-none-match': '*' },
    { 'if-modified-since': httpDate(Date.now() + HOUR) },
    { 'if-match': '"nope"' },
    { range: 'bytes=0-3' },
    { range: 'bytes=999999-' },
    { range: 'bytes=0-3', 'if-range': page.headers.etag }
  ]) {
    const res = await get('/missing', headers)
    assert.equal(res.status, 404, JSON.stringify(headers))
    assert.equal(res.headers['content-range'], undefined)
    assertSentfile(res, 'page.html')
  }
})

test('onResponse fires for sendfile responses with the right statusCode', { timeout: TEST_TIMEOUT }, async (t) => {
  const calls = []
  const { app, get } = await setup(t, {}, {
    route: (app) => {
      app.addHook('onResponse', async (req, reply) => {
        calls.push({ url: req.url, statusCode: reply.statusCode, transport: reply.zeroCopyTransport })
      })
      app.get('/missing', (req, reply) => reply.code(404).sendFileZeroCopy('page.html'))
    }
  })
  await get('/1m.bin')
  await get('/4k.bin', { range: 'bytes=0-0' })
  await get('/missing')
  await get('/4k.bin', { 'if-none-match': '*' })
  assert.ok(await eventually(() => calls.length === 4), `onResponse calls: ${JSON.stringify(calls)}`)
  assert.deepEqual(calls, [
    { url: '/1m.bin', statusCode: 200, transport: 'sendfile' },
    { url: '/4k.bin', statusCode: 206, transport: 'sendfile' },
    { url: '/missing', statusCode: 404, transport: 'sendfile' },
    { url: '/4k.bin', statusCode: 304, transport: 'none' }
  ])
  const stats = app.zeroCopy.stats()
  assert.equal(stats.responses.sendfile, 3)
  assert.equal(stats.responses.none, 1)
  assert.equal(stats.responses.write, 0)
  assert.ok(await eventually(() => app.zeroCopy.stats().bytes.sendfile === SIZES['1m'] + 1 + fileBytes('page.html').length))
})

test('request logging: "request completed" with the status for sendfile responses', { timeout: TEST_TIMEOUT }, async (t) => {
  const lines = []
  const stream = new Writable({
    write (chunk, encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line))
      callback()
    }
  })
  const { get } = await setup(t, {}, {
    fastifyOptions: { logger: { level: 'info', stream } },
    route: (app) => {
      app.get('/missing', (req, reply) => reply.code(404).sendFileZeroCopy('page.html'))
      // async handlers: returning the reply, and not returning it
      app.get('/async-return/*', async (req, reply) => reply.sendFileZeroCopy(req.params['*']))
      app.get('/async-void/*', async (req, reply) => { reply.sendFileZeroCopy(req.params['*']) })
    }
  })
  const ok = await get('/1m.bin')
  assertSentfile(ok, '1m.bin')
  const partial = await get('/4k.bin', { range: 'bytes=0-9' })
  assert.equal(partial.status, 206)
  assertSentfile(partial, '4k.bin', 0, 10)
  const missing = await get('/missing')
  assert.equal(missing.status, 404)
  assertSentfile(missing, 'page.html')
  assertSentfile(await get('/async-return/hello.txt'), 'hello.txt')
  assertSentfile(await get('/async-void/hello.txt'), 'hello.txt')
  assert.equal((await get('/4k.bin', { 'if-none-match': '*' })).status, 304)

  const completed = () => lines.filter((l) => l.msg === 'request completed')
  assert.ok(await eventually(() => completed().length === 6), `log lines: ${JSON.stringify(lines)}`)
  assert.deepEqual(completed().map((l) => l.res.statusCode), [200, 206, 404, 200, 200, 304])
  for (const line of completed()) {
    assert.equal(line.level, 30)
    assert.equal(typeof line.reqId, 'string')
    assert.equal(typeof line.responseTime, 'number')
    const incoming = lines.find((l) => l.msg === 'incoming request' && l.reqId === line.reqId)
    assert.ok(incoming, 'the matching "incoming request" line')
  }
  assert.deepEqual(lines.filter((l) => l.level >= 40), [], 'no warnings or errors')
})

// Optional options written out as `undefined` (e.g. `{ maxAge: config.maxAge }`)
// must mean "not given", as the `etag?: boolean` types allow. ajv skips
// undefined properties, then lib/options.ts resolve() spreads them over the
// defaults (`{ ...base, ...o }`), so each header silently disappears.
test('per-call options given as undefined keep their defaults', {
  timeout: TEST_TIMEOUT
}, async (t) => {
  const { get } = await setup(t, {}, {
    route: (app) => app.get('/u/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], {
      etag: undefined, lastModified: undefined, acceptRanges: undefined, contentType: undefined, cacheControl: undefined
    }))
  })
  const base = await get('/hello.txt')
  const res = await get('/u/hello.txt')
  assert.equal(res.status, 200)
  for (const name of ['etag', 'last-modified', 'accept-ranges', 'content-type', 'cache-control']) {
    assert.equal(res.headers[name], base.headers[name], name)
  }
  const ranged = await get('/u/hello.txt', { range: 'bytes=0-4' })
  assert.equal(ranged.status, 206)
  assertSentfile(ranged, 'hello.txt', 0, 5)
})

test('maxAge: undefined keeps the default Cache-Control, per call and per plugin', {
  timeout: TEST_TIMEOUT
}, async (t) => {
  const { get } = await setup(t, {}, {
    route: (app) => app.get('/u/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { maxAge: undefined }))
  })
  const res = await get('/u/hello.txt')
  assert.equal(res.status, 200, res.body.toString())
  assert.equal(res.headers['cache-control'], 'public, max-age=0')
  assertSentfile(res, 'hello.txt')

  const plugin = await setup(t, { maxAge: undefined })
  const res2 = await plugin.get('/hello.txt')
  assert.equal(res2.headers['cache-control'], 'public, max-age=0')
})
