'use strict'
// Hostile input over real sockets: a generated corpus of request paths
// (traversal, encodings, null bytes, overlong UTF-8, absolute paths,
// symlinks out of the root, dotfiles, long names), fuzzed conditional and
// Range headers, and option values at registration.
//
// Requests are pipelined in batches over a few keep-alive connections, so
// 100,000 paths fit in the time budget. ZC_SOAK=1 runs bigger corpora.
// Every test prints the figures it reached (counts, histograms).
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const crypto = require('node:crypto')
const path = require('node:path')
const Fastify = require('fastify')
const { patternBytes, zeroCopy } = require('./helpers')
const {
  SOAK, mulberry32, sleep, PipelineClient, startChildServer, bump
} = require('./fixtures/reliability/common')

const PATHS = SOAK ? 1000000 : 100000
const HEADER_REQUESTS = SOAK ? 200000 : 20000
const CONNECTIONS = 4
const BATCH = 250

const OUTSIDE_MARK = 'ZC-OUTSIDE-MARK-7f3a9'
const DOT_MARK = 'ZC-DOTFILE-MARK-c41d'
const PASSWD_MARK = 'root:x:0:0'

// ---------------------------------------------------------------------------
// A root full of traps, and files outside it with markers.

let layout = null
function hostileRoot () {
  if (layout !== null) return layout
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-hostile-'))
  const root = path.join(base, 'root')
  const outside = path.join(base, 'outside')
  // Shares the root's name as a prefix: a string-prefix check would let it in.
  const sibling = path.join(base, 'root-evil')
  for (const dir of [root, outside, sibling, path.join(root, 'sub', 'deeper'), path.join(root, '.hidden')]) {
    fs.mkdirSync(dir, { recursive: true })
  }
  const visible = {
    'hello.txt': 'hello from inside the root\n',
    'page.html': '<!doctype html><title>inside</title>\n',
    'sub/nested.txt': 'nested inside\n',
    'sub/deeper/file.txt': 'deeper inside\n',
    'a b.txt': 'a file name with a space\n',
    '%2e%2e': 'a file literally named %2e%2e\n',
    'back\\slash.txt': 'a backslash is a file-name byte\n',
    'empty.txt': ''
  }
  const dotfiles = {
    '.secret': `${DOT_MARK} 1\n`,
    '.hidden/inside.txt': `${DOT_MARK} 2\n`,
    'sub/.env': `${DOT_MARK} 3\n`,
    '..foo': `${DOT_MARK} 4\n`
  }
  for (const [name, body] of Object.entries({ ...visible, ...dotfiles })) fs.writeFileSync(path.join(root, name), body)
  fs.writeFileSync(path.join(outside, 'secret.txt'), `${OUTSIDE_MARK} outside\n`)
  fs.writeFileSync(path.join(sibling, 'secret.txt'), `${OUTSIDE_MARK} sibling\n`)
  fs.writeFileSync(path.join(base, 'secret.txt'), `${OUTSIDE_MARK} parent\n`)
  const links = {
    'link-in': 'hello.txt',
    'link-in-abs': path.join(root, 'hello.txt'),
    'link-out-abs': path.join(outside, 'secret.txt'),
    'link-out-rel': '../outside/secret.txt',
    'link-out-dir': outside,
    'link-sibling': path.join(sibling, 'secret.txt'),
    'link-sibling-dir': '../root-evil',
    'link-parent': '../secret.txt',
    'link-etc': '/etc',
    'link-passwd': '/etc/passwd',
    'link-root': '/',
    'link-proc': '/proc/self',
    'link-loop': 'link-loop',
    'link-dangling': 'does-not-exist',
    'sub/link-up': '..',
    'sub/link-up-up': '../..',
    'sub/link-hello': '../hello.txt',
    'sub/link-out-rel': '../../outside/secret.txt',
    '.hidden/link-out': '../../outside/secret.txt'
  }
  for (const [name, target] of Object.entries(links)) fs.symlinkSync(target, path.join(root, name))
  // Served bodies a 200 may carry (symlinks inside the root serve these too).
  const servable = new Map(Object.entries(visible).map(([name, body]) => [body, name]))
  process.on('exit', () => fs.rmSync(base, { recursive: true, force: true }))
  layout = { base, root, outside, sibling, visible, dotfiles, links, servable }
  return layout
}

// ---------------------------------------------------------------------------
// The corpus

/** Percent-encodes every byte outside the printable ASCII a request-target may carry raw. */
function wireSafe (p) {
  let out = ''
  for (const byte of Buffer.from(p, 'utf8')) {
    out += byte > 0x20 && byte < 0x7f ? String.fromCharCode(byte) : '%' + byte.toString(16).toUpperCase().padStart(2, '0')
  }
  return out
}

/**
 * Yields `count` distinct request-targets, generated from `seed`. Lazily:
 * a soak corpus of a million long paths would not fit in the heap; only a
 * digest of each is kept to skip repeats.
 */
function * generatePaths (count, seed, { root, base }) {
  const rand = mulberry32(seed)
  const pick = (list) => list[Math.floor(rand() * list.length)]
  // Traversal that decodes to something the plugin must judge...
  const traversal = [
    '..', '..', '..', '.', '...', '....', '%2e%2e', '%2E%2E', '%2e%2E', '.%2e', '%2e.', '%2e',
    '%252e%252e', '%25%32%65%25%32%65', '..;', '%2500', '..%5c', '%5c..', '..\\', '\\..', '..%2f', '%2e%2e%2f',
    '..%252f', '.../...', '....//', '..%20', '%20..', '..%09', '%ef%bc%8e%ef%bc%8e', '..?', '..#'
  ]
  // ...and encodings the router itself must refuse: null bytes, overlong
  // UTF-8, invalid or truncated escapes.
  const malformed = [
    '%00', '..%00', 'hello.txt%00', '%c0%ae%c0%ae', '%c0%2e%c0%2e', '%e0%80%ae%e0%80%ae', '%f0%80%80%ae', '..%c0%af',
    '..%e0%80%af', '%uff0e%uff0e', '%%32%65%%32%65', '%ff', '%fe%ff', '%', '%zz', '%2', '%%', '%0d%0a..', '..%0a'
  ]
  const names = [
    'hello.txt', 'hello.txt', 'hello.txt', 'page.html', 'sub', 'sub', 'sub', 'nested.txt', 'deeper', 'file.txt',
    'a b.txt', 'a%20b.txt', '%252e%252e', 'back\\slash.txt', 'back%5cslash.txt', 'empty.txt',
    '.secret', '.hidden', 'inside.txt', '.env', '..foo', '%2esecret', '%2e%73ecret', '.%73ecret',
    'link-in', 'link-in-abs', 'link-out-abs', 'link-out-rel', 'link-out-dir', 'link-sibling', 'link-sibling-dir',
    'link-parent', 'link-etc', 'link-passwd', 'link-root', 'link-proc', 'link-loop', 'link-dangling',
    'link-up', 'link-up-up', 'link-hello', 'link-out', 'secret.txt', 'outside', 'root-evil', 'root',
    'etc', 'passwd', 'shadow', 'proc', 'self', 'status', 'environ', 'fd', '0', '1', 'cwd', 'exe', 'mem', 'dev', 'null',
    'zero', 'tmp', 'sys', 'HELLO.TXT', 'hello.txt.', 'hello.txt%20', 'hello.txt::$DATA', 'hello%2etxt', 'hello.txt%2f',
    'CON', 'nul', '~', '~root', '%24HOME', '*', 'x'.repeat(255), 'y'.repeat(256), 'z'.repeat(1500),
    '%e2%80%ae', '%f0%9f%98%80', '%c3%a9', '\u00e9', '\u202e', '%7f', '%01', '%0a', '%2f', '%5c', '%3f', '%23', '%25'
  ]
  const separators = ['/', '/', '/', '/', '/', '/', '//', '///', '/./', '%2f', '%2F', '%252f', '\\', '%5c', '%5C', '/%2e/']
  const prefixes = [
    '', '', '', '', '', '', '/', '//', '/./', '/../', '/%2e%2e/', `/${root}/`, `/${base}/`, '/etc/', '/proc/self/root/',
    'file:', 'http://evil.example/', '%2f', '\\\\'
  ]
  const seen = new Set()
  while (seen.size < count) {
    const segments = 1 + Math.floor(rand() * 6)
    let p = pick(prefixes)
    for (let i = 0; i < segments; i++) {
      const r = rand()
      const segment = r < 0.35 ? pick(traversal) : r < 0.39 ? pick(malformed) : r < 0.98 ? pick(names) : 'q'.repeat(1 + Math.floor(rand() * 3000))
      p += (i === 0 && (p === '' || p.endsWith('/')) ? '' : pick(separators)) + segment
    }
    // Random extra encoding of single characters: once, or twice.
    if (rand() < 0.1) {
      p = p.replace(/[./a-z]/g, (c) => rand() < 0.15
        ? (rand() < 0.7 ? '%' : '%25') + c.charCodeAt(0).toString(16)
        : c)
    }
    if (rand() < 0.08) p += '/'
    if (rand() < 0.04) p += '?x=' + pick(traversal) + pick(separators) + pick(names)
    let target = p.startsWith('/') ? p : '/' + p
    target = wireSafe(target)
    if (target.length > 7000) target = target.slice(0, 7000)
    const digest = target.length <= 24 ? target : crypto.createHash('md5').update(target).digest('base64')
    if (seen.has(digest)) continue
    seen.add(digest)
    yield target
  }
}

// ---------------------------------------------------------------------------
// Hostile paths

test(`hostile paths: ${PATHS} generated request paths, pipelined: nothing from outside the root, no 5xx`, {
  timeout: SOAK ? 1800000 : 90000
}, async (t) => {
  const { root, servable } = hostileRoot()
  // The server in a child process: the client here and the server there
  // each get a core. It reports its own warnings, errors and fds.
  const server = await startChildServer(root)
  t.after(() => server.close())
  const port = server.port
  const warm = new PipelineClient(port)
  await warm.run([{ method: 'GET', target: '/hello.txt' }, { method: 'GET', target: '/link-out-abs' }])
  warm.destroy()
  await sleep(700) // the warm-up's lease lingers 500 ms
  const before = await server.stats()

  const corpus = generatePaths(PATHS, 0x5eed1, hostileRoot())
  const nextBatch = () => {
    const batch = []
    while (batch.length < BATCH) {
      const { value, done } = corpus.next() // not for...of: its break would close the generator
      if (done) break
      batch.push(value)
    }
    return batch
  }
  let sent = 0
  let batches = 0

  const statuses = {}
  const served = {}
  const leaks = []
  const fivexx = []
  const unexpected = []
  const lost = []
  let protocolErrors = 0
  const clients = Array.from({ length: CONNECTIONS }, () => new PipelineClient(port))
  t.after(() => clients.forEach((c) => c.destroy()))
  await Promise.all(clients.map(async (client) => {
    for (;;) {
      const batch = nextBatch()
      if (batch.length === 0) break
      sent += batch.length
      batches++
      const responses = await client.run(batch.map((target) => ({ method: 'GET', target })))
      if (client.protocolError) {
        protocolErrors++
        unexpected.push(`protocol: ${client.protocolError}`)
      }
      for (let i = 0; i < batch.length; i++) {
        const res = responses[i]
        const target = batch[i]
        if (res === null) {
          lost.push(target)
          continue
        }
        bump(statuses, res.status)
        const body = res.body.toString('latin1')
        if (body.includes(OUTSIDE_MARK) || body.includes(PASSWD_MARK) || body.includes(DOT_MARK) || /^Name:\s/m.test(body)) {
          leaks.push(`${target} -> ${res.status} ${JSON.stringify(body.slice(0, 80))}`)
        }
        if (res.status >= 500) fivexx.push(`${target} -> ${res.status} ${body.slice(0, 120)}`)
        else if (res.status === 200) {
          const name = servable.get(res.body.toString('utf8'))
          if (name === undefined) leaks.push(`${target} -> 200 with a body that is no visible file: ${JSON.stringify(body.slice(0, 80))}`)
          else bump(served, name)
        } else if (![400, 403, 404].includes(res.status)) {
          unexpected.push(`${target} -> ${res.status}`)
        }
      }
    }
  }))
  clients.forEach((c) => c.destroy())
  await sleep(700)
  const after = await server.stats()

  console.log(`hostile paths: ${sent} distinct paths, ${batches} pipelined batches of ${BATCH} over ${CONNECTIONS} connections ` +
    `(${clients.reduce((n, c) => n + c.connections, 0)} connections opened in all)`)
  console.log('hostile paths: status histogram', JSON.stringify(statuses))
  console.log('hostile paths: 200s by file served', JSON.stringify(served))
  console.log(`hostile paths: leaks ${leaks.length}, 5xx ${fivexx.length}, other statuses ${unexpected.length}, ` +
    `unanswered ${lost.length}, protocol errors ${protocolErrors}, server warnings ${after.warnings.length}, ` +
    `server uncaught ${after.errors.length}, ` +
    `server error logs ${JSON.stringify(after.logErrors)}, server fds ${before.fds} -> ${after.fds}, leases held ${after.held}`)

  assert.deepEqual(leaks.slice(0, 20), [], 'no response carries bytes from outside the root (or a dotfile)')
  assert.deepEqual(fivexx.slice(0, 20), [], 'no 5xx')
  assert.deepEqual(unexpected.slice(0, 20), [], 'only 200/400/403/404')
  assert.deepEqual(lost.slice(0, 20), [], 'every request answered')
  assert.equal(sent, PATHS)
  assert.equal(Object.values(statuses).reduce((a, b) => a + b, 0), PATHS)
  for (const status of [200, 400, 403, 404]) assert.ok(statuses[status] > 0, `the corpus reaches status ${status}`)
  assert.ok(served['hello.txt'] > 0)
  assert.deepEqual(after.errors, [], 'no uncaught exception in the server')
  assert.deepEqual(after.logErrors, {}, 'no error logged by the server')
  assert.deepEqual(after.warnings, [], 'no process warning in the server')
  assert.ok(server.alive(), 'the server is alive')
  // The open-file cache keeps fds on purpose (counted in its stats).
  const outsideCache = (s) => s.fds - s.stats.cache.fds
  assert.ok(outsideCache(after) <= outsideCache(before), `server fds outside the cache back to ${outsideCache(before)} (now ${outsideCache(after)})`)

  const probe = new PipelineClient(port)
  t.after(() => probe.destroy())
  const [hello] = await probe.run([{ method: 'GET', target: '/hello.txt' }])
  assert.equal(hello.status, 200)
  assert.equal(servable.get(hello.body.toString()), 'hello.txt')
})

test('hostile paths: the traps one by one (symlinks out of the root, the sibling with the same prefix, dotfiles)', {
  timeout: 30000
}, async (t) => {
  const { root } = hostileRoot()
  const server = await startChildServer(root)
  t.after(() => server.close())
  const cases = [
    ['/link-out-abs', 403], ['/link-out-rel', 403], ['/link-out-dir/secret.txt', 403], ['/link-sibling', 403],
    ['/link-sibling-dir/secret.txt', 403], ['/link-parent', 403], ['/link-passwd', 403], ['/link-etc/passwd', 403],
    ['/link-root/etc/passwd', 403], ['/link-proc/status', 403], ['/sub/link-up-up/secret.txt', 403],
    ['/sub/link-out-rel', 403], ['/../secret.txt', 403], ['/%2e%2e/secret.txt', 403], ['/../root-evil/secret.txt', 403],
    ['/.hidden/link-out', 404], ['/.secret', 404], ['/sub/.env', 404], ['/..foo', 404], ['/%2e%2e', 403],
    ['/link-loop', 404], ['/link-dangling', 404], ['/hello.txt%00', 400], ['/%c0%ae%c0%ae/secret.txt', 400],
    ['/link-in', 200], ['/link-in-abs', 200], ['/sub/link-hello', 200], ['/sub/link-up/hello.txt', 200],
    ['/%252e%252e', 200], ['/back\\slash.txt', 200], ['/a%20b.txt', 200]
  ]
  const client = new PipelineClient(server.port)
  t.after(() => client.destroy())
  const responses = await client.run(cases.map(([target]) => ({ method: 'GET', target })))
  const got = cases.map(([target], i) => [target, responses[i]?.status])
  console.log('hostile paths, fixed traps:', got.map(([target, status]) => `${target}=${status}`).join(' '))
  for (const [i, [target, status]] of cases.entries()) {
    const res = responses[i]
    assert.ok(res, `${target}: answered`)
    assert.ok(!res.body.toString().includes(OUTSIDE_MARK), `${target}: no outside bytes`)
    assert.ok(!res.body.toString().includes(DOT_MARK), `${target}: no dotfile bytes`)
    assert.equal(res.status, status, `${target}: status`)
  }
})

// ---------------------------------------------------------------------------
// Hostile headers

const HEADER_FILES = { 'f5000.bin': 5000, 'one.bin': 1, 'empty.bin': 0, 'f64k.bin': 65536 }

let headerRoot = null
function headerFiles () {
  if (headerRoot !== null) return headerRoot
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-headers-'))
  const files = {}
  for (const [name, size] of Object.entries(HEADER_FILES)) {
    const bytes = patternBytes(size, size + 11)
    fs.writeFileSync(path.join(dir, name), bytes)
    files[name] = { size, bytes }
  }
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  headerRoot = { dir, files }
  return headerRoot
}

const httpDate = (ms) => new Date(ms).toUTCString()

/** One random request: method, file, and a mix of fuzzed conditional and Range headers. */
function fuzzRequest (rand, file, validators) {
  const pick = (list) => list[Math.floor(rand() * list.length)]
  const int = (n) => Math.floor(rand() * n)
  const { size } = file
  const { etag, lastModified } = validators
  const lmMs = Date.parse(lastModified)
  const printable = () => {
    let s = ''
    const n = int(60)
    for (let i = 0; i < n; i++) {
      const r = rand()
      s += r < 0.9 ? String.fromCharCode(0x20 + int(95)) : r < 0.95 ? '\t' : String.fromCharCode(0x80 + int(128))
    }
    return s
  }
  const num = () => rand() < 0.6 ? String(int(size + 3)) : pick([
    '0', '1', String(Math.max(0, size - 1)), String(size), String(size + 1), String(int(size + 1)), String(int(size + 1)),
    String(int(size + 1)), '2147483647', '2147483648', '4294967295', '4294967296', '9007199254740991', '9007199254740992',
    '9007199254740993', '18446744073709551615', '18446744073709551616', '9'.repeat(1 + int(400)), '0'.repeat(40) + '7',
    '00', '-1', '+1', '1.5', '1e3', '0x10', ' 5', '5 ', '', 'NaN', 'Infinity', '\u0661'
  ])
  const spec = () => {
    const r = rand()
    if (r < 0.55) return `${num()}-${num()}`
    if (r < 0.75) return `${num()}-`
    if (r < 0.95) return `-${num()}`
    return pick(['-', '--', '1-2-3', 'a-b', '', ' ', '=', '0-0'])
  }
  const unit = () => rand() < 0.75 ? 'bytes' : pick(['bytes', 'bytes', 'bytes', 'bytes', 'bytes', 'Bytes', 'BYTES', 'byte', 'bits', 'items', '', ' bytes', 'bytes '])
  const eq = () => rand() < 0.8 ? '=' : pick(['=', '=', '=', '=', ' =', '= ', '=\t', '=='])
  const range = () => {
    const r = rand()
    if (r < 0.45) return `${unit()}${eq()}${spec()}`
    if (r < 0.65) {
      // Several specs: overlapping, adjacent or disjoint, with odd spacing.
      const n = 2 + int(r < 0.6 ? 6 : 150)
      const specs = []
      let at = int(size + 1)
      for (let i = 0; i < n; i++) {
        const mode = rand()
        if (mode < 0.4) {
          const len = int(64)
          specs.push(`${at}-${at + len}`)
          at = at + len + pick([-5, 0, 1, 2, 30])
          if (at < 0) at = 0
        } else specs.push(spec())
      }
      return `${unit()}${eq()}${specs.join(pick([',', ', ', ' , ', ',\t', ',,']))}`
    }
    if (r < 0.75) {
      // A valid-looking header at the 8 KiB limit, just below or above it.
      const target = 8192 + int(5) - 2
      let v = 'bytes=0-0'
      while (v.length < target - 4) v += ',0-0'
      return v.padEnd(target, ' ').slice(0, target)
    }
    if (r < 0.9) return printable()
    return pick(['bytes=', 'bytes=,', 'bytes=,,0-1,,', 'bytes=0-1,', ',bytes=0-1', 'bytes=0-1;2-3', 'bytes=1-0', 'bytes=0-0,-0'])
  }
  const dates = () => pick([
    lastModified, lastModified, httpDate(lmMs + 1000), httpDate(lmMs - 1000), httpDate(lmMs + 86400e3 * 365 * 50),
    'Thu, 01 Jan 1970 00:00:00 GMT', 'Fri, 31 Dec 9999 23:59:59 GMT', 'Sun, 06 Nov 1994 08:49:37 GMT',
    'Sunday, 06-Nov-94 08:49:37 GMT', 'Sun Nov  6 08:49:37 1994', lastModified.toLowerCase(), lastModified.replace('GMT', 'UTC'),
    new Date(lmMs).toISOString(), String(lmMs), '0', '-1', '9'.repeat(30), 'Mon, 30 Feb 2026 00:00:00 GMT',
    'Mon, 32 Jan 2026 25:61:61 GMT', '+275760-09-13T00:00:00.000Z', printable(), ''
  ])
  const etags = () => pick([
    etag, etag, `W/${etag}`, '"nope"', '*', `"a", ${etag}`, `${etag}, "b"`, etag.slice(1, -1), etag + ' ', ` ${etag}`,
    '"unterminated', ',,,', `W/"x", W/${etag}`, Array.from({ length: 200 }, (_, i) => `"e${i}"`).join(', '),
    Array.from({ length: 50 }, () => etag).join(','), printable(), ''
  ])
  const headers = []
  if (rand() < 0.75) headers.push(['Range', range()])
  if (rand() < 0.2) headers.push(['If-Range', rand() < 0.5 ? etags() : dates()])
  if (rand() < 0.2) headers.push(['If-None-Match', etags()])
  if (rand() < 0.2) headers.push(['If-Modified-Since', dates()])
  if (rand() < 0.08) headers.push(['If-Match', etags()])
  if (rand() < 0.08) headers.push(['If-Unmodified-Since', dates()])
  if (rand() < 0.03) headers.push(['Range', range()]) // a second Range header
  // Values are sent as latin1 bytes: no CR, LF or NUL can get in (printable() makes none).
  return { method: rand() < 0.1 ? 'HEAD' : 'GET', headers }
}

/** The answer RFC 9110 gives for simple, unambiguous requests; null when the test does not predict. */
function oracle (req, size, etag) {
  const names = req.headers.map(([k]) => k.toLowerCase())
  if (names.length === 0) return { status: 200 }
  if (names.length === 1 && names[0] === 'if-none-match' && (req.headers[0][1] === etag || req.headers[0][1] === '*')) {
    return { status: 304 }
  }
  if (names.length === 1 && names[0] === 'if-match' && req.headers[0][1] === '"nope"') return { status: 412 }
  if (names.length !== 1 || names[0] !== 'range' || req.method !== 'GET') return null
  const value = req.headers[0][1]
  let m = /^bytes=(\d{1,15})-(\d{0,15})$/.exec(value)
  if (m !== null) {
    const a = Number(m[1])
    const b = m[2] === '' ? Infinity : Number(m[2])
    if (b < a) return { status: 200 }
    if (a >= size) return { status: 416 }
    return { status: 206, start: a, end: Math.min(b, size - 1) }
  }
  m = /^bytes=-(\d{1,15})$/.exec(value)
  if (m !== null) {
    const n = Number(m[1])
    if (n === 0) return { status: 416 }
    if (size === 0) return { status: 200 }
    return { status: 206, start: Math.max(0, size - n), end: size - 1 }
  }
  return null
}

/** Problems with one response (empty list when it is consistent). */
function checkResponse (req, res, file, etag) {
  const problems = []
  const { size, bytes } = file
  const h = res.headers
  const len = h['content-length'] === undefined ? undefined : Number(h['content-length'])
  switch (res.status) {
    case 200:
      if (len !== size) problems.push(`200 with content-length ${h['content-length']} (size ${size})`)
      if (req.method === 'GET' && !res.body.equals(bytes)) problems.push('200 body is not the file')
      if (req.method === 'HEAD' && res.body.length !== 0) problems.push('HEAD with a body')
      break
    case 206: {
      if (req.method !== 'GET') problems.push(`206 to ${req.method}`)
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(h['content-range'] ?? '')
      if (m === null) {
        problems.push(`206 with content-range ${JSON.stringify(h['content-range'])}`)
        break
      }
      const [a, b, total] = [Number(m[1]), Number(m[2]), Number(m[3])]
      if (total !== size) problems.push(`206 total ${total} (size ${size})`)
      if (!(a <= b && b < size)) problems.push(`206 range ${a}-${b} outside 0-${size - 1}`)
      if (len !== b - a + 1) problems.push(`206 content-length ${len} for ${a}-${b}`)
      if (!res.body.equals(bytes.subarray(a, b + 1))) problems.push(`206 body is not bytes ${a}-${b}`)
      break
    }
    case 304:
      if (res.body.length !== 0) problems.push('304 with a body')
      if (h.etag !== etag) problems.push(`304 with etag ${h.etag}`)
      break
    case 412:
      if (res.body.length !== 0) problems.push(`412 with a body of ${res.body.length}`)
      break
    case 416:
      if (h['content-range'] !== `bytes */${size}`) problems.push(`416 with content-range ${JSON.stringify(h['content-range'])}`)
      if (res.body.length !== 0) problems.push(`416 with a body of ${res.body.length}`)
      break
    default:
      problems.push(`status ${res.status}: ${res.body.toString().slice(0, 200)}`)
  }
  return problems
}

test(`hostile headers: ${HEADER_REQUESTS} fuzzed Range / If-Range / If-None-Match / If-Modified-Since requests over real sockets`, {
  timeout: SOAK ? 1800000 : 60000
}, async (t) => {
  const { dir, files } = headerFiles()
  const server = await startChildServer(dir)
  t.after(() => server.close())
  const port = server.port

  // The validators of each file, from the server itself.
  const validators = {}
  const probe = new PipelineClient(port)
  const names = Object.keys(files)
  const first = await probe.run(names.map((name) => ({ method: 'GET', target: `/${name}` })))
  probe.destroy()
  for (const [i, name] of names.entries()) {
    assert.equal(first[i].status, 200)
    validators[name] = { etag: first[i].headers.etag, lastModified: first[i].headers['last-modified'] }
    assert.ok(validators[name].etag && validators[name].lastModified, `${name} has an ETag and a Last-Modified`)
  }
  await sleep(700)
  const before = await server.stats()

  const rand = mulberry32(0xfeed5)
  const requests = []
  for (let i = 0; i < HEADER_REQUESTS; i++) {
    // The 64 KiB file rarely: its full bodies are the bulk of the bytes.
    const r = rand()
    const name = r < 0.05 ? 'f64k.bin' : r < 0.75 ? 'f5000.bin' : r < 0.88 ? 'one.bin' : 'empty.bin'
    let req = fuzzRequest(rand, files[name], validators[name])
    // Node answers 431 and closes the connection past 16 KiB of header: stay well below.
    while (req.headers.reduce((n, [k, v]) => n + k.length + v.length + 4, 0) > 12000) req = fuzzRequest(rand, files[name], validators[name])
    requests.push({ ...req, name, target: `/${name}` })
  }
  // Plain cases the oracle predicts exactly, mixed in.
  for (const name of names) {
    const size = files[name].size
    const plain = [[], [['If-None-Match', validators[name].etag]], [['If-None-Match', '*']], [['If-Match', '"nope"']],
      [['Range', 'bytes=0-0']], [['Range', `bytes=${size}-`]], [['Range', 'bytes=-1']], [['Range', 'bytes=-0']],
      [['Range', `bytes=${Math.max(0, size - 10)}-${size + 1000}`]], [['Range', 'bytes=5-4']], [['Range', 'bytes=0-']]]
    for (const headers of plain) requests.push({ method: 'GET', headers, name, target: `/${name}` })
  }

  const BATCH_H = 100
  const statuses = {}
  const problems = []
  let predicted = 0
  let lost = 0
  const protocol = []
  const clients = Array.from({ length: CONNECTIONS }, () => new PipelineClient(port))
  t.after(() => clients.forEach((c) => c.destroy()))
  let next = 0
  await Promise.all(clients.map(async (client) => {
    while (next < requests.length) {
      const batch = requests.slice(next, next + BATCH_H)
      next += BATCH_H
      const responses = await client.run(batch)
      if (client.protocolError) protocol.push(client.protocolError)
      for (const [i, req] of batch.entries()) {
        const res = responses[i]
        if (res === null) {
          lost++
          continue
        }
        const file = files[req.name]
        const { etag } = validators[req.name]
        bump(statuses, `${req.method} ${res.status}`)
        const found = checkResponse(req, res, file, etag)
        const expected = oracle(req, file.size, etag)
        if (expected !== null) {
          predicted++
          if (res.status !== expected.status) found.push(`expected ${expected.status}, got ${res.status}`)
          else if (expected.status === 206 && res.headers['content-range'] !== `bytes ${expected.start}-${expected.end}/${file.size}`) {
            found.push(`expected bytes ${expected.start}-${expected.end}/${file.size}, got ${res.headers['content-range']}`)
          }
        }
        if (found.length > 0 && problems.length < 50) {
          problems.push(`${req.method} ${req.target} ${JSON.stringify(req.headers).slice(0, 300)} -> ${res.status} ${JSON.stringify(res.headers).slice(0, 300)}: ${found.join('; ')}`)
        }
      }
    }
  }))
  clients.forEach((c) => c.destroy())
  await sleep(700)
  const after = await server.stats()
  console.log(`hostile headers: ${requests.length} requests (${predicted} with an exact expected answer), ` +
    `${Math.ceil(requests.length / BATCH_H)} pipelined batches over ${CONNECTIONS} connections`)
  console.log('hostile headers: status histogram', JSON.stringify(statuses))
  console.log(`hostile headers: inconsistent responses ${problems.length}, unanswered ${lost}, protocol errors ${protocol.length}, ` +
    `server uncaught ${after.errors.length}, server error logs ${JSON.stringify(after.logErrors)}, ` +
    `server warnings ${after.warnings.length}, ` +
    `server fds ${before.fds} -> ${after.fds}`)
  assert.deepEqual(problems.slice(0, 10), [], 'every response matches its headers')
  assert.deepEqual(protocol, [], 'every response is framed correctly')
  assert.equal(lost, 0, 'every request answered')
  assert.deepEqual(after.errors, [], 'no exception escaped in the server')
  assert.deepEqual(after.logErrors, {}, 'no error logged by the server')
  assert.deepEqual(after.warnings, [], 'no process warning in the server')
  for (const status of ['GET 200', 'GET 206', 'GET 304', 'GET 412', 'GET 416', 'HEAD 200']) {
    assert.ok(statuses[status] > 0, `the fuzzer reaches ${status}`)
  }
  assert.ok(server.alive())
  // The open-file cache keeps fds on purpose (counted in its stats).
  const outsideCache = (s) => s.fds - s.stats.cache.fds
  assert.ok(outsideCache(after) <= outsideCache(before), `server fds outside the cache back to ${outsideCache(before)} (now ${outsideCache(after)})`)
})

// ---------------------------------------------------------------------------
// Options the other suites do not cover: lease, leaseGrace, integrity

async function registrationError (options) {
  const app = Fastify()
  try {
    await app.register(zeroCopy, options)
  } catch (err) {
    return err
  } finally {
    await app.close().catch(() => {})
  }
  return null
}

test('options: lease, leaseGrace and integrity with a wrong type or value are rejected at registration', async (t) => {
  const root = headerFiles().dir
  const invalid = [
    [{ lease: true }, 'lease'], [{ lease: 'yes' }, 'lease'], [{ lease: 'Required' }, 'lease'], [{ lease: 'AUTO' }, 'lease'],
    [{ lease: 0 }, 'lease'], [{ lease: null }, 'lease'], [{ lease: {} }, 'lease'], [{ lease: ['auto'] }, 'lease'], [{ lease: '' }, 'lease'],
    [{ leaseGrace: -1 }, 'leaseGrace'], [{ leaseGrace: 1.5 }, 'leaseGrace'], [{ leaseGrace: '1000' }, 'leaseGrace'],
    [{ leaseGrace: 3600001 }, 'leaseGrace'], [{ leaseGrace: Number.NaN }, 'leaseGrace'], [{ leaseGrace: Infinity }, 'leaseGrace'],
    [{ leaseGrace: null }, 'leaseGrace'], [{ leaseGrace: true }, 'leaseGrace'], [{ leaseGrace: 2 ** 53 }, 'leaseGrace'],
    [{ leaseGrace: -0.5 }, 'leaseGrace'], [{ leaseGrace: [] }, 'leaseGrace'],
    [{ integrity: 'loose' }, 'integrity'], [{ integrity: 'Strict' }, 'integrity'], [{ integrity: true }, 'integrity'],
    [{ integrity: false }, 'integrity'], [{ integrity: null }, 'integrity'], [{ integrity: 0 }, 'integrity'], [{ integrity: '' }, 'integrity']
  ]
  const seen = []
  for (const [options, name] of invalid) {
    const err = await registrationError({ root, ...options })
    const value = options[name]
    const label = `${name}: ${typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value)}`
    seen.push(`${label} -> ${err?.code}`)
    assert.ok(err !== null, `${label} should be rejected`)
    assert.equal(err.code, 'FST_ZEROCOPY_INVALID_OPTION', `${label}: ${err.message}`)
    assert.ok(err.message.includes(`"${name}"`), `${label}: the message names the option: ${err.message}`)
  }
  console.log(`options: ${invalid.length} invalid lease/leaseGrace/integrity values rejected: ${seen.join(', ')}`)

  const valid = [{ lease: 'auto' }, { lease: 'required' }, { lease: false }, { leaseGrace: 0 }, { leaseGrace: 3600000 },
    { integrity: 'strict' }, { integrity: 'fast' }, { lease: 'required', leaseGrace: 10, integrity: 'fast' }]
  for (const options of valid) {
    const err = await registrationError({ root, ...options })
    assert.equal(err, null, `${JSON.stringify(options)} is valid: ${err?.message}`)
  }
  console.log(`options: ${valid.length} valid lease/leaseGrace/integrity combinations registered`)
})
