'use strict'
// What the package exports (CJS and ESM), the plugin metadata, and the
// `fastify.zeroCopy` decorator, with and without the native addon.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, execFile } = require('node:child_process')
const readline = require('node:readline')
const { pathToFileURL } = require('node:url')
const Fastify = require('fastify')
const { fixtures, startServer, urlOf, sha256, eventually } = require('./helpers')

const PACKAGE_ROOT = path.join(__dirname, '..')
const DIST_ENTRY = path.join(PACKAGE_ROOT, 'dist', 'index.js')
const FASTIFY = require.resolve('fastify')

const ZERO_STATS = {
  responses: { sendfile: 0, write: 0, none: 0 },
  bytes: { sendfile: 0, write: 0 },
  fallbacks: { native: 0, disabled: 0, inject: 0, tls: 0, http2: 0, refused: 0, piped: 0, replaced: 0 },
  truncations: 0,
  timeouts: 0,
  aborts: 0,
  leases: {
    taken: 0,
    refused: { busy: 0, notOwner: 0, unsupported: 0, signal: 0, other: 0 },
    broken: 0,
    finishedInGrace: 0,
    aborted: 0,
    integrityUnverified: 0
  },
  cache: {
    hits: 0,
    misses: 0,
    invalidations: { lease: 0, changed: 0, replaced: 0, removed: 0 },
    evictions: 0,
    files: 0,
    fds: 0
  },
  cold: { reads: 0, bytes: 0 },
  digests: { computed: 0, bytes: 0, failed: 0 }
}

function runNode (args, env = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env: { ...process.env, ...env }, timeout: 20000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr })
    })
  })
}

test("require('..') is the plugin function, with .default and .zeroCopy the same function", () => {
  const zeroCopy = require('..')
  assert.equal(typeof zeroCopy, 'function')
  assert.equal(zeroCopy.default, zeroCopy)
  assert.equal(zeroCopy.zeroCopy, zeroCopy)
  assert.equal(require(DIST_ENTRY), zeroCopy, 'main points at dist/index.js')
})

test('it carries fastify-plugin metadata', () => {
  const zeroCopy = require('..')
  const meta = zeroCopy[Symbol.for('plugin-meta')]
  assert.ok(meta, 'plugin-meta is set')
  assert.equal(meta.name, 'fastify-zero-copy')
  assert.equal(meta.fastify, '5.x')
  assert.equal(zeroCopy[Symbol.for('skip-override')], true)
  assert.equal(zeroCopy[Symbol.for('fastify.display-name')], 'fastify-zero-copy')
})

test('the decorators are visible outside the plugin (skip-override)', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(require('..'), { root: fixtures() })
  assert.ok(app.hasReplyDecorator('sendFileZeroCopy'))
  assert.ok(app.hasReplyDecorator('zeroCopyTransport'))
  assert.ok(app.hasDecorator('zeroCopy'))
})

test('ESM default import works and is the CJS export', async () => {
  const url = pathToFileURL(DIST_ENTRY).href
  const code = `
    import zeroCopy from ${JSON.stringify(url)}
    import Fastify from ${JSON.stringify(pathToFileURL(FASTIFY).href)}
    const meta = zeroCopy[Symbol.for('plugin-meta')]
    const app = Fastify()
    await app.register(zeroCopy, { root: ${JSON.stringify(fixtures())} })
    process.stdout.write(JSON.stringify({
      type: typeof zeroCopy,
      same: zeroCopy.default === zeroCopy && zeroCopy.zeroCopy === zeroCopy,
      meta: { name: meta.name, fastify: meta.fastify },
      skipOverride: zeroCopy[Symbol.for('skip-override')],
      native: app.zeroCopy.native
    }))
    await app.close()
  `
  const { code: exit, stdout, stderr } = await runNode(['--input-type=module', '-e', code])
  assert.equal(exit, 0, stderr)
  assert.deepEqual(JSON.parse(stdout), {
    type: 'function', same: true, meta: { name: 'fastify-zero-copy', fastify: '5.x' }, skipOverride: true, native: true
  })
})

// The user's ESM import, written to a temp .mjs (not under test/, where
// `node --test test/` would run it as a test file).
const ESM_IMPORT = `
import zeroCopy, { zeroCopy as named } from ${JSON.stringify(pathToFileURL(DIST_ENTRY).href)}
const meta = zeroCopy[Symbol.for('plugin-meta')]
process.stdout.write(JSON.stringify({
  defaultType: typeof zeroCopy,
  namedType: typeof named,
  namedIsDefault: named === zeroCopy,
  defaultProperty: zeroCopy.default === zeroCopy,
  zeroCopyProperty: zeroCopy.zeroCopy === zeroCopy,
  meta: meta === undefined ? null : { name: meta.name, fastify: meta.fastify },
  skipOverride: zeroCopy[Symbol.for('skip-override')] === true
}))
`

// Bug: `export = Object.assign(zeroCopy, { default, zeroCopy })` compiles to
// `module.exports = Object.assign(...)`, which Node's CJS named-export
// detection (cjs-module-lexer) cannot see: ESM only gets `default`.
test('ESM: import zeroCopy, { zeroCopy as named } from the package gives the same function', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-esm-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'esm-import.mjs')
  fs.writeFileSync(file, ESM_IMPORT)
  const { code, stdout, stderr } = await runNode([file])
  assert.equal(code, 0, stderr.split('\n').slice(0, 6).join('\n'))
  const cjs = require('..')
  const meta = cjs[Symbol.for('plugin-meta')]
  assert.deepEqual(JSON.parse(stdout), {
    defaultType: typeof cjs,
    namedType: typeof cjs.zeroCopy,
    namedIsDefault: true,
    defaultProperty: true,
    zeroCopyProperty: true,
    meta: { name: meta.name, fastify: meta.fastify },
    skipOverride: true
  })
})

test('the named export is listed for ESM', async () => {
  const { code, stdout, stderr } = await runNode(['--input-type=module', '-e',
    `const ns = await import(${JSON.stringify(pathToFileURL(DIST_ENTRY).href)}); process.stdout.write(JSON.stringify(Object.keys(ns).sort()))`])
  assert.equal(code, 0, stderr)
  assert.ok(JSON.parse(stdout).includes('zeroCopy'), `ESM namespace keys: ${stdout}`)
})

test('fastify.zeroCopy: native on this Linux machine, stats() shape and counting', async (t) => {
  const app = await startServer(t)
  assert.equal(app.zeroCopy.native, true)
  assert.equal(app.zeroCopy.nativeUnavailableReason, null)
  assert.equal(typeof app.zeroCopy.stats, 'function')

  const fresh = app.zeroCopy.stats()
  assert.deepEqual(fresh, ZERO_STATS)

  const res = await fetch(urlOf(app, '/4k.bin'))
  assert.equal(res.status, 200)
  const body = Buffer.from(await res.arrayBuffer())
  assert.equal(sha256(body), sha256(fs.readFileSync(path.join(fixtures(), '4k.bin'))))
  const head = await fetch(urlOf(app, '/hello.txt'), { method: 'HEAD' })
  assert.equal(head.status, 200)
  assert.equal((await fetch(urlOf(app, '/nope'))).status, 404)

  // The byte counter moves when the transfer completes on the server side.
  assert.ok(await eventually(() => app.zeroCopy.stats().bytes.sendfile === 4096), JSON.stringify(app.zeroCopy.stats()))
  const after = app.zeroCopy.stats()
  assert.deepEqual(Object.keys(after).sort(), Object.keys(ZERO_STATS).sort())
  for (const [k, v] of Object.entries(ZERO_STATS)) {
    if (typeof v === 'object') assert.deepEqual(Object.keys(after[k]).sort(), Object.keys(v).sort(), k)
    else assert.equal(typeof after[k], 'number', k)
  }
  assert.equal(after.responses.sendfile, 1)
  assert.equal(after.bytes.sendfile, 4096)
  assert.equal(after.responses.none, 1, 'HEAD has no body')
  assert.equal(after.responses.write, 0)

  // A snapshot: changing it does not change the counters.
  after.responses.sendfile = 999
  assert.equal(app.zeroCopy.stats().responses.sendfile, 1)
  assert.notEqual(app.zeroCopy.stats(), app.zeroCopy.stats())
})

test('stats are per plugin instance', async (t) => {
  const a = await startServer(t)
  const b = await startServer(t)
  await (await fetch(urlOf(a, '/hello.txt'))).arrayBuffer()
  assert.equal(a.zeroCopy.stats().responses.sendfile, 1)
  assert.deepEqual(b.zeroCopy.stats(), ZERO_STATS)
})

// ---------------------------------------------------------------------------
// Without the addon: a child process with FASTIFY_ZERO_COPY_NATIVE=0.

const CHILD_SERVER = `
'use strict'
const Fastify = require(${JSON.stringify(FASTIFY)})
const zeroCopy = require(${JSON.stringify(PACKAGE_ROOT)})
;(async () => {
  const [root, pluginOptions] = [process.argv[2], JSON.parse(process.argv[3])]
  const app = Fastify({ logger: { level: 'info' } })
  await app.register(zeroCopy, { root, ...pluginOptions })
  app.get('/__state', async () => ({
    native: app.zeroCopy.native,
    reason: app.zeroCopy.nativeUnavailableReason,
    stats: app.zeroCopy.stats()
  }))
  app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  await app.listen({ port: 0, host: '127.0.0.1' })
  process.stdout.write(JSON.stringify({ childReady: true, port: app.server.address().port }) + '\\n')
})().catch((err) => { console.error(err); process.exit(1) })
`

/** Starts CHILD_SERVER with the addon disabled; collects its pino lines. */
async function startFallbackChild (t, pluginOptions = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-exports-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = path.join(dir, 'server.js')
  fs.writeFileSync(script, CHILD_SERVER)
  const child = spawn(process.execPath, [script, fixtures(), JSON.stringify(pluginOptions)], {
    env: { ...process.env, FASTIFY_ZERO_COPY_NATIVE: '0' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.after(() => { if (child.exitCode === null) child.kill() })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  const logs = []
  let port
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child did not start: ${stderr}`)), 15000)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`child exited ${code}: ${stderr}`)) })
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let entry
      try { entry = JSON.parse(line) } catch { entry = { raw: line } }
      if (entry.childReady) { port = entry.port; clearTimeout(timer); resolve() } else logs.push(entry)
    })
  })
  return { port, logs, base: `http://127.0.0.1:${port}` }
}

const fallbackWarnings = (logs) => logs.filter((l) => l.level === 40 && /fallback/.test(l.msg ?? ''))

test('FASTIFY_ZERO_COPY_NATIVE=0: native false, one fallback warning, files still served correctly', async (t) => {
  const { base, logs } = await startFallbackChild(t)

  const state0 = await (await fetch(base + '/__state')).json()
  assert.equal(state0.native, false)
  assert.equal(typeof state0.reason, 'string')
  assert.match(state0.reason, /FASTIFY_ZERO_COPY_NATIVE/)

  const warnings = fallbackWarnings(logs)
  assert.equal(warnings.length, 1, `warn lines: ${JSON.stringify(logs.filter((l) => l.level === 40))}`)
  assert.match(warnings[0].msg, /fastify-zero-copy/)

  // Bodies: exact bytes, ranges too.
  const hello = await fetch(base + '/hello.txt')
  assert.equal(hello.status, 200)
  assert.equal(await hello.text(), 'hello, world\n')
  const big = await fetch(base + '/1m.bin')
  assert.equal(big.status, 200)
  assert.equal(big.headers.get('content-length'), String(1 << 20))
  assert.equal(sha256(Buffer.from(await big.arrayBuffer())), sha256(fs.readFileSync(path.join(fixtures(), '1m.bin'))))
  const ranged = await fetch(base + '/hello.txt', { headers: { range: 'bytes=7-11' } })
  assert.equal(ranged.status, 206)
  assert.equal(await ranged.text(), 'world')
  const empty = await fetch(base + '/empty.bin')
  assert.equal(empty.status, 200)
  assert.equal((await empty.arrayBuffer()).byteLength, 0)
  assert.equal((await fetch(base + '/link-out.txt')).status, 403)

  const state1 = await (await fetch(base + '/__state')).json()
  assert.equal(state1.stats.responses.sendfile, 0)
  assert.equal(state1.stats.bytes.sendfile, 0)
  assert.equal(state1.stats.responses.write, 3)
  assert.equal(state1.stats.fallbacks.native, 3)
  assert.equal(state1.stats.bytes.write, 13 + (1 << 20) + 5)

  // Still one warning: it is a registration-time message, not per request.
  assert.equal(fallbackWarnings(logs).length, 1)
})

test('FASTIFY_ZERO_COPY_NATIVE=0 with zeroCopy: false: no warning (the fallback was asked for)', async (t) => {
  const { base, logs } = await startFallbackChild(t, { zeroCopy: false })
  const res = await fetch(base + '/hello.txt')
  assert.equal(await res.text(), 'hello, world\n')
  assert.equal(fallbackWarnings(logs).length, 0)
  const state = await (await fetch(base + '/__state')).json()
  assert.equal(state.native, false)
  assert.equal(state.stats.fallbacks.disabled, 1)
})
