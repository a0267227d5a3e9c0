'use strict'
// Serve mode (serve: true) beyond what the conformance test compares:
// redirects, index files, extensions, allowedPath, setHeaders, prefixes,
// decorateReply, wildcard: false, the reply decorators, pre-compressed
// siblings sent zero-copy, and pipelined requests. Real sockets throughout.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const zlib = require('node:zlib')
const { spawnSync } = require('node:child_process')
const Fastify = require('fastify')
const { sha256, rawExchange, parseResponses, eventually, openFdCount, requestWithoutFds, zeroCopy } = require('./helpers')

const FIXTURE = path.join(__dirname, 'fixtures', 'static')

let tree = null
/** test/fixtures/static copied to a temporary folder, with .br/.gz siblings (and .zst for app.js). */
function fixtureTree () {
  if (tree !== null) return tree
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-serve-'))
  fs.cpSync(FIXTURE, base, { recursive: true, verbatimSymlinks: true })
  const pub = path.join(base, 'public')
  for (const rel of ['app.js', 'index.html', 'docs/index.html']) {
    const source = fs.readFileSync(path.join(pub, rel))
    fs.writeFileSync(path.join(pub, rel + '.br'), zlib.brotliCompressSync(source))
    fs.writeFileSync(path.join(pub, rel + '.gz'), zlib.gzipSync(source))
  }
  const zst = zstdCompress(fs.readFileSync(path.join(pub, 'app.js')))
  if (zst !== null) fs.writeFileSync(path.join(pub, 'app.js.zst'), zst)
  process.on('exit', () => fs.rmSync(base, { recursive: true, force: true }))
  tree = { public: pub, second: path.join(base, 'second') }
  return tree
}

// zstd: node:zlib has it from Node 22.15/23.8; on Node 20, Debian's zstd
// (.ci/run installs it). null: neither.
const ZSTD_CLI = spawnSync('zstd', ['--version']).status === 0
const NO_ZSTD = typeof zlib.zstdCompressSync !== 'function' && !ZSTD_CLI
  ? 'no zstd: neither node:zlib (Node 22.15+) nor the zstd command (apt-get install zstd)'
  : false
function zstdCompress (buf) {
  if (typeof zlib.zstdCompressSync === 'function') return zlib.zstdCompressSync(buf)
  if (!ZSTD_CLI) return null
  return spawnSync('zstd', ['-q', '-c', '-19'], { input: buf, maxBuffer: 64 << 20 }).stdout
}
function zstdDecompress (buf) {
  if (typeof zlib.zstdDecompressSync === 'function') return zlib.zstdDecompressSync(buf)
  return spawnSync('zstd', ['-q', '-d', '-c'], { input: buf, maxBuffer: 64 << 20 }).stdout
}

const file = (rel, root = fixtureTree().public) => fs.readFileSync(path.join(root, rel))

async function serve (t, options, { before, after, fastifyOptions } = {}) {
  const app = Fastify(fastifyOptions)
  if (before) await before(app)
  await app.register(zeroCopy, { root: fixtureTree().public, serve: true, ...options })
  if (after) await after(app)
  const seen = []
  app.addHook('onResponse', async (request, reply) => {
    seen.push({ url: request.url, status: reply.statusCode, transport: reply.zeroCopyTransport })
  })
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${app.server.address().port}`
  async function get (url, headers = {}, method = 'GET') {
    const res = await fetch(base + url, { method, headers, redirect: 'manual' })
    const body = Buffer.from(await res.arrayBuffer())
    return { status: res.status, headers: Object.fromEntries(res.headers), body }
  }
  return { app, get, seen, port: app.server.address().port }
}

/** A raw GET: fetch would decode Content-Encoding, and we want the bytes sent. */
async function rawGet (port, url, headers = {}) {
  const lines = [`GET ${url} HTTP/1.1`, `Host: ${headers.host ?? 'localhost'}`, 'Connection: close']
  for (const [k, v] of Object.entries(headers)) if (k !== 'host') lines.push(`${k}: ${v}`)
  const [res] = parseResponses(await rawExchange(port, lines.join('\r\n') + '\r\n\r\n'), ['GET'])
  return res
}

test('redirect: a folder without its slash gets 301 to it, query kept; without redirect its index is served', async (t) => {
  const on = await serve(t, { redirect: true })
  let res = await on.get('/docs')
  assert.equal(res.status, 301)
  assert.equal(res.headers.location, '/docs/')
  res = await on.get('/docs?x=1&y=2')
  assert.equal(res.status, 301)
  assert.equal(res.headers.location, '/docs/?x=1&y=2')
  res = await on.get('/noindex')
  assert.equal(res.status, 301)
  assert.equal((await on.get('/noindex/')).status, 404)

  const off = await serve(t, {})
  res = await off.get('/docs')
  assert.equal(res.status, 200)
  assert.deepEqual(res.body, file('docs/index.html'))
  assert.equal((await off.get('/noindex')).status, 404)
})

test('redirect with a prefix: /static redirects to /static/; the redirect never leaves the host', async (t) => {
  const { get } = await serve(t, { prefix: '/static', redirect: true })
  let res = await get('/static')
  assert.equal(res.status, 301)
  assert.equal(res.headers.location, '/static/')
  res = await get('/static/')
  assert.equal(res.status, 200)
  assert.deepEqual(res.body, file('index.html'))
  res = await get('/static/docs')
  assert.equal(res.headers.location, '/static/docs/')
  // `//host/...` would be protocol-relative: refused before any redirect.
  assert.equal((await get('//evil.example/docs')).status, 404)
  assert.equal((await get('/static//evil.example/docs')).status, 403)
})

test('index: names tried in order, folders skipped, false turns it off', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-index-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.mkdirSync(path.join(dir, 'a', 'index.html'), { recursive: true }) // a folder named like an index
  fs.writeFileSync(path.join(dir, 'a', 'default.htm'), 'default')
  fs.writeFileSync(path.join(dir, 'a', 'main.html'), 'main')
  const both = await serve(t, { root: dir, index: ['index.html', 'default.htm', 'main.html'] })
  assert.equal((await both.get('/a/')).body.toString(), 'default')
  const one = await serve(t, { root: dir, index: 'main.html' })
  assert.equal((await one.get('/a/')).body.toString(), 'main')
  assert.equal((await one.get('/a')).body.toString(), 'main')
  const none = await serve(t, { root: dir, index: false })
  assert.equal((await none.get('/a/')).status, 403)
  assert.equal((await none.get('/a/main.html')).body.toString(), 'main')
})

test('extensions: tried in order for a missing name without one', async (t) => {
  const { get } = await serve(t, { extensions: ['htm', 'html'] })
  let res = await get('/about')
  assert.equal(res.status, 200)
  assert.deepEqual(res.body, file('about.html'))
  assert.equal(res.headers['content-type'], 'text/html; charset=utf-8')
  res = await get('/docs/guide')
  assert.deepEqual(res.body, file('docs/guide.html'))
  assert.equal((await get('/about.txt')).status, 404) // has an extension: not tried
  assert.equal((await get('/missing')).status, 404)
})

test('allowedPath: sees the requested and the final path, root and request; false goes to the 404 handler', async (t) => {
  const calls = []
  const { get } = await serve(t, {
    extensions: ['html'],
    allowedPath (pathName, root, request) {
      calls.push([pathName, root, request.headers['x-who']])
      return !pathName.startsWith('/noindex/') && pathName !== '/docs/index.html' && request.headers['x-who'] !== 'mallory'
    }
  }, {
    after (app) { app.setNotFoundHandler((request, reply) => reply.code(404).send('custom 404')) }
  })
  assert.equal((await get('/readme.txt', { 'x-who': 'alice' })).status, 200)
  assert.deepEqual(calls.at(-1), ['/readme.txt', fixtureTree().public, 'alice'])
  let res = await get('/readme.txt', { 'x-who': 'mallory' })
  assert.equal(res.status, 404)
  assert.equal(res.body.toString(), 'custom 404')
  assert.equal((await get('/noindex/a.txt')).status, 404)
  // The final path of an index is checked too.
  calls.length = 0
  res = await get('/docs/')
  assert.equal(res.status, 404)
  assert.deepEqual(calls.map((c) => c[0]), ['/docs/', '/docs/index.html'])
  calls.length = 0
  assert.equal((await get('/about')).status, 200)
  assert.deepEqual(calls.map((c) => c[0]), ['/about', '/about.html'])
})

test('setHeaders: called with the reply, the file\'s path and its fs.Stats; its headers are sent, Cache-Control included', async (t) => {
  const calls = []
  const { get } = await serve(t, {
    preCompressed: true,
    setHeaders (reply, filePath, stat) {
      calls.push({ filePath, stat })
      reply.header('x-served-file', path.basename(filePath))
      reply.header('vary', 'origin')
      if (filePath.endsWith('.txt')) reply.header('cache-control', 'no-store')
    }
  })
  let res = await get('/readme.txt')
  assert.equal(res.status, 200)
  assert.equal(res.headers['x-served-file'], 'readme.txt')
  assert.equal(res.headers['cache-control'], 'no-store')
  assert.equal(res.headers.vary, 'origin, accept-encoding')
  const { filePath, stat } = calls.at(-1)
  assert.equal(filePath, path.join(fixtureTree().public, 'readme.txt'))
  assert.ok(stat instanceof fs.Stats)
  assert.ok(stat.isFile())
  assert.equal(stat.size, file('readme.txt').length)
  assert.equal(stat.ino, fs.statSync(filePath).ino)
  // A pre-compressed sibling: setHeaders sees the file actually sent.
  res = await get('/app.js', { 'accept-encoding': 'br' })
  assert.equal(res.headers['x-served-file'], 'app.js.br')
  assert.equal(calls.at(-1).stat.size, file('app.js.br').length)
})

test('preCompressed: the sibling is chosen by Accept-Encoding, typed as the original, and sent with sendfile', async (t) => {
  const { app, port, seen } = await serve(t, { preCompressed: true })
  const before = app.zeroCopy.stats()
  const br = await rawGet(port, '/app.js', { 'accept-encoding': 'gzip, br' })
  assert.equal(br.status, 200)
  assert.equal(br.headers['content-encoding'], 'br')
  assert.equal(br.headers.vary, 'accept-encoding')
  assert.equal(br.headers['content-type'], 'application/javascript; charset=utf-8')
  assert.equal(sha256(br.body), sha256(file('app.js.br')))
  assert.equal(Number(br.headers['content-length']), file('app.js.br').length)

  const gz = await rawGet(port, '/', { 'accept-encoding': 'br;q=0.5, gzip' })
  assert.equal(gz.headers['content-encoding'], 'gzip')
  assert.equal(gz.headers['content-type'], 'text/html; charset=utf-8')
  assert.equal(sha256(gz.body), sha256(file('index.html.gz')))

  const plain = await rawGet(port, '/app.js', { 'accept-encoding': 'identity' })
  assert.equal(plain.headers['content-encoding'], undefined)
  assert.equal(plain.headers.vary, 'accept-encoding')
  assert.equal(sha256(plain.body), sha256(file('app.js')))

  // A range of the encoded bytes.
  const part = await rawGet(port, '/app.js', { 'accept-encoding': 'br', range: 'bytes=0-9' })
  assert.equal(part.status, 206)
  assert.deepEqual(part.body, file('app.js.br').subarray(0, 10))

  // Conditional: the tag of the encoded file, answered 304 with Vary and Content-Encoding.
  const notModified = await rawGet(port, '/app.js', { 'accept-encoding': 'br', 'if-none-match': br.headers.etag })
  assert.equal(notModified.status, 304)
  assert.equal(notModified.headers.vary, 'accept-encoding')
  assert.equal(notModified.headers['content-encoding'], 'br')
  assert.notEqual(br.headers.etag, plain.headers.etag)

  const after = app.zeroCopy.stats()
  assert.equal(after.responses.sendfile - before.responses.sendfile, 4)
  assert.equal(after.responses.write - before.responses.write, 0)
  assert.equal(after.bytes.sendfile - before.bytes.sendfile,
    file('app.js.br').length + file('index.html.gz').length + file('app.js').length + 10)
  assert.ok(await eventually(() => seen.filter((s) => s.transport === 'sendfile').length === 4))
})

test('preCompressed: a .zst sibling for zstd (after br on a tie, before gzip), decoded byte-exact, sent with sendfile', { skip: NO_ZSTD }, async (t) => {
  const { app, port } = await serve(t, { preCompressed: true })
  const before = app.zeroCopy.stats()
  const zst = await rawGet(port, '/app.js', { 'accept-encoding': 'zstd, gzip' })
  assert.equal(zst.status, 200)
  assert.equal(zst.headers['content-encoding'], 'zstd')
  assert.equal(zst.headers.vary, 'accept-encoding')
  assert.equal(zst.headers['content-type'], 'application/javascript; charset=utf-8')
  assert.equal(sha256(zst.body), sha256(file('app.js.zst')))
  assert.equal(sha256(zstdDecompress(zst.body)), sha256(file('app.js')))

  // Chrome's header: br and zstd with the same q, br first.
  const chrome = await rawGet(port, '/app.js', { 'accept-encoding': 'gzip, deflate, br, zstd' })
  assert.equal(chrome.headers['content-encoding'], 'br')
  const noBr = await rawGet(port, '/app.js', { 'accept-encoding': 'gzip, deflate, br;q=0, zstd' })
  assert.equal(noBr.headers['content-encoding'], 'zstd')
  // A file without a .zst sibling: the next acceptable coding.
  const html = await rawGet(port, '/', { 'accept-encoding': 'zstd, gzip;q=0.5' })
  assert.equal(html.headers['content-encoding'], 'gzip')
  assert.equal(sha256(html.body), sha256(file('index.html.gz')))

  // Its own validators: a tag for the zstd bytes, revalidated, and a range of them.
  assert.notEqual(zst.headers.etag, chrome.headers.etag)
  const notModified = await rawGet(port, '/app.js', { 'accept-encoding': 'zstd', 'if-none-match': zst.headers.etag })
  assert.equal(notModified.status, 304)
  assert.equal(notModified.headers['content-encoding'], 'zstd')
  const part = await rawGet(port, '/app.js', { 'accept-encoding': 'zstd', range: 'bytes=0-3' })
  assert.equal(part.status, 206)
  assert.deepEqual(part.body, file('app.js.zst').subarray(0, 4))

  const after = app.zeroCopy.stats()
  assert.equal(after.responses.sendfile - before.responses.sendfile, 5)
  assert.equal(after.responses.write - before.responses.write, 0)
})

test('setHeaders that throws: a 500 through Fastify, and the file is not left open', async (t) => {
  // maxFds 0: an idle cache entry closes its fd, so an fd still open here
  // would be one a response never gave back.
  const { app, get } = await serve(t, { setHeaders () { throw new Error('setHeaders failed') }, cache: { maxFds: 0 } })
  for (let i = 0; i < 3; i++) {
    const res = await get('/readme.txt')
    assert.equal(res.status, 500)
    assert.match(res.body.toString(), /setHeaders failed/)
  }
  assert.ok(await eventually(() => app.zeroCopy.stats().cache.fds === 0), `fds held: ${app.zeroCopy.stats().cache.fds}`)
})

test('prefix: with and without a trailing slash, prefixAvoidTrailingSlash', async (t) => {
  const { get } = await serve(t, { prefix: '/a' })
  assert.deepEqual((await get('/a/readme.txt')).body, file('readme.txt'))
  assert.equal((await get('/readme.txt')).status, 404)
  assert.equal((await get('/ab/readme.txt')).status, 404)
  assert.equal((await get('/a')).status, 404) // no redirect asked for

  const exact = await serve(t, { prefix: '/files', prefixAvoidTrailingSlash: true })
  assert.deepEqual((await exact.get('/files/readme.txt')).body, file('readme.txt'))
  assert.deepEqual((await exact.get('/files')).body, file('index.html'))
})

test('two roots under two prefixes: two registrations, each in its own context', async (t) => {
  // Each registration decorates fastify.zeroCopy (its own stats) and
  // reply.zeroCopyTransport, so two cannot share a context, nor can one
  // sit below the other (Fastify refuses a decorator its parent has).
  const { public: pub, second } = fixtureTree()
  const app = Fastify()
  t.after(() => app.close())
  await app.register(async (child) => { await child.register(zeroCopy, { root: pub, serve: true, prefix: '/a/' }) })
  await app.register(async (child) => { await child.register(zeroCopy, { root: second, serve: true, prefix: '/b/', decorateReply: false }) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = app.server.address().port
  assert.deepEqual((await rawGet(port, '/a/readme.txt')).body, file('readme.txt'))
  assert.deepEqual((await rawGet(port, '/b/readme.txt')).body, file('readme.txt', second))
})

test('two roots under two prefixes in the same scope (@fastify/static\'s example): the second leaves the first one\'s decorators', async (t) => {
  const { public: pub, second } = fixtureTree()
  const app = Fastify()
  t.after(() => app.close())
  await app.register(zeroCopy, { root: pub, serve: true, prefix: '/a/' })
  await app.register(zeroCopy, { root: second, serve: true, prefix: '/b/', decorateReply: false })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = app.server.address().port
  assert.deepEqual((await rawGet(port, '/a/readme.txt')).body, file('readme.txt'))
  assert.deepEqual((await rawGet(port, '/b/readme.txt')).body, file('readme.txt', second))
  // fastify.zeroCopy is the first registration's; both went zero-copy.
  assert.equal(app.zeroCopy.stats().responses.sendfile, 1)
  // Without serve mode a second registration in one scope is still an error.
  const plain = Fastify()
  t.after(() => plain.close())
  plain.register(zeroCopy, { root: pub })
  plain.register(zeroCopy, { root: second })
  await assert.rejects(plain.ready(), /already been added|already present/i)
})

test('a prefix with a route parameter, inside an encapsulated prefix', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(async (child) => {
    await child.register(zeroCopy, { root: fixtureTree().public, serve: true, prefix: '/:tenant/' })
  }, { prefix: '/v1' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${app.server.address().port}`
  let res = await fetch(base + '/v1/acme/docs/guide.html')
  assert.equal(res.status, 200)
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), file('docs/guide.html'))
  // A `..` eaten by the parameter would climb out of the prefix: refused.
  res = await rawGet(app.server.address().port, '/v1/acme/../readme.txt')
  assert.equal(res.status, 403)
  res = await rawGet(app.server.address().port, '/v1/../acme/readme.txt')
  assert.equal(res.status, 403)
})

test('reply.sendFile and reply.download: @fastify/static\'s signatures, served zero-copy', async (t) => {
  const { second } = fixtureTree()
  const { app, get, seen } = await serve(t, {}, {
    after (app) {
      app.get('/send/*', (req, reply) => reply.sendFile(req.params['*']))
      app.get('/send-root/*', (req, reply) => reply.sendFile(req.params['*'], second))
      app.get('/send-opts/*', (req, reply) => reply.sendFile(req.params['*'], { maxAge: '1h', immutable: true, etag: false }))
      app.get('/send-root-opts/*', (req, reply) => reply.sendFile(req.params['*'], second, { cacheControl: false }))
      app.get('/send-index/*', (req, reply) => reply.sendFile(req.params['*'], { index: 'guide.html' }))
      app.get('/send-bad', (req, reply) => reply.sendFile('readme.txt', { maxAge: 'soon' }))
      app.get('/send-onfile', (req, reply) => reply.sendFile('readme.txt', { onFile: 'not a function' }))
      app.get('/download/*', (req, reply) => reply.download(req.params['*']))
      app.get('/download-name/*', (req, reply) => reply.download(req.params['*'], 'Grüße "x".txt'))
      app.get('/download-opts/*', (req, reply) => reply.download(req.params['*'], { root: second }))
      app.get('/download-name-opts/*', (req, reply) => reply.download(req.params['*'], 'x.bin', { acceptRanges: false }))
      app.get('/async', async (req, reply) => reply.sendFile('readme.txt'))
      app.setNotFoundHandler((req, reply) => reply.code(404).sendFile('index.html'))
    }
  })
  const before = app.zeroCopy.stats()
  let res = await get('/send/readme.txt')
  assert.deepEqual(res.body, file('readme.txt'))
  assert.equal(res.headers['cache-control'], 'public, max-age=0')
  res = await get('/send-root/readme.txt')
  assert.deepEqual(res.body, file('readme.txt', second))
  res = await get('/send-opts/readme.txt')
  assert.equal(res.headers['cache-control'], 'public, max-age=3600, immutable')
  assert.equal(res.headers.etag, undefined)
  res = await get('/send-root-opts/only-second.txt')
  assert.deepEqual(res.body, file('only-second.txt', second))
  assert.equal(res.headers['cache-control'], undefined)
  res = await get('/send-index/docs/')
  assert.deepEqual(res.body, file('docs/guide.html'))
  res = await get('/async')
  assert.deepEqual(res.body, file('readme.txt'))

  res = await get('/download/docs/guide.html')
  assert.equal(res.headers['content-disposition'], 'attachment; filename="guide.html"')
  assert.deepEqual(res.body, file('docs/guide.html'))
  res = await get('/download-name/readme.txt')
  assert.equal(res.headers['content-disposition'], 'attachment; filename="Gr__e _x_.txt"; filename*=UTF-8\'\'Gr%C3%BC%C3%9Fe%20%22x%22.txt')
  res = await get('/download-opts/only-second.txt')
  assert.deepEqual(res.body, file('only-second.txt', second))
  res = await get('/download-name-opts/readme.txt', { range: 'bytes=0-3' })
  assert.equal(res.status, 200) // acceptRanges: false
  assert.equal(res.headers['accept-ranges'], undefined)
  assert.equal(res.headers['content-disposition'], 'attachment; filename="x.bin"')

  // Not found: the 404 handler, which here sends a file itself.
  res = await get('/send/missing.txt')
  assert.equal(res.status, 404)
  assert.deepEqual(res.body, file('index.html'))
  res = await get('/send/../package.json')
  assert.equal(res.status, 404) // fetch normalized it to /package.json: the app's 404 page
  res = await get('/send/docs%2F..%2F..%2Fpackage.json')
  assert.equal(res.status, 403)

  const after = app.zeroCopy.stats()
  assert.equal(after.responses.write - before.responses.write, 0)
  assert.ok(await eventually(() => seen.filter((s) => s.status === 200 || (s.status === 404 && s.transport === 'sendfile')).every((s) => s.transport === 'sendfile')))

  // Bad per-call options: a 500 naming the option, as for sendFileZeroCopy.
  res = await get('/send-bad')
  assert.equal(res.status, 500)
  assert.equal(JSON.parse(res.body).code, 'FST_ZEROCOPY_INVALID_OPTION')
  assert.match(JSON.parse(res.body).message, /"maxAge"/)
  res = await get('/send-onfile')
  assert.equal(res.status, 500)
  assert.match(JSON.parse(res.body).message, /"onFile"/)
})

test('decorateReply: false leaves reply.sendFile to another plugin (here @fastify/static)', async (t) => {
  const fastifyStatic = require('@fastify/static')
  const { second } = fixtureTree()
  const { get } = await serve(t, { decorateReply: false, prefix: '/zc/' }, {
    before (app) { return app.register(fastifyStatic, { root: second, prefix: '/fs/' }) },
    after (app) { app.get('/which', (req, reply) => reply.sendFile('readme.txt')) }
  })
  assert.deepEqual((await get('/which')).body, file('readme.txt', second))
  assert.deepEqual((await get('/zc/readme.txt')).body, file('readme.txt'))
  assert.deepEqual((await get('/fs/readme.txt')).body, file('readme.txt', second))

  // Without decorateReply: false the two plugins' decorators collide, as two @fastify/static would.
  const app = Fastify()
  t.after(() => app.close())
  await app.register(fastifyStatic, { root: second })
  app.register(zeroCopy, { root: fixtureTree().public, serve: true, prefix: '/zc/' })
  await assert.rejects(app.ready(), /sendFile/)
})

test('root array: first found, first served; the second root answers what the first lacks', async (t) => {
  const { second } = fixtureTree()
  const { get } = await serve(t, { root: [fixtureTree().public, second] })
  assert.deepEqual((await get('/readme.txt')).body, file('readme.txt'))
  assert.deepEqual((await get('/only-second.txt')).body, file('only-second.txt', second))
  assert.deepEqual((await get('/docs/extra.txt')).body, file('docs/extra.txt', second))
  assert.deepEqual((await get('/sub/')).body, file('sub/index.html', second))
  assert.equal((await get('/nowhere.txt')).status, 404)
})

test('wildcard: false registers one route per file found at registration', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-wild-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.cpSync(fixtureTree().public, dir, { recursive: true, verbatimSymlinks: true })
  const routes = []
  const { get } = await serve(t, { root: dir, wildcard: false, redirect: true }, {
    before (app) { app.addHook('onRoute', (r) => { if (r.method.includes?.('GET') || r.method === 'GET') routes.push(r.url) }) }
  })
  fs.writeFileSync(path.join(dir, 'late.txt'), 'added after registration')
  assert.deepEqual((await get('/readme.txt')).body, file('readme.txt'))
  assert.deepEqual((await get('/docs/deep/nested/file.txt')).body, file('docs/deep/nested/file.txt'))
  assert.deepEqual((await get('/link-docs/guide.html')).body, file('docs/guide.html'))
  assert.deepEqual((await get('/docs/')).body, file('docs/index.html'))
  assert.deepEqual((await get('/')).body, file('index.html'))
  assert.equal((await get('/docs')).status, 301)
  assert.equal((await get('/late.txt')).status, 404)
  assert.equal((await get('/.hidden.txt')).status, 404) // no route: serveDotFiles is false
  assert.ok(routes.includes('/readme.txt') && !routes.includes('/.hidden.txt'))

  const dots = await serve(t, { root: dir, wildcard: false, serveDotFiles: true, dotfiles: 'allow' })
  assert.deepEqual((await dots.get('/.hidden.txt')).body, file('.hidden.txt'))
  assert.deepEqual((await dots.get('/.well-known/security.txt')).body, file('.well-known/security.txt'))
})

test('route options: constraints, schemaHide and logLevel reach the routes', async (t) => {
  const routes = []
  const { port } = await serve(t, { constraints: { host: 'static.example' }, schemaHide: false, logLevel: 'error' }, {
    before (app) { app.addHook('onRoute', (r) => routes.push(r)) }
  })
  const route = routes.find((r) => r.url === '/*')
  assert.deepEqual(route.constraints, { host: 'static.example' })
  assert.equal(route.schema.hide, false)
  assert.equal(route.logLevel, 'error')
  assert.equal((await rawGet(port, '/readme.txt', { host: 'static.example' })).status, 200)
  assert.equal((await rawGet(port, '/readme.txt', { host: 'other.example' })).status, 404)
})

test('pipelined requests on one connection: each answered in order, bodies exact', async (t) => {
  const { port, app } = await serve(t, { preCompressed: true })
  const before = app.zeroCopy.stats()
  const requests = [
    ['GET', '/readme.txt', ''],
    ['GET', '/app.js', 'Accept-Encoding: br\r\n'],
    ['HEAD', '/docs/', ''],
    ['GET', '/missing.txt', ''],
    ['GET', '/docs/', 'Accept-Encoding: gzip\r\n'],
    ['GET', '/blob.bin', 'Range: bytes=100-199\r\n']
  ]
  const text = requests.map(([m, p, h], i) =>
    `${m} ${p} HTTP/1.1\r\nHost: x\r\n${h}${i === requests.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join('')
  const responses = parseResponses(await rawExchange(port, text), requests.map((r) => r[0]))
  assert.equal(responses.length, requests.length)
  assert.deepEqual(responses.map((r) => r.status), [200, 200, 200, 404, 200, 206])
  assert.deepEqual(responses[0].body, file('readme.txt'))
  assert.deepEqual(responses[1].body, file('app.js.br'))
  assert.equal(responses[2].headers['content-length'], String(file('docs/index.html').length))
  assert.deepEqual(responses[4].body, file('docs/index.html.gz'))
  assert.deepEqual(responses[5].body, file('blob.bin').subarray(100, 200))
  const after = app.zeroCopy.stats()
  assert.equal(after.responses.sendfile - before.responses.sendfile, 4)
  assert.equal(after.responses.write - before.responses.write, 0)
})

// allowedPath is the app's code: what it throws goes to Fastify's error
// handler, as a route handler's would. A pipelined request runs from an
// event of the response before it, where an escaping throw would end the
// process; on the final path (an index) the file is already open.
test('allowedPath that throws: a 500 through Fastify, never a crash (pipelined too) or a leaked fd', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-serve-throw-'))
  t.after(() => fs.rmSync(root, { recursive: true, force: true }))
  const big = Buffer.alloc(8 << 20, 7)
  fs.writeFileSync(path.join(root, 'big.bin'), big)
  fs.writeFileSync(path.join(root, 'a.txt'), 'a')
  fs.mkdirSync(path.join(root, 'sub'))
  fs.writeFileSync(path.join(root, 'sub', 'index.html'), '<p>sub</p>')
  const app = Fastify()
  await app.register(zeroCopy, {
    root,
    serve: true,
    cache: false,
    allowedPath (pathName) {
      if (pathName === '/a.txt' || pathName.endsWith('/index.html')) throw new Error(`gate failed for ${pathName}`)
      return true
    }
  })
  const errors = []
  app.setErrorHandler((err, req, reply) => { errors.push(err.message); reply.code(500).send({ gate: err.message }) })
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = app.server.address().port

  const text = 'GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n' +
    'GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
  const responses = parseResponses(await rawExchange(port, text), ['GET', 'GET', 'GET'])
  assert.deepEqual(responses.map((r) => r.status), [200, 500, 200])
  assert.equal(sha256(responses[0].body), sha256(big))
  assert.deepEqual(JSON.parse(responses[1].body), { gate: 'gate failed for /a.txt' })
  assert.equal(sha256(responses[2].body), sha256(big))

  // The index is opened before allowedPath sees its final path: 40 refusals, no fd kept.
  const before = openFdCount()
  for (let i = 0; i < 40; i++) {
    const [r] = parseResponses(await rawExchange(port, 'GET /sub/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), ['GET'])
    assert.equal(r.status, 500)
  }
  assert.ok(await eventually(() => openFdCount() <= before), `open fds ${openFdCount()}, before ${before}`)
  assert.equal(errors.filter((m) => m === 'gate failed for /sub/index.html').length, 40)
})

test('the types merge with @fastify/static\'s when both are installed (tsc, skipLibCheck off)', { timeout: 60000 }, (t) => {
  const dir = path.join(__dirname, '..', 'node_modules', '.cache', `zc-types-${process.pid}`)
  fs.mkdirSync(dir, { recursive: true })
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.writeFileSync(path.join(dir, 'both.ts'), `
import fastify from 'fastify'
import fastifyStatic from '@fastify/static'
import zeroCopy from '../../../types/index'
const app = fastify()
app.register(fastifyStatic, { root: '/srv', prefix: '/a/' })
app.register(zeroCopy, { serve: true, root: ['/srv', '/srv2'], prefix: '/b/', decorateReply: false })
app.get('/', (request, reply) => {
  reply.download('x.pdf', 'y.pdf', { cacheControl: false })
  reply.sendFile('x.html', '/srv', { maxAge: 1000, index: false })
  return reply.sendFile('index.html')
})
`)
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, module: 'node16', moduleResolution: 'node16', esModuleInterop: true, skipLibCheck: false, types: ['node'] },
    files: ['both.ts']
  }))
  const tsc = require.resolve('typescript/bin/tsc')
  const run = spawnSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8' })
  assert.equal(run.status, 0, run.stdout + run.stderr)
})

// Out of file descriptors: the open fails with EMFILE. Both paths answer
// 503 with Retry-After (a passing state). The connection is opened before
// the fd table is filled, so the request itself needs no new fd.
test('EMFILE: serve mode and sendFileZeroCopy both answer 503 with Retry-After', async (t) => {
  const { port } = await serve(t, { cache: false }, {
    after: (app) => app.get('/core/hello.txt', (req, reply) => reply.sendFileZeroCopy('hello.txt'))
  })
  for (const url of ['/hello.txt', '/core/hello.txt']) {
    const head = await requestWithoutFds(port, url)
    assert.match(head, /^HTTP\/1\.1 503 /, url)
    assert.match(head, /\r\nretry-after: 1\r\n/i, url)
  }
})
