'use strict'
// Files not in the page cache: sendfile(2) would read them from disk on the
// event-loop thread, so each burst first asks the kernel (cachestat) whether
// its pages are cached and, when not, a thread-pool read brings them in
// while the loop serves others. Real sockets on 127.0.0.1, server in
// process (its fds, leases and counters are read directly). Cold means
// `echo 3 > /proc/sys/vm/drop_caches`: root only.
//
// To hold a pool read at a known point, the tests fill libuv's thread pool
// with opens of FIFOs that have no writer: work queued after them cannot
// start until the FIFOs are opened for writing.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const { spawnSync } = require('node:child_process')
const { sha256, startServer, openFdCount, eventually } = require('./helpers')
const { RawClient, fetchOnce } = require('./raw-client')
const { leaseLinesOf } = require('./fixtures/reliability/common')
const { pinPages } = require('./fixtures/pin-pages')
const { native, coldCheck } = require('../dist/lib/native')

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const TIMEOUT = 120000

function canDropCaches () {
  if (native.binding === null) return `native addon not loaded (${native.reason})`
  if (!coldCheck) return 'FASTIFY_ZERO_COPY_COLD_CHECK=0 turns the check off'
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'cold-file tests drop the page cache: they need root'
  }
  try {
    fs.accessSync('/proc/sys/vm/drop_caches', fs.constants.W_OK)
  } catch {
    return 'cold-file tests drop the page cache: /proc/sys/vm/drop_caches is not writable'
  }
  return false
}
const SKIP = canDropCaches()

/** Writes dirty pages out, then drops the whole page cache. */
function dropCaches () {
  spawnSync('sync')
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3')
}

let base = null
function tmpDir () {
  if (base === null) {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-cold-'))
    process.on('exit', () => fs.rmSync(base, { recursive: true, force: true }))
  }
  return fs.mkdtempSync(path.join(base, 'd-'))
}

/** A folder with a random file of `size` bytes (and a 4 KiB one); its sha256. */
function randomFiles (size) {
  const dir = tmpDir()
  const big = crypto.randomBytes(size)
  fs.writeFileSync(path.join(dir, 'big.bin'), big)
  const small = crypto.randomBytes(4096)
  fs.writeFileSync(path.join(dir, 'small.bin'), small)
  return { dir, bigSha: sha256(big), smallSha: sha256(small), size }
}

// The open-file cache keeps fds on purpose (its own counter): every other
// fd must come back.
const fdsOutsideCache = (app) => openFdCount() - (app.zeroCopy.stats().cache?.fds ?? 0)

async function fdBaseline (app) {
  await fetchOnce(app.server.address().port, 'small.bin')
  await new Promise((resolve) => setImmediate(resolve))
  return fdsOutsideCache(app)
}

/** The state every test ends in: fds back, no lease held or listed, no pool read left. */
async function assertClean (app, fdsBefore, what) {
  const fdsBack = await eventually(() => fdsOutsideCache(app) <= fdsBefore, { timeoutMs: 10000 })
  assert.ok(fdsBack, `${what}: open fds outside the cache ${fdsOutsideCache(app)} should return to ${fdsBefore}`)
  assert.ok(await eventually(() => native.binding.leaseHeld() === 0, { timeoutMs: 10000 }), `${what}: leaseHeld() ${native.binding.leaseHeld()}`)
  assert.deepEqual(leaseLinesOf(process.pid), [], `${what}: no LEASE line for pid ${process.pid} in /proc/locks`)
  assert.ok(await eventually(() => native.binding.coldReadsPending() === 0), `${what}: pool reads still pending`)
}

/**
 * Fills the thread pool with blocked FIFO opens; `release()` opens their
 * write ends so the pool runs again.
 */
function blockThreadPool () {
  const dir = tmpDir()
  const size = Number(process.env.UV_THREADPOOL_SIZE) || 4
  const fifos = []
  for (let i = 0; i < size; i++) {
    const p = path.join(dir, `fifo-${i}`)
    const made = spawnSync('mkfifo', [p])
    assert.equal(made.status, 0, `mkfifo: ${made.stderr}`)
    fifos.push(p)
  }
  const readers = fifos.map((p) => new Promise((resolve, reject) => {
    fs.open(p, 'r', (err, fd) => err ? reject(err) : resolve(fd))
  }))
  let released = false
  async function release () {
    if (released) return
    released = true
    const writers = []
    for (const p of fifos) {
      // O_NONBLOCK: ENXIO until the reader's open is running; retry then.
      for (;;) {
        try {
          writers.push(fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK))
          break
        } catch (err) {
          if (err.code !== 'ENXIO') throw err
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
      }
    }
    for (const fd of [...writers, ...await Promise.all(readers)]) fs.closeSync(fd)
  }
  return release
}

// ---------------------------------------------------------------------------

test('a cold 64 MiB file: read in on the pool, byte-exact, counted; a hot 4 KiB file is served meanwhile', {
  skip: SKIP, timeout: TIMEOUT
}, async (t) => {
  const files = randomFiles(64 * MiB)
  const app = await startServer(t, { root: files.dir })
  const port = app.server.address().port
  const before = app.zeroCopy.stats()

  dropCaches()
  // The hot client's file, hot for the whole test (mapped and mlocked):
  // reading it once would not do. Any process may drop the page cache
  // meanwhile (other checkouts' cold-file runs do), and the hot response
  // after that reads its 4 KiB in on the pool, legitimately, into the same
  // stats().cold counters. Pinned, every pool read here is big.bin's, so
  // coldBytes <= files.size still catches a page of it read in twice.
  const pinned = await pinPages(path.join(files.dir, 'small.bin'))
  t.after(() => pinned.release())
  const cold = new RawClient(port)
  t.after(() => cold.destroy())
  const hot = new RawClient(port)
  t.after(() => hot.destroy())
  await hot.connected
  cold.send([['GET', '/big.bin']], { lastClose: true })
  let coldDone = false
  const coldFinished = cold.until((x) => x.responses.length === 1 && x.responses[0].done, { timeoutMs: 60000, what: 'the cold file' })
    .finally(() => { coldDone = true })

  // One request at a time on a keep-alive connection, until the cold one ends.
  let hotCount = 0
  let duringCold = 0
  while (!coldDone) {
    hot.send([['GET', '/small.bin']])
    const want = hotCount + 1
    await hot.until((x) => x.responses.length === want && x.responses[want - 1].done, { what: `hot response ${want}` })
    const r = hot.responses[want - 1]
    assert.equal(r.status, 200, `hot response ${want}`)
    assert.equal(r.sha, files.smallSha, `hot response ${want}: byte-exact`)
    hotCount++
    if (!coldDone) duringCold++
  }
  await coldFinished
  // Its bytes are counted when the native transfer's callback runs, which
  // can trail the client's last read (see the sparse file's test): the
  // server closes the connection (Connection: close) only after that.
  await cold.closedWithin()
  const r = cold.responses[0]
  assert.equal(r.status, 200)
  assert.equal(r.length, files.size)
  assert.equal(r.sha, files.bigSha, 'the cold file is byte-exact')

  const after = app.zeroCopy.stats()
  const coldReads = after.cold.reads - before.cold.reads
  const coldBytes = after.cold.bytes - before.cold.bytes
  console.log(`cold 64 MiB: ${coldReads} pool reads, ${coldBytes} bytes read in; hot 4 KiB responses ${hotCount} ` +
    `(${duringCold} completed while the cold transfer ran), all byte-exact`)
  assert.ok(coldReads > 0, 'the cold file was read in on the pool')
  assert.ok(coldBytes > 0 && coldBytes <= files.size, `bytes read in ${coldBytes}`)
  assert.ok(duringCold > 0, 'hot responses completed while the cold transfer ran')
  assert.equal(after.responses.sendfile - before.responses.sendfile, 1 + hotCount, 'every response went through sendfile')
  assert.equal(after.bytes.sendfile - before.bytes.sendfile, files.size + hotCount * 4096)
  assert.equal(after.responses.write, before.responses.write, 'no write fallback')
})

test('four clients fetch the same cold file at once: all byte-exact (pages another read has in flight count as cold)', {
  skip: SKIP, timeout: TIMEOUT
}, async (t) => {
  const files = randomFiles(64 * MiB)
  const app = await startServer(t, { root: files.dir })
  const port = app.server.address().port
  const before = app.zeroCopy.stats()
  dropCaches()
  const got = await Promise.all([1, 2, 3, 4].map(() => fetchOnce(port, 'big.bin')))
  for (const r of got) assert.equal(r.sha, files.bigSha)
  const after = app.zeroCopy.stats()
  console.log(`4 concurrent cold downloads: ${after.cold.reads - before.cold.reads} pool reads, ` +
    `${after.cold.bytes - before.cold.bytes} bytes read in`)
  assert.ok(after.cold.reads > before.cold.reads)
  assert.equal(after.bytes.sendfile - before.bytes.sendfile, 4 * files.size)
})

test('hot files: no pool reads', { skip: SKIP, timeout: TIMEOUT }, async (t) => {
  const files = randomFiles(64 * MiB)
  const app = await startServer(t, { root: files.dir })
  const port = app.server.address().port
  // Hot for the whole test: reading the files once would not do, another
  // process may drop the page cache meanwhile (test/fixtures/pin-pages.js).
  for (const name of ['big.bin', 'small.bin']) {
    const pinned = await pinPages(path.join(files.dir, name))
    t.after(() => pinned.release())
  }
  const before = app.zeroCopy.stats()
  for (let i = 0; i < 20; i++) {
    const r = await fetchOnce(port, 'small.bin')
    assert.equal(r.sha, files.smallSha)
  }
  const big = await fetchOnce(port, 'big.bin')
  assert.equal(big.sha, files.bigSha)
  const after = app.zeroCopy.stats()
  assert.equal(after.responses.sendfile - before.responses.sendfile, 21)
  assert.deepEqual(after.cold, before.cold, 'stats().cold did not move')
})

test('the mincore fallback (kernels without cachestat) reads a cold file in too', { skip: SKIP, timeout: TIMEOUT }, async (t) => {
  const files = randomFiles(64 * MiB)
  const app = await startServer(t, { root: files.dir })
  const port = app.server.address().port
  const mode = native.binding.residencyMode()
  native.binding.residencyMode(2)
  t.after(() => native.binding.residencyMode(mode))
  dropCaches()
  const before = app.zeroCopy.stats()
  const r = await fetchOnce(port, 'big.bin')
  assert.equal(r.sha, files.bigSha)
  const after = app.zeroCopy.stats()
  console.log(`mincore: ${after.cold.reads - before.cold.reads} pool reads, ${after.cold.bytes - before.cold.bytes} bytes`)
  assert.ok(after.cold.reads > before.cold.reads)
  // Hot now (and kept so: another process may drop the page cache): the
  // fallback sees it too.
  const pinned = await pinPages(path.join(files.dir, 'big.bin'))
  t.after(() => pinned.release())
  const again = app.zeroCopy.stats().cold.reads
  assert.equal((await fetchOnce(port, 'big.bin')).sha, files.bigSha)
  assert.equal(app.zeroCopy.stats().cold.reads, again, 'no pool read for the hot file')
})

test('cancel while the first burst\'s pool read is pending: no callback, fds and lease released', {
  skip: SKIP, timeout: TIMEOUT
}, async (t) => {
  const files = randomFiles(64 * MiB)
  const app = await startServer(t, { root: files.dir })
  const port = app.server.address().port
  const fdsBefore = await fdBaseline(app)
  const before = app.zeroCopy.stats()
  dropCaches()

  const release = blockThreadPool()
  t.after(release)
  const c = new RawClient(port)
  t.after(() => c.destroy())
  c.send([['GET', '/big.bin']])
  assert.ok(await eventually(() => native.binding.coldReadsPending() === 1), 'a pool read is pending')
  assert.equal(c.bytes, 0, 'nothing was sent before the pages are in: not even the header')
  c.destroy()
  assert.ok(await eventually(() => app.zeroCopy.stats().aborts > before.aborts), 'the response is an abort')
  // Not started yet, so dropped from the pool's queue: gone while the pool
  // is still blocked (a running read would have completed on its own).
  assert.ok(await eventually(() => native.binding.coldReadsPending() === 0), 'the queued read was dropped')
  await release()
  await assertClean(app, fdsBefore, 'after the pending read')
  const after = app.zeroCopy.stats()
  assert.equal(after.cold.reads, before.cold.reads, 'a cancelled read never reaches JS')
  // The server goes on.
  assert.equal((await fetchOnce(port, 'big.bin')).sha, files.bigSha)
})

test('cancel while an event-loop transfer\'s pool read is pending: fds and lease released', {
  skip: SKIP, timeout: TIMEOUT
}, async (t) => {
  const files = randomFiles(64 * MiB)
  const app = await startServer(t, { root: files.dir })
  const port = app.server.address().port
  const fdsBefore = await fdBaseline(app)
  const before = app.zeroCopy.stats()
  dropCaches()

  const c = new RawClient(port)
  t.after(() => c.destroy())
  c.send([['GET', '/big.bin']])
  // Past the first burst (2 MiB): the rest is the native transfer's.
  await c.until((x) => x.bytes > 4 * MiB, { what: 'the first 4 MiB' })
  c.socket.pause()
  const release = blockThreadPool()
  t.after(release)
  c.socket.resume()
  assert.ok(await eventually(() => native.binding.coldReadsPending() === 1, { timeoutMs: 10000 }),
    'the transfer reached a cold chunk and queued its read')
  const stuckAt = c.bytes
  assert.ok(stuckAt < files.size, `stopped at ${stuckAt} bytes`)
  c.destroy()
  assert.ok(await eventually(() => app.zeroCopy.stats().aborts > before.aborts), 'the response is an abort')
  assert.ok(await eventually(() => native.binding.coldReadsPending() === 0), 'the queued read was dropped')
  await release()
  await assertClean(app, fdsBefore, 'after the pending read')
  console.log(`transfer cancelled at ${stuckAt} of ${files.size} bytes with its pool read queued`)
  assert.equal((await fetchOnce(port, 'big.bin')).sha, files.bigSha)
})

test('cancel at random points of cold transfers: no crash, fds and leases back', {
  skip: SKIP, timeout: TIMEOUT
}, async (t) => {
  const files = randomFiles(64 * MiB)
  const app = await startServer(t, { root: files.dir })
  const port = app.server.address().port
  const fdsBefore = await fdBaseline(app)
  const before = app.zeroCopy.stats()
  const cuts = [0, 1, 3 * MiB, 9 * MiB, 17 * MiB, 33 * MiB, 50 * MiB, 63 * MiB]
  let withReadPending = 0
  for (const cut of cuts) {
    dropCaches()
    const c = new RawClient(port)
    c.send([['GET', '/big.bin']])
    if (cut === 0) {
      // As soon as the request is out, while its first read is in flight.
      await new Promise((resolve) => setImmediate(resolve))
    } else {
      await c.until((x) => x.bytes >= cut || x.closed, { what: `${cut} bytes` })
    }
    // Pool not blocked: a pending read now is running, or about to.
    if (native.binding.coldReadsPending() > 0) withReadPending++
    c.socket.resetAndDestroy()
    await c.closedWithin()
  }
  await assertClean(app, fdsBefore, `after ${cuts.length} cut transfers`)
  const after = app.zeroCopy.stats()
  console.log(`random cuts: ${cuts.length} cold transfers reset (${withReadPending} with a pool read pending), ` +
    `${after.cold.reads - before.cold.reads} pool reads, aborts ${after.aborts - before.aborts}`)
  assert.equal((await fetchOnce(port, 'big.bin')).sha, files.bigSha)
})

test('a file truncated while its pool read is pending: the truncation path', { skip: SKIP, timeout: TIMEOUT }, async (t) => {
  const files = randomFiles(64 * MiB)
  // No lease: truncating a leased file would wait for the lease break.
  const app = await startServer(t, { root: files.dir, lease: false })
  const port = app.server.address().port
  const fdsBefore = await fdBaseline(app)
  const before = app.zeroCopy.stats()
  dropCaches()

  const release = blockThreadPool()
  t.after(release)
  const c = new RawClient(port)
  t.after(() => c.destroy())
  c.send([['GET', '/big.bin']])
  assert.ok(await eventually(() => native.binding.coldReadsPending() === 1), 'a pool read is pending')
  fs.truncateSync(path.join(files.dir, 'big.bin'), MiB)
  // What is left stays in once read: a page cache dropped by another
  // process between the pool read and the burst would need a second read.
  const pinned = await pinPages(path.join(files.dir, 'big.bin'))
  t.after(() => pinned.release())
  await release()
  await c.closedWithin()
  await pinned.release() // its pipes are fds of ours: gone before assertClean
  const after = app.zeroCopy.stats()
  const r = c.responses[0]
  console.log(`truncated to 1 MiB during the pool read: status ${r?.status}, ${r?.received} of ${r?.length} body bytes, ` +
    `truncations ${after.truncations - before.truncations}, pool reads ${after.cold.reads - before.cold.reads}`)
  assert.equal(after.truncations - before.truncations, 1, 'counted as a truncation')
  assert.equal(r.status, 200)
  assert.equal(r.length, files.size, 'the header still promised the whole file')
  assert.equal(r.received, MiB, 'what the file still had, then the connection closed')
  assert.equal(after.cold.reads - before.cold.reads, 1)
  await assertClean(app, fdsBefore, 'after the truncation')
})

test('a sparse 5 GiB file, cold: ranges past and across 4 GiB are read in and byte-exact', { skip: SKIP, timeout: TIMEOUT }, async (t) => {
  const dir = tmpDir()
  const file = path.join(dir, 'huge.bin')
  const HUGE = 5 * GiB
  const marks = [[2 ** 32 - 7, 'ACROSS-4GIB'], [4.5 * GiB + 123, 'AT-4.5GIB'], [HUGE - 8, 'THE-END!']]
  const fd = fs.openSync(file, 'w')
  for (const [at, mark] of marks) fs.writeSync(fd, Buffer.from(mark), 0, mark.length, at)
  fs.closeSync(fd)
  fs.truncateSync(file, HUGE)
  const rfd = fs.openSync(file, 'r')
  t.after(() => fs.closeSync(rfd))
  const shaOf = (start, end) => {
    const hash = crypto.createHash('sha256')
    const buf = Buffer.alloc(8 * MiB)
    for (let at = start; at <= end;) {
      const n = fs.readSync(rfd, buf, 0, Math.min(buf.length, end + 1 - at), at)
      hash.update(buf.subarray(0, n))
      at += n
    }
    return hash.digest('hex')
  }
  const ranges = [
    [2 ** 32 - 32 * MiB, 2 ** 32 + 32 * MiB - 1],
    [4.5 * GiB, 4.5 * GiB + 8 * MiB - 1],
    [HUGE - 40 * MiB, HUGE - 1]
  ]
  const expectedShas = ranges.map(([s, e]) => shaOf(s, e))
  const app = await startServer(t, { root: dir })
  const port = app.server.address().port
  const before = app.zeroCopy.stats()
  dropCaches()
  for (const [i, [start, end]] of ranges.entries()) {
    const c = new RawClient(port)
    t.after(() => c.destroy())
    c.parser.expect('GET')
    c.socket.write(`GET /huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=${start}-${end}\r\nConnection: close\r\n\r\n`)
    await c.until((x) => x.responses.length === 1 && x.responses[0].done, { timeoutMs: 60000, what: `range ${start}-${end}` })
    // The client can read the last bytes in the very loop turn the native
    // transfer sent them, before that transfer's handles have closed and its
    // callback has added its bytes to the stats. The server closes the
    // connection (Connection: close) only after that callback.
    await c.closedWithin()
    assert.equal(c.responses[0].status, 206)
    assert.equal(c.responses[0].sha, expectedShas[i], `bytes ${start}-${end} byte-exact`)
  }
  const after = app.zeroCopy.stats()
  const want = ranges.reduce((n, [s, e]) => n + e - s + 1, 0)
  console.log(`sparse 5 GiB, cold: ${ranges.length} ranges (${want} bytes), ${after.cold.reads - before.cold.reads} pool reads, ` +
    `${after.cold.bytes - before.cold.bytes} bytes read in`)
  assert.equal(after.bytes.sendfile - before.bytes.sendfile, want)
  assert.ok(after.cold.reads > before.cold.reads, 'holes read in on the pool too (nothing cached)')
})
