'use strict'
// A raw HTTP/1.1 client for the connection-level tests: it hashes bodies as
// they arrive (64 MiB bodies cost no memory), understands pipelined and
// HEAD responses and partial bodies, and lets a test pause, read slowly or
// cut the connection at any point.
const fs = require('node:fs')
const path = require('node:path')
const net = require('node:net')
const crypto = require('node:crypto')
const { sha256, fixtures } = require('./helpers')

const TEST_TIMEOUT = 60000
const FILES = ['4k.bin', '1m.bin', '64m.bin', 'hello.txt']

// ---------------------------------------------------------------------------
// Local helpers (test/helpers.js is shared and not ours to change).

let expectedCache = null
/** sha256 and size of the fixture files, read once. */
function expected () {
  if (expectedCache !== null) return expectedCache
  expectedCache = {}
  for (const name of FILES) {
    const buf = fs.readFileSync(path.join(fixtures(), name))
    expectedCache[name] = { size: buf.length, sha: sha256(buf) }
  }
  return expectedCache
}

/**
 * Incremental HTTP/1.1 response parser (Content-Length framing; HEAD, 204
 * and 304 have no body). Bodies are hashed as they arrive, never kept whole,
 * so a 64 MiB body costs no memory.
 */
class ResponseParser {
  constructor ({ keep = false } = {}) {
    this.keep = keep // keep body bytes too (small or partial bodies only)
    this.queue = []
    this.responses = []
    this.current = null
    this.pending = Buffer.alloc(0)
    this.extra = 0 // bytes after the last expected response
    this.error = null
  }

  expect (...methods) { this.queue.push(...methods) }

  push (chunk) {
    while (chunk.length > 0) {
      const cur = this.current
      if (cur === null) {
        if (this.queue.length === 0) {
          this.extra += chunk.length
          return
        }
        this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
        const headEnd = this.pending.indexOf('\r\n\r\n')
        if (headEnd < 0) return
        const lines = this.pending.subarray(0, headEnd).toString('latin1').split('\r\n')
        if (!/^HTTP\/1\.[01] \d{3}/.test(lines[0])) {
          this.error = new Error(`not a status line: ${JSON.stringify(lines[0].slice(0, 80))}`)
          this.queue.length = 0
          this.extra += this.pending.length
          this.pending = Buffer.alloc(0)
          return
        }
        const status = Number(lines[0].split(' ')[1])
        const headers = {}
        for (const line of lines.slice(1)) {
          const i = line.indexOf(':')
          headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim()
        }
        const method = this.queue.shift()
        const noBody = method === 'HEAD' || status === 204 || status === 304
        const length = noBody ? 0 : Number(headers['content-length'] ?? 0)
        const response = {
          method, status, headers, length, received: 0, hash: crypto.createHash('sha256'), done: false, sha: null, chunks: []
        }
        this.responses.push(response)
        chunk = this.pending.subarray(headEnd + 4)
        this.pending = Buffer.alloc(0)
        this.current = response
        if (length === 0) this._complete(response)
      } else {
        const take = Math.min(chunk.length, cur.length - cur.received)
        cur.hash.update(chunk.subarray(0, take))
        if (this.keep) cur.chunks.push(chunk.subarray(0, take))
        cur.received += take
        chunk = chunk.subarray(take)
        if (cur.received === cur.length) this._complete(cur)
      }
    }
  }

  _complete (response) {
    response.sha = response.hash.digest('hex')
    response.done = true
    this.current = null
  }

  /** sha256 of the body bytes received so far (complete or not). */
  static partialSha (response) {
    return response.done ? response.sha : response.hash.copy().digest('hex')
  }
}

/** A raw `net` client with an incremental parser and event-driven waits. */
class RawClient {
  constructor (port, { keep = false } = {}) {
    this.parser = new ResponseParser({ keep })
    this.bytes = 0
    this.ended = false
    this.closed = false
    this.error = null
    this.waiters = new Set()
    this.socket = net.connect(port, '127.0.0.1')
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve)
      this.socket.once('error', reject)
    })
    this.socket.on('data', (d) => {
      this.bytes += d.length
      this.parser.push(d)
      this._wake()
    })
    this.socket.on('end', () => { this.ended = true; this._wake() })
    this.socket.on('error', (err) => { this.error = err })
    this.closePromise = new Promise((resolve) => this.socket.once('close', () => {
      this.closed = true
      this._wake()
      resolve()
    }))
  }

  get responses () { return this.parser.responses }

  send (methodsAndPaths, { lastClose = false } = {}) {
    let text = ''
    methodsAndPaths.forEach(([method, p], i) => {
      const close = lastClose && i === methodsAndPaths.length - 1
      text += `${method} ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n${close ? 'Connection: close\r\n' : ''}\r\n`
      this.parser.expect(method)
    })
    this.socket.write(text)
  }

  _wake () {
    for (const w of this.waiters) w()
  }

  /** Resolves when `predicate(this)` holds; rejects if the socket closes first or after timeoutMs. */
  until (predicate, { timeoutMs = 20000, what = 'condition' } = {}) {
    return new Promise((resolve, reject) => {
      const done = (err) => {
        this.waiters.delete(check)
        clearTimeout(timer)
        if (err) reject(err)
        else resolve(this)
      }
      const check = () => {
        if (predicate(this)) done()
        else if (this.closed) done(new Error(`socket closed before ${what} (got ${this.bytes} bytes, error ${this.error?.code})`))
      }
      const timer = setTimeout(() => done(new Error(`timed out waiting for ${what} (got ${this.bytes} bytes)`)), timeoutMs)
      this.waiters.add(check)
      check()
    })
  }

  /** Waits for the socket to close (bounded). */
  async closedWithin (timeoutMs = 20000) {
    let timer
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms (got ${this.bytes} bytes)`)), timeoutMs)
    })
    try {
      await Promise.race([this.closePromise, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  destroy () { this.socket.destroy() }
}

/** GET /name over a fresh connection (Connection: close); the parsed response. */
async function fetchOnce (port, name, method = 'GET') {
  const c = new RawClient(port)
  c.send([[method, `/${name}`]], { lastClose: true })
  await c.until((x) => x.responses.length === 1 && x.responses[0].done, { what: `${name} response` })
  await c.closedWithin()
  return c.responses[0]
}

/** Counts the server's TCP connections. */
function countConnections (app) {
  const counter = { count: 0 }
  app.server.on('connection', () => { counter.count++ })
  return counter
}

module.exports = { TEST_TIMEOUT, expected, ResponseParser, RawClient, fetchOnce, countConnections }
