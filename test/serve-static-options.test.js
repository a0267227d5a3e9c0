'use strict'
// The @fastify/static options serve mode took over from it (issue #13):
// onFile, globIgnore, suppressWarning, serve: 'decorators' (its serve:
// false), the root allowedPath sees, the file's Content-Type over the
// app's, and payload.path in onSend hooks. Where @fastify/static has an
// observable answer, the same requests go to both over real sockets.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const zlib = require('node:zlib')
const { spawnSync } = require('node:child_process')
const Fastify = require('fastify')
const fastifyStatic = require('@fastify/static')
const { sha256, zeroCopy } = require('./helpers')

const FIXTURE = path.join(__dirname, 'fixtures', 'static', 'public')

let tree = null
function fixtureTree () {
  if (tree !== null) return tree
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-static-opts-'))
  fs.cpSync(FIXTURE, base, { recursive: true, verbatimSymlinks: true })
  fs.writeFileSync(path.join(base, 'app.js.br'), zlib.brotliCompressSync(fs.readFileSync(path.join(base, 'app.js'))))
  fs.writeFileSync(path.join(base, 'app.js.map'), '{}')
  fs.writeFileSync(path.join(base, 'docs', 'guide.js.map'), '{}')
  process.on('exit', () => fs.rmSync(base, { recursive: true, force: true }))
  tree = base
  return tree
}

const file = (rel) => fs.readFileSync(path.join(fixtureTree(), rel))

/** Both plugins with the same options (ours in serve mode), each given its own `extra(app, events)`. */
async function pair (t, options, setup = () => {}) {
  const sides = []
  for (const [plugin, mode] of [[fastifyStatic, {}], [zeroCopy, { serve: true }]]) {
    const events = []
    const app = Fastify()
    const opts = typeof options === 'function' ? options(events) : options
    if (opts.serve === false && plugin === zeroCopy) mode.serve = 'decorators'
    await app.register(plugin, { dotfiles: 'allow', ...opts, ...mode })
    setup(app, events)
    t.after(() => app.close())
    await app.listen({ port: 0, host: '127.0.0.1' })
    const base = `http://127.0.0.1:${app.server.address().port}`
    sides.push({
      app,
      events,
      async get (url, headers = {}) {
        events.length = 0
        const res = await fetch(base + url, { headers, redirect: 'manual' })
        const body = Buffer.from(await res.arrayBuffer())
        return { status: res.status, headers: Object.fromEntries(res.headers), body, events: [...events] }
      }
    })
  }
  return { theirs: sides[0], ours: sides[1], get: (url, headers) => Promise.all(sides.map((s) => s.get(url, headers))) }
}

// --- onFile ---------------------------------------------------------------------

test('onFile: called as @fastify/static calls it (path, stat), after allowedPath, before setHeaders', async (t) => {
  const { get } = await pair(t, (events) => ({
    root: fixtureTree(),
    extensions: ['html'],
    preCompressed: true,
    allowedPath (pathName) {
      events.push(['allowedPath', pathName])
      return pathName !== '/about.html'
    },
    onFile (filePath, stat) {
      assert.ok(stat instanceof fs.Stats)
      assert.equal(stat.size, fs.statSync(filePath).size)
      events.push(['onFile', filePath])
    },
    setHeaders (reply, filePath) { events.push(['setHeaders', filePath]) }
  }), (app, events) => {
    app.get('/call/*', (req, reply) => reply.sendFile(req.params['*'], { onFile (p) { events.push(['per-call onFile', p]) } }))
    app.get('/call-async/*', (req, reply) => reply.sendFile(req.params['*'], {
      async onFile (p) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        events.push(['async onFile done', p])
      }
    }))
  })
  const cases = [
    ['/readme.txt'], ['/docs/'], ['/docs'], ['/app.js', { 'accept-encoding': 'br' }], ['/about'], ['/missing.txt'],
    ['/call/readme.txt'], ['/call-async/docs/guide.html'], ['/call/about']
  ]
  for (const [url, headers] of cases) {
    const [theirs, ours] = await get(url, headers)
    assert.equal(ours.status, theirs.status, url)
    assert.deepEqual(ours.events, theirs.events, url)
    if (ours.status === 200) {
      assert.equal(sha256(ours.body), sha256(theirs.body), url)
      assert.ok(ours.events.some((e) => /onFile/.test(e[0])), url)
    }
  }
  // The async one was awaited before the body went out (allowedPath runs
  // once per pre-compressed sibling tried, on both).
  const [theirs, ours] = await get('/call-async/readme.txt')
  assert.deepEqual(ours.events, theirs.events)
  assert.deepEqual(ours.events.map((e) => e[0]).filter((e) => e !== 'allowedPath'), ['async onFile done', 'setHeaders'])
  assert.deepEqual(ours.body, file('readme.txt'))
})

test('onFile: a throw or a rejection goes to Fastify\'s error handler, and the file is given back', async (t) => {
  const { get, ours } = await pair(t, { root: fixtureTree(), cache: undefined }, (app) => {
    app.setErrorHandler((err, req, reply) => reply.code(555).send(`handled: ${err.message}`))
    app.get('/thrown', (req, reply) => reply.sendFile('readme.txt', { onFile () { throw new Error('thrown') } }))
    app.get('/rejected', (req, reply) => reply.download('readme.txt', { onFile: () => Promise.reject(new Error('rejected')) }))
  })
  for (const name of ['thrown', 'rejected']) {
    const [theirs, mine] = await get('/' + name)
    assert.equal(mine.status, 555)
    assert.equal(theirs.status, 555)
    assert.equal(mine.body.toString(), `handled: ${name}`)
  }
  const stats = ours.app.zeroCopy.stats()
  assert.equal(stats.responses.sendfile + stats.responses.write, 0)
})

test('onFile that throws or rejects with a non-Error: Fastify\'s error handler, as for a route handler (never a 200 with it as the body)', async (t) => {
  const thrown = {
    'readme.txt': () => { throw 'denied' }, // eslint-disable-line no-throw-literal
    'style.css': () => { throw { statusCode: 403, message: 'no entry' } }, // eslint-disable-line no-throw-literal
    'data.json': () => Promise.reject() // eslint-disable-line prefer-promise-reject-errors
  }
  const { get, ours } = await pair(t, { root: fixtureTree(), onFile: (p) => thrown[path.basename(p)]?.() }, (app) => {
    app.get('/call/readme.txt', (req, reply) => reply.sendFile('index.html', { onFile () { throw 'denied per call' } })) // eslint-disable-line no-throw-literal
  })
  for (const [url, status] of [['/readme.txt', 500], ['/style.css', 403], ['/data.json', 500]]) {
    const [theirs, mine] = await get(url)
    assert.equal(theirs.status, status, `@fastify/static: ${url}`)
    assert.equal(mine.status, status, url)
    assert.equal(mine.body.toString(), theirs.body.toString(), url)
  }
  const [ok] = [(await get('/index.html'))[1]]
  assert.equal(ok.status, 200)
  // Per call, @fastify/static sends the thrown string as a 200 body; here it is the error handler's 500.
  const [theirs, mine] = await get('/call/readme.txt')
  assert.deepEqual([theirs.status, theirs.body.toString()], [200, 'denied per call'])
  assert.equal(mine.status, 500)
  const stats = ours.app.zeroCopy.stats()
  assert.equal(stats.responses.sendfile + stats.responses.write, 1)
})

// --- globIgnore -------------------------------------------------------------------

test('globIgnore (wildcard: false): the same routes as @fastify/static\'s glob ignore', async (t) => {
  const patterns = [
    undefined, ['**/*.map'], ['*.map'], ['docs/**'], ['docs'], ['./docs/deep/**'], '**/*.{txt,md}', ['link-docs/**', 'noindex/*'],
    [path.join(fixtureTree(), 'docs') + '/**'], ['**/guide.*']
  ]
  for (const globIgnore of patterns) {
    const routes = []
    for (const [plugin, mode] of [[fastifyStatic, {}], [zeroCopy, { serve: true }]]) {
      const app = Fastify()
      const seen = []
      app.addHook('onRoute', (r) => { if ([].concat(r.method).includes('GET')) seen.push(r.url) })
      await app.register(plugin, { root: fixtureTree(), wildcard: false, globIgnore: typeof globIgnore === 'string' ? [globIgnore] : globIgnore, ...mode })
      await app.ready()
      await app.close()
      routes.push(seen.sort())
    }
    assert.deepEqual(routes[1], routes[0], JSON.stringify(globIgnore))
    if (globIgnore !== undefined) assert.ok(routes[1].length > 3, JSON.stringify(globIgnore))
  }
  // A string is one pattern (glob accepts it too).
  const app = Fastify()
  t.after(() => app.close())
  await app.register(zeroCopy, { root: fixtureTree(), serve: true, wildcard: false, globIgnore: '**/*.map' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${app.server.address().port}`
  assert.equal((await fetch(base + '/app.js.map')).status, 404)
  const res = await fetch(base + '/app.js')
  assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(file('app.js')))
})

// --- allowedPath's root, serve: 'decorators' ------------------------------------------

test('allowedPath gets the root spelled as @fastify/static passes it (as given; with "/" for wildcard: false)', async (t) => {
  const root = fixtureTree()
  for (const options of [
    { root }, { root: root + '/' }, { root, wildcard: false }, { root: root + '/', wildcard: false }, { root: [root, path.join(root, 'docs')] }
  ]) {
    const { get } = await pair(t, (events) => ({
      ...options,
      allowedPath (pathName, r) {
        events.push([pathName, r])
        return true
      }
    }), (app) => {
      app.get('/other/*', (req, reply) => reply.sendFile(req.params['*'], path.join(root, 'docs') + '/'))
    })
    for (const url of ['/readme.txt', '/docs/', '/guide.html', '/other/guide.html']) {
      const [theirs, ours] = await get(url)
      assert.equal(ours.status, theirs.status, `${JSON.stringify(options)} ${url}`)
      assert.deepEqual(ours.events, theirs.events, `${JSON.stringify(options)} ${url}`)
      if (ours.status === 200) assert.ok(ours.events.length > 0, url)
    }
  }
})

test('serve: \'decorators\' is @fastify/static\'s serve: false: reply decorators, no routes, root optional', async (t) => {
  const root = fixtureTree()
  const withRoot = await pair(t, { root, serve: false }, (app) => {
    app.get('/send/*', (req, reply) => reply.sendFile(req.params['*']))
    app.get('/dl/*', (req, reply) => reply.download(req.params['*']))
  })
  for (const url of ['/readme.txt', '/send/readme.txt', '/send/docs/', '/send/missing.txt', '/dl/docs/guide.html']) {
    const [theirs, ours] = await withRoot.get(url)
    assert.equal(ours.status, theirs.status, url)
    assert.equal(sha256(ours.body), sha256(theirs.body), url)
  }
  assert.equal(withRoot.ours.app.zeroCopy.stats().responses.write, 0)

  const noRoot = await pair(t, (events) => ({
    serve: false,
    allowedPath (pathName, r) {
      events.push([pathName, r])
      return true
    }
  }), (app) => {
    app.get('/abs', (req, reply) => reply.sendFile(path.join(root, 'readme.txt')))
    app.get('/abs-folder', (req, reply) => reply.sendFile(path.join(root, 'docs') + '/'))
    app.get('/rel', (req, reply) => reply.sendFile('readme.txt'))
    app.get('/rel-root', (req, reply) => reply.sendFile('readme.txt', root))
  })
  for (const url of ['/abs', '/abs-folder', '/rel', '/rel-root']) {
    const [theirs, ours] = await noRoot.get(url)
    assert.equal(ours.status, theirs.status, url)
    assert.equal(sha256(ours.body), sha256(theirs.body), url)
    assert.deepEqual(ours.events, theirs.events, url)
    if (url !== '/rel') assert.ok(ours.events.length > 0, url)
  }
})

// --- headers, payload.path, suppressWarning ---------------------------------------------

test('the file\'s Content-Type (and Cache-Control) replace what the app set before sendFile, as with @fastify/static', async (t) => {
  const { get } = await pair(t, { root: fixtureTree() }, (app) => {
    app.get('/typed', (req, reply) => reply.type('text/html').sendFile('index.html'))
    app.get('/typed-other', (req, reply) => reply.type('application/x-custom').sendFile('readme.txt'))
    app.get('/typed-off', (req, reply) => reply.type('application/x-custom').sendFile('readme.txt', { contentType: false }))
    app.get('/cache', (req, reply) => reply.header('cache-control', 'no-store').sendFile('readme.txt'))
    app.get('/cache-off', (req, reply) => reply.header('cache-control', 'no-store').sendFile('readme.txt', { cacheControl: false }))
    app.setNotFoundHandler((req, reply) => reply.code(404).type('text/plain').sendFile('index.html'))
  })
  for (const url of ['/typed', '/typed-other', '/typed-off', '/cache', '/cache-off', '/nowhere']) {
    const [theirs, ours] = await get(url)
    assert.equal(ours.status, theirs.status, url)
    assert.equal(ours.headers['content-type'], theirs.headers['content-type'], url)
    assert.equal(ours.headers['cache-control'], theirs.headers['cache-control'], url)
    assert.equal(sha256(ours.body), sha256(theirs.body), url)
  }
  assert.equal((await get('/typed'))[1].headers['content-type'], 'text/html; charset=utf-8')
})

test('route-level errorHandler, as @fastify/static\'s: onRoute sees one, errors reach the app\'s handler, a premature close drops the connection', async (t) => {
  for (const [name, plugin, mode] of [['@fastify/static', fastifyStatic, {}], ['serve mode', zeroCopy, { serve: true }]]) {
    const app = Fastify()
    const handlers = []
    app.addHook('onRoute', (route) => { handlers.push(typeof route.errorHandler) })
    await app.register(plugin, { root: fixtureTree(), ...mode })
    // Set after registration: the routes' handler reads the app's when the error happens.
    app.setErrorHandler((err, req, reply) => { reply.code(599).send({ mine: err.message }) })
    app.addHook('onRequest', async (req) => {
      const code = req.headers['x-fail']
      if (code !== undefined) throw Object.assign(new Error('failed on purpose'), { code })
    })
    t.after(() => app.close())
    await app.listen({ port: 0, host: '127.0.0.1' })
    const url = `http://127.0.0.1:${app.server.address().port}/index.html`
    assert.ok(handlers.length > 0 && handlers.every((h) => h === 'function'), `${name}: ${handlers}`)
    const failed = await fetch(url, { headers: { 'x-fail': 'SOMETHING_ELSE' } })
    assert.equal(failed.status, 599, name)
    assert.deepEqual(await failed.json(), { mine: 'failed on purpose' }, name)
    await assert.rejects(fetch(url, { headers: { 'x-fail': 'ERR_STREAM_PREMATURE_CLOSE' } }), TypeError, `${name}: the connection is dropped`)
    const ok = await fetch(url)
    assert.equal(ok.status, 200, name)
    assert.equal(sha256(Buffer.from(await ok.arrayBuffer())), sha256(file('index.html')), name)
  }
})

test('payload.path in onSend: the file\'s absolute path, as on @fastify/send\'s stream; the body still goes by sendfile', async (t) => {
  const { get, ours } = await pair(t, { root: fixtureTree(), preCompressed: true }, (app, events) => {
    app.addHook('onSend', async (req, reply, payload) => {
      events.push(payload?.path)
      return payload
    })
    app.get('/core', (req, reply) => reply.sendFileZeroCopy?.('readme.txt', { root: fixtureTree() }) ?? reply.sendFile('readme.txt'))
  })
  for (const [url, headers] of [['/readme.txt'], ['/docs/'], ['/app.js', { 'accept-encoding': 'br' }], ['/core']]) {
    const [theirs, mine] = await get(url, headers)
    assert.equal(mine.status, 200, url)
    assert.deepEqual(mine.events, theirs.events, url)
    assert.ok(path.isAbsolute(mine.events[0]), url)
    assert.equal(sha256(mine.body), sha256(theirs.body), url)
  }
  const stats = ours.app.zeroCopy.stats()
  assert.equal(stats.responses.write, 0)
  assert.equal(stats.responses.sendfile, 4)
})

test('suppressWarning: the registration warning (no native addon) is not logged', { timeout: 60000 }, () => {
  const script = `
    const Fastify = require('fastify')
    const zeroCopy = require(${JSON.stringify(path.join(__dirname, '..'))})
    ;(async () => {
      for (const suppressWarning of [false, true]) {
        const warnings = []
        const app = Fastify({ logger: { level: 'warn', stream: { write: (line) => warnings.push(JSON.parse(line).msg) } } })
        await app.register(zeroCopy, { root: ${JSON.stringify(fixtureTree())}, serve: true, suppressWarning })
        await app.ready()
        await app.close()
        console.log(JSON.stringify({ suppressWarning, warnings }))
      }
    })()
  `
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, FASTIFY_ZERO_COPY_NATIVE: '0' } })
  assert.equal(run.status, 0, run.stderr)
  const [loud, quiet] = run.stdout.trim().split('\n').map((l) => JSON.parse(l))
  assert.equal(loud.warnings.length, 1)
  assert.match(loud.warnings[0], /write-based fallback/)
  assert.deepEqual(quiet.warnings, [])
})
