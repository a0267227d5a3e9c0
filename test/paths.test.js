'use strict'
// Nothing escapes the root. Requests go over a raw `net` client so the
// request-target reaches the server exactly as written (fetch/undici would
// normalise `..`, backslashes and some encodings away).

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, execFileSync } = require('node:child_process')
const readline = require('node:readline')
const { fixtures, startServer, rawExchange, parseResponses } = require('./helpers')

const PACKAGE_ROOT = path.join(__dirname, '..')
const FASTIFY = require.resolve('fastify')

const PASSWD_MARK = 'root:'
const OUTSIDE_MARK = 'must never be served'
const ALLOWED = new Set([200, 400, 403, 404])

const FILES = {
  'hello.txt': 'hello, world\n',
  'page.html': '<!doctype html><title>x</title>\n',
  'sub/nested.txt': 'nested\n',
  '.secret': 'dotfile\n',
  '.hidden/inside.txt': 'inside a dot folder\n'
}
const VISIBLE_BODIES = new Set([
  FILES['hello.txt'], FILES['page.html'], FILES['sub/nested.txt'], '',
  fs.readFileSync(path.join(fixtures(), 'one.bin'), 'latin1')
])
const DOT_BODIES = new Set([FILES['.secret'], FILES['.hidden/inside.txt']])

/** One GET over a fresh connection; returns { status, headers, body } (status 0: nothing came back). */
async function rawGet (port, target, { timeoutMs = 10000 } = {}) {
  const buf = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, { timeoutMs })
  const [res] = parseResponses(buf, ['GET'])
  return res ?? { status: 0, headers: {}, body: buf }
}

/** The invariants every response to every path must hold. */
function assertSafe (res, target, { dotfiles = 'ignore' } = {}) {
  const body = res.body.toString('latin1')
  const where = `${JSON.stringify(target)} → ${res.status} ${JSON.stringify(body.slice(0, 120))}`
  assert.ok(ALLOWED.has(res.status), `status not in 200/400/403/404: ${where}`)
  assert.ok(!body.includes(PASSWD_MARK), `/etc/passwd leaked: ${where}`)
  assert.ok(!body.includes(OUTSIDE_MARK), `file outside the root leaked: ${where}`)
  if (res.status === 200) {
    const allowedBodies = dotfiles === 'allow' ? new Set([...VISIBLE_BODIES, ...DOT_BODIES]) : VISIBLE_BODIES
    assert.ok(allowedBodies.has(body), `200 with a body that is not a served fixture: ${where}`)
  }
}

function mulberry32 (seed) {
  return function next () {
    seed = (seed + 0x6d2b79f5) | 0
    let t = seed
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool (items, limit, fn) {
  let next = 0
  const workers = Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const i = next++
      await fn(items[i], i)
    }
  })
  await Promise.all(workers)
}

// Sanity: the markers would be seen if they leaked.
test('the leak markers are real', () => {
  assert.ok(fs.readFileSync('/etc/passwd', 'utf8').includes(PASSWD_MARK))
  assert.equal(fs.readFileSync(path.join(fixtures(), 'link-out.txt'), 'utf8').trim(), OUTSIDE_MARK)
})

// [request-target, expected status, expected body when 200]
const LONG = 'a'.repeat(5000)
const LONG_PATH = Array.from({ length: 2100 }, () => 'a').join('/') // ~4200 chars: past PATH_MAX
const cases = [
  // `..` climbing above the root
  ['/../../etc/passwd', 403],
  ['/../etc/passwd', 403],
  ['/..', 403],
  ['/sub/../../etc/passwd', 403],
  ['/sub/../../../../../../../../etc/passwd', 403],
  ['/sub/./../../etc/passwd', 403],
  // encoded dots and slashes (decoded once by the router)
  ['/%2e%2e/%2e%2e/etc/passwd', 403],
  ['/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd', 403],
  ['/..%2f..%2fetc%2fpasswd', 403],
  ['/.%2e/etc/passwd', 403],
  ['/sub/%2e%2e/%2e%2e/etc/passwd', 403],
  // a backslash is an ordinary file-name byte on Linux: no such file
  ['/%2e%2e%5c%2e%2e%5cetc%5cpasswd', 404],
  ['/..\\..\\etc\\passwd', 404],
  ['/sub\\..\\..\\etc\\passwd', 404],
  ['/\\etc\\passwd', 404],
  // double-encoded: decoded once, the rest is a literal (missing) name
  ['/%252e%252e%252f%252e%252e%252fetc%252fpasswd', 404],
  ['/%252e%252e/etc/passwd', 404],
  // null bytes
  ['/%00', 400],
  ['/hello.txt%00', 400],
  ['/hello.txt%00.png', 400],
  ['/%00/../../etc/passwd', 400],
  // absolute-looking paths are relative to the root
  ['//etc/passwd', 404],
  ['///etc/passwd', 404],
  ['/%2fetc%2fpasswd', 404],
  ['//hello.txt', 200, FILES['hello.txt']],
  // overlong names
  ['/' + LONG, 404],
  ['/sub/' + LONG, 404],
  ['/' + LONG_PATH, 404],
  // directories
  ['/', 404],
  ['/.', 404],
  ['/sub', 404],
  ['/sub/', 404],
  ['/sub/.', 404],
  ['/link-in.txt/..', 404],
  // not a directory
  ['/hello.txt/', 404],
  ['/hello.txt/x', 404],
  // dotfiles: ignored by default
  ['/.secret', 404],
  ['/.hidden/inside.txt', 404],
  ['/.hidden/', 404],
  ['/sub/../.secret', 404],
  ['/%2esecret', 404],
  ['/...', 404],
  // symlinks: the kernel refuses the one that leaves the root
  ['/link-out.txt', 403],
  ['/sub/../link-out.txt', 403],
  ['/link-in.txt', 200, FILES['hello.txt']],
  // normalised, but inside the root
  ['/sub/../hello.txt', 200, FILES['hello.txt']],
  ['/./hello.txt', 200, FILES['hello.txt']],
  ['/%2e/hello.txt', 200, FILES['hello.txt']],
  ['/sub/nested.txt', 200, FILES['sub/nested.txt']],
  ['/sub%2fnested.txt', 200, FILES['sub/nested.txt']],
  ['/hello.txt?x=../../etc/passwd', 200, FILES['hello.txt']],
  // the router's own refusal of malformed escapes is a 400 too
  ['/%', 400],
  ['/%zz', 400],
  // missing
  ['/nope.txt', 404],
  ['/etc/passwd', 404]
]

test('fixed traversal set: statuses and bodies', async (t) => {
  const app = await startServer(t)
  const port = app.server.address().port
  for (const [target, status, body] of cases) {
    const res = await rawGet(port, target)
    assertSafe(res, target)
    assert.equal(res.status, status, `${JSON.stringify(target.slice(0, 100))}: ${res.body.toString().slice(0, 200)}`)
    if (body !== undefined) assert.equal(res.body.toString(), body, target)
    if (status !== 200) {
      // Plugin refusals are Fastify error JSON, not an empty or HTML page.
      assert.match(res.headers['content-type'] ?? '', /application\/json/, target)
    }
  }
})

test('refusals carry the plugin error codes', async (t) => {
  const app = await startServer(t)
  const port = app.server.address().port
  const expect = {
    '/../../etc/passwd': 'FST_ZEROCOPY_FORBIDDEN',
    '/link-out.txt': 'FST_ZEROCOPY_FORBIDDEN',
    '/hello.txt%00': 'FST_ZEROCOPY_BAD_PATH',
    '/.secret': 'FST_ZEROCOPY_NOT_FOUND',
    '/sub': 'FST_ZEROCOPY_NOT_FOUND',
    ['/' + LONG]: 'FST_ZEROCOPY_NOT_FOUND'
  }
  for (const [target, code] of Object.entries(expect)) {
    const res = await rawGet(port, target)
    assert.equal(JSON.parse(res.body.toString()).code, code, target)
  }
})

test("dotfiles: 'deny' → 403, 'allow' → 200", async (t) => {
  const deny = await startServer(t, { dotfiles: 'deny' })
  const allow = await startServer(t, { dotfiles: 'allow' })
  for (const name of ['.secret', '.hidden/inside.txt']) {
    const denied = await rawGet(deny.server.address().port, '/' + name)
    assertSafe(denied, name, { dotfiles: 'deny' })
    assert.equal(denied.status, 403, name)
    assert.equal(JSON.parse(denied.body.toString()).code, 'FST_ZEROCOPY_FORBIDDEN')

    const allowed = await rawGet(allow.server.address().port, '/' + name)
    assertSafe(allowed, name, { dotfiles: 'allow' })
    assert.equal(allowed.status, 200, name)
    assert.equal(allowed.body.toString(), FILES[name])
  }
  // 'allow' still never lets a path out.
  for (const target of ['/../../etc/passwd', '/.hidden/../../etc/passwd', '/link-out.txt']) {
    const res = await rawGet(allow.server.address().port, target)
    assertSafe(res, target, { dotfiles: 'allow' })
    assert.equal(res.status, 403, target)
  }
})

// A corpus of generated paths. Fragments combine traversal tricks, encodings,
// real names (so some requests succeed) and separators.
function generateCorpus (count, seed) {
  const rand = mulberry32(seed)
  const pick = (list) => list[Math.floor(rand() * list.length)]
  const fragments = [
    '..', '..', '..', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%252e%252e', '.', '%2e', '...',
    'sub', 'sub', 'hello.txt', 'hello.txt', 'page.html', 'nested.txt', 'link-in.txt', 'link-out.txt',
    'etc', 'passwd', 'etc%2fpasswd', '.secret', '.hidden', 'inside.txt', '%2esecret',
    '%00', 'x%00', '\\', '..\\..', '%5c', '%2e%2e%5c', '~', 'a'.repeat(300), 'zz', '%c0%ae%c0%ae', '%ff', '%e2%80%ae',
    '', 'empty.bin', 'one.bin', 'proc', 'self', 'root', 'tmp'
  ]
  const separators = ['/', '/', '/', '/', '%2f', '%2F', '%252f', '//', '\\', '/./']
  const out = new Set()
  while (out.size < count) {
    const n = 1 + Math.floor(rand() * 7)
    let p = ''
    for (let i = 0; i < n; i++) p += pick(separators) + pick(fragments)
    if (rand() < 0.1) p += '/'
    if (rand() < 0.05) p += '?q=' + pick(fragments)
    out.add(p.startsWith('/') ? p : '/' + p)
  }
  return [...out]
}

test('generated corpus of ~2000 paths: nothing escapes, no 5xx', async (t) => {
  const corpus = generateCorpus(2000, 0x5eed)
  const app = await startServer(t)
  const port = app.server.address().port
  const statuses = {}
  await pool(corpus, 16, async (target) => {
    const res = await rawGet(port, target)
    statuses[res.status] = (statuses[res.status] ?? 0) + 1
    assertSafe(res, target)
  })
  t.diagnostic(`statuses: ${JSON.stringify(statuses)}`)
  assert.equal(Object.keys(statuses).filter((s) => Number(s) >= 500).length, 0)
  // The corpus does exercise every outcome.
  for (const s of [200, 400, 403, 404]) assert.ok(statuses[s] > 0, `no ${s} in the corpus: ${JSON.stringify(statuses)}`)
})

test("generated corpus with dotfiles: 'allow' and 'deny': same invariants", async (t) => {
  const corpus = generateCorpus(500, 0xd07)
  for (const dotfiles of ['allow', 'deny']) {
    const app = await startServer(t, { dotfiles })
    const port = app.server.address().port
    await pool(corpus, 16, async (target) => {
      const res = await rawGet(port, target)
      assertSafe(res, target, { dotfiles })
    })
  }
})

test('a FIFO is a 404 and does not hang the server', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-fifo-'))
  t.after(() => fs.rmSync(root, { recursive: true, force: true }))
  execFileSync('mkfifo', [path.join(root, 'pipe')])
  fs.writeFileSync(path.join(root, 'ok.txt'), 'ok\n')
  const app = await startServer(t, { root })
  const port = app.server.address().port
  const started = Date.now()
  const res = await rawGet(port, '/pipe', { timeoutMs: 5000 })
  assert.equal(res.status, 404)
  assert.ok(Date.now() - started < 4000, 'opening the FIFO blocked')
  // The event loop is free: the next request is answered.
  const ok = await rawGet(port, '/ok.txt', { timeoutMs: 5000 })
  assert.equal(ok.status, 200)
  assert.equal(ok.body.toString(), 'ok\n')
})

test('symlink loops and dangling symlinks are 404', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-links-'))
  t.after(() => fs.rmSync(root, { recursive: true, force: true }))
  fs.symlinkSync('loop-b', path.join(root, 'loop-a'))
  fs.symlinkSync('loop-a', path.join(root, 'loop-b'))
  fs.symlinkSync('nowhere', path.join(root, 'dangling'))
  const app = await startServer(t, { root })
  const port = app.server.address().port
  for (const target of ['/loop-a', '/loop-b', '/dangling']) {
    assert.equal((await rawGet(port, target)).status, 404, target)
  }
})

test('a directory symlink leading out of the root is refused', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-dirlink-'))
  t.after(() => fs.rmSync(root, { recursive: true, force: true }))
  fs.symlinkSync('/etc', path.join(root, 'etc-link'))
  fs.symlinkSync('..', path.join(root, 'up'))
  const app = await startServer(t, { root })
  const port = app.server.address().port
  for (const target of ['/etc-link/passwd', '/up/etc/passwd', '/up/up/up/etc/passwd']) {
    const res = await rawGet(port, target)
    assertSafe(res, target)
    assert.equal(res.status, 403, target)
  }
})

test('a chmod 000 file is still served to root (root bypasses permissions)', {
  skip: typeof process.getuid === 'function' && process.getuid() !== 0
    ? 'not running as root: an unreadable file would be a 403 for this user, covered elsewhere'
    : false
}, async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-perm-'))
  t.after(() => fs.rmSync(root, { recursive: true, force: true }))
  fs.writeFileSync(path.join(root, 'locked.txt'), 'locked\n')
  fs.chmodSync(path.join(root, 'locked.txt'), 0o000)
  const app = await startServer(t, { root })
  const res = await rawGet(app.server.address().port, '/locked.txt')
  assert.equal(res.status, 200)
  assert.equal(res.body.toString(), 'locked\n')
})

// ---------------------------------------------------------------------------
// The portable open path (no addon): a child process with the addon disabled.

const CHILD_SERVER = `
'use strict'
const Fastify = require(${JSON.stringify(FASTIFY)})
const zeroCopy = require(${JSON.stringify(PACKAGE_ROOT)})
;(async () => {
  const roots = JSON.parse(process.argv[2])
  const ports = []
  for (const root of roots) {
    const app = Fastify()
    await app.register(zeroCopy, { root })
    app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
    await app.listen({ port: 0, host: '127.0.0.1' })
    ports.push(app.server.address().port)
    if (ports.length === 1) process.stdout.write(JSON.stringify({ native: app.zeroCopy.native }) + '\\n')
  }
  process.stdout.write(JSON.stringify({ ports }) + '\\n')
})().catch((err) => { console.error(err); process.exit(1) })
`

/** Starts CHILD_SERVER with the addon disabled; resolves { native, ports }. */
async function startFallbackChild (t, roots) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-child-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = path.join(dir, 'server.js')
  fs.writeFileSync(script, CHILD_SERVER)
  const child = spawn(process.execPath, [script, JSON.stringify(roots)], {
    env: { ...process.env, FASTIFY_ZERO_COPY_NATIVE: '0' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.after(() => { if (child.exitCode === null) child.kill() })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  const info = {}
  const lines = readline.createInterface({ input: child.stdout })
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child did not start: ${stderr}`)), 15000)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`child exited ${code}: ${stderr}`)) })
    lines.on('line', (line) => {
      Object.assign(info, JSON.parse(line))
      if (info.ports) { clearTimeout(timer); resolve() }
    })
  })
  return info
}

const SMALL_SET = [
  ['/hello.txt', 200, FILES['hello.txt']],
  ['/link-in.txt', 200, FILES['hello.txt']],
  ['/sub/../hello.txt', 200, FILES['hello.txt']],
  ['/link-out.txt', 403],
  ['/../../etc/passwd', 403],
  ['/sub/../../etc/passwd', 403],
  ['/%2e%2e/%2e%2e/etc/passwd', 403],
  ['/..%2f..%2fetc%2fpasswd', 403],
  ['/%252e%252e%252fetc%252fpasswd', 404],
  ['/..\\..\\etc\\passwd', 404],
  ['/hello.txt%00', 400],
  ['//etc/passwd', 404],
  ['/' + LONG, 404],
  ['/sub', 404],
  ['/.secret', 404]
]

test('with the addon disabled (FASTIFY_ZERO_COPY_NATIVE=0) the portable check refuses escapes too', async (t) => {
  const fifoRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-fifo-fb-'))
  t.after(() => fs.rmSync(fifoRoot, { recursive: true, force: true }))
  execFileSync('mkfifo', [path.join(fifoRoot, 'pipe')])
  fs.symlinkSync('/etc', path.join(fifoRoot, 'etc-link'))

  const { native, ports } = await startFallbackChild(t, [fixtures(), fifoRoot])
  assert.equal(native, false, 'the child runs without the addon')
  for (const [target, status, body] of SMALL_SET) {
    const res = await rawGet(ports[0], target)
    assertSafe(res, target)
    assert.equal(res.status, status, `${JSON.stringify(target.slice(0, 100))}: ${res.body.toString().slice(0, 200)}`)
    if (body !== undefined) assert.equal(res.body.toString(), body)
  }
  const fifo = await rawGet(ports[1], '/pipe', { timeoutMs: 5000 })
  assert.equal(fifo.status, 404)
  const etc = await rawGet(ports[1], '/etc-link/passwd')
  assertSafe(etc, '/etc-link/passwd')
  assert.equal(etc.status, 403)
})

test("generated corpus against the fallback: same invariants", async (t) => {
  const { ports } = await startFallbackChild(t, [fixtures()])
  const corpus = generateCorpus(500, 0xfa11)
  const statuses = {}
  await pool(corpus, 16, async (target) => {
    const res = await rawGet(ports[0], target)
    statuses[res.status] = (statuses[res.status] ?? 0) + 1
    assertSafe(res, target)
  })
  t.diagnostic(`statuses: ${JSON.stringify(statuses)}`)
})

// Bug: the portable check compares the file's real path with
// `realRoot + path.sep`; for root '/' that is '//', which no real path
// starts with, so every file is refused (EXDEV → 403). The native path
// serves them.
test("root '/' with the addon disabled serves files inside it", async (t) => {
  const { ports } = await startFallbackChild(t, ['/'])
  const target = path.join(fixtures(), 'hello.txt')
  const res = await rawGet(ports[0], target)
  assert.equal(res.status, 200, res.body.toString())
  assert.equal(res.body.toString(), FILES['hello.txt'])
})

test("root '/' with the addon serves files inside it (control for the fallback bug)", async (t) => {
  const app = await startServer(t, { root: '/' })
  const target = path.join(fixtures(), 'hello.txt')
  const res = await rawGet(app.server.address().port, target)
  assert.equal(res.status, 200, res.body.toString())
  assert.equal(res.body.toString(), FILES['hello.txt'])
})

// Inconsistency: an absolute symlink whose target is inside the root.
// openat2(RESOLVE_BENEATH) rejects every absolute symlink (EXDEV → 403);
// the portable realpath check serves it (200).
test('an absolute symlink to a file inside the root gets the same answer natively and in the fallback', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-abslink-'))
  t.after(() => fs.rmSync(root, { recursive: true, force: true }))
  fs.writeFileSync(path.join(root, 'target.txt'), 'target\n')
  fs.symlinkSync(path.join(root, 'target.txt'), path.join(root, 'abs-link.txt'))
  const app = await startServer(t, { root })
  const nativeRes = await rawGet(app.server.address().port, '/abs-link.txt')
  const { ports } = await startFallbackChild(t, [root])
  const fallbackRes = await rawGet(ports[0], '/abs-link.txt')
  assert.equal(nativeRes.status, fallbackRes.status,
    `native ${nativeRes.status}, fallback ${fallbackRes.status}`)
  assert.equal(nativeRes.status, 200, 'the target is beneath the root')
})

test('allowSymlinksOutsideRoot: a symlink leading out of root is served; `..` is still refused', async (t) => {
  const app = await startServer(t, { allowSymlinksOutsideRoot: true })
  const port = app.server.address().port
  const out = await rawExchange(port, 'GET /link-out.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  assert.match(out.toString('latin1'), /^HTTP\/1\.1 200 /)
  assert.match(out.toString('latin1'), /must never be served/)
  const up = await rawExchange(port, 'GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  assert.doesNotMatch(up.toString('latin1'), /root:/)
  assert.match(up.toString('latin1'), /^HTTP\/1\.1 (403|404) /)
})
