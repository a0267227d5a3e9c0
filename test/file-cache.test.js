'use strict'
// The open-file cache (option `cache`): hot files cost no open/fstat/close,
// and every way a file can change drops its entry: a lease break, a change
// under the cached fd, rename-replace, unlink. Bounded by maxFiles/maxFds,
// shrinks on EMFILE. Real sockets on 127.0.0.1; bytes checked by sha256.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')
const { spawn, spawnSync } = require('node:child_process')
const Fastify = require('fastify')
const { sha256, patternBytes, urlOf, openFdCount, eventually, zeroCopy } = require('./helpers')
const { startChildServer } = require('./fixtures/reliability/common')

const { native } = require('../dist/lib/native')

const NO_NATIVE = native.binding === null
const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0

function tmpRoot (t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-cache-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function serve (t, root, options = {}, route) {
  const app = Fastify()
  await app.register(zeroCopy, { root, ...options })
  if (route) route(app)
  else app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  return app
}

async function get (app, p, headers = {}, method = 'GET') {
  const res = await fetch(urlOf(app, p), { headers, method })
  const body = Buffer.from(await res.arrayBuffer())
  return { status: res.status, headers: Object.fromEntries(res.headers), body, sha: sha256(body) }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Writes new bytes in place from another process (a lease break is about
// another process: our own opens never break our own lease).
function writeFromOtherProcess (file, text, flags = 'r+') {
  const r = spawnSync(process.execPath, ['-e',
    `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(file)},${JSON.stringify(flags)});` +
    `fs.ftruncateSync(fd,0);fs.writeSync(fd,${JSON.stringify(text)},0);fs.closeSync(fd)`], { timeout: 20000 })
  assert.equal(r.status, 0, String(r.stderr))
}

/** writeFromOtherProcess without blocking the event loop; resolves with the exit code. */
function writeFromOtherProcessAsync (file, text, flags = 'r+') {
  const child = spawn(process.execPath, ['-e',
    `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(file)},${JSON.stringify(flags)});` +
    `fs.ftruncateSync(fd,0);fs.writeSync(fd,${JSON.stringify(text)},0);fs.closeSync(fd)`], { stdio: 'ignore' })
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)))
}

test('a hot file is opened once: the next responses are cache hits, byte-exact, over sendfile', async (t) => {
  const root = tmpRoot(t)
  const bytes = patternBytes(64 * 1024, 3)
  fs.writeFileSync(path.join(root, 'a.bin'), bytes)
  const app = await serve(t, root)
  for (let i = 0; i < 5; i++) {
    const r = await get(app, '/a.bin')
    assert.equal(r.status, 200)
    assert.equal(r.sha, sha256(bytes))
  }
  const s = app.zeroCopy.stats()
  assert.equal(s.cache.misses, 1)
  assert.equal(s.cache.hits, 4)
  assert.equal(s.cache.files, 1)
  assert.equal(s.cache.fds, 1)
  if (app.zeroCopy.native) assert.equal(s.responses.sendfile, 5)
})

test('cached plain headers never leak into conditional, Range, HEAD or per-call-option responses', async (t) => {
  const root = tmpRoot(t)
  fs.writeFileSync(path.join(root, 'page.html'), '<p>hello</p>\n')
  const app = await serve(t, root, {}, (app) => {
    app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
    app.get('/long/*', (req, reply) => reply.sendFileZeroCopy(req.params['*'], { maxAge: '1d', filename: 'x.html' }))
  })
  const first = await get(app, '/page.html')
  const second = await get(app, '/page.html')
  assert.deepEqual({ ...second.headers, date: '', 'keep-alive': '' }, { ...first.headers, date: '', 'keep-alive': '' })
  assert.equal(second.headers['content-type'], 'text/html; charset=utf-8')
  const notModified = await get(app, '/page.html', { 'if-none-match': first.headers.etag })
  assert.equal(notModified.status, 304)
  const range = await get(app, '/page.html', { range: 'bytes=0-1' })
  assert.equal(range.status, 206)
  assert.equal(range.body.toString(), '<p')
  assert.equal(range.headers['content-range'], 'bytes 0-1/13')
  const head = await get(app, '/page.html', {}, 'HEAD')
  assert.equal(head.status, 200)
  assert.equal(head.headers['content-length'], '13')
  assert.equal(head.body.length, 0)
  const long = await get(app, '/long/page.html')
  assert.equal(long.headers['cache-control'], 'public, max-age=86400')
  assert.match(long.headers['content-disposition'], /attachment/)
  const plainAgain = await get(app, '/page.html')
  assert.equal(plainAgain.headers['cache-control'], 'public, max-age=0')
  assert.equal(plainAgain.headers['content-disposition'], undefined)
  assert.ok(app.zeroCopy.stats().cache.hits >= 5)
})

test('a writer breaking the lease drops the entry at once: the next response has the new bytes (no stat needed)', { skip: NO_NATIVE }, async (t) => {
  const root = tmpRoot(t)
  const file = path.join(root, 'live.bin')
  const oldBytes = patternBytes(16 << 20, 11)
  fs.writeFileSync(file, oldBytes)
  // validateMs so long that only the lease can tell.
  const app = await serve(t, root, { cache: { validateMs: 3600000 }, leaseGrace: 200 })
  // A response in flight holds the lease (a paused reader), whatever the
  // machine's speed: the writer is sure to find it held and break it.
  const paused = await new Promise((resolve, reject) => {
    http.get(urlOf(app, '/live.bin'), (res) => {
      res.once('data', () => { res.pause(); resolve(res) })
      res.on('error', () => {})
    }).on('error', reject)
  })
  const writer = writeFromOtherProcessAsync(file, 'new contents, longer\n')
  assert.ok(await eventually(() => app.zeroCopy.stats().cache.invalidations.lease === 1, { timeoutMs: 20000 }),
    JSON.stringify(app.zeroCopy.stats().cache))
  paused.destroy() // the lease goes once its last response ends: the writer proceeds
  assert.equal(await writer, 0)
  const after = await get(app, '/live.bin')
  assert.equal(after.body.toString(), 'new contents, longer\n')
  assert.equal(after.headers['content-length'], '21')
  const s = app.zeroCopy.stats()
  assert.equal(s.cache.misses, 2)
  assert.equal(s.leases.broken >= 1, true)
})

test('a change while no lease is held is seen when the next lease is taken (same inode, other size/mtime)', { skip: NO_NATIVE }, async (t) => {
  const root = tmpRoot(t)
  const file = path.join(root, 'quiet.txt')
  fs.writeFileSync(file, 'version one\n')
  const app = await serve(t, root, { cache: { validateMs: 3600000 } })
  assert.equal((await get(app, '/quiet.txt')).body.toString(), 'version one\n')
  // Past the lease's linger: nobody holds it, so no break happens.
  await eventually(() => native.binding.leaseHeld() === 0, { timeoutMs: 3000 })
  writeFromOtherProcess(file, 'version two, longer\n')
  const after = await get(app, '/quiet.txt')
  assert.equal(after.body.toString(), 'version two, longer\n')
  assert.equal(app.zeroCopy.stats().cache.invalidations.changed, 1)
})

test('rename-replace of the file while no lease is held: seen at the next response, within validateMs (the old inode\'s ctime changes as it loses its name)', async (t) => {
  const root = tmpRoot(t)
  const file = path.join(root, 'app.js')
  fs.writeFileSync(file, 'console.log(1)\n')
  // No lease at all, so the hit always asks fstat (a held lease would
  // vouch for the old inode; the rename is then seen within validateMs,
  // as the next tests show).
  const app = await serve(t, root, { cache: { validateMs: 3600000 }, lease: false })
  assert.equal((await get(app, '/app.js')).body.toString(), 'console.log(1)\n')
  fs.writeFileSync(file + '.tmp', 'console.log(2)\n')
  fs.renameSync(file + '.tmp', file)
  assert.equal((await get(app, '/app.js')).body.toString(), 'console.log(2)\n')
  const s = app.zeroCopy.stats()
  assert.equal(s.cache.invalidations.changed, 1)
  assert.equal(s.cache.invalidations.replaced, 0)
})

test('a folder swapped under the path: within validateMs the old file is served (the freshness bound); after it, the new one', async (t) => {
  const root = tmpRoot(t)
  fs.mkdirSync(path.join(root, 'site'))
  fs.mkdirSync(path.join(root, 'site-next'))
  fs.writeFileSync(path.join(root, 'site', 'app.js'), 'console.log(1)\n')
  fs.writeFileSync(path.join(root, 'site-next', 'app.js'), 'console.log(2)\n')
  const bound = await serve(t, root, { cache: { validateMs: 3600000 } })
  const strict = await serve(t, root, { cache: { validateMs: 0 } })
  assert.equal((await get(bound, '/site/app.js')).body.toString(), 'console.log(1)\n')
  assert.equal((await get(strict, '/site/app.js')).body.toString(), 'console.log(1)\n')
  fs.renameSync(path.join(root, 'site'), path.join(root, 'site-old'))
  fs.renameSync(path.join(root, 'site-next'), path.join(root, 'site'))
  // The deploy pattern neither leases nor the fd can see: the old file
  // itself is untouched, only a folder above it moved.
  assert.equal((await get(bound, '/site/app.js')).body.toString(), 'console.log(1)\n')
  assert.equal((await get(strict, '/site/app.js')).body.toString(), 'console.log(2)\n')
  assert.equal(strict.zeroCopy.stats().cache.invalidations.replaced, 1)
  assert.equal(bound.zeroCopy.stats().cache.invalidations.replaced, 0)
})

test('rename-replace is seen within validateMs of the change', async (t) => {
  const root = tmpRoot(t)
  const file = path.join(root, 'v.txt')
  fs.writeFileSync(file, 'v1')
  const app = await serve(t, root, { cache: { validateMs: 200 } })
  assert.equal((await get(app, '/v.txt')).body.toString(), 'v1')
  fs.writeFileSync(file + '.tmp', 'v2')
  fs.renameSync(file + '.tmp', file)
  await sleep(250)
  assert.equal((await get(app, '/v.txt')).body.toString(), 'v2')
  assert.equal(app.zeroCopy.stats().cache.invalidations.replaced, 1)
})

test('unlink: the entry is dropped and the path answers 404', async (t) => {
  const root = tmpRoot(t)
  const file = path.join(root, 'gone.txt')
  fs.writeFileSync(file, 'here\n')
  const app = await serve(t, root, { cache: { validateMs: 0 } })
  assert.equal((await get(app, '/gone.txt')).status, 200)
  fs.unlinkSync(file)
  assert.equal((await get(app, '/gone.txt')).status, 404)
  const s = app.zeroCopy.stats()
  assert.equal(s.cache.invalidations.removed, 1)
  assert.equal(s.cache.files, 0)
  assert.equal(s.cache.fds, 0)
})

test('a transfer in flight keeps its (old) file while new requests get the new one; its fd closes when it ends', { skip: NO_NATIVE }, async (t) => {
  const root = tmpRoot(t)
  const file = path.join(root, 'big.bin')
  const oldBytes = patternBytes(32 << 20, 5)
  const newBytes = patternBytes(1 << 20, 6)
  fs.writeFileSync(file, oldBytes)
  const fdsBefore = openFdCount()
  const app = await serve(t, root, { cache: { validateMs: 0 } })
  // A slow reader: pause after the first chunk, resume after the replace.
  const slow = new Promise((resolve, reject) => {
    http.get(urlOf(app, '/big.bin'), (res) => {
      const chunks = []
      let paused = false
      res.on('data', (d) => {
        chunks.push(d)
        if (!paused) {
          paused = true
          res.pause()
          resolve({ res, chunks })
        }
      })
      res.on('error', reject)
    }).on('error', reject)
  })
  const { res, chunks } = await slow
  fs.writeFileSync(file + '.tmp', newBytes)
  fs.renameSync(file + '.tmp', file)
  const fresh = await get(app, '/big.bin')
  assert.equal(fresh.sha, sha256(newBytes))
  const done = new Promise((resolve) => res.on('end', resolve))
  res.resume()
  await done
  assert.equal(sha256(Buffer.concat(chunks)), sha256(oldBytes))
  const s = app.zeroCopy.stats()
  assert.equal(s.cache.invalidations.replaced, 1)
  assert.equal(s.cache.files, 1)
  assert.equal(s.cache.fds, 1, 'the old file\'s fd closed with its last response')
  await app.close()
  assert.ok(await eventually(() => openFdCount() <= fdsBefore), `fds ${openFdCount()} vs ${fdsBefore} before`)
})

test('bounds: maxFiles caps the entries, maxFds the fds kept open; over them, least recently used go first', async (t) => {
  const root = tmpRoot(t)
  for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(root, `f${i}.txt`), `file ${i}\n`)
  const files = await serve(t, root, { cache: { maxFiles: 3 } })
  for (let i = 0; i < 6; i++) assert.equal((await get(files, `/f${i}.txt`)).body.toString(), `file ${i}\n`)
  let s = files.zeroCopy.stats().cache
  assert.equal(s.files, 3)
  assert.equal(s.fds, 3)
  assert.equal(s.evictions, 3)
  // f5 is among the most recent: a hit. f0 was evicted: a miss.
  await get(files, '/f5.txt')
  await get(files, '/f0.txt')
  s = files.zeroCopy.stats().cache
  assert.equal(s.hits, 1)
  assert.equal(s.misses, 7)

  const fds = await serve(t, root, { cache: { maxFiles: 100, maxFds: 2 } })
  for (let i = 0; i < 6; i++) await get(fds, `/f${i}.txt`)
  s = fds.zeroCopy.stats().cache
  assert.equal(s.files, 6, 'entries keep their description')
  assert.equal(s.fds, 2, 'only two keep their fd')
  // f0 lost its fd: opened again (a miss), same file, byte-exact.
  const again = await get(fds, '/f0.txt')
  assert.equal(again.body.toString(), 'file 0\n')
  assert.equal(fds.zeroCopy.stats().cache.misses, 7)

  const none = await serve(t, root, { cache: { maxFds: 0 } })
  for (let i = 0; i < 3; i++) await get(none, '/f1.txt')
  assert.equal(none.zeroCopy.stats().cache.fds, 0)
})

test('cache: false opens and closes the file per response', async (t) => {
  const root = tmpRoot(t)
  fs.writeFileSync(path.join(root, 'x.txt'), 'x')
  const fdsBefore = openFdCount()
  const app = await serve(t, root, { cache: false })
  const fdsListening = openFdCount()
  for (let i = 0; i < 3; i++) assert.equal((await get(app, '/x.txt')).body.toString(), 'x')
  const s = app.zeroCopy.stats().cache
  assert.deepEqual({ hits: s.hits, misses: s.misses, files: s.files, fds: s.fds }, { hits: 0, misses: 3, files: 0, fds: 0 })
  assert.ok(await eventually(() => openFdCount() <= fdsListening + 2), `fds ${openFdCount()} vs ${fdsListening} after listen (${fdsBefore} before)`)
})

test('cache option errors are thrown at registration', async () => {
  for (const [cache, pattern] of [
    [true, /cache/], [{ maxFiles: 0 }, /maxFiles|cache/], [{ maxFds: -1 }, /maxFds|cache/],
    [{ validateMs: 1.5 }, /validateMs|cache/], [{ other: 1 }, /cache|other/], ['big', /cache/]
  ]) {
    const app = Fastify()
    await assert.rejects(app.register(zeroCopy, { root: os.tmpdir(), cache }).ready(),
      (err) => err.code === 'FST_ZEROCOPY_INVALID_OPTION' && pattern.test(err.message), JSON.stringify(cache))
  }
})

test('EMFILE: the cache gives its idle fds back instead of failing requests', {
  skip: NO_NATIVE || (!hasPrlimit && 'prlimit is not installed'), timeout: 60000
}, async (t) => {
  const root = tmpRoot(t)
  const N = 80
  for (let i = 0; i < N; i++) fs.writeFileSync(path.join(root, `n${i}.txt`), `n${i}`)
  // 64 fds for everything: the cache alone would want 80.
  const server = await startChildServer(root, { cache: { maxFds: 1000 } }, { nofile: 64 })
  t.after(() => server.close())
  const statuses = {}
  for (let i = 0; i < N; i++) {
    const status = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: server.port, path: `/n${i}.txt`, agent: false }, (res) => {
        let body = ''
        res.on('data', (d) => { body += d })
        res.on('end', () => resolve(res.statusCode === 200 && body === `n${i}` ? 200 : res.statusCode))
      }).on('error', reject)
    })
    statuses[status] = (statuses[status] ?? 0) + 1
  }
  const { stats, fds } = await server.stats()
  console.log(`EMFILE: ${N} files with RLIMIT_NOFILE 64 -> ${JSON.stringify(statuses)}; cache ${JSON.stringify(stats.cache)}; process fds ${fds}`)
  assert.deepEqual(statuses, { 200: N })
  assert.ok(stats.cache.evictions > 0)
  assert.ok(stats.cache.fds < 64)
})
