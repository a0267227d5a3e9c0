'use strict'
// Option validation, at registration and per call, over real sockets.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Fastify = require('fastify')
const {
  fixtures, startServer, urlOf, rawExchange, parseResponses, openFdCount, eventually, zeroCopy
} = require('./helpers')

const INVALID = 'FST_ZEROCOPY_INVALID_OPTION'
const HELLO = 'hello, world\n'

/** A GET over its own connection (Connection: close), so no keep-alive socket skews fd counts. */
async function get (app, p, headers = {}) {
  const lines = [`GET ${p} HTTP/1.1`, 'Host: localhost', 'Connection: close']
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`)
  const buf = await rawExchange(app.server.address().port, lines.join('\r\n') + '\r\n\r\n')
  const [res] = parseResponses(buf, ['GET'])
  assert.ok(res, `no response for ${p}`)
  return res
}

function json (res) {
  assert.match(res.headers['content-type'] ?? '', /application\/json/)
  return JSON.parse(res.body.toString('utf8'))
}

/** Registers with `options`; returns the error (or fails if it registered). */
async function registrationError (options, via = 'register') {
  const app = Fastify()
  try {
    if (via === 'register') await app.register(zeroCopy, options)
    else {
      app.register(zeroCopy, options)
      await app.ready()
    }
  } catch (err) {
    return err
  } finally {
    await app.close().catch(() => {})
  }
  assert.fail(`registration with ${describe(options)} should have been rejected`)
}

function describe (options) {
  if (typeof options === 'function') return `function ${options}`
  try { return JSON.stringify(options) } catch { return String(options) }
}

// [options, the option name the message must quote]
const invalidRegistrations = () => {
  const root = fixtures()
  return [
    [{ root, unknownKey: true }, 'unknownKey'],
    [{ root, rot: root }, 'rot'],
    [{ root: 'relative/folder' }, 'root'],
    [{ root: './' }, 'root'],
    [{ root: path.join(root, 'hello.txt') }, 'root'], // a file, not a folder
    [{ root: path.join(root, 'does-not-exist') }, 'root'],
    [{ root: 42 }, 'root'],
    [{ root: '' }, 'root'],
    [{ root: ['/tmp'] }, 'root'],
    [{ root, dotfiles: 'maybe' }, 'dotfiles'],
    [{ root, dotfiles: true }, 'dotfiles'],
    [{ root, etag: 'yes' }, 'etag'],
    [{ root, etag: 'sha256' }, 'etag'],
    [{ root, etag: 1 }, 'etag'],
    [{ root, lastModified: 1 }, 'lastModified'],
    [{ root, cacheControl: null }, 'cacheControl'],
    [{ root, maxAge: -1 }, 'maxAge'],
    [{ root, maxAge: 1.5 }, 'maxAge'],
    [{ root, maxAge: 'forever' }, 'maxAge'],
    [{ root, maxAge: {} }, 'maxAge'],
    [{ root, maxAge: '-1d' }, 'maxAge'],
    [{ root, maxAge: '' }, 'maxAge'],
    [{ root, maxAge: Number.NaN }, 'maxAge'],
    [{ root, immutable: 'no' }, 'immutable'],
    [{ root, acceptRanges: 0 }, 'acceptRanges'],
    [{ root, contentType: 'x' }, 'contentType'],
    [{ root, sendTimeout: -1 }, 'sendTimeout'],
    [{ root, sendTimeout: 1.5 }, 'sendTimeout'],
    [{ root, sendTimeout: '10' }, 'sendTimeout'],
    [{ root, sendTimeout: 2 ** 31 }, 'sendTimeout'],
    [{ root, zeroCopy: 'true' }, 'zeroCopy'],
    // Per-call-only options are unknown at registration.
    [{ root, start: 0 }, 'start'],
    [{ root, filename: 'x.txt' }, 'filename'],
    // The options themselves.
    ['a string', 'options'],
    [42, 'options'],
    [[], 'options'],
    [() => 'from a function', 'options']
  ]
}

test('registration rejects every invalid option with FST_ZEROCOPY_INVALID_OPTION naming it', async (t) => {
  for (const [options, name] of invalidRegistrations()) {
    await t.test(describe(options), async () => {
      const err = await registrationError(options)
      assert.equal(err.code, INVALID, `${describe(options)}: ${err.message}`)
      assert.ok(err.message.includes(`"${name}"`), `message should quote "${name}": ${err.message}`)
      assert.ok(err instanceof TypeError)
    })
  }
})

test('etag: an invalid value names what is allowed', async () => {
  const err = await registrationError({ root: fixtures(), etag: 'md5' })
  assert.equal(err.message, 'Invalid option "etag": must be one of true, false, "digest"')
})

test('an invalid option also rejects app.ready() when register is not awaited', async () => {
  const err = await registrationError({ root: fixtures(), etag: 'yes' }, 'ready')
  assert.equal(err.code, INVALID)
  assert.match(err.message, /"etag"/)
})

test('valid option combinations register and serve', async (t) => {
  const root = fixtures()
  const valid = [
    {},
    { root },
    { root: root + '/' },
    { root: path.join(root, 'sub', '..') },
    { root, dotfiles: 'allow' },
    { root, dotfiles: 'deny' },
    { root, dotfiles: 'ignore' },
    { root, etag: false, lastModified: false, cacheControl: false, acceptRanges: false, contentType: false },
    { root, maxAge: 0 },
    { root, maxAge: 3600000, immutable: true },
    { root, maxAge: '1d' },
    { root, maxAge: '2 hours' },
    { root, maxAge: '10s', immutable: false },
    { root, sendTimeout: 0 },
    { root, sendTimeout: 2147483647 },
    { root, zeroCopy: false },
    {
      root,
      dotfiles: 'allow',
      etag: true,
      lastModified: true,
      cacheControl: true,
      maxAge: '1y',
      immutable: true,
      acceptRanges: true,
      contentType: true,
      sendTimeout: 1000,
      zeroCopy: true
    }
  ]
  for (const options of valid) {
    await t.test(describe(options), async (t) => {
      const app = Fastify()
      t.after(() => app.close())
      await app.register(zeroCopy, options)
      // With a root, a leading slash means "from the root"; without one the path must be absolute.
      const file = options.root === undefined ? path.join(root, 'hello.txt') : 'hello.txt'
      app.get('/hello', (req, reply) => reply.sendFileZeroCopy(file))
      await app.listen({ port: 0, host: '127.0.0.1' })
      const res = await get(app, '/hello')
      assert.equal(res.status, 200)
      assert.equal(res.body.toString(), HELLO)
    })
  }
})

test('a function returning the options is accepted (Fastify option factory)', async (t) => {
  const root = fixtures()
  const app = Fastify()
  t.after(() => app.close())
  await app.register(zeroCopy, () => ({ root, etag: false }))
  app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const res = await get(app, '/hello.txt')
  assert.equal(res.status, 200)
  assert.equal(res.headers.etag, undefined)
})

test('the resolved Cache-Control reflects maxAge and immutable', async (t) => {
  const app = await startServer(t, { maxAge: '1d', immutable: true })
  const res = await get(app, '/hello.txt')
  assert.equal(res.status, 200)
  assert.equal(res.headers['cache-control'], 'public, max-age=86400, immutable')
})

// ---------------------------------------------------------------------------
// Per-call options

const badCalls = {
  unknown: [{ unknownKey: 1 }, 'unknownKey'],
  negativeStart: [{ start: -1 }, 'start'],
  endBeforeStart: [{ start: 5, end: 2 }, 'end'],
  emptyFilename: [{ filename: '' }, 'filename'],
  stringStart: [{ start: 'x' }, 'start'],
  fractionalEnd: [{ end: 1.5 }, 'end'],
  badDotfiles: [{ dotfiles: 'maybe' }, 'dotfiles'],
  badEtag: [{ etag: 'yes' }, 'etag'],
  badMaxAge: [{ maxAge: 'forever' }, 'maxAge'],
  relativeRoot: [{ root: 'relative' }, 'root'],
  notAnObject: ['hello', 'options'],
  nullOptions: [null, 'options'],
  arrayOptions: [[], 'options']
}

test('bad per-call options answer 500 with FST_ZEROCOPY_INVALID_OPTION, no crash, no fd leak', async (t) => {
  const app = await startServer(t, {}, {
    route (app) {
      app.get('/bad/:name', (req, reply) => reply.sendFileZeroCopy('hello.txt', badCalls[req.params.name][0]))
      app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
    }
  })
  // Warm up: the root folder's handle is opened once and kept.
  assert.equal((await get(app, '/hello.txt')).status, 200)
  const before = openFdCount()

  for (const [name, [, option]] of Object.entries(badCalls)) {
    for (let i = 0; i < 5; i++) {
      const res = await get(app, `/bad/${name}`)
      assert.equal(res.status, 500, name)
      const body = json(res)
      assert.equal(body.statusCode, 500)
      assert.equal(body.code, INVALID, `${name}: ${body.message}`)
      assert.ok(body.message.includes(`"${option}"`), `${name}: message should quote "${option}": ${body.message}`)
      assert.equal(body.error, 'Internal Server Error')
    }
  }

  // Still serving.
  const res = await get(app, '/hello.txt')
  assert.equal(res.status, 200)
  assert.equal(res.body.toString(), HELLO)
  assert.ok(await eventually(() => openFdCount() <= before), `fds: before ${before}, after ${openFdCount()}`)
})

test('per-call options override the plugin options', async (t) => {
  const root = fixtures()
  const calls = {
    etag: { etag: true },
    lastModified: { lastModified: true },
    cacheControl: { cacheControl: true, maxAge: '1h' },
    contentType: { contentType: true },
    acceptRanges: { acceptRanges: true },
    dotfiles: { dotfiles: 'allow' },
    root: { root: path.join(root, 'sub') },
    zeroCopy: { zeroCopy: true },
    none: {}
  }
  const app = await startServer(t, {
    etag: false,
    lastModified: false,
    cacheControl: false,
    contentType: false,
    acceptRanges: false,
    dotfiles: 'deny',
    zeroCopy: false
  }, {
    route (app) {
      app.get('/call/:name/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], calls[req.params.name]))
    }
  })

  const plain = await get(app, '/call/none/hello.txt')
  assert.equal(plain.status, 200)
  assert.equal(plain.body.toString(), HELLO)
  for (const h of ['etag', 'last-modified', 'cache-control', 'content-type', 'accept-ranges']) {
    assert.equal(plain.headers[h], undefined, `plugin option turned ${h} off`)
  }
  assert.equal((await get(app, '/call/none/.secret')).status, 403)

  assert.match((await get(app, '/call/etag/hello.txt')).headers.etag ?? '', /^"[^"]+"$/)
  assert.ok((await get(app, '/call/lastModified/hello.txt')).headers['last-modified'])
  assert.equal((await get(app, '/call/cacheControl/hello.txt')).headers['cache-control'], 'public, max-age=3600')
  assert.match((await get(app, '/call/contentType/hello.txt')).headers['content-type'] ?? '', /^text\/plain/)
  const ranged = await get(app, '/call/acceptRanges/hello.txt', { Range: 'bytes=0-4' })
  assert.equal(ranged.status, 206)
  assert.equal(ranged.headers['accept-ranges'], 'bytes')
  assert.equal(ranged.body.toString(), 'hello')

  const secret = await get(app, '/call/dotfiles/.secret')
  assert.equal(secret.status, 200)
  assert.equal(secret.body.toString(), 'dotfile\n')

  const nested = await get(app, '/call/root/nested.txt')
  assert.equal(nested.status, 200)
  assert.equal(nested.body.toString(), 'nested\n')
  assert.equal((await get(app, '/call/root/hello.txt')).status, 404, 'hello.txt is not under the per-call root')

  const s0 = app.zeroCopy.stats()
  assert.equal((await get(app, '/call/none/4k.bin')).status, 200)
  const s1 = app.zeroCopy.stats()
  assert.equal(s1.fallbacks.disabled, s0.fallbacks.disabled + 1, 'plugin zeroCopy: false uses the fallback')
  assert.equal(s1.responses.write, s0.responses.write + 1)
  assert.equal((await get(app, '/call/zeroCopy/4k.bin')).status, 200)
  const s2 = app.zeroCopy.stats()
  assert.equal(s2.responses.sendfile, s1.responses.sendfile + 1, 'per-call zeroCopy: true uses sendfile')
  assert.equal(s2.fallbacks.disabled, s1.fallbacks.disabled)
})

test('per-call options can turn features off that the plugin turned on', async (t) => {
  const app = await startServer(t, {}, {
    route (app) {
      app.get('/off', (req, reply) => reply.sendFileZeroCopy('hello.txt', {
        etag: false, lastModified: false, cacheControl: false, contentType: false, acceptRanges: false
      }))
      app.get('/slice', (req, reply) => reply.sendFileZeroCopy('hello.txt', { start: 7, end: 11, filename: 'w.txt' }))
    }
  })
  const off = await get(app, '/off')
  assert.equal(off.status, 200)
  for (const h of ['etag', 'last-modified', 'cache-control', 'content-type', 'accept-ranges']) {
    assert.equal(off.headers[h], undefined, h)
  }
  const slice = await get(app, '/slice')
  assert.equal(slice.status, 200)
  assert.equal(slice.body.toString(), 'world')
  assert.equal(slice.headers['content-length'], '5')
  assert.match(slice.headers['content-disposition'] ?? '', /^attachment; filename="w\.txt"/)
})

// Bug: keys present with the value undefined (`{ start: req.query.start }`,
// valid for the types without exactOptionalPropertyTypes) replace the
// plugin's resolved options with undefined instead of being ignored.
const undefinedCalls = {
  start: { start: undefined },
  end: { end: undefined },
  root: { root: undefined },
  etag: { etag: undefined },
  lastModified: { lastModified: undefined },
  contentType: { contentType: undefined },
  acceptRanges: { acceptRanges: undefined },
  maxAge: { maxAge: undefined },
  filename: { filename: undefined }
}

test('per-call options whose value is undefined are ignored (plugin options apply)', async (t) => {
  const app = await startServer(t, {}, {
    route (app) {
      app.get('/u/:name', (req, reply) => reply.sendFileZeroCopy('hello.txt', undefinedCalls[req.params.name]))
    }
  })
  const failures = []
  for (const name of Object.keys(undefinedCalls)) {
    const res = await get(app, `/u/${name}`)
    const ok = res.status === 200 && res.body.toString() === HELLO &&
      res.headers['content-length'] === '13' &&
      /^"[^".]+"$/.test(res.headers.etag ?? '') &&
      res.headers['last-modified'] !== undefined &&
      /^text\/plain/.test(res.headers['content-type'] ?? '') &&
      res.headers['accept-ranges'] === 'bytes' &&
      res.headers['cache-control'] === 'public, max-age=0'
    if (!ok) failures.push(`${name}: ${res.status} ${JSON.stringify(res.headers)} ${JSON.stringify(res.body.toString())}`)
  }
  assert.deepEqual(failures, [])
})

test('per-call zeroCopy: undefined keeps the plugin default (sendfile)', async (t) => {
  const app = await startServer(t, {}, {
    route (app) {
      app.get('/z', (req, reply) => reply.sendFileZeroCopy('4k.bin', { zeroCopy: undefined }))
    }
  })
  const before = app.zeroCopy.stats()
  assert.equal((await get(app, '/z')).status, 200)
  const after = app.zeroCopy.stats()
  assert.equal(after.fallbacks.disabled, before.fallbacks.disabled)
  assert.equal(after.responses.sendfile, before.responses.sendfile + 1)
})

// ---------------------------------------------------------------------------

test('registering the plugin twice in one instance is a clear Fastify error, not a crash', async () => {
  const root = fixtures()
  const app = Fastify()
  await app.register(zeroCopy, { root })
  await assert.rejects(
    (async () => {
      await app.register(zeroCopy, { root })
      await app.ready()
    })(),
    (err) => {
      assert.equal(err.code, 'FST_ERR_DEC_ALREADY_PRESENT')
      assert.match(err.message, /already been added/)
      return true
    }
  )
  await app.close().catch(() => {})
})

test('two sibling encapsulated contexts may each register it with their own root', async (t) => {
  const root = fixtures()
  const app = Fastify()
  t.after(() => app.close())
  app.register(async (child) => {
    await child.register(zeroCopy, { root })
    child.get('/a/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  })
  app.register(async (child) => {
    await child.register(zeroCopy, { root: path.join(root, 'sub') })
    child.get('/b/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  assert.equal((await get(app, '/a/hello.txt')).body.toString(), HELLO)
  assert.equal((await get(app, '/b/nested.txt')).body.toString(), 'nested\n')
  assert.equal((await get(app, '/b/hello.txt')).status, 404)
})

test('without root: an absolute path is served, a relative one is a 500 FST_ZEROCOPY_NO_ROOT', async (t) => {
  const root = fixtures()
  const app = Fastify()
  t.after(() => app.close())
  await app.register(zeroCopy)
  app.get('/abs', (req, reply) => reply.sendFileZeroCopy(path.join(root, 'hello.txt')))
  app.get('/abs-dotted', (req, reply) => reply.sendFileZeroCopy(path.join(root, 'sub', '..', 'hello.txt')))
  app.get('/rel', (req, reply) => reply.sendFileZeroCopy('hello.txt'))
  app.get('/rel-dot', (req, reply) => reply.sendFileZeroCopy('./hello.txt'))
  app.get('/empty', (req, reply) => reply.sendFileZeroCopy(''))
  await app.listen({ port: 0, host: '127.0.0.1' })

  for (const p of ['/abs', '/abs-dotted']) {
    const res = await get(app, p)
    assert.equal(res.status, 200, p)
    assert.equal(res.body.toString(), HELLO)
  }
  for (const p of ['/rel', '/rel-dot', '/empty']) {
    const res = await get(app, p)
    assert.equal(res.status, 500, p)
    const body = json(res)
    assert.equal(body.code, 'FST_ZEROCOPY_NO_ROOT')
    assert.match(body.message, /root/)
  }
})

test('per-call root that does not exist or is a file: 404, no leak', async (t) => {
  const root = fixtures()
  const app = await startServer(t, {}, {
    route (app) {
      app.get('/missing', (req, reply) => reply.sendFileZeroCopy('hello.txt', { root: path.join(root, 'nope') }))
      app.get('/file', (req, reply) => reply.sendFileZeroCopy('x', { root: path.join(root, 'hello.txt') }))
    }
  })
  const before = openFdCount()
  for (let i = 0; i < 5; i++) {
    assert.equal((await get(app, '/missing')).status, 404)
    assert.equal((await get(app, '/file')).status, 404)
  }
  assert.ok(await eventually(() => openFdCount() <= before), `fds: before ${before}, after ${openFdCount()}`)
})

// Resource growth: lib/open-file.ts RootDirectories keeps one O_PATH fd per
// distinct root string until app.close(); per-call roots chosen per request
// (a folder per tenant or user) grow the process's fds without bound.
for (const cache of [undefined, false]) {
  test(`many distinct per-call roots do not accumulate open fds${cache === false ? ' (cache: false: none at all)' : ''}`, async (t) => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-roots-'))
    t.after(() => fs.rmSync(base, { recursive: true, force: true }))
    for (let i = 0; i < 50; i++) {
      fs.mkdirSync(path.join(base, `r${i}`))
      fs.writeFileSync(path.join(base, `r${i}`, 'f.txt'), 'x')
    }
    const app = await startServer(t, { root: base, cache }, {
      route (app) {
        app.get('/r/:i', (req, reply) => reply.sendFileZeroCopy('f.txt', { root: path.join(base, `r${req.params.i}`) }))
      }
    })
    assert.equal((await get(app, '/r/0')).status, 200)
    // The open-file cache keeps each served file's fd (bounded by maxFds,
    // counted in its stats); the roots' own handles must not add up.
    const outsideCache = () => openFdCount() - app.zeroCopy.stats().cache.fds
    const before = outsideCache()
    for (let i = 1; i < 50; i++) assert.equal((await get(app, `/r/${i}`)).status, 200)
    await eventually(() => outsideCache() <= before + 5, { timeoutMs: 1000 })
    const grown = outsideCache() - before
    assert.ok(grown <= 5, `${grown} fds more after 49 distinct per-call roots`)
    assert.equal(app.zeroCopy.stats().cache.fds, cache === false ? 0 : 50, 'one cached fd per file, or none')
  })
}

test('the plugin keeps no fd per request: one cached fd per file, none for a directory', async (t) => {
  const app = await startServer(t)
  assert.equal((await get(app, '/hello.txt')).status, 200)
  const before = openFdCount()
  for (let i = 0; i < 50; i++) {
    await get(app, i % 2 ? '/hello.txt' : '/sub')
  }
  assert.ok(await eventually(() => openFdCount() <= before), `fds: before ${before}, after ${openFdCount()}`)
  assert.equal(app.zeroCopy.stats().cache.fds, 1, 'hello.txt, kept since the first request')
})

test('with cache: false the plugin keeps no fd for files after many requests', async (t) => {
  const app = await startServer(t, { cache: false })
  assert.equal((await get(app, '/hello.txt')).status, 200)
  const before = openFdCount()
  for (let i = 0; i < 50; i++) {
    await get(app, i % 2 ? '/hello.txt' : '/sub')
  }
  assert.ok(await eventually(() => openFdCount() <= before), `fds: before ${before}, after ${openFdCount()}`)
})

test('an unreadable root given at registration is reported at registration', async (t) => {
  // A root that is a dangling symlink is not a directory.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-opt-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.symlinkSync(path.join(dir, 'gone'), path.join(dir, 'root'))
  const err = await registrationError({ root: path.join(dir, 'root') })
  assert.equal(err.code, INVALID)
  assert.match(err.message, /"root"/)
})

test('urlOf helper sanity (fetch agrees with the raw client)', async (t) => {
  const app = await startServer(t)
  const res = await fetch(urlOf(app, '/hello.txt'))
  assert.equal(res.status, 200)
  assert.equal(await res.text(), HELLO)
})

// ---------------------------------------------------------------------------
// Serve mode (serve: true): @fastify/static's option names

test('serve-mode options are refused without serve: true, naming the option', async () => {
  const root = fixtures()
  const cases = [
    [{ root, prefix: '/static/' }, 'prefix'],
    [{ root, serve: false, redirect: true }, 'redirect'],
    [{ root, preCompressed: true }, 'preCompressed'],
    [{ root, index: 'index.html' }, 'index'],
    [{ root, extensions: ['html'] }, 'extensions'],
    [{ root, setHeaders () {} }, 'setHeaders'],
    [{ root, allowedPath: () => true }, 'allowedPath'],
    [{ root, decorateReply: true }, 'decorateReply'],
    [{ root, wildcard: false }, 'wildcard'],
    [{ root, list: true }, 'list'],
    [{ root, onFile () {} }, 'onFile'],
    [{ root, globIgnore: ['*.map'] }, 'globIgnore'],
    [{ root, suppressWarning: true }, 'suppressWarning'],
    [{ root: [root] }, 'root']
  ]
  for (const [options, name] of cases) {
    const err = await registrationError(options)
    assert.equal(err.code, INVALID, `${describe(options)}: ${err.message}`)
    assert.ok(err.message.includes(`"${name}"`), `message should quote "${name}": ${err.message}`)
    assert.match(err.message, /serve: true/)
    assert.ok(err instanceof TypeError)
  }
})

test('serve mode: invalid values and unsupported @fastify/static options are refused at registration', async () => {
  const root = fixtures()
  const sub = path.join(root, 'sub')
  const cases = [
    [{ serve: true }, 'root', /required/],
    [{ root, serve: 'yes' }, 'serve', /one of true, false, "decorators"/],
    [{ root: [], serve: true }, 'root', /empty/],
    [{ root: [root, root], serve: true }, 'root', /duplicate/],
    [{ root: [root, path.join(root, 'sub', '..')], serve: true }, 'root', /duplicate/],
    [{ root: [root, 'relative'], serve: true }, 'root', /absolute/],
    [{ root: [root, path.join(root, 'hello.txt')], serve: true }, 'root', /not a directory/],
    [{ root: [root, 42], serve: true }, 'root', /array/],
    [{ root: 'relative', serve: true }, 'root', /absolute/],
    [{ root, serve: true, setHeaders: 'x-a: 1' }, 'setHeaders', /function/],
    [{ root, serve: true, allowedPath: true }, 'allowedPath', /function/],
    [{ root, serve: true, index: true }, 'index', /false/],
    [{ root, serve: true, index: [''] }, 'index', /file name/],
    [{ root, serve: true, extensions: [1] }, 'extensions', /extension/],
    [{ root, serve: true, prefix: 'static' }, 'prefix', /start with/],
    [{ root, serve: true, prefix: 1 }, 'prefix', /string/],
    [{ root, serve: true, redirect: 'yes' }, 'redirect', /boolean/],
    [{ root, serve: true, preCompressed: 1 }, 'preCompressed', /boolean/],
    [{ root, serve: true, wildcard: 0 }, 'wildcard', /boolean/],
    [{ root, serve: true, logLevel: 'loud' }, 'logLevel', /one of/],
    [{ root, serve: true, constraints: 'host' }, 'constraints', /object/],
    // list: @fastify/static's checks (lib/dirList.js validateOptions), by sub-option.
    [{ root, serve: true, list: 'yes' }, 'list', /true, false or an object/],
    [{ root, serve: true, list: { format: 'xml' } }, 'list.format', /one of "json", "html"/],
    [{ root, serve: true, list: { names: 'index.json' } }, 'list.names', /array/],
    [{ root, serve: true, list: { names: [1] } }, 'list.names', /string/],
    [{ root, serve: true, list: { jsonFormat: 'full' } }, 'list.jsonFormat', /one of "names", "extended"/],
    [{ root, serve: true, list: { extendedFolderInfo: 'yes' } }, 'list.extendedFolderInfo', /boolean/],
    [{ root, serve: true, list: { format: 'html' } }, 'list.render', /required with html format/],
    [{ root, serve: true, list: { render: '<ul>' } }, 'list.render', /function/],
    [{ root, serve: true, list: { sort: true } }, 'list.sort', /unknown option/],
    [{ root: [root, sub], serve: true, list: true }, 'list', /several roots/],
    [{ serve: 'decorators', list: true }, 'list', /needs a root/],
    [{ root, serve: true, globIgnore: [1] }, 'globIgnore', /glob pattern/],
    [{ root, serve: true, globIgnore: 5 }, 'globIgnore', /glob pattern/],
    [{ root, serve: true, onFile: 'log' }, 'onFile', /function/],
    [{ root, serve: true, suppressWarning: 'yes' }, 'suppressWarning', /boolean/],
    // @fastify/static 10 has no `send` option (it ignores one): refused, saying so.
    [{ root, serve: true, send: { dotfiles: 'ignore' } }, 'send', /not an option of @fastify\/static 10/],
    [{ serve: 'decorators', root: 'relative' }, 'root', /absolute/],
    [{ root, serve: true, unknownKey: 1 }, 'unknownKey', /unknown option/]
  ]
  for (const [options, name, message] of cases) {
    const err = await registrationError(options)
    assert.equal(err.code, INVALID, `${describe(options)}: ${err.message}`)
    assert.ok(err.message.includes(`"${name}"`), `${describe(options)}: message should quote "${name}": ${err.message}`)
    assert.match(err.message, message, describe(options))
  }
})

test('serve mode: valid option sets register and serve', async (t) => {
  const root = fixtures()
  const sub = path.join(root, 'sub')
  const valid = [
    [{ root, serve: true }, '/hello.txt'],
    [{ root: [root, sub], serve: true }, '/nested.txt'],
    [{ root: [sub, root], serve: true, prefix: '/s/', redirect: true, index: false, extensions: 'txt' }, '/s/hello'],
    [{ root: new URL('file://' + root), serve: true }, '/hello.txt'],
    [{ root: [new URL('file://' + sub), root], serve: true }, '/hello.txt'],
    [{
      root,
      serve: true,
      prefix: '/p',
      prefixAvoidTrailingSlash: true,
      index: ['index.html', 'default.htm'],
      redirect: false,
      extensions: ['html', 'txt'],
      setHeaders () {},
      allowedPath: () => true,
      preCompressed: true,
      decorateReply: false,
      schemaHide: false,
      constraints: {},
      logLevel: 'warn',
      wildcard: true,
      serveDotFiles: false,
      dotfiles: 'deny',
      maxAge: '1h',
      immutable: true,
      etag: true,
      lastModified: true,
      acceptRanges: true,
      cacheControl: true
    }, '/p/hello.txt'],
    [{ root, serve: true, prefix: undefined, index: undefined, setHeaders: undefined }, '/hello.txt'],
    [{ root, serve: true, list: true, onFile () {}, suppressWarning: true, wildcard: false, globIgnore: ['sub/**'] }, '/hello.txt'],
    [{ root, serve: true, list: false, globIgnore: '*.map' }, '/hello.txt'],
    [{ root, serve: true, list: { format: 'html', render: () => '', names: ['index.json'], jsonFormat: 'extended', extendedFolderInfo: true } }, '/hello.txt']
  ]
  for (const [options, url] of valid) {
    await t.test(describe(options), async (t) => {
      const app = Fastify()
      t.after(() => app.close())
      await app.register(zeroCopy, options)
      await app.listen({ port: 0, host: '127.0.0.1' })
      const res = await get(app, url)
      assert.equal(res.status, 200, url)
    })
  }
})
