'use strict'
// Validators as users deploy them: several replicas of one tree, a CDN-style
// caching proxy (nginx with the slice module) in front of them, files edited
// while browsers revalidate, and content-digest ETags. Real sockets on
// 127.0.0.1, bytes checked by sha256.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')
const crypto = require('node:crypto')
const readline = require('node:readline')
const { spawn, spawnSync } = require('node:child_process')
const Fastify = require('fastify')
const { sha256, patternBytes, urlOf, zeroCopy } = require('./helpers')
const { native } = require('../dist/lib/native')
const { mulberry32 } = require('./fixtures/reliability/common')

const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p))
const nginxSkip = NGINX === undefined
  ? 'nginx is not installed (Debian: apt-get install nginx-light; .ci/run installs it)'
  : !/--with-http_slice_module/.test(spawnSync(NGINX, ['-V'], { encoding: 'utf8' }).stderr)
      ? `${NGINX} has no slice module`
      : false

function tmpDir (t, prefix = 'zc-validators-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function serve (t, root, options = {}) {
  const app = Fastify()
  await app.register(zeroCopy, { root, ...options })
  app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  return app
}

async function serveMode (t, root, options = {}) {
  const app = Fastify()
  await app.register(zeroCopy, { root, serve: true, preCompressed: true, ...options })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  return app
}

async function get (app, p, headers = {}, method = 'GET') {
  const res = await fetch(urlOf(app, p), { headers, method })
  const body = Buffer.from(await res.arrayBuffer())
  return { status: res.status, headers: Object.fromEntries(res.headers), body }
}

/** Like get, but the body as sent (fetch would decode a Content-Encoding). */
function rawGet (app, p, headers = {}) {
  return new Promise((resolve, reject) => {
    http.get(urlOf(app, p), { headers, agent: false }, (res) => {
      const chunks = []
      res.on('data', (d) => chunks.push(d))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }))
    }).on('error', reject)
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The digest etag: 'digest' promises, computed here independently with node:crypto. */
function expectedDigestTag (bytes) {
  const CHUNK = 4 * 1024 * 1024
  const outer = crypto.createHash('sha256')
  for (let at = 0; at < bytes.length; at += CHUNK) {
    outer.update(crypto.createHash('sha256').update(bytes.subarray(at, at + CHUNK)).digest())
  }
  return `"${outer.digest('base64url')}"`
}

/** A tree with nested files, a dotless name, an empty file and pre-compressed siblings. */
function makeTree (root) {
  const files = {
    'index.html': Buffer.from('<!doctype html><title>x</title>\n'),
    'css/site.css': Buffer.from('body { color: #000 }\n'.repeat(50)),
    'js/app.js': patternBytes(200 * 1024, 7),
    'js/app.js.br': patternBytes(60 * 1024, 8),
    'js/app.js.gz': patternBytes(70 * 1024, 9),
    'data/README': Buffer.from('plain\n'),
    'data/empty.txt': Buffer.alloc(0),
    'big/blob.bin': patternBytes(5 * 1024 * 1024 + 3, 10)
  }
  for (const [name, bytes] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true })
    fs.writeFileSync(path.join(root, name), bytes)
  }
  return files
}

/** cp -a: the copy keeps the mtimes (as image layers and rsync -a do). */
function copyTree (from, to, { keepTimes = true } = {}) {
  const r = spawnSync('cp', [keepTimes ? '-a' : '-r', from + '/.', to])
  assert.equal(r.status, 0, String(r.stderr))
}

test('two replicas on cp -a copies: the same ETag and Last-Modified for every file, and each one\'s tags revalidate at the other', async (t) => {
  const a = tmpDir(t)
  const b = tmpDir(t)
  const files = makeTree(a)
  copyTree(a, b)
  assert.notEqual(fs.statSync(path.join(a, 'js/app.js')).ino, fs.statSync(path.join(b, 'js/app.js')).ino)
  const replicaA = await serve(t, a)
  const replicaB = await serve(t, b)
  for (const name of Object.keys(files)) {
    const ra = await get(replicaA, '/' + name)
    const rb = await get(replicaB, '/' + name)
    assert.equal(ra.status, 200, name)
    assert.equal(sha256(ra.body), sha256(files[name]), name)
    assert.ok(ra.headers.etag.startsWith('"'), `${name}: a strong tag`)
    assert.equal(rb.headers.etag, ra.headers.etag, `${name}: ETag`)
    assert.equal(rb.headers['last-modified'], ra.headers['last-modified'], `${name}: Last-Modified`)
    for (const [from, at] of [[ra, replicaB], [rb, replicaA]]) {
      assert.equal((await get(at, '/' + name, { 'if-none-match': from.headers.etag })).status, 304, `${name}: If-None-Match`)
      assert.equal((await get(at, '/' + name, { 'if-modified-since': from.headers['last-modified'] })).status, 304, `${name}: If-Modified-Since`)
      // The If-Range of a resumed download, from the other replica.
      const resumed = await get(at, '/' + name, { range: 'bytes=1-', 'if-range': from.headers.etag })
      if (files[name].length > 1) assert.equal(resumed.status, 206, `${name}: If-Range`)
    }
  }
})

test('serve mode on two replicas: pre-compressed variants agree across replicas and differ from each other and from the file', async (t) => {
  const a = tmpDir(t)
  const b = tmpDir(t)
  makeTree(a)
  // The sibling keeps its file's mtime, as gzip -k and brotli do.
  const mtime = fs.statSync(path.join(a, 'js/app.js')).mtime
  for (const sibling of ['js/app.js.br', 'js/app.js.gz']) fs.utimesSync(path.join(a, sibling), mtime, mtime)
  copyTree(a, b)
  const replicaA = await serveMode(t, a)
  const replicaB = await serveMode(t, b)
  const tags = new Set()
  const bodies = { br: 'js/app.js.br', gzip: 'js/app.js.gz', identity: 'js/app.js' }
  for (const encoding of ['br', 'gzip', 'identity']) {
    const ra = await rawGet(replicaA, '/js/app.js', { 'accept-encoding': encoding })
    const rb = await rawGet(replicaB, '/js/app.js', { 'accept-encoding': encoding })
    assert.equal(ra.headers['content-encoding'], encoding === 'identity' ? undefined : encoding)
    assert.equal(sha256(ra.body), sha256(fs.readFileSync(path.join(a, bodies[encoding]))), encoding)
    assert.equal(rb.headers.etag, ra.headers.etag, encoding)
    tags.add(ra.headers.etag)
    const again = await rawGet(replicaB, '/js/app.js', { 'accept-encoding': encoding, 'if-none-match': ra.headers.etag })
    assert.equal(again.status, 304, encoding)
  }
  assert.equal(tags.size, 3, 'each representation has its own tag')
})

test('etag: \'digest\': the tag is the content digest, equal on copies whose mtimes differ; hashed once per version', async (t) => {
  const a = tmpDir(t)
  const b = tmpDir(t)
  const files = makeTree(a)
  copyTree(a, b, { keepTimes: false })
  // A deploy that touched every mtime: the bytes are the same.
  const later = new Date(Date.now() + 3600e3)
  for (const name of Object.keys(files)) fs.utimesSync(path.join(b, name), later, later)
  const replicaA = await serve(t, a, { etag: 'digest' })
  const replicaB = await serve(t, b, { etag: 'digest' })
  for (const name of Object.keys(files)) {
    const ra = await get(replicaA, '/' + name)
    const rb = await get(replicaB, '/' + name)
    assert.equal(sha256(ra.body), sha256(files[name]), name)
    assert.equal(ra.headers.etag, expectedDigestTag(files[name]), `${name}: the documented digest`)
    assert.equal(rb.headers.etag, ra.headers.etag, name)
    assert.notEqual(rb.headers['last-modified'], ra.headers['last-modified'], `${name}: the mtimes do differ`)
    // A browser sends both; If-None-Match decides (RFC 9110 §13.2.2).
    const both = await get(replicaB, '/' + name, { 'if-none-match': ra.headers.etag, 'if-modified-since': ra.headers['last-modified'] })
    assert.equal(both.status, 304, name)
    assert.equal(both.headers.etag, ra.headers.etag)
    const head = await get(replicaA, '/' + name, {}, 'HEAD')
    assert.equal(head.headers.etag, ra.headers.etag)
  }
  const n = Object.keys(files).length
  for (const app of [replicaA, replicaB]) {
    const s = app.zeroCopy.stats().digests
    assert.equal(s.computed, n, 'each file hashed once, whatever the number of requests')
    assert.equal(s.failed, 0)
    assert.equal(s.bytes, Object.values(files).reduce((sum, bytes) => sum + bytes.length, 0))
  }
})

test('etag: \'digest\': concurrent first requests share one hash; a rewrite gets a new digest; a slice gets its own tag', async (t) => {
  const root = tmpDir(t)
  const file = path.join(root, 'f.bin')
  const v1 = patternBytes(9 * 1024 * 1024, 21)
  fs.writeFileSync(file, v1)
  const app = await serve(t, root, { etag: 'digest' })
  const first = await Promise.all(Array.from({ length: 8 }, () => get(app, '/f.bin')))
  for (const r of first) {
    assert.equal(r.headers.etag, expectedDigestTag(v1))
    assert.equal(sha256(r.body), sha256(v1))
  }
  assert.equal(app.zeroCopy.stats().digests.computed, 1)

  const v2 = patternBytes(9 * 1024 * 1024, 22)
  await writeFromOtherProcess(file, v2)
  const after = await get(app, '/f.bin', { 'if-none-match': first[0].headers.etag })
  assert.equal(after.status, 200)
  assert.equal(after.headers.etag, expectedDigestTag(v2))
  assert.equal(sha256(after.body), sha256(v2))
  assert.equal(app.zeroCopy.stats().digests.computed, 2)

  // The slice's tag names the digest and the byte span, as with stat tags.
  const sliceApp = Fastify()
  await sliceApp.register(zeroCopy, { root, etag: 'digest' })
  sliceApp.get('/slice', (req, reply) => reply.sendFileZeroCopy('f.bin', { start: 10, end: 19 }))
  await sliceApp.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => sliceApp.close())
  const slice = await get(sliceApp, '/slice')
  assert.equal(slice.body.toString('hex'), v2.subarray(10, 20).toString('hex'))
  assert.equal(slice.headers.etag, `${expectedDigestTag(v2).slice(0, -1)}.a-k"`)
})

test('etag: \'digest\': hashing a large file does not hold up other requests (it runs off the event loop)', async (t) => {
  const root = tmpDir(t)
  // Sparse: hashing 512 MiB costs CPU (a few hundred ms), writing it nothing.
  const big = path.join(root, 'big.bin')
  fs.closeSync(fs.openSync(big, 'w'))
  fs.truncateSync(big, 512 * 1024 * 1024)
  fs.writeFileSync(path.join(root, 'small.txt'), 'small\n')
  const app = Fastify()
  await app.register(zeroCopy, { root, etag: 'digest' })
  let bigArrived
  const arrived = new Promise((resolve) => { bigArrived = resolve })
  // The hash starts in the same turn of the event loop as the request's handler.
  app.addHook('onResponse', (req, reply, done) => done())
  app.get('/*', (req, reply) => {
    reply.sendFileZeroCopy(req.params['*'])
    if (req.params['*'] === 'big.bin') setImmediate(bigArrived)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  await get(app, '/small.txt') // hashed and cached
  let bigAnswered = false
  const bigDone = get(app, '/big.bin', {}, 'HEAD').then((r) => { bigAnswered = true; return r })
  await arrived
  let answeredMeanwhile = 0
  for (let i = 0; i < 3; i++) {
    assert.equal((await get(app, '/small.txt')).status, 200)
    if (!bigAnswered) answeredMeanwhile++
  }
  const bigResponse = await bigDone
  assert.equal(bigResponse.headers.etag, expectedDigestTag(Buffer.alloc(512 * 1024 * 1024)))
  assert.equal(answeredMeanwhile, 3, 'small files answered while the big one was hashed')
  assert.equal(app.zeroCopy.stats().digests.computed, 2)
})

// --- the edit race ----------------------------------------------------------

/**
 * A writer in another process (an editor, a deploy): in-place rewrites on
 * request. Its opens for writing break our read leases and wait for them,
 * as an editor's would; the server's event loop is never the one blocked.
 */
function startWriter (t) {
  const child = spawn(process.execPath, ['-e', `
    const fs = require('fs')
    require('readline').createInterface({ input: process.stdin }).on('line', async (line) => {
      const { id, file, data } = JSON.parse(line)
      await fs.promises.writeFile(file, Buffer.from(data, 'base64'))
      process.stdout.write(id + '\\n')
    })`], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.after(() => child.kill())
  const waiting = new Map()
  readline.createInterface({ input: child.stdout }).on('line', (id) => {
    waiting.get(id)?.()
    waiting.delete(id)
  })
  let next = 0
  return (file, bytes) => new Promise((resolve) => {
    const id = String(next++)
    waiting.set(id, resolve)
    child.stdin.write(JSON.stringify({ id, file, data: bytes.toString('base64') }) + '\n')
  })
}

/** One in-place rewrite from another process; resolves once it is done. */
function writeFromOtherProcess (file, bytes) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', 'require("fs").writeFileSync(process.argv[1], require("fs").readFileSync(0))', file],
      { stdio: ['pipe', 'ignore', 'inherit'] })
    child.on('exit', (code) => code === 0 ? resolve() : reject(new Error(`writer exited ${code}`)))
    child.stdin.end(bytes)
  })
}

async function editRace (t, options, trials, concurrency) {
  const root = tmpDir(t)
  const write = startWriter(t)
  const app = await serve(t, root, options)
  const random = mulberry32(options.etag === 'digest' ? 12 : 11)
  let stale = 0
  const failures = []
  let started = 0
  async function trial (i) {
    const name = `f${i}.css`
    const file = path.join(root, name)
    const oldBytes = crypto.randomBytes(300 + Math.floor(random() * 4000))
    fs.writeFileSync(file, oldBytes)
    const first = await get(app, '/' + name)
    assert.equal(sha256(first.body), sha256(oldBytes))
    // 0-2 s after the last response: while its lease is held, as it is let go, or long after.
    await sleep(Math.floor(random() * 2000))
    const sameSize = i % 2 === 0
    let newBytes = crypto.randomBytes(sameSize ? oldBytes.length : oldBytes.length + 1 + Math.floor(random() * 100))
    if (newBytes.equals(oldBytes)) newBytes = Buffer.from(newBytes.map((b) => b ^ 1))
    await write(file, newBytes)
    const conditional = await get(app, '/' + name, { 'if-none-match': first.headers.etag, 'if-modified-since': first.headers['last-modified'] })
    const head = await get(app, '/' + name, {}, 'HEAD')
    const full = await get(app, '/' + name)
    const ok = conditional.status === 200 && sha256(conditional.body) === sha256(newBytes) &&
      head.status === 200 && Number(head.headers['content-length']) === newBytes.length && head.headers.etag !== first.headers.etag &&
      head.headers.etag === full.headers.etag && sha256(full.body) === sha256(newBytes)
    if (!ok) {
      stale++
      failures.push({ i, sameSize, conditional: conditional.status, headLength: head.headers['content-length'], newLength: newBytes.length, oldTag: first.headers.etag, headTag: head.headers.etag })
    }
  }
  async function worker () {
    while (started < trials) await trial(started++)
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  assert.equal(stale, 0, `stale answers: ${JSON.stringify(failures.slice(0, 5))}`)
  return app.zeroCopy.stats()
}


test('edit race: 200 in-place rewrites 0-2 s after the last response; the next conditional GET, HEAD and GET all describe the new content', async (t) => {
  const s = await editRace(t, {}, 200, 20)
  // The cache was in play (hits, and in-place changes caught on a hit).
  assert.ok(s.cache.hits >= 400, `hits: ${s.cache.hits}`)
  assert.ok(s.cache.invalidations.changed + s.cache.invalidations.lease >= 100, JSON.stringify(s.cache.invalidations))
})

test('edit race with etag: \'digest\': 60 rewrites, no stale tag or body', async (t) => {
  const s = await editRace(t, { etag: 'digest' }, 60, 12)
  assert.ok(s.digests.computed >= 120, `digests: ${JSON.stringify(s.digests)}`)
})

test('browser-style revalidation: If-None-Match and If-Modified-Since together; an edit within the same second is still seen', async (t) => {
  const root = tmpDir(t)
  const file = path.join(root, 'page.css')
  fs.writeFileSync(file, 'a { color: red }')
  const app = await serve(t, root)
  const first = await get(app, '/page.css')
  const validators = { 'if-none-match': first.headers.etag, 'if-modified-since': first.headers['last-modified'] }
  const unchanged = await get(app, '/page.css', validators)
  assert.equal(unchanged.status, 304)
  assert.equal(unchanged.headers.etag, first.headers.etag)
  // Same size, rewritten at once: Last-Modified (whole seconds) may not
  // move, the ETag does, and If-None-Match wins over If-Modified-Since.
  await writeFromOtherProcess(file, Buffer.from('a { color: red }'.replace('red', 'tan')))
  const edited = await get(app, '/page.css', validators)
  assert.equal(edited.status, 200)
  assert.equal(edited.body.toString(), 'a { color: tan }')
  assert.notEqual(edited.headers.etag, first.headers.etag)
  assert.equal((await get(app, '/page.css', { 'if-none-match': edited.headers.etag, 'if-modified-since': first.headers['last-modified'] })).status, 304)
})

// --- nginx as a caching proxy with slices, in front of two replicas -------------

function startNginx (t, dir, upstreams, validSeconds) {
  const conf = path.join(dir, 'nginx.conf')
  fs.mkdirSync(path.join(dir, 'cache'))
  fs.writeFileSync(conf, `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  proxy_cache_path ${dir}/cache keys_zone=slices:1m max_size=512m;
  upstream replicas { ${upstreams.map((port) => `server 127.0.0.1:${port};`).join(' ')} }
  server {
    listen 127.0.0.1:0;
    location / {
      slice 1m;
      proxy_cache slices;
      proxy_cache_key $uri$is_args$args$slice_range;
      proxy_set_header Range $slice_range;
      proxy_http_version 1.1;
      proxy_cache_valid 200 206 ${validSeconds}s;
      proxy_pass http://replicas;
    }
  }
}
`)
  return conf
}

function freePort () {
  return new Promise((resolve, reject) => {
    const server = http.createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
    server.on('error', reject)
  })
}

async function launchNginx (t, dir, upstreams, validSeconds) {
  const port = await freePort()
  const conf = startNginx(t, dir, upstreams, validSeconds)
  fs.writeFileSync(conf, fs.readFileSync(conf, 'utf8').replace('listen 127.0.0.1:0;', `listen 127.0.0.1:${port};`))
  const child = spawn(NGINX, ['-c', conf, '-p', dir, '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'inherit', 'inherit'] })
  const exited = new Promise((resolve) => child.on('exit', resolve))
  t.after(async () => {
    child.kill('SIGTERM')
    await exited
  })
  // Ready once it answers.
  for (let i = 0; ; i++) {
    try {
      await new Promise((resolve, reject) => {
        const socket = require('node:net').connect(port, '127.0.0.1', () => { socket.end(); resolve() })
        socket.on('error', reject)
      })
      break
    } catch (err) {
      if (child.exitCode !== null || i > 500) throw new Error(`nginx did not start: ${fs.readFileSync(path.join(dir, 'error.log'), 'utf8')}`)
      await sleep(10)
    }
  }
  return port
}

/** The whole body nginx sends, or how it ended early. */
function download (port, p) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      const chunks = []
      res.on('data', (d) => chunks.push(d))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete }))
      res.on('error', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), complete: false }))
      res.on('aborted', () => {})
    }).on('error', reject)
  })
}

test('nginx caching proxy with slice 1m in front of two replicas: 64 MiB byte-exact; after an edit, never old and new slices mixed; after expiry, the new file whole', { skip: nginxSkip }, async (t) => {
  const a = tmpDir(t)
  const b = tmpDir(t)
  const size = 64 * 1024 * 1024
  const v1 = patternBytes(size, 31)
  fs.writeFileSync(path.join(a, 'video.bin'), v1)
  copyTree(a, b)
  const replicaA = await serve(t, a)
  const replicaB = await serve(t, b)
  const dir = tmpDir(t, 'zc-nginx-')
  const validSeconds = 3
  const port = await launchNginx(t, dir, [replicaA.server.address().port, replicaB.server.address().port], validSeconds)

  const whole = await download(port, '/video.bin')
  assert.equal(whole.status, 200)
  assert.ok(whole.complete, 'the download completed')
  assert.equal(whole.body.length, size)
  assert.equal(sha256(whole.body), sha256(v1))
  // Slices came from both replicas, sent by sendfile.
  for (const app of [replicaA, replicaB]) {
    const s = app.zeroCopy.stats()
    assert.ok(s.responses.sendfile + s.responses.write >= 16, `each replica served slices: ${JSON.stringify(s.responses)}`)
    if (native.binding !== null) assert.equal(s.responses.write, 0)
  }
  assert.doesNotMatch(fs.readFileSync(path.join(dir, 'error.log'), 'utf8'), /etag mismatch/)

  // The file changes on both replicas (a deploy: cp -a again).
  const v2 = patternBytes(size, 32)
  fs.writeFileSync(path.join(a, 'video.bin.next'), v2)
  fs.renameSync(path.join(a, 'video.bin.next'), path.join(a, 'video.bin'))
  spawnSync('cp', ['-a', path.join(a, 'video.bin'), path.join(b, 'video.bin.next')])
  fs.renameSync(path.join(b, 'video.bin.next'), path.join(b, 'video.bin'))

  // While old slices are still cached: whatever arrives is never a whole
  // body mixing old and new slices (nginx compares each slice's ETag with
  // the first one's and cuts the response on a mismatch).
  const during = await download(port, '/video.bin')
  const duringSha = sha256(during.body)
  if (during.complete && during.body.length === size) {
    assert.ok(duringSha === sha256(v1) || duringSha === sha256(v2), 'a complete body is one version')
  } else {
    assert.match(fs.readFileSync(path.join(dir, 'error.log'), 'utf8'), /etag mismatch in slice response/)
  }

  // Once every cached slice has expired: the new file, whole.
  await sleep(validSeconds * 1000 + 1100)
  const after = await download(port, '/video.bin')
  assert.ok(after.complete, 'the download completed')
  assert.equal(after.body.length, size)
  assert.equal(sha256(after.body), sha256(v2))
})
