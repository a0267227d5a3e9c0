'use strict'
// Reliability under hostile clients and a hostile environment: clients that
// reset or close at random points, clients that stop reading, slow readers,
// shutdown with transfers in flight, fd exhaustion (a child server under a
// tiny RLIMIT_NOFILE), files past 4 GiB, files that disappear or are
// replaced mid-transfer, and files sendfile(2) refuses (/proc, sysfs).
//
// Everything runs on real sockets on 127.0.0.1. Every test is bounded in
// time and prints the figures it reached (counts, not timings, except the
// close() duration). Aborting and stalled clients run against both
// transports (sendfile, and the write fallback with zeroCopy: false).
// ZC_SOAK=1 runs the long variants (10,000 aborting clients, 500 stalled
// ones, 2,000 and 100 on the fallback, a full 5 GiB GET).
//
// Known faults, kept as `todo` tests so the suite stays green (details in
// each test):
//   - fd exhaustion: a response that got its 200 and first 2 MiB is cut
//     (send failed EMFILE) when transferStart cannot dup the socket.
//   - pipelining: each queued file response holds its file open: one
//     connection can open as many files as it pipelines requests.
//   - a Unix socket file under the root answers 500 (ENXIO unmapped).
//   - sysfs files (st_size 4096, a few bytes of content): refused (404).
//   - leaseHeld() reports 4096 in a process that never took a lease.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const net = require('node:net')
const crypto = require('node:crypto')
const { spawnSync } = require('node:child_process')
const Fastify = require('fastify')
const { sha256, patternBytes, fixtures, startServer, rawExchange, parseResponses, fdsOutsideCache, eventually, zeroCopy } = require('./helpers')

// Leak checks count what the open-file caches hold apart (kept on purpose).
const openFdCount = fdsOutsideCache
const { RawClient, fetchOnce, expected } = require('./raw-client')
const { native } = require('../dist/lib/native')
const {
  SOAK, MiB, mib, mulberry32, pool, sleep, getGc, settledRss, recordProcessHealth, leaseLinesOf, captureLogs,
  PipelineClient, startChildServer, bump
} = require('./fixtures/reliability/common')

const NO_NATIVE = native.binding === null ? `native addon not loaded (${native.reason})` : false
const leaseHeld = () => native.binding.leaseHeld()
const GiB = 1024 * MiB
const RSS_SLACK = 32 * MiB

const N_ABORT = SOAK ? 10000 : 1000
const M_STALL = SOAK ? 500 : 100
const CONCURRENCY = 32

// ---------------------------------------------------------------------------
// Helpers

let tmpBase = null
/** A fresh folder under one per-process temp folder (removed at exit). */
function tmpDir (prefix) {
  if (tmpBase === null) {
    tmpBase = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-reliability-'))
    process.on('exit', () => fs.rmSync(tmpBase, { recursive: true, force: true }))
  }
  return fs.mkdtempSync(path.join(tmpBase, prefix))
}

/**
 * The process-wide pieces the lease machinery creates on first use (its
 * pipe, its thread, the sock_diag socket) exist before any baseline: one
 * full response and one abort on a throwaway server.
 */
let warmed = false
async function warmUp () {
  if (warmed || native.binding === null) return
  const app = Fastify()
  await app.register(zeroCopy, { root: fixtures() })
  app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = app.server.address().port
  await fetchOnce(port, '1m.bin')
  const c = new RawClient(port)
  c.send([['GET', '/64m.bin']])
  await c.until((x) => x.bytes > 3 * MiB, { what: 'part of 64m.bin' })
  c.socket.resetAndDestroy()
  await c.closedWithin()
  await app.close()
  await eventually(() => leaseHeld() === 0, { timeoutMs: 10000 })
  warmed = true
}

/** Server-side connections: how many are open, and when each closed. */
function trackConnections (app) {
  const track = { opened: 0, open: 0, byPort: new Map() }
  app.server.on('connection', (socket) => {
    track.opened++
    track.open++
    const entry = { openedAt: Date.now(), closedAt: 0 }
    track.byPort.set(socket.remotePort, entry)
    socket.once('close', () => {
      track.open--
      entry.closedAt = Date.now()
    })
  })
  return track
}

/** Baseline once nothing is in flight: no lease held, fds and RSS settled. */
async function baseline () {
  if (native.binding !== null) {
    assert.ok(await eventually(() => leaseHeld() === 0, { timeoutMs: 10000 }), `leases before the baseline: ${leaseHeld()}`)
  }
  await sleep(20)
  return { fds: openFdCount(), rss: await settledRss() }
}

/** Waits for the end state every test must reach: no lease, no LEASE line, fds back. */
async function assertCleanState (base, what, { timeoutMs = 10000 } = {}) {
  const fdsBack = await eventually(() => openFdCount() <= base.fds, { timeoutMs })
  const leasesGone = native.binding === null || await eventually(() => leaseHeld() === 0, { timeoutMs })
  const lines = leaseLinesOf(process.pid)
  const state = {
    fds: `${base.fds} -> ${openFdCount()}`,
    leaseHeld: native.binding === null ? null : leaseHeld(),
    leaseLines: lines.length
  }
  assert.ok(fdsBack, `${what}: open fds ${openFdCount()} should return to the baseline ${base.fds}`)
  assert.ok(leasesGone, `${what}: leaseHeld() ${leaseHeld()} should reach 0`)
  assert.deepEqual(lines, [], `${what}: no LEASE line for pid ${process.pid} in /proc/locks`)
  return state
}

/** The figures of a stats() snapshot worth quoting. */
function statFigures (s) {
  return `responses ${JSON.stringify(s.responses)}, aborts ${s.aborts}, timeouts ${s.timeouts}, truncations ${s.truncations}, ` +
    `leases taken ${s.leases.taken}, refused ${JSON.stringify(s.leases.refused)}, fallbacks ${JSON.stringify(s.fallbacks)}`
}

// ---------------------------------------------------------------------------
// Aborting clients

const ABORT_KINDS = [
  ['mid-request', 0.08], // the request itself is cut
  ['before-headers', 0.17], // request sent, cut at once or within 5 ms
  ['after-headers', 0.12], // cut as soon as the status line arrives
  ['mid-body', 0.5], // cut after a log-uniform number of body bytes
  ['complete', 0.13] // reads everything (Connection: close), checked byte-exact (1 MiB files only)
]

function abortPlan (rand) {
  const big = rand() < 0.35
  const size = big ? 64 * MiB : MiB
  let r = rand()
  let kind = ABORT_KINDS[ABORT_KINDS.length - 1][0]
  for (const [k, p] of ABORT_KINDS) {
    if (r < p) {
      kind = k
      break
    }
    r -= p
  }
  // Reading 64 MiB to the end is the costly part of a run: the full
  // 64 MiB case is covered once at the end; here only 1 MiB reads complete.
  if (big && kind === 'complete') kind = 'mid-body'
  return {
    file: big ? '64m.bin' : '1m.bin',
    size,
    kind,
    how: rand() < 0.5 ? 'reset' : 'close',
    offset: Math.max(1, Math.floor(Math.exp(rand() * Math.log(size)))),
    delay: rand() < 0.5 ? 0 : Math.floor(rand() * 6),
    cutAt: 1 + Math.floor(rand() * 30)
  }
}

/** One client following `plan`; resolves with what it saw once its socket closed. */
function abortingClient (port, plan) {
  return new Promise((resolve) => {
    const request = `GET /${plan.file} HTTP/1.1\r\nHost: 127.0.0.1\r\n${plan.kind === 'complete' ? 'Connection: close\r\n' : ''}\r\n`
    const socket = net.connect(port, '127.0.0.1')
    const r = { plan, status: 0, length: -1, body: 0, cut: false, phase: null, error: null, sha: null }
    const hash = plan.kind === 'complete' ? crypto.createHash('sha256') : null
    let head = null
    const cut = () => {
      if (r.cut) return
      r.cut = true
      r.phase = r.status === 0 ? 'no response byte' : r.body === 0 ? 'headers only' : 'mid-body'
      if (plan.how === 'reset') socket.resetAndDestroy()
      else socket.destroy()
    }
    const timer = setTimeout(() => {
      r.error = 'client timed out'
      socket.destroy()
    }, 30000)
    socket.on('connect', () => {
      if (plan.kind === 'mid-request') {
        socket.write(request.slice(0, plan.cutAt))
        setImmediate(() => {
          cut()
          r.phase = 'mid-request'
        })
        return
      }
      socket.write(request)
      if (plan.kind === 'before-headers') {
        if (plan.delay === 0) cut()
        else setTimeout(cut, plan.delay)
      }
    })
    socket.on('data', (d) => {
      if (r.cut) return
      if (r.status === 0) {
        head = head === null ? d : Buffer.concat([head, d])
        const end = head.indexOf('\r\n\r\n')
        if (end < 0) return
        const text = head.subarray(0, end).toString('latin1')
        r.status = Number(text.split(' ')[1])
        const m = /\r\ncontent-length: *(\d+)/i.exec(text)
        r.length = m === null ? -1 : Number(m[1])
        d = head.subarray(end + 4)
        head = null
        if (plan.kind === 'after-headers' || plan.kind === 'before-headers') {
          cut()
          return
        }
      }
      if (plan.kind === 'mid-body' && r.body + d.length >= plan.offset) {
        r.body = plan.offset
        cut()
        return
      }
      r.body += d.length
      if (hash !== null) hash.update(d)
    })
    socket.on('error', (err) => { r.error = r.error ?? err.code })
    socket.on('close', () => {
      clearTimeout(timer)
      if (hash !== null) r.sha = hash.digest('hex')
      if (!r.cut) r.phase = r.status === 0 ? 'closed by server before a response' : 'not cut'
      resolve(r)
    })
  })
}

const ABORT_VARIANTS = [
  { name: 'sendfile', options: {}, count: N_ABORT, skip: NO_NATIVE },
  { name: 'write fallback, zeroCopy: false', options: { zeroCopy: false }, count: SOAK ? 2000 : 200, skip: false }
]

for (const variant of ABORT_VARIANTS) {
  test(`aborting clients (${variant.name}): ${variant.count} requests for 1 MiB / 64 MiB files reset or closed at seeded random points, ${CONCURRENCY} at a time`, {
    skip: variant.skip, timeout: SOAK ? 3600000 : 120000
  }, async (t) => {
    const label = `aborting clients (${variant.name})`
    await warmUp()
    const logs = captureLogs('warn')
    const app = await startServer(t, variant.options, { fastifyOptions: { logger: logs.logger } })
    const port = app.server.address().port
    const conns = trackConnections(app)
    await fetchOnce(port, 'hello.txt') // the root's fd is opened and kept from here
    const base = await baseline()
    const health = recordProcessHealth()
    t.after(health.stop)

    const rand = mulberry32(0xab0127)
    const plans = Array.from({ length: variant.count }, () => abortPlan(rand))
    const results = []
    let rssPeak = process.memoryUsage().rss
    const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, process.memoryUsage().rss) }, 50)
    t.after(() => clearInterval(sampler))
    // Five rounds. The first one brings the heap, the allocator and the
    // kernel's socket memory to their working size: RSS growth is measured
    // from its end (a leak grows with every round; a working set does not).
    const ROUNDS = 5
    const rssAfterRound = []
    const heapAfterRound = []
    for (let round = 0; round < ROUNDS; round++) {
      const part = plans.slice(Math.floor(round * plans.length / ROUNDS), Math.floor((round + 1) * plans.length / ROUNDS))
      await pool(part, CONCURRENCY, async (plan) => { results.push(await abortingClient(port, plan)) })
      await eventually(() => conns.open === 0 && (native.binding === null || leaseHeld() === 0), { timeoutMs: 10000 })
      rssAfterRound.push(await settledRss())
      heapAfterRound.push(process.memoryUsage())
    }
    clearInterval(sampler)

    assert.ok(await eventually(() => conns.open === 0, { timeoutMs: 15000 }), `server connections still open: ${conns.open}`)
    const state = await assertCleanState(base, label, { timeoutMs: 15000 })
    const rssAfter = await settledRss()
    const rssWorking = rssAfterRound[0]
    const heapEnd = process.memoryUsage()
    const heapGrowth = heapEnd.heapUsed - heapAfterRound[0].heapUsed
    const externalGrowth = heapEnd.external - heapAfterRound[0].external

    // Still healthy afterwards.
    const big = await fetchOnce(port, '64m.bin')
    assert.equal(big.sha, expected()['64m.bin'].sha, 'a full 64 MiB afterwards is byte-exact')

    const phases = {}
    const statuses = {}
    const errors = {}
    let bodyBytes = 0
    let completeOk = 0
    const completeBad = []
    for (const r of results) {
      bump(phases, `${r.plan.kind}: ${r.phase}`)
      if (r.status !== 0) bump(statuses, r.status)
      if (r.error !== null) bump(errors, r.error)
      bodyBytes += r.body
      if (r.plan.kind === 'complete') {
        const want = r.plan.file === '1m.bin' ? expected()['1m.bin'].sha : null
        if (r.status === 200 && r.body === r.plan.size && (want === null || r.sha === want)) completeOk++
        else completeBad.push(`${r.plan.file}: status ${r.status}, ${r.body} of ${r.plan.size} bytes, error ${r.error}`)
      }
    }
    const stats = app.zeroCopy.stats()
    const errorLogs = logs.entries.filter((e) => e.level >= 50)
    console.log(`${label}: ${results.length} requests (${plans.filter((p) => p.size === MiB).length} x 1 MiB, ` +
      `${plans.filter((p) => p.size > MiB).length} x 64 MiB; ${plans.filter((p) => p.how === 'reset').length} reset, ` +
      `${plans.filter((p) => p.how === 'close').length} closed), ${CONCURRENCY} at a time, ${conns.opened} server connections`)
    console.log(`${label}: where each was cut ${JSON.stringify(phases)}`)
    console.log(`${label}: statuses seen ${JSON.stringify(statuses)}, client errors ${JSON.stringify(errors)}, ` +
      `body bytes received ${mib(bodyBytes)} MiB, complete and byte-exact ${completeOk}/${plans.filter((p) => p.kind === 'complete').length}`)
    console.log(`${label}: server ${statFigures(stats)}`)
    console.log(`${label}: fds ${state.fds}, leaseHeld ${state.leaseHeld}, LEASE lines ${state.leaseLines}, ` +
      `RSS after gc (${getGc() === null ? 'no gc available' : 'gc'}): ${mib(base.rss)} MiB at start, after each fifth ` +
      `${rssAfterRound.map(mib).join(' / ')} MiB, at the end ${mib(rssAfter)} MiB (+${mib(rssAfter - rssWorking)} MiB since the first fifth, ` +
      `+${mib(rssAfter - base.rss)} MiB since the start; peak during the run ${mib(rssPeak)} MiB); live JS heap after each fifth ` +
      `${heapAfterRound.map((m) => mib(m.heapUsed)).join(' / ')} MiB, external ${heapAfterRound.map((m) => mib(m.external)).join(' / ')} MiB; ` +
      `warnings ${health.warnings.length}, ` +
      `uncaught ${health.uncaught.length + health.rejections.length}, warn+ logs ${JSON.stringify(logs.summary())}`)

    assert.deepEqual(completeBad, [], 'every client that read to the end got the whole file')
    assert.deepEqual(Object.keys(statuses), ['200'], 'every response that started was a 200')
    assert.equal(errors['client timed out'], undefined, 'no client waited 30 s')
    assert.equal(stats.timeouts, 0)
    assert.equal(stats.truncations, 0)
    assert.ok(stats.aborts > 0, 'aborts are counted')
    // What a leak would grow: live JS objects and buffers outside the heap.
    // RSS also holds allocator and V8 slack that no gc returns: bounded loosely.
    assert.ok(heapGrowth < 4 * MiB, `live JS heap grew by ${mib(heapGrowth)} MiB after the first fifth (allowed 4)`)
    assert.ok(externalGrowth < 4 * MiB, `external memory grew by ${mib(externalGrowth)} MiB after the first fifth (allowed 4)`)
    assert.ok(rssAfter - rssWorking < RSS_SLACK, `RSS grew by ${mib(rssAfter - rssWorking)} MiB after the first fifth (allowed ${mib(RSS_SLACK)})`)
    assert.ok(rssAfter - base.rss < 2 * RSS_SLACK, `RSS grew by ${mib(rssAfter - base.rss)} MiB in all (allowed ${mib(2 * RSS_SLACK)})`)
    assert.deepEqual(health.warnings, [], 'no process warning')
    assert.deepEqual(health.uncaught.concat(health.rejections), [], 'no uncaught exception or rejection')
    assert.deepEqual(errorLogs, [], 'nothing logged at error level')
  })
}

// ---------------------------------------------------------------------------
// Stalled clients

const STALL_VARIANTS = [
  { name: 'sendfile', options: {}, count: M_STALL, skip: NO_NATIVE },
  { name: 'write fallback, zeroCopy: false', options: { zeroCopy: false }, count: SOAK ? 100 : 20, skip: false }
]

for (const variant of STALL_VARIANTS) {
  test(`stalled clients (${variant.name}): ${variant.count} connections take 64 MiB and stop reading; sendTimeout 500 closes each; another client is served meanwhile`, {
    skip: variant.skip, timeout: SOAK ? 600000 : 60000
  }, async (t) => {
    const label = `stalled clients (${variant.name})`
    const M = variant.count
    await warmUp()
    const logs = captureLogs('warn')
    const app = await startServer(t, { ...variant.options, sendTimeout: 500 }, { fastifyOptions: { logger: logs.logger } })
    const port = app.server.address().port
    const conns = trackConnections(app)
    await fetchOnce(port, 'hello.txt')
    const base = await baseline()
    const health = recordProcessHealth()
    t.after(health.stop)

    const sentAt = new Map()
    const stalled = []
    t.after(() => stalled.forEach((s) => s.destroy()))
    await Promise.all(Array.from({ length: M }, () => new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.pause() // never reads a byte
      socket.on('error', () => {})
      stalled.push(socket)
      socket.once('connect', () => {
        socket.write('GET /64m.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
        sentAt.set(socket.localPort, Date.now())
        resolve()
      })
      socket.once('error', reject)
    })))

    let rssPeak = process.memoryUsage().rss
    const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, process.memoryUsage().rss) }, 20)
    t.after(() => clearInterval(sampler))
    // While they hang: another client gets a full 64 MiB, byte-exact.
    const other = await fetchOnce(port, '64m.bin')
    const otherDoneWhileHanging = conns.open > 1 // some stalled connections were still open when it finished
    assert.equal(other.status, 200)
    assert.equal(other.sha, expected()['64m.bin'].sha, 'the other client is served byte-exact')
    // And each stalled connection is closed by the server around sendTimeout.
    const allClosed = await eventually(() => conns.open === 0, { timeoutMs: 20000, stepMs: 50 })
    clearInterval(sampler)
    assert.ok(allClosed, `stalled connections still open: ${conns.open}`)

    const lifetimes = []
    for (const [localPort, at] of sentAt) {
      const entry = conns.byPort.get(localPort)
      lifetimes.push(entry === undefined || entry.closedAt === 0 ? Infinity : entry.closedAt - at)
    }
    const buckets = { 'under 450 ms': 0, '450-1500 ms': 0, '1.5-5 s': 0, 'over 5 s': 0 }
    for (const ms of lifetimes) {
      if (ms < 450) buckets['under 450 ms']++
      else if (ms < 1500) buckets['450-1500 ms']++
      else if (ms < 5000) buckets['1.5-5 s']++
      else buckets['over 5 s']++
    }
    const stats = app.zeroCopy.stats()
    const rssHanging = rssPeak

    // The clients go: with their unread bytes gone, the leases can go too.
    stalled.forEach((s) => s.resetAndDestroy())
    const state = await assertCleanState(base, label)
    const rssAfter = await settledRss()
    console.log(`${label}: ${M} stalled connections closed by the server after their request: ${JSON.stringify(buckets)}; ` +
      `the other client got 64 MiB byte-exact ${otherDoneWhileHanging ? 'while stalled connections were still open' : '(after they closed)'}`)
    console.log(`${label}: server ${statFigures(stats)}`)
    console.log(`${label}: RSS ${mib(base.rss)} MiB at start, peak ${mib(rssHanging)} MiB while they hung ` +
      `(+${mib(rssHanging - base.rss)} MiB, no gc), ${mib(rssAfter)} MiB after (gc); fds ${state.fds}, leaseHeld ${state.leaseHeld}, ` +
      `LEASE lines ${state.leaseLines}, warnings ${health.warnings.length}, warn+ logs ${JSON.stringify(logs.summary())}`)

    assert.equal(stats.timeouts, M, 'every stalled client is counted as a timeout')
    assert.equal(buckets['under 450 ms'], 0, 'no stalled connection is closed before sendTimeout')
    assert.equal(buckets['over 5 s'], 0, 'every stalled connection is closed within 5 s')
    assert.ok(rssHanging - base.rss < RSS_SLACK + 64 * MiB,
      `RSS while hanging +${mib(rssHanging - base.rss)} MiB (the other client's 64 MiB passes through this process too)`)
    assert.ok(rssAfter - base.rss < RSS_SLACK, `RSS after +${mib(rssAfter - base.rss)} MiB`)
    assert.deepEqual(health.warnings, [])
    assert.deepEqual(health.uncaught.concat(health.rejections), [])
    assert.deepEqual(logs.entries.filter((e) => e.level >= 50), [], 'nothing logged at error level')
  })
}

// ---------------------------------------------------------------------------
// Slow readers

/**
 * Reads the response at `rate` bytes/s, at most `chunk` bytes per read (a
 * fixed onread buffer), pausing the socket between reads.
 */
function slowReader (port, name, rate, chunk) {
  return new Promise((resolve, reject) => {
    const parts = []
    let received = 0
    let pauses = 0
    let start = 0
    const buffer = Buffer.alloc(chunk)
    const socket = net.connect({
      port,
      host: '127.0.0.1',
      onread: {
        buffer,
        callback: (n, buf) => {
          parts.push(Buffer.from(buf.subarray(0, n)))
          received += n
          const wait = start + received / rate * 1000 - Date.now()
          if (wait > 0) {
            pauses++
            socket.pause()
            setTimeout(() => socket.resume(), wait)
          }
        }
      }
    })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`slow reader of ${name} timed out with ${received} bytes`))
    }, 60000)
    socket.on('connect', () => {
      start = Date.now()
      socket.write(`GET /${name} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      const [res] = parseResponses(Buffer.concat(parts), ['GET'])
      resolve({ res, received, pauses, reads: parts.length })
    })
  })
}

test('slow readers: 4 x 64 KiB at 32 KiB/s and 2 x 4 MiB at 2 MiB/s (sendTimeout 1000) complete byte-exact', {
  timeout: 60000
}, async (t) => {
  await warmUp()
  const dir = tmpDir('slow-')
  const small = patternBytes(64 * 1024, 64)
  const medium = patternBytes(4 * MiB, 4)
  fs.writeFileSync(path.join(dir, 'r64k.bin'), small)
  fs.writeFileSync(path.join(dir, 'r4m.bin'), medium)
  const app = await startServer(t, { root: dir, sendTimeout: 1000 })
  const port = app.server.address().port
  const readers = [
    ...Array.from({ length: 4 }, () => ['r64k.bin', small, 32 * 1024, 1024]),
    ...Array.from({ length: 2 }, () => ['r4m.bin', medium, 2 * MiB, 16 * 1024])
  ]
  const results = await Promise.all(readers.map(([name, , rate, chunk]) => slowReader(port, name, rate, chunk)))
  const stats = app.zeroCopy.stats()
  console.log(`slow readers: ${results.length} readers, reads ${results.map((r) => r.reads).join('/')}, ` +
    `throttling pauses ${results.map((r) => r.pauses).join('/')}, bytes ${results.map((r) => r.received).join('/')}; ` +
    `server ${statFigures(stats)}`)
  for (const [i, r] of results.entries()) {
    const [name, bytes] = readers[i]
    assert.ok(r.res, `reader ${i} (${name}) got a response`)
    assert.equal(r.res.status, 200)
    assert.equal(r.res.body.length, bytes.length, `reader ${i} (${name}) got every byte`)
    assert.ok(r.res.body.equals(bytes), `reader ${i} (${name}) byte-exact`)
  }
  if (native.binding !== null) assert.equal(stats.responses.sendfile, readers.length)
  assert.equal(stats.timeouts, 0, 'no slow reader was taken for a stalled one')
  assert.equal(stats.aborts, 0)
})

// ---------------------------------------------------------------------------
// Server shutdown with transfers in flight

test('shutdown: close() with 16 transfers in flight (forceCloseConnections) resolves within 10 s, leaves no lease and no fd', {
  skip: NO_NATIVE, timeout: 60000
}, async (t) => {
  await warmUp()
  const base = await baseline() // before the server exists: close() must give back everything
  const health = recordProcessHealth()
  t.after(health.stop)
  const app = Fastify({ forceCloseConnections: true })
  await app.register(zeroCopy, { root: fixtures() })
  app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  const port = app.server.address().port

  const clients = []
  t.after(() => clients.forEach(({ c }) => c.destroy()))
  // 6 readers throttled to ~32 MiB/s (a 64 MiB body takes ~2 s), 6 that
  // stopped reading, 2 idle keep-alive connections after a response,
  // 2 with three 64 MiB requests pipelined.
  for (let i = 0; i < 6; i++) {
    const c = new RawClient(port)
    c.socket.on('data', () => {
      c.socket.pause()
      setTimeout(() => c.socket.resume(), 2)
    })
    c.send([['GET', '/64m.bin']])
    clients.push({ c, kind: 'reading' })
  }
  for (let i = 0; i < 6; i++) {
    const c = new RawClient(port)
    c.send([['GET', '/64m.bin']])
    clients.push({ c, kind: 'stopped' })
  }
  for (let i = 0; i < 2; i++) {
    const c = new RawClient(port)
    c.send([['GET', '/4k.bin']])
    clients.push({ c, kind: 'idle' })
  }
  for (let i = 0; i < 2; i++) {
    const c = new RawClient(port)
    c.send([['GET', '/64m.bin'], ['GET', '/64m.bin'], ['GET', '/64m.bin']])
    clients.push({ c, kind: 'pipelined' })
  }
  await Promise.all(clients.map(({ c, kind }) => c.until((x) => kind === 'idle'
    ? x.responses.length === 1 && x.responses[0].done
    : x.responses.length >= 1 && x.responses[0].received >= 256 * 1024, { what: `${kind} client started` })))
  for (const { c, kind } of clients) if (kind === 'stopped') c.socket.pause()
  await sleep(100)
  const inFlight = clients.filter(({ c }) => c.responses.length > 0 && !c.responses[c.responses.length - 1].done).length
  const leasesDuring = leaseHeld()

  const t0 = Date.now()
  await app.close()
  const closeMs = Date.now() - t0

  // Past the 500 ms linger, a lease is still held while a stopped client on
  // this host has not read its bytes (integrity 'strict': the pages it holds
  // are the file's). Reported, by design.
  await sleep(800)
  const leasesWhileStopped = leaseHeld()
  const leaseLinesWhileStopped = leaseLinesOf(process.pid).length

  // Stopped clients read what they were sent and see the end.
  for (const { c } of clients) c.socket.resume()
  await Promise.all(clients.map(({ c }) => c.closedWithin(15000)))
  const outcomes = {}
  for (const { c, kind } of clients) {
    const done = c.responses.filter((r) => r.done).length
    bump(outcomes, `${kind}: ${done}/${c.parser.responses.length + c.parser.queue.length} responses complete`)
    for (const r of c.responses) {
      if (r.done) assert.equal(r.sha, expected()[r.length === 4096 ? '4k.bin' : '64m.bin'].sha, `${kind}: a complete body is byte-exact`)
    }
  }
  const state = await assertCleanState(base, 'after close()')
  console.log(`shutdown: close() resolved in ${closeMs} ms with ${inFlight} transfers in flight (${leasesDuring} leases held); ` +
    `0.8 s after close(), with 6 stopped clients not reading: leaseHeld ${leasesWhileStopped}, LEASE lines ${leaseLinesWhileStopped}; ` +
    `clients ${JSON.stringify(outcomes)}; fds ${state.fds}, leaseHeld ${state.leaseHeld}, LEASE lines ${state.leaseLines}, ` +
    `warnings ${health.warnings.length}`)
  assert.ok(inFlight >= 12, `transfers in flight at close(): ${inFlight}`)
  assert.ok(closeMs < 10000, `close() took ${closeMs} ms`)
  assert.deepEqual(health.warnings, [])
  assert.deepEqual(health.uncaught.concat(health.rejections), [])
})

// ---------------------------------------------------------------------------
// fd exhaustion (child process with RLIMIT_NOFILE 64)

const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0
const FD_FILES = 150
const SPARSE = 16 * MiB // well past what a non-reading client's buffers take: the transfer stays in flight

let fdRoot = null
function fdExhaustionRoot () {
  if (fdRoot !== null) return fdRoot
  const dir = tmpDir('fds-')
  for (let i = 0; i < FD_FILES; i++) {
    const file = path.join(dir, `f${i}.bin`)
    fs.writeFileSync(file, `file ${i}\n`)
    fs.truncateSync(file, SPARSE) // sparse: no disk, zeros after the first line
  }
  fs.writeFileSync(path.join(dir, 'small.txt'), 'small and whole\n')
  fdRoot = dir
  return dir
}

/** [from, from + 1, ..., to - 1] */
const range = (from, to) => Array.from({ length: to - from }, (_, k) => from + k)

const sparseShas = new Map()
/** sha256 of f<i>.bin without reading it from disk. */
function sparseSha (i) {
  if (!sparseShas.has(i)) sparseShas.set(i, computeSparseSha(i))
  return sparseShas.get(i)
}
function computeSparseSha (i) {
  const h = crypto.createHash('sha256')
  const head = Buffer.from(`file ${i}\n`)
  h.update(head)
  const zeros = Buffer.alloc(MiB)
  let left = SPARSE - head.length
  while (left > 0) {
    const n = Math.min(left, zeros.length)
    h.update(n === zeros.length ? zeros : zeros.subarray(0, n))
    left -= n
  }
  return h.digest('hex')
}

/**
 * One client of the ramp: reads the status line and head; on a 200 stops
 * reading (its transfer stays in flight), on anything else closes.
 */
function rampClient (port, i) {
  return new Promise((resolve) => {
    const r = { i, status: 0, head: '', body: Buffer.alloc(0), closed: false, error: null, received: 0, socket: null, hash: crypto.createHash('sha256') }
    const socket = net.connect(port, '127.0.0.1')
    r.socket = socket
    let buf = Buffer.alloc(0)
    const settle = () => { clearTimeout(timer); resolve(r) }
    const timer = setTimeout(settle, 10000)
    socket.on('connect', () => socket.write(`GET /f${i}.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`))
    socket.on('data', (d) => {
      if (r.status === 0) {
        buf = Buffer.concat([buf, d])
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        r.head = buf.subarray(0, end).toString('latin1')
        r.status = Number(r.head.split(' ')[1])
        d = buf.subarray(end + 4)
        if (r.status === 200) {
          socket.pause()
        } else {
          r.body = Buffer.from(d)
          // A real client would come back after Retry-After: this one goes.
          setImmediate(() => socket.destroy())
        }
        settle()
      }
      if (r.status === 200) {
        r.received += d.length
        r.hash.update(d)
      }
    })
    socket.on('error', (err) => { r.error = r.error ?? err.code })
    socket.on('close', () => {
      r.closed = true
      settle()
    })
  })
}

/** Classifies a client's answer: 200, 503 with code and Retry-After, dropped, or something else. */
function classifyUnderLoad (r, other) {
  if (r.status === 200) return '200'
  if (r.status === 503) {
    let body = {}
    try { body = JSON.parse(r.body.toString()) } catch {}
    if (body.code === 'FST_ZEROCOPY_UNAVAILABLE' && /\r\nretry-after: *\d+/i.test(r.head)) return '503 FST_ZEROCOPY_UNAVAILABLE + Retry-After'
    other.push(`503 without the code or Retry-After: ${r.head.split('\r\n').join(' | ')} ${r.body}`)
    return 'other'
  }
  if (r.status === 0 && r.closed) return 'connection dropped without a response'
  other.push(`client ${r.i}: status ${r.status}, closed ${r.closed}, error ${r.error}`)
  return 'other'
}

/**
 * How many transfers the server holds at once: slow clients (each a
 * different file, reading nothing after its head) are added one at a time,
 * each once the server is quiet again (no pool read running, no lease but
 * theirs), until one gets no 200. Each step's accept and open then find
 * only the fds of the transfers already held, so the count depends on the
 * fds the server holds, not on timing. Resolves with the count and the
 * clients (the held 200s paused).
 */
async function transferCapacity (server, port, files) {
  const clients = []
  const refused = (await server.stats()).stats.leases.refused.other // no fd for the lease: sent without
  for (const i of files) {
    const r = await rampClient(port, i)
    clients.push(r)
    if (r.status !== 200) break
    await eventually(async () => {
      const s = await server.stats()
      return s.coldPending === 0 && s.held + s.stats.leases.refused.other - refused === clients.length
    }, { timeoutMs: 10000, stepMs: 20 })
  }
  const held = clients.filter((r) => r.status === 200)
  return { count: held.length, clients, held, last: clients[clients.length - 1] }
}

/** Lets held clients read to the end; those that got their file whole. */
async function drainWhole (held) {
  for (const r of held) r.socket.resume()
  await Promise.all(held.map((r) => new Promise((resolve) => {
    const timer = setTimeout(resolve, 20000)
    const check = () => {
      if (r.received >= SPARSE || r.closed) {
        clearTimeout(timer)
        resolve()
      }
    }
    r.socket.on('data', () => setImmediate(check))
    r.socket.on('close', check)
    check()
  })))
  return held.filter((r) => r.received === SPARSE && r.hash.copy().digest('hex') === sparseSha(r.i))
}

// The bound: up to 62 s measured under stress-ng --cpu 2 on 2 cores before
// the two capacity probes were added (about 5 s more alone).
test('fd exhaustion: a server under RLIMIT_NOFILE 64 answers 503 + Retry-After (or the kernel/libuv drops the connection), then recovers', {
  skip: NO_NATIVE || (!hasPrlimit && 'prlimit is not installed'), timeout: 150000
}, async (t) => {
  const root = fdExhaustionRoot()
  const server = await startChildServer(root, {}, { nofile: 64 })
  t.after(() => server.close())
  assert.equal(server.nofile, 64, 'the child runs with RLIMIT_NOFILE 64')
  const port = server.port
  // Warm up: the root's fd, the lease thread's pipe and sock_diag socket.
  await fetchOnce(port, 'small.txt')
  const warm = new RawClient(port)
  warm.send([['GET', '/f149.bin']])
  await warm.until((x) => x.bytes > 3 * MiB, { what: 'part of f149.bin' })
  warm.socket.resetAndDestroy()
  await warm.closedWithin()
  await sleep(700)
  const start = await server.stats()
  const other = []

  // What "recovered" is measured against: how many transfers the fresh
  // server holds at once before it answers 503 (f120-f134: files no other
  // phase asks for, as cold as f135-f149 the probe after the load uses).
  // (Its clients just go: phase A checks that held 200s end whole.)
  const before = await transferCapacity(server, port, range(120, 135))
  before.clients.forEach((r) => r.socket.destroy())
  await eventually(async () => (await server.stats()).fds <= start.fds, { timeoutMs: 10000, stepMs: 100 })

  // Phase A, slow clients: one new connection every 5 ms, each for a
  // different 16 MiB file; a client that gets its 200 stops reading, so
  // its transfer (socket, file, lease, poll) stays open.
  const clients = []
  t.after(() => clients.forEach((r) => r.socket.destroy()))
  const pending = []
  for (let i = 0; i < 120; i++) {
    pending.push(rampClient(port, i).then((r) => clients.push(r)))
    await sleep(5)
  }
  await Promise.all(pending)
  clients.sort((a, b) => a.i - b.i)
  const loaded = await server.stats()
  const rampOutcome = {}
  for (const r of clients) bump(rampOutcome, classifyUnderLoad(r, other))

  // The load drops: the held 200s read to the end (each should be whole).
  const held = clients.filter((r) => r.status === 200)
  const whole = await drainWhole(held)
  const cut = held.filter((r) => r.received < SPARSE).map((r) => r.received)
  clients.forEach((r) => r.socket.destroy())
  await eventually(async () => (await server.stats()).fds <= start.fds, { timeoutMs: 10000, stepMs: 100 })

  // Phase B, the table filled by connections: 80 connect at once and stay
  // idle; then each one still open asks for a file.
  const idle = await Promise.all(Array.from({ length: 80 }, (_, k) => new Promise((resolve) => {
    const r = { i: 200 + k, status: 0, head: '', body: Buffer.alloc(0), closed: false, error: null, socket: null }
    const socket = net.connect(port, '127.0.0.1')
    r.socket = socket
    socket.on('error', (err) => { r.error = r.error ?? err.code })
    socket.on('close', () => { r.closed = true })
    socket.once('connect', () => resolve(r))
    socket.once('error', () => resolve(r))
  })))
  t.after(() => idle.forEach((r) => r.socket.destroy()))
  await sleep(300) // libuv accepts what it can, and drops the rest
  await Promise.all(idle.map((r) => new Promise((resolve) => {
    if (r.closed) return resolve()
    let buf = Buffer.alloc(0)
    const timer = setTimeout(resolve, 5000)
    r.socket.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      const end = buf.indexOf('\r\n\r\n')
      if (end >= 0 && r.status === 0) {
        r.head = buf.subarray(0, end).toString('latin1')
        r.status = Number(r.head.split(' ')[1])
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(r.head)?.[1] ?? 0)
        if (r.status !== 200 && buf.length >= end + 4 + length) {
          r.body = buf.subarray(end + 4, end + 4 + length)
          clearTimeout(timer)
          resolve()
        } else if (r.status === 200) {
          clearTimeout(timer)
          resolve()
        }
      }
    })
    r.socket.on('close', () => {
      clearTimeout(timer)
      resolve()
    })
    r.socket.write(`GET /f${r.i - 200}.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  })))
  const filled = await server.stats()
  const idleOutcome = {}
  for (const r of idle) bump(idleOutcome, classifyUnderLoad(r, other))
  idle.forEach((r) => r.socket.destroy())
  await eventually(async () => (await server.stats()).fds <= start.fds, { timeoutMs: 10000, stepMs: 100 })
  const relieved = await server.stats()

  // Full recovery: 20 requests one after the other, then as many
  // transfers at once as the fresh server held. (A fixed number at once,
  // such as 8 cold 16 MiB files, is no measure of recovery: each in-flight
  // transfer holds 4 fds (socket, file, lease, the transfer's dup of the
  // socket) and 2 more while a pool read runs (its dup of the file,
  // /dev/null), so 8 need 32 to 48 of the 64 - 26 free ones, and a fresh
  // server served all 8 or answered a 503 depending on how the requests
  // interleaved.)
  const recovery = { sequential: 0 }
  for (let i = 0; i < 20; i++) {
    const res = await fetchOnce(port, i % 5 !== 0 ? 'small.txt' : `f${i}.bin`)
    if (res.status === 200 && res.done && (i % 5 !== 0 ? res.length === 16 : res.sha === sparseSha(i))) recovery.sequential++
  }
  await eventually(async () => (await server.stats()).held === 0, { timeoutMs: 10000, stepMs: 50 })
  const after = await transferCapacity(server, port, range(135, 150))
  t.after(() => after.clients.forEach((r) => r.socket.destroy()))
  const afterWhole = (await drainWhole(after.held)).length
  after.clients.forEach((r) => r.socket.destroy())
  await eventually(async () => (await server.stats()).held === 0, { timeoutMs: 10000, stepMs: 50 })
  const end = await server.stats()

  console.log(`fd exhaustion: RLIMIT_NOFILE ${server.nofile}, server fds at start ${start.fds}`)
  console.log(`fd exhaustion, phase A (120 slow clients ramped up, different files): ${JSON.stringify(rampOutcome)}; ` +
    `the ${held.length} held 200s, once read: ${whole.length} whole and byte-exact, ${cut.length} cut short ` +
    `(bytes received: ${[...new Set(cut)].join(', ') || 'none'}); server ${statFigures(loaded.stats)}; error logs ${JSON.stringify(loaded.logErrors)}`)
  console.log(`fd exhaustion, phase B (80 idle connections, then a request on each): ${JSON.stringify(idleOutcome)}; ` +
    `error logs ${JSON.stringify(filled.logErrors)}`)
  console.log(`fd exhaustion: after the load server fds ${relieved.fds}, leases held ${relieved.held}; recovery: ` +
    `${recovery.sequential}/20 sequential requests served whole; transfers held at once ${before.count} before the load ` +
    `(then ${before.last.status || 'dropped'}), ${after.count} after (${afterWhole} whole, then ${after.last.status || 'dropped'}); ` +
    `at the end fds ${end.fds}, leases held ${end.held}, uncaught ${end.errors.length}, warnings ${end.warnings.length}, alive ${server.alive()}`)

  assert.deepEqual(other, [], 'every answer is a 200, a 503 with the code and Retry-After, or a dropped connection')
  assert.ok(rampOutcome['200'] > 0, 'phase A: requests within the limit are served')
  assert.ok(cut.length + (rampOutcome['503 FST_ZEROCOPY_UNAVAILABLE + Retry-After'] ?? 0) +
    (rampOutcome['connection dropped without a response'] ?? 0) > 0, 'phase A reaches the limit')
  assert.ok(idleOutcome['503 FST_ZEROCOPY_UNAVAILABLE + Retry-After'] > 0, 'phase B: requests beyond the limit get 503')
  assert.equal(recovery.sequential, 20, 'after the load every sequential request is served whole')
  assert.ok(before.count >= 4 && before.count < 15 && before.last.status !== 200, `the fresh server holds ${before.count} transfers, then refuses`)
  assert.ok(after.count >= before.count, `after the load the server holds as many transfers at once as before: ${after.count} vs ${before.count}`)
  assert.equal(afterWhole, after.count, 'each transfer held after the load completes whole')
  assert.deepEqual(end.errors, [], 'no uncaught exception in the server')
  assert.ok(server.alive())
  assert.equal(end.held, 0, 'no lease left in the server')
  // The open-file cache keeps fds on purpose (counted in its stats).
  const outsideCache = (s) => s.fds - s.stats.cache.fds
  assert.ok(outsideCache(end) <= outsideCache(start), `server fds outside the cache ${outsideCache(end)} back to ${outsideCache(start)}`)

  await t.test('every 200 started under fd pressure completes whole: requests beyond the limit get 503, not a 200 cut short', () => {
    assert.equal(cut.length, 0, `${cut.length} of ${held.length} 200 responses were cut short after ${[...new Set(cut)].join(', ')} bytes; ` +
      `server error logs ${JSON.stringify(loaded.logErrors)}`)
  })
})

test('fd exhaustion, exact: with 1, 2 or 3 fds free, a request gets a 503 or its whole file, never a 200 cut short', {
  skip: NO_NATIVE || (!hasPrlimit && 'prlimit is not installed'),
  timeout: 60000
}, async (t) => {
  const root = fdExhaustionRoot()
  // One child server per case, all three at once.
  const rows = await Promise.all([1, 2, 3].map(async (free) => {
    const server = await startChildServer(root, {}, { nofile: 64 })
    t.after(() => server.close())
    const port = server.port
    await fetchOnce(port, 'small.txt')
    const warm = new RawClient(port)
    warm.send([['GET', '/f149.bin']])
    await warm.until((x) => x.bytes > 3 * MiB, { what: 'part of f149.bin' })
    warm.socket.resetAndDestroy()
    await warm.closedWithin()
    await sleep(700)
    // Fill the fd table with idle connections: libuv accepts until EMFILE
    // and drops the rest.
    const idle = await Promise.all(Array.from({ length: 60 }, () => new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      const entry = { socket, closed: false }
      socket.on('error', () => {})
      socket.on('close', () => { entry.closed = true })
      socket.once('connect', () => resolve(entry))
      socket.once('error', () => resolve(entry))
    })))
    t.after(() => idle.forEach((e) => e.socket.destroy()))
    await sleep(300)
    const open = idle.filter((e) => !e.closed)
    // Give `free` fds back.
    for (const e of open.slice(0, free)) e.socket.destroy()
    await sleep(300)
    const c = new RawClient(port)
    t.after(() => c.destroy())
    c.send([['GET', '/f1.bin']], { lastClose: true })
    try {
      await c.closedWithin(15000)
    } catch {}
    const r = c.responses[0]
    idle.forEach((e) => e.socket.destroy())
    await sleep(300)
    const stats = await server.stats()
    await server.close()
    return {
      free,
      idleHeld: open.length,
      status: r?.status ?? 0,
      retryAfter: r?.headers['retry-after'],
      length: r?.length ?? 0,
      received: r?.received ?? 0,
      whole: r?.done === true && r.status === 200 && r.sha === sparseSha(1),
      logErrors: stats.logErrors,
      leasesRefused: stats.stats.leases.refused.other
    }
  }))
  for (const row of rows) {
    console.log(`fd exhaustion, exact: ${row.free} fd(s) free (${row.idleHeld} idle connections held) -> ${row.status}` +
      `${row.retryAfter ? ` Retry-After ${row.retryAfter}` : ''}, content-length ${row.length}, received ${row.received}` +
      `${row.status === 200 ? (row.whole ? ' (whole, byte-exact)' : ' (CUT SHORT)') : ''}; lease refusals (other) ${row.leasesRefused}; ` +
      `server error logs ${JSON.stringify(row.logErrors)}`)
  }
  for (const row of rows) {
    assert.ok((row.status === 503 && row.retryAfter !== undefined) || row.whole,
      `${row.free} fd(s) free: got ${row.status} with ${row.received} of ${row.length} bytes`)
  }
})

// ---------------------------------------------------------------------------
// Files past 4 GiB

const HUGE = 5 * GiB
const MARKS = [
  [0, 'ZC-MARK-START'],
  [2 ** 32 - 3, 'ZC-MARK-ACROSS-4GIB'], // straddles 2^32
  [4.5 * GiB, 'ZC-MARK-4.5GIB'],
  [HUGE - 12, 'ZC-MARK-END']
]

test('huge files: a sparse 5 GiB file, Range requests past and across 4 GiB, byte-exact via sendfile', {
  skip: NO_NATIVE, timeout: SOAK ? 600000 : 60000
}, async (t) => {
  const dir = tmpDir('huge-')
  const file = path.join(dir, 'huge.bin')
  const fd = fs.openSync(file, 'w')
  for (const [at, mark] of MARKS) fs.writeSync(fd, Buffer.from(mark), 0, mark.length, at)
  fs.closeSync(fd)
  fs.truncateSync(file, HUGE)
  assert.equal(fs.statSync(file).size, HUGE)
  const rfd = fs.openSync(file, 'r')
  t.after(() => fs.closeSync(rfd))
  const slice = (start, end) => { // inclusive end, as in Range
    const buf = Buffer.alloc(end - start + 1)
    let got = 0
    while (got < buf.length) got += fs.readSync(rfd, buf, got, buf.length - got, start + got)
    return buf
  }

  const app = await startServer(t, { root: dir })
  const port = app.server.address().port
  const ranges = [
    ['past 4 GiB', 2 ** 32, 2 ** 32 + 99],
    ['across 4 GiB (marker)', 2 ** 32 - 3, 2 ** 32 - 3 + MARKS[1][1].length - 1],
    ['across 4 GiB, 16 bytes', 2 ** 32 - 8, 2 ** 32 + 7],
    ['the 4.5 GiB marker', 4.5 * GiB, 4.5 * GiB + MARKS[2][1].length - 1],
    ['the last 12 bytes (suffix)', HUGE - 12, HUGE - 1, 'bytes=-12'],
    ['open-ended past 5 GiB - 1 MiB', HUGE - MiB, HUGE - 1, `bytes=${HUGE - MiB}-`],
    ['64 MiB across 4 GiB (event-loop transfer)', 2 ** 32 - 32 * MiB, 2 ** 32 + 32 * MiB - 1],
    ['past 4 GiB, end past the file', 4.75 * GiB, HUGE - 1, `bytes=${4.75 * GiB}-${HUGE + 1000}`]
  ]
  const before = app.zeroCopy.stats()
  const figures = []
  for (const [label, start, end, header] of ranges) {
    const c = new RawClient(port)
    t.after(() => c.destroy())
    c.parser.expect('GET')
    c.socket.write(`GET /huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: ${header ?? `bytes=${start}-${end}`}\r\nConnection: close\r\n\r\n`)
    await c.until((x) => x.responses.length === 1 && x.responses[0].done, { timeoutMs: 30000, what: label })
    const r = c.responses[0]
    assert.equal(r.status, 206, label)
    assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${HUGE}`, label)
    assert.equal(r.length, end - start + 1, label)
    assert.equal(r.sha, sha256(slice(start, end)), `${label}: the bytes equal a readSync of the same range`)
    figures.push(`${label}: ${r.length} bytes`)
  }
  // The markers themselves, as text.
  for (const [at, mark] of MARKS) {
    const c = new RawClient(port, { keep: true })
    t.after(() => c.destroy())
    c.parser.expect('GET')
    c.socket.write(`GET /huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=${at}-${at + mark.length - 1}\r\nConnection: close\r\n\r\n`)
    await c.until((x) => x.responses.length === 1 && x.responses[0].done, { what: mark })
    assert.equal(Buffer.concat(c.responses[0].chunks).toString(), mark)
  }
  // HEAD shows the 5 GiB length; a range past the end is a 416 naming it.
  const head = await fetchOnce(port, 'huge.bin', 'HEAD')
  assert.equal(head.headers['content-length'], String(HUGE))
  const past = await rawExchange(port, `GET /huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=${HUGE}-\r\nConnection: close\r\n\r\n`)
  const [unsatisfiable] = parseResponses(past, ['GET'])
  assert.equal(unsatisfiable.status, 416)
  assert.equal(unsatisfiable.headers['content-range'], `bytes */${HUGE}`)
  // If-Range with the current ETag keeps the range past 4 GiB.
  const etag = head.headers.etag
  const ifRange = new RawClient(port)
  t.after(() => ifRange.destroy())
  ifRange.parser.expect('GET')
  ifRange.socket.write(`GET /huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=${2 ** 32}-${2 ** 32 + 9}\r\nIf-Range: ${etag}\r\nConnection: close\r\n\r\n`)
  await ifRange.until((x) => x.responses.length === 1 && x.responses[0].done, { what: 'If-Range past 4 GiB' })
  assert.equal(ifRange.responses[0].status, 206)
  assert.equal(ifRange.responses[0].headers['content-range'], `bytes ${2 ** 32}-${2 ** 32 + 9}/${HUGE}`)

  let full = null
  if (SOAK) {
    const expectedSha = crypto.createHash('sha256')
    const chunk = Buffer.alloc(64 * MiB)
    for (let at = 0; at < HUGE; at += chunk.length) {
      const n = fs.readSync(rfd, chunk, 0, Math.min(chunk.length, HUGE - at), at)
      expectedSha.update(chunk.subarray(0, n))
    }
    full = await fetchOnce(port, 'huge.bin')
    assert.equal(full.length, HUGE)
    assert.equal(full.sha, expectedSha.digest('hex'), 'the full 5 GiB GET is byte-exact')
  }
  const after = app.zeroCopy.stats()
  const sendfileResponses = after.responses.sendfile - before.responses.sendfile
  const sendfileBytes = after.bytes.sendfile - before.bytes.sendfile
  const wantBytes = ranges.reduce((n, [, s, e]) => n + e - s + 1, 0) + MARKS.reduce((n, [, m]) => n + m.length, 0) + 10 + (full ? HUGE : 0)
  console.log(`huge files: 5 GiB sparse file; ${ranges.length + MARKS.length} Range responses byte-exact (${figures.join('; ')}); ` +
    `markers read back ${MARKS.length}/${MARKS.length}; HEAD content-length ${head.headers['content-length']}; ` +
    `bytes=${HUGE}- -> ${unsatisfiable.status} ${unsatisfiable.headers['content-range']}; If-Range + range past 4 GiB -> ${ifRange.responses[0].status}; full GET ${SOAK ? `${HUGE} bytes byte-exact` : 'not run (ZC_SOAK=1 runs it)'}; ` +
    `sendfile responses ${sendfileResponses}, sendfile bytes ${sendfileBytes} (expected ${wantBytes}), write responses ${after.responses.write - before.responses.write}`)
  assert.equal(sendfileResponses, ranges.length + MARKS.length + 1 + (full ? 1 : 0), 'every range went through sendfile')
  assert.equal(sendfileBytes, wantBytes)
  assert.equal(after.responses.write, before.responses.write, 'no write fallback')
})

// ---------------------------------------------------------------------------
// Files that disappear or are replaced mid-transfer

test('disappearing files: unlink during a 64 MiB transfer, and rename-replace during another: old bytes to the end, new file next', {
  timeout: 60000
}, async (t) => {
  await warmUp()
  const dir = tmpDir('vanish-')
  const OLD = patternBytes(64 * MiB, 0x01d)
  const NEW = patternBytes(64 * MiB, 0x0e3)
  const OLD_SHA = sha256(OLD)
  const NEW_SHA = sha256(NEW)
  fs.writeFileSync(path.join(dir, 'gone.bin'), OLD)
  fs.writeFileSync(path.join(dir, 'swap.bin'), OLD)
  fs.writeFileSync(path.join(dir, 'warm.txt'), 'warm\n')
  // Every request looks at the path again: the unlink and rename-replace
  // below are what only a stat() sees, and the default cache does that at
  // most once a second (its freshness bound: test/file-cache.test.js).
  const app = await startServer(t, { root: dir, cache: { validateMs: 0 } })
  const port = app.server.address().port
  await fetchOnce(port, 'warm.txt') // the root's fd is opened and kept from here
  const base = await baseline()

  const startPaused = async (name) => {
    const c = new RawClient(port)
    t.after(() => c.destroy())
    c.send([['GET', `/${name}`]], { lastClose: true })
    await c.until((x) => x.responses.length === 1 && x.responses[0].received >= MiB, { what: `the start of ${name}` })
    c.socket.pause()
    return c
  }
  const finish = async (c, label) => {
    c.socket.resume()
    await c.until((x) => x.responses[0].done, { timeoutMs: 30000, what: label })
    await c.closedWithin()
    return c.responses[0]
  }

  // 1. unlink mid-transfer.
  const a = await startPaused('gone.bin')
  const atUnlink = a.responses[0].received
  fs.unlinkSync(path.join(dir, 'gone.bin'))
  const missing = await fetchOnce(port, 'gone.bin')
  const aRes = await finish(a, 'gone.bin after unlink')

  // 2. rename-replace mid-transfer: the next request gets the new file.
  const b = await startPaused('swap.bin')
  const atRename = b.responses[0].received
  fs.writeFileSync(path.join(dir, 'swap.bin.tmp'), NEW)
  fs.renameSync(path.join(dir, 'swap.bin.tmp'), path.join(dir, 'swap.bin'))
  const next = await fetchOnce(port, 'swap.bin') // while the old transfer is still paused
  const bRes = await finish(b, 'swap.bin after rename')
  const stats = app.zeroCopy.stats()
  const state = await assertCleanState(base, 'after the disappearing files')

  console.log(`disappearing files: unlinked after ${atUnlink} bytes -> transfer ended with ${aRes.received} bytes, ` +
    `${aRes.sha === OLD_SHA ? 'all old' : 'NOT the old file'}; a new request for the unlinked name -> ${missing.status}; ` +
    `replaced after ${atRename} bytes -> transfer ended with ${bRes.received} bytes, ${bRes.sha === OLD_SHA ? 'all old' : 'NOT the old file'}; ` +
    `the next request -> ${next.status}, ${next.sha === NEW_SHA ? 'the new file' : next.sha === OLD_SHA ? 'the OLD file' : 'other bytes'}; ` +
    `server ${statFigures(stats)}; fds ${state.fds}, leaseHeld ${state.leaseHeld}`)
  assert.equal(aRes.status, 200)
  assert.equal(aRes.received, OLD.length)
  assert.equal(aRes.sha, OLD_SHA, 'the unlinked file is sent whole, old bytes')
  assert.equal(missing.status, 404)
  assert.equal(bRes.sha, OLD_SHA, 'the replaced file is sent whole, old bytes')
  assert.equal(next.status, 200)
  assert.equal(next.sha, NEW_SHA, 'the next request gets the new file')
  assert.equal(stats.truncations, 0)
  assert.equal(stats.aborts, 0)
})

// ---------------------------------------------------------------------------
// Files sendfile refuses or misreports: /proc, sysfs, devices

test('files sendfile refuses: /proc and sysfs files (no root) never hang and never 5xx', { timeout: 60000 }, async (t) => {
  const candidates = [
    '/proc/self/status', '/proc/self/stat', '/proc/version', '/proc/self/maps', '/proc/self/environ', '/proc/self/mem',
    '/sys/devices/system/cpu/online', '/sys/kernel/mm/transparent_hugepage/enabled', '/dev/null', '/dev/zero', '/proc/self'
  ].filter((p) => fs.existsSync(p))
  const logs = captureLogs('warn')
  const health = recordProcessHealth()
  t.after(health.stop)
  const results = []
  for (const zeroCopyOn of [true, false]) {
    const app = Fastify({ logger: logs.logger })
    await app.register(zeroCopy, { zeroCopy: zeroCopyOn })
    app.get('/file', (req, reply) => reply.sendFileZeroCopy(req.query.p))
    await app.listen({ port: 0, host: '127.0.0.1' })
    t.after(() => app.close())
    const port = app.server.address().port
    for (const p of candidates) {
      for (const range of [null, 'bytes=0-9']) {
        const c = new RawClient(port)
        t.after(() => c.destroy())
        c.parser.expect('GET')
        c.socket.write(`GET /file?p=${encodeURIComponent(p)} HTTP/1.1\r\nHost: 127.0.0.1\r\n${range ? `Range: ${range}\r\n` : ''}Connection: close\r\n\r\n`)
        let hung = false
        try {
          await c.closedWithin(10000)
        } catch {
          hung = true
        }
        const r = c.responses[0]
        results.push({
          p,
          transport: zeroCopyOn ? 'sendfile' : 'write',
          range,
          hung,
          status: r?.status ?? 0,
          length: r?.length ?? -1,
          received: r?.received ?? 0,
          complete: r?.done ?? false
        })
      }
    }
    results.push({ stats: app.zeroCopy.stats(), transport: zeroCopyOn ? 'sendfile' : 'write' })
  }
  for (const r of results) {
    if (r.stats) console.log(`files sendfile refuses: ${r.transport} server ${statFigures(r.stats)}`)
    else {
      console.log(`files sendfile refuses: ${r.transport} ${r.p}${r.range ? ` (${r.range})` : ''} -> ${r.status}, ` +
        `content-length ${r.length}, received ${r.received}${r.complete ? '' : ' (body cut short)'}${r.hung ? ' HUNG' : ''}`)
    }
  }
  console.log(`files sendfile refuses: warn+ logs ${JSON.stringify(logs.summary())}`)
  const rows = results.filter((r) => !r.stats)
  assert.deepEqual(rows.filter((r) => r.hung).map((r) => r.p), [], 'no request hangs')
  assert.deepEqual(rows.filter((r) => r.status >= 500 || r.status === 0).map((r) => `${r.transport} ${r.p} ${r.status}`), [], 'no 5xx, always an answer')
  const status = rows.find((r) => r.p === '/proc/self/status' && r.range === null && r.transport === 'sendfile')
  assert.equal(status.status, 200, '/proc/self/status: 200 (its fstat size is 0)')
  assert.deepEqual(health.uncaught.concat(health.rejections), [])

  await t.test('a file whose fstat size is larger than its content (sysfs: 4096) is not answered 200 with a body cut short', () => {
    const sysfs = rows.filter((r) => r.p.startsWith('/sys/') && r.status === 200)
    assert.deepEqual(sysfs.filter((r) => !r.complete).map((r) => `${r.transport} ${r.p}: ${r.received} of ${r.length}`), [])
    // How: sysfs files are refused like other non-files (native/open.c).
    const sysfsRows = rows.filter((r) => r.p.startsWith('/sys/'))
    assert.ok(sysfsRows.length > 0, 'sysfs paths were tried')
    assert.deepEqual(sysfsRows.filter((r) => r.status !== 404).map((r) => `${r.p} ${r.status}`), [])
  })
})

test('a Unix domain socket file under the root is a 404 (like a FIFO or a device), not a 500', {
  timeout: 20000
}, async (t) => {
  const dir = tmpDir('sock-')
  const listener = net.createServer().listen(path.join(dir, 'app.sock'))
  await new Promise((resolve) => listener.once('listening', resolve))
  t.after(() => listener.close())
  const app = await startServer(t, { root: dir })
  const buf = await rawExchange(app.server.address().port, 'GET /app.sock HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
  const [res] = parseResponses(buf, ['GET'])
  console.log(`unix socket file under the root: ${res.status} ${res.body.toString()}`)
  assert.notEqual(res.status, 500)
  assert.equal(res.status, 404)
})

// ---------------------------------------------------------------------------
// Pipelining: resources held by queued responses (faults, kept as todo)

// Found by this suite, fixed in 7288828 (one close listener per connection).
test('pipelining: 50 requests for a file in one write raise no MaxListenersExceededWarning', {
  timeout: 30000
}, async (t) => {
  const health = recordProcessHealth()
  t.after(health.stop)
  const app = await startServer(t)
  const client = new PipelineClient(app.server.address().port)
  t.after(() => client.destroy())
  const responses = await client.run(Array.from({ length: 50 }, () => ({ method: 'GET', target: '/hello.txt' })))
  await sleep(50)
  console.log(`pipelining: 50 pipelined requests, ${responses.filter((r) => r?.status === 200).length} answered 200, ` +
    `process warnings: ${health.warnings.length} (${[...new Set(health.warnings.map((w) => w.split(':')[0]))].join(', ') || 'none'})`)
  assert.equal(responses.filter((r) => r?.status === 200).length, 50)
  assert.deepEqual(health.warnings, [])
})

test('pipelining: one connection that pipelines 2,000 requests and reads nothing holds a bounded number of fds', {
  timeout: 30000
}, async (t) => {
  const app = await startServer(t)
  const port = app.server.address().port
  await fetchOnce(port, 'hello.txt')
  await sleep(600)
  const before = openFdCount()
  const socket = net.connect(port, '127.0.0.1')
  t.after(() => socket.destroy())
  socket.pause() // reads nothing
  socket.on('error', () => {})
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write('GET /1m.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(2000))
  let peak = 0
  await eventually(() => {
    peak = Math.max(peak, openFdCount() - before)
    return false
  }, { timeoutMs: 1500, stepMs: 50 })
  socket.destroy()
  const released = await eventually(() => openFdCount() <= before, { timeoutMs: 10000 })
  console.log(`pipelining: 2000 pipelined requests for 1m.bin on one connection that reads nothing: peak ${peak} more fds in the server; ` +
    `back to the baseline after the client left: ${released}`)
  assert.ok(released, 'every fd is released once the connection closes')
  assert.ok(peak < 100, `the server held ${peak} more fds for one connection`)
})

// ---------------------------------------------------------------------------
// leaseHeld() in a process that never took a lease

test('leaseHeld() is 0 in a process that never took a lease', {
  skip: NO_NATIVE,
  timeout: 30000
}, () => {
  const script = "const { native } = require(process.argv[1]); process.stdout.write(String(native.binding.leaseHeld()))"
  const run = spawnSync(process.execPath, ['-e', script, path.join(__dirname, '..', 'dist', 'lib', 'native')], { encoding: 'utf8', timeout: 20000 })
  console.log(`leaseHeld() in a fresh process: ${run.stdout} (exit ${run.status})`)
  assert.equal(run.status, 0, run.stderr)
  assert.equal(run.stdout, '0')
})
