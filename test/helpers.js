'use strict'
// Shared fixtures and clients for the behaviour tests. Every server listens
// on 127.0.0.1 port 0; every client is a real socket unless a test says
// otherwise (fastify.inject is the fallback's own case).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const net = require('node:net')
const crypto = require('node:crypto')
const Fastify = require('fastify')
const zeroCopy = require('..')

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex')

// Deterministic bytes, so a failing hash can be reproduced.
function patternBytes (size, seed = 1) {
  const words = new Uint32Array(Math.ceil(size / 4))
  let x = seed >>> 0 || 1
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    words[i] = x
  }
  return Buffer.from(words.buffer, 0, size)
}

const SIZES = { empty: 0, one: 1, '4k': 4096, '1m': 1 << 20, '64m': 64 << 20 }

let fixtureRoot = null
/** A folder of generated files, made once per test process. */
function fixtures () {
  if (fixtureRoot !== null) return fixtureRoot
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-fixtures-'))
  for (const [name, size] of Object.entries(SIZES)) {
    fs.writeFileSync(path.join(root, `${name}.bin`), patternBytes(size, size + 7))
  }
  fs.writeFileSync(path.join(root, 'hello.txt'), 'hello, world\n')
  fs.writeFileSync(path.join(root, 'page.html'), '<!doctype html><title>x</title>\n')
  fs.writeFileSync(path.join(root, '.secret'), 'dotfile\n')
  fs.mkdirSync(path.join(root, 'sub'))
  fs.writeFileSync(path.join(root, 'sub', 'nested.txt'), 'nested\n')
  fs.mkdirSync(path.join(root, '.hidden'))
  fs.writeFileSync(path.join(root, '.hidden', 'inside.txt'), 'inside a dot folder\n')
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-outside-'))
  fs.writeFileSync(path.join(outside, 'outside.txt'), 'must never be served\n')
  fs.symlinkSync(path.join(outside, 'outside.txt'), path.join(root, 'link-out.txt'))
  fs.symlinkSync('hello.txt', path.join(root, 'link-in.txt'))
  process.on('exit', () => {
    fs.rmSync(root, { recursive: true, force: true })
    fs.rmSync(outside, { recursive: true, force: true })
  })
  fixtureRoot = root
  return root
}

/**
 * A Fastify app with the plugin and a catch-all route mapping the URL to
 * sendFileZeroCopy. `t` closes it after the test.
 */
async function startServer (t, pluginOptions = {}, { route, listen = true, fastifyOptions = {} } = {}) {
  const app = Fastify(fastifyOptions)
  await app.register(zeroCopy, { root: fixtures(), ...pluginOptions })
  if (route) route(app)
  else app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  liveApps.add(app)
  app.addHook('onClose', async () => { liveApps.delete(app) })
  t.after(() => app.close())
  if (listen) await app.listen({ port: 0, host: '127.0.0.1' })
  return app
}

const urlOf = (app, p) => `http://127.0.0.1:${app.server.address().port}${p}`

/** One raw HTTP exchange: sends `request` text, reads until the socket ends or `until(buf)`. */
function rawExchange (port, request, { until, timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const chunks = []
    const socket = net.connect(port, '127.0.0.1', () => socket.write(request))
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('raw exchange timed out')) }, timeoutMs)
    socket.on('data', (d) => {
      chunks.push(d)
      if (until && until(Buffer.concat(chunks))) socket.end()
    })
    socket.on('error', reject)
    socket.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks)) })
  })
}

/** Splits a byte stream of HTTP/1.1 responses (Content-Length framed; HEAD/304 bodies empty). */
function parseResponses (buf, methods) {
  const out = []
  let pos = 0
  for (const method of methods) {
    const headEnd = buf.indexOf('\r\n\r\n', pos)
    if (headEnd < 0) break
    const head = buf.subarray(pos, headEnd).toString('latin1').split('\r\n')
    const status = Number(head[0].split(' ')[1])
    const headers = {}
    for (const line of head.slice(1)) {
      const i = line.indexOf(':')
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim()
    }
    const length = method === 'HEAD' || status === 304 ? 0 : Number(headers['content-length'] ?? 0)
    const body = buf.subarray(headEnd + 4, headEnd + 4 + length)
    out.push({ status, headers, body })
    pos = headEnd + 4 + length
  }
  return out
}

/** Open fds of this process, to prove nothing leaks. */
function openFdCount () {
  return fs.readdirSync('/proc/self/fd').length
}

// Apps made by startServer and not closed yet: their open-file caches keep
// fds on purpose, counted in their stats.
const liveApps = new Set()

/** Open fds minus those the live apps' open-file caches hold: what must not leak. */
function fdsOutsideCache () {
  let cached = 0
  for (const app of liveApps) cached += app.zeroCopy.stats().cache.fds
  return openFdCount() - cached
}

/** Waits (bounded) until `check()` is true; for counters that settle after a close. */
async function eventually (check, { timeoutMs = 5000, stepMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, stepMs))
  }
  return check()
}

/**
 * Sends `GET url` on a connection opened before this process's fd table is
 * filled (so the request itself needs no new fd), answers the head of the
 * response, and frees the fds again.
 */
async function requestWithoutFds (port, url) {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  const received = []
  const answered = new Promise((resolve) => {
    socket.on('data', (d) => {
      received.push(d)
      if (Buffer.concat(received).includes('\r\n\r\n')) resolve()
    })
  })
  const hog = []
  try {
    for (;;) hog.push(fs.openSync('/dev/null', 'r'))
  } catch (err) {
    if (err.code !== 'EMFILE') throw err
  }
  try {
    socket.write(`GET ${url} HTTP/1.1\r\nHost: localhost\r\n\r\n`)
    await answered
  } finally {
    for (const fd of hog) fs.closeSync(fd)
  }
  socket.destroy()
  return Buffer.concat(received).toString('latin1').split('\r\n\r\n')[0]
}

module.exports = {
  sha256, patternBytes, SIZES, fixtures, startServer, urlOf, rawExchange, parseResponses, openFdCount, fdsOutsideCache, eventually, requestWithoutFds, zeroCopy
}
