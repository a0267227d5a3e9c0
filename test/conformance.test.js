'use strict'
// Conformance of serve mode with @fastify/static 10: two servers, one
// with @fastify/static and one with this plugin in serve mode, get the same
// requests over real sockets (GET/HEAD; files, folders, missing and
// hostile paths; conditional and Range headers; Accept-Encoding) for several
// option sets. Status, body (sha256) and the headers that matter must be
// the same, or the difference must be one of the ALLOWED kinds below, each
// with its reason (the same list is README's "differences from
// @fastify/static"). Every response of ours with a body must have gone
// out with sendfile(2), pre-compressed variants included.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')
const zlib = require('node:zlib')
const Fastify = require('fastify')
const fastifyStatic = require('@fastify/static')
const contentDisposition = require('content-disposition')
const { sha256, patternBytes, zeroCopy } = require('./helpers')

const FIXTURE = path.join(__dirname, 'fixtures', 'static')

// ---------------------------------------------------------------------------
// The fixture tree: test/fixtures/static copied to a temporary folder, plus
// what is better made than committed: a large file, pre-compressed
// siblings, and a symlink that leaves the root.

let tree = null
function fixtureTree () {
  if (tree !== null) return tree
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-conformance-'))
  fs.cpSync(FIXTURE, base, { recursive: true, verbatimSymlinks: true })
  const pub = path.join(base, 'public')
  fs.writeFileSync(path.join(pub, 'large.bin'), patternBytes(3 * 1024 * 1024 + 17, 99))
  const compress = (rel, codings) => {
    const source = fs.readFileSync(path.join(pub, rel))
    if (codings.includes('br')) fs.writeFileSync(path.join(pub, rel + '.br'), zlib.brotliCompressSync(source))
    if (codings.includes('gzip')) fs.writeFileSync(path.join(pub, rel + '.gz'), zlib.gzipSync(source))
    if (codings.includes('deflate')) fs.writeFileSync(path.join(pub, rel + '.deflate'), zlib.deflateSync(source))
  }
  compress('index.html', ['br', 'gzip'])
  compress('app.js', ['br', 'gzip'])
  compress('style.css', ['gzip'])
  compress('data.json', ['br', 'gzip', 'deflate'])
  compress('readme.txt', ['gzip'])
  compress('docs/index.html', ['br'])
  compress('large.bin', ['gzip'])
  // A compressed file whose plain twin does not exist.
  fs.writeFileSync(path.join(pub, 'only-compressed.txt.gz'), zlib.gzipSync('only the gzip exists\n'))
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-conformance-outside-'))
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'outside the root\n')
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(pub, 'link-out.txt'))
  process.on('exit', () => {
    fs.rmSync(base, { recursive: true, force: true })
    fs.rmSync(outside, { recursive: true, force: true })
  })
  tree = { public: pub, second: path.join(base, 'second') }
  return tree
}

// ---------------------------------------------------------------------------
// A small client: one keep-alive connection per server, raw paths.

function send (agent, port, { method, path: urlPath, headers }) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, agent }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

// Routes that use the reply decorators, the same on both servers.
function decoratorRoutes (app) {
  const { second } = fixtureTree()
  app.get('/__send/*', (req, reply) => reply.sendFile(req.params['*']))
  app.get('/__sendopts/*', (req, reply) => reply.sendFile(req.params['*'], { maxAge: 3600000, immutable: true }))
  app.get('/__sendroot/*', (req, reply) => reply.sendFile(req.params['*'], second))
  app.get('/__sendrootopts/*', (req, reply) => reply.sendFile(req.params['*'], second, { etag: false, lastModified: false }))
  app.get('/__download/*', (req, reply) => reply.download(req.params['*'], 'saved file.txt'))
  app.get('/__downloadplain/*', (req, reply) => reply.download(req.params['*']))
  app.get('/__downloadopts/*', (req, reply) => reply.download(req.params['*'], { cacheControl: false }))
  app.get('/__downloadnameopts/*', (req, reply) => reply.download(req.params['*'], 'other.bin', { acceptRanges: false }))
}
const DECORATOR_ROUTES = ['__send', '__sendopts', '__sendroot', '__sendrootopts', '__download', '__downloadplain', '__downloadopts', '__downloadnameopts']

async function startPair (t, options, withDecorators) {
  const theirs = Fastify()
  await theirs.register(fastifyStatic, { ...options })
  const ours = Fastify()
  await ours.register(zeroCopy, { ...options, serve: true })
  if (withDecorators) {
    decoratorRoutes(theirs)
    decoratorRoutes(ours)
  }
  // How each of our responses was sent, by the id the client gave it.
  const transports = new Map()
  ours.addHook('onResponse', async (request, reply) => {
    transports.set(request.headers['x-conformance-id'], reply.zeroCopyTransport)
  })
  t.after(() => Promise.all([theirs.close(), ours.close()]))
  await theirs.listen({ port: 0, host: '127.0.0.1' })
  await ours.listen({ port: 0, host: '127.0.0.1' })
  const agents = [new http.Agent({ keepAlive: true, maxSockets: 1 }), new http.Agent({ keepAlive: true, maxSockets: 1 })]
  t.after(() => agents.forEach((a) => a.destroy()))
  let id = 0
  return {
    ours,
    theirs: (req) => send(agents[0], theirs.server.address().port, req),
    our: async (req) => {
      const key = String(++id)
      const res = await send(agents[1], ours.server.address().port, { ...req, headers: { ...req.headers, 'x-conformance-id': key } })
      // onResponse runs once the response has finished: at most a tick after the client read it.
      for (let i = 0; i < 100 && !transports.has(key); i++) await new Promise((resolve) => setImmediate(resolve))
      res.transport = transports.get(key)
      return res
    }
  }
}

// ---------------------------------------------------------------------------
// What is compared.

const HEADERS = ['content-type', 'content-length', 'content-encoding', 'vary', 'content-range', 'accept-ranges', 'cache-control', 'location', 'content-disposition']
const PRESENCE = ['last-modified', 'etag']

function errorBody (res) {
  if (res.status < 400 || !/json/.test(res.headers['content-type'] ?? '')) return null
  try { return JSON.parse(res.body.toString()) } catch { return null }
}

/** The differences between two responses to the same request: [{ field, theirs, ours }]. */
function differences (a, b) {
  const diffs = []
  if (a.status !== b.status) diffs.push({ field: 'status', theirs: a.status, ours: b.status })
  const ea = errorBody(a)
  const eb = errorBody(b)
  if (ea !== null && eb !== null) {
    // JSON errors: the same apart from the code's name (and so the length).
    if (ea.code !== eb.code) diffs.push({ field: 'error-code', theirs: ea.code, ours: eb.code })
    const { code: _a, ...restA } = ea
    const { code: _b, ...restB } = eb
    if (JSON.stringify(restA) !== JSON.stringify(restB)) diffs.push({ field: 'body', theirs: JSON.stringify(ea), ours: JSON.stringify(eb) })
  } else if (sha256(a.body) !== sha256(b.body)) {
    diffs.push({ field: 'body', theirs: `${a.body.length} bytes ${a.body.subarray(0, 60).toString('latin1')}`, ours: `${b.body.length} bytes ${b.body.subarray(0, 60).toString('latin1')}` })
  }
  // A HEAD of a JSON error: no body to read the code from.
  const headError = a.status >= 400 && a.status === b.status && a.body.length === 0 && b.body.length === 0 &&
    /json/.test(a.headers['content-type'] ?? '') && a.headers['content-type'] === b.headers['content-type']
  if (headError && a.headers['content-length'] !== b.headers['content-length']) {
    diffs.push({ field: 'error-length', theirs: a.headers['content-length'], ours: b.headers['content-length'] })
  }
  for (const name of HEADERS) {
    if (name === 'content-length' && ((ea !== null && eb !== null) || headError)) continue
    if (a.headers[name] !== b.headers[name]) diffs.push({ field: name, theirs: a.headers[name], ours: b.headers[name] })
  }
  for (const name of PRESENCE) {
    if ((a.headers[name] === undefined) !== (b.headers[name] === undefined)) {
      diffs.push({ field: name + ' presence', theirs: a.headers[name], ours: b.headers[name] })
    }
  }
  return diffs
}

// ---------------------------------------------------------------------------
// ALLOWED: every kind of difference serve mode has on purpose, with its
// reason (README's list of differences from @fastify/static says the
// same). For a response, `explains` returns the fields this kind accounts
// for, or null when it does not apply; a response passes when the kinds
// that apply account for all of its differences together.

const header = (req, name) => req.headers[name]
const VALIDATORS = ['accept-ranges', 'cache-control', 'last-modified presence', 'etag presence']
const WHOLE_RESPONSE = ['status', 'body', 'content-type', 'content-length', 'content-encoding', 'content-range', 'vary',
  'location', 'content-disposition', 'error-code', 'error-length', ...VALIDATORS]

function parseDisposition (value) {
  if (value === undefined) return undefined
  try { return JSON.stringify(contentDisposition.parse(value)) } catch { return value }
}

/** Whether the request path names a folder of the set's (first) root. */
function isFolder (set, urlPath) {
  const root = Array.isArray(set.options.root) ? set.options.root[0] : set.options.root
  try {
    const rel = decodeURIComponent(urlPath.split('?')[0]).slice(set.prefix.length)
    return fs.statSync(path.join(root, rel)).isDirectory()
  } catch {
    return false
  }
}

const ALLOWED = [
  {
    kind: 'dotfiles default',
    reason: 'dotfiles defaults to \'ignore\' (404), as everywhere in this plugin and in send/serve-static; @fastify/static 10 defaults to \'allow\'. Set dotfiles: \'allow\' to serve /.well-known/ and other dotfiles.',
    explains: (req, set, a, b) => set.options.dotfiles === undefined && /(^|\/)\.[^./]/.test(req.path.split('?')[0]) &&
      a.status !== 404 && b.status === 404 ? WHOLE_RESPONSE : null
  },
  {
    kind: 'symlink out of root',
    reason: 'A symlink under root that leads outside it is refused with 403 (openat2 RESOLVE_BENEATH; allowSymlinksOutsideRoot: true serves it); @fastify/static follows it and serves the file.',
    explains: (req, set, a, b) => req.path.includes('link-out.txt') && a.status === 200 && b.status === 403 ? WHOLE_RESPONSE : null
  },
  {
    kind: 'charset on XML and SVG',
    reason: 'XML, SVG and other +xml / +json types get "; charset=utf-8" (this plugin\'s Content-Type rule); @fastify/send adds it to text/*, JavaScript and JSON only.',
    explains: (req, set, a, b) => b.headers['content-type'] === a.headers['content-type'] + '; charset=utf-8' &&
      /xml|svg|\+json/.test(a.headers['content-type']) ? ['content-type'] : null
  },
  {
    kind: '412 and 416 without an error body',
    reason: '412 and 416 are answered by the file flow with an empty body (416 with Content-Range and the file\'s validators, 412 with none of the file\'s headers); @fastify/static sends them through Fastify\'s error handler as JSON errors.',
    explains: (req, set, a, b) => a.status === b.status && (a.status === 412 || a.status === 416)
      ? ['body', 'content-type', 'content-length', 'vary', ...VALIDATORS]
      : null
  },
  {
    kind: 'invalid Range ignored',
    reason: 'A Range header that breaks the RFC 9110 grammar (bytes=abc, a last position before the first) is ignored: 200 with the whole file (RFC 9110 §14.2); @fastify/send answers 416.',
    explains: (req, set, a, b) => ['bytes=abc', 'bytes=10-5'].includes(header(req, 'range')) && a.status === 416 && b.status === 200
      ? ['status', 'body', 'content-type', 'content-length', 'content-range', ...VALIDATORS]
      : null
  },
  {
    kind: 'Range on HEAD',
    reason: 'Range applies to GET only (RFC 9110 §14.2): HEAD with Range answers like the 200 GET; @fastify/send answers 206 with the part\'s Content-Range and length.',
    explains: (req, set, a, b) => req.method === 'HEAD' && header(req, 'range') !== undefined && a.status === 206 && b.status === 200
      ? ['status', 'content-length', 'content-range']
      : null
  },
  {
    kind: '304 headers',
    reason: 'A 304 carries ETag, Last-Modified, Cache-Control (and Vary, Content-Encoding for pre-compressed files), not Accept-Ranges, Content-Type or Content-Disposition; @fastify/static keeps Accept-Ranges, a download\'s Content-Disposition, and Content-Type on pre-compressed 304s.',
    explains: (req, set, a, b) => a.status === 304 && b.status === 304 ? ['accept-ranges', 'content-type', 'content-disposition'] : null
  },
  {
    kind: 'Cache-Control: no-cache requests are still conditional',
    reason: 'A request with Cache-Control: no-cache and a matching If-None-Match gets 304 (RFC 9110 §13.2.2: the origin evaluates preconditions; no-cache addresses caches); @fastify/send ignores the conditional and answers 200.',
    explains: (req, set, a, b) => /no-cache/.test(header(req, 'cache-control') ?? '') && a.status === 200 && b.status === 304
      ? ['status', 'body', 'content-type', 'content-length', 'content-encoding', 'accept-ranges']
      : null
  },
  {
    kind: 'Accept-Encoding: explicit q=0 beats *',
    reason: 'With "gzip;q=0, *" the gzip file is not sent (the explicit q=0 wins, RFC 9110 §12.5.3): the plain file is, or the 404 handler when there is none; @fastify/static rewrites * into gzip and sends it.',
    explains: (req, set, a, b) => header(req, 'accept-encoding') === 'gzip;q=0, *' && a.headers['content-encoding'] === 'gzip' &&
      b.headers['content-encoding'] === undefined
      ? (b.status === 404 ? WHOLE_RESPONSE : ['body', 'content-length', 'content-encoding', 'etag presence'])
      : null
  },
  {
    kind: 'pre-compressed: folder index from a later root',
    reason: 'With preCompressed and several roots, a folder URL whose index is only in a later root is served from there; @fastify/static answers 404 when the client accepts an encoding (it looks for the index in the first root only).',
    explains: (req, set, a, b) => Array.isArray(set.options.root) && set.options.preCompressed && /\/$/.test(req.path) &&
      header(req, 'accept-encoding') && a.status === 404 && b.status === 200 ? WHOLE_RESPONSE : null
  },
  {
    kind: 'index given as a string',
    reason: 'An index given as one string works like a one-name array everywhere; @fastify/static ignores a string index for a folder named without its slash and for pre-compressed lookups (404).',
    explains: (req, set, a, b) => typeof set.options.index === 'string' && isFolder(set, req.path) && a.status === 404 && b.status === 200
      ? WHOLE_RESPONSE
      : null
  },
  {
    kind: 'Content-Disposition only on file responses',
    reason: 'reply.download() sets Content-Disposition on the file\'s 200/206 only; @fastify/static sets it before looking the file up, so its 404, 403 and 304 answers carry it too.',
    explains: (req, set, a, b) => a.status !== 200 && a.status !== 206 && a.headers['content-disposition'] !== undefined &&
      b.headers['content-disposition'] === undefined ? ['content-disposition'] : null
  },
  {
    kind: 'Content-Disposition quoting',
    reason: 'The file name in Content-Disposition is always a quoted-string (filename="a.txt"); the content-disposition package behind @fastify/static leaves token-like names unquoted (filename=a.txt). Both parse to the same name (RFC 6266).',
    explains: (req, set, a, b) => a.headers['content-disposition'] !== b.headers['content-disposition'] &&
      parseDisposition(a.headers['content-disposition']) === parseDisposition(b.headers['content-disposition']) ? ['content-disposition'] : null
  },
  {
    kind: 'error codes',
    reason: 'Errors carry this plugin\'s codes (FST_ZEROCOPY_FORBIDDEN, FST_ZEROCOPY_BAD_PATH, ...) instead of FST_STATIC_FORBIDDEN_PATH or send\'s http-errors; status, error and message are the same (so a HEAD\'s Content-Length differs by the code\'s length).',
    explains: () => ['error-code', 'error-length']
  }
  // Not a difference here, because only presence is compared: ETags are
  // strong (inode, size, mtime) where @fastify/static's are weak
  // (W/"size-mtime"); each server's conditional requests use its own tags.
]

/** The kinds that together account for every difference, or null. */
function classify (req, diffs, set, a, b) {
  const kinds = []
  const unexplained = new Set(diffs.map((d) => d.field))
  for (const rule of ALLOWED) {
    const fields = rule.explains(req, set, a, b)
    if (fields === null) continue
    const used = [...unexplained].filter((f) => fields.includes(f))
    if (used.length === 0) continue
    kinds.push(rule.kind)
    for (const f of used) unexplained.delete(f)
  }
  return unexplained.size === 0 ? kinds : null
}

// ---------------------------------------------------------------------------
// The requests. Paths are relative to the option set's prefix; `probe`
// marks requests whose headers take the ETag / Last-Modified the same
// server sent for that path (so weak and strong tags each meet their own).

const FILES = [
  'index.html', 'about.html', 'style.css', 'app.js', 'data.json', 'readme.txt', 'notes.md', 'image.svg', 'feed.xml',
  'pixel.png', 'blob.bin', 'empty.txt', 'no-extension', 'with%20space.txt', encodeURI('ünïcode-名前.txt'), '100%25.txt',
  'hash%23tag.txt', 'docs/guide.html', 'docs/deep/nested/file.txt', 'noindex/a.txt', 'link-readme.txt',
  'link-docs/guide.html', 'large.bin', 'only-second.txt', 'docs/extra.txt'
]
const FOLDERS = ['', 'docs/', 'docs', 'noindex/', 'noindex', 'link-docs/', 'docs/deep/', 'docs/deep', 'sub/', 'sub', '.well-known/']
const MISSING = ['missing.txt', 'docs/missing.html', 'nope/', 'about', 'docs/guide', 'readme.txt/x', 'index', 'only-compressed.txt']
const DOTFILES = ['.hidden.txt', '.well-known/security.txt', 'docs/.nothing']
const HOSTILE = [
  '../package.json', '..%2fpackage.json', '%2e%2e/package.json', 'docs/../index.html', 'docs/%2e%2e/index.html',
  'docs/..%2findex.html', '%2e%2e%2f%2e%2e%2fetc/passwd', '/index.html', './index.html', 'docs//guide.html',
  'docs/./guide.html', 'docs/guide.html/.', '%5c..%5cindex.html', 'index.html%00.txt', '%', '%zz', 'docs%2fguide.html',
  'link-out.txt', 'index.html?x=1', 'docs?x=1', 'INDEX.HTML'
]
const RANGES = [
  'bytes=0-99', 'bytes=-100', 'bytes=2000-', 'bytes=0-0', 'bytes=5000-6000', 'bytes=0-9,20-29', 'bytes=0-9,5-20',
  'bytes=abc', 'items=0-5', 'bytes=-0', 'bytes=10-5'
]
const ENCODINGS = ['br', 'gzip', 'deflate', 'gzip, deflate, br', 'br;q=0.5, gzip', 'gzip;q=0', '*', 'gzip;q=0, *', 'identity', 'identity;q=0', 'br;q=0', '']

function requestsFor (set) {
  const out = []
  const add = (method, p, headers = {}, probe) => out.push({ method, path: set.prefix + p, headers, probe })
  for (const p of [...FILES, ...FOLDERS, ...MISSING, ...DOTFILES, ...HOSTILE]) add('GET', p)
  for (const p of ['index.html', 'readme.txt', 'docs/', 'docs', 'missing.txt', 'empty.txt', '.hidden.txt', 'large.bin']) add('HEAD', p)
  if (set.ranges) {
    for (const range of RANGES) add('GET', 'readme.txt', { range })
    for (const range of ['bytes=0-99', 'bytes=-100', 'bytes=3145700-']) add('GET', 'large.bin', { range })
    add('GET', 'empty.txt', { range: 'bytes=0-' })
    add('HEAD', 'readme.txt', { range: 'bytes=0-99' })
  }
  if (set.conditionals) {
    for (const p of ['readme.txt', 'index.html', 'docs/']) {
      add('GET', p, {}, (v) => ({ 'if-none-match': v.etag }))
      add('HEAD', p, {}, (v) => ({ 'if-none-match': v.etag }))
      add('GET', p, {}, (v) => ({ 'if-modified-since': v.lastModified }))
      add('GET', p, {}, (v) => ({ 'if-match': v.etag }))
      add('GET', p, {}, (v) => ({ 'if-unmodified-since': v.lastModified }))
    }
    add('GET', 'readme.txt', { 'if-none-match': '*' })
    add('GET', 'readme.txt', { 'if-none-match': '"other"' })
    add('GET', 'readme.txt', { 'if-modified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' })
    add('GET', 'readme.txt', { 'if-modified-since': 'not a date' })
    add('GET', 'readme.txt', { 'if-match': '"nope"' })
    add('GET', 'readme.txt', { 'if-match': '*' })
    add('GET', 'readme.txt', { 'if-unmodified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' })
    add('GET', 'readme.txt', {}, (v) => ({ 'if-none-match': v.etag, 'cache-control': 'no-cache' }))
    add('GET', 'readme.txt', {}, (v) => ({ 'if-range': v.etag, range: 'bytes=0-9' }))
    add('GET', 'readme.txt', {}, (v) => ({ 'if-range': v.lastModified, range: 'bytes=0-9' }))
    add('GET', 'readme.txt', { 'if-range': '"stale"', range: 'bytes=0-9' })
    add('GET', 'readme.txt', { 'if-range': 'Thu, 01 Jan 1970 00:00:00 GMT', range: 'bytes=0-9' })
  }
  if (set.decorators) {
    for (const route of DECORATOR_ROUTES) {
      for (const p of ['readme.txt', 'docs/', 'docs', 'missing.txt', 'only-second.txt', 'docs/../readme.txt', '.hidden.txt']) add('GET', `${route}/${p}`)
      add('GET', `${route}/readme.txt`, { range: 'bytes=5-15' })
      add('HEAD', `${route}/index.html`)
      add('GET', `${route}/app.js`, { 'accept-encoding': 'br, gzip' })
    }
  }
  if (set.encodings) {
    for (const p of ['app.js', 'index.html', '', 'docs/', 'docs', 'data.json', 'readme.txt', 'style.css', 'only-compressed.txt', 'about.html', 'missing.js']) {
      for (const enc of ENCODINGS) add('GET', p, { 'accept-encoding': enc })
    }
    add('HEAD', 'app.js', { 'accept-encoding': 'br' })
    add('GET', 'app.js', { 'accept-encoding': 'br', range: 'bytes=0-9' })
    add('GET', 'app.js', { 'accept-encoding': 'gzip' }, (v) => ({ 'if-none-match': v.etag }))
    add('GET', 'large.bin', { 'accept-encoding': 'gzip' })
    for (const p of ['sub/', 'sub', 'noindex/', 'nope/']) add('GET', p, { 'accept-encoding': 'gzip, br' })
  }
  return out
}

// The option sets; `prefix` is where files are in URLs.
const SETS = () => {
  const { public: pub, second } = fixtureTree()
  return [
    { name: 'defaults', options: { root: pub }, prefix: '/', ranges: true, conditionals: true, decorators: true },
    { name: 'prefix + index + redirect', options: { root: pub, prefix: '/static', index: ['index.html', 'default.htm'], redirect: true }, prefix: '/static/', extra: ['/static', '/static?a=b', '/', '/index.html', '/staticx/index.html'] },
    { name: 'preCompressed', options: { root: pub, preCompressed: true }, prefix: '/', encodings: true, conditionals: true, decorators: true },
    { name: 'extensions', options: { root: pub, extensions: ['html'] }, prefix: '/' },
    { name: 'maxAge + immutable', options: { root: pub, maxAge: '1d', immutable: true }, prefix: '/', conditionals: true },
    { name: 'switches off', options: { root: pub, etag: false, lastModified: false, cacheControl: false, acceptRanges: false }, prefix: '/', ranges: true },
    { name: 'dotfiles allow', options: { root: pub, dotfiles: 'allow' }, prefix: '/' },
    { name: 'dotfiles deny', options: { root: pub, dotfiles: 'deny' }, prefix: '/' },
    { name: 'root array', options: { root: [pub, second] }, prefix: '/', ranges: true },
    { name: 'index false', options: { root: pub, index: false }, prefix: '/' },
    { name: 'index as a string + preCompressed', options: { root: pub, index: 'index.html', preCompressed: true }, prefix: '/', encodings: true },
    { name: 'wildcard false', options: { root: pub, wildcard: false, extensions: ['html'] }, prefix: '/' },
    { name: 'preCompressed + root array + redirect', options: { root: [pub, second], preCompressed: true, redirect: true }, prefix: '/', encodings: true }
  ]
}

// ---------------------------------------------------------------------------

const summary = { sent: 0, compared: 0, identical: 0, differing: 0, allowed: new Map(), failures: [], sendfileBodies: 0 }

async function runSet (t, set) {
  const pair = await startPair(t, set.options, set.decorators)
  const requests = requestsFor(set)
  for (const p of set.extra ?? []) requests.push({ method: 'GET', path: p, headers: {} })
  const validators = [new Map(), new Map()]
  const before = pair.ours.zeroCopy.stats()
  let bodies = 0
  let encodedBodies = 0

  for (const req of requests) {
    const results = []
    let asSent = req
    for (const [i, client] of [pair.theirs, pair.our].entries()) {
      let headers = req.headers
      if (req.probe) {
        const key = req.path + JSON.stringify(req.headers)
        let v = validators[i].get(key)
        if (v === undefined) {
          const first = await client({ method: 'GET', path: req.path, headers: req.headers })
          summary.sent++
          v = { etag: first.headers.etag ?? '"none"', lastModified: first.headers['last-modified'] ?? 'Thu, 01 Jan 1970 00:00:00 GMT' }
          validators[i].set(key, v)
        }
        headers = { ...req.headers, ...req.probe(v) }
        asSent = { ...req, headers }
      }
      results.push(await client({ method: req.method, path: req.path, headers }))
      summary.sent++
    }
    const [a, b] = results
    // A file body of ours: sent with sendfile, pre-compressed ones included.
    if (b.body.length > 0 && (b.status === 200 || b.status === 206)) {
      assert.equal(b.transport, 'sendfile', `${set.name}: ${req.method} ${req.path} ${JSON.stringify(asSent.headers)}`)
      bodies++
      if (b.headers['content-encoding'] !== undefined) encodedBodies++
    }
    summary.compared++
    const diffs = differences(a, b)
    if (diffs.length === 0) {
      summary.identical++
      continue
    }
    const kinds = classify(asSent, diffs, set, a, b)
    if (kinds !== null) {
      summary.differing++
      for (const kind of kinds) summary.allowed.set(kind, (summary.allowed.get(kind) ?? 0) + 1)
      continue
    }
    summary.failures.push({ set: set.name, req: `${req.method} ${req.path} ${JSON.stringify(asSent.headers)}`, diffs })
  }

  // And the counters agree: no body took the write path; sendfile carried
  // the compared ones (and the probes that fetched validators).
  const after = pair.ours.zeroCopy.stats()
  assert.equal(after.responses.write - before.responses.write, 0, `${set.name}: no body may take the write path`)
  assert.ok(after.responses.sendfile - before.responses.sendfile >= bodies,
    `${set.name}: ${after.responses.sendfile - before.responses.sendfile} sendfile responses for ${bodies} file bodies`)
  summary.sendfileBodies += bodies
  return { requests: requests.length, bodies, encodedBodies }
}

test('serve mode answers like @fastify/static, or differs only as documented', { timeout: 240000 }, async (t) => {
  let encoded = 0
  for (const set of SETS()) {
    await t.test(set.name, async (t) => {
      const { encodedBodies } = await runSet(t, set)
      encoded += encodedBodies
    })
  }
  const allowed = [...summary.allowed.entries()].map(([k, n]) => `${k}: ${n}`).join('; ')
  const line = `conformance: ${summary.sent} requests sent (${summary.sent / 2} per server), ` +
    `${summary.compared} response pairs compared: ${summary.identical} identical, ${summary.differing} with allowed differences ` +
    `(by kind: ${allowed || 'none'}), ${summary.failures.length} unexplained; ` +
    `${summary.sendfileBodies} of our file bodies sent by sendfile, ${encoded} of them pre-compressed`
  console.log(line)
  t.diagnostic(line)
  for (const f of summary.failures) {
    console.log(`UNEXPLAINED [${f.set}] ${f.req}`)
    for (const d of f.diffs) console.log(`    ${d.field}: theirs ${JSON.stringify(d.theirs)} ours ${JSON.stringify(d.ours)}`)
  }
  assert.ok(summary.compared >= 200, `at least 200 requests compared (${summary.compared})`)
  assert.equal(summary.failures.length, 0, `${summary.failures.length} unexplained differences (listed above)`)
  assert.ok(encoded > 0, 'pre-compressed variants were served')
})
