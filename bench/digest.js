'use strict'
// What `etag: 'digest'` costs (issue #12):
//   - hashing throughput of lib/digest.ts (4 MiB chunks read and hashed on
//     libuv's thread pool), on a file in the page cache, beside node:crypto's
//     one-shot SHA-256 of the same bytes on the main thread (the floor);
//   - the first response's latency for a 64 MiB file (it waits for the
//     hash), the next one's (the digest is known), and the first one's with
//     the default stat-based tag, over a real socket to a server with the
//     plugin, pinned to CPU 0 when taskset is there.
//
//   node bench/digest.js                 prints the numbers
//   require('./bench/digest')(opts)      resolves to them
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')
const crypto = require('node:crypto')
const { performance } = require('node:perf_hooks')

const MiB = 1024 * 1024
const REPO = path.resolve(__dirname, '..')

function timedHead (port, p) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    http.request({ host: '127.0.0.1', port, path: p, method: 'HEAD', agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve({ ms: performance.now() - t0, etag: res.headers.etag }))
    }).on('error', reject).end()
  })
}

async function serverWith (dir, etag) {
  const zeroCopy = require(REPO)
  const app = require('fastify')({ logger: false })
  await app.register(zeroCopy, { root: dir, etag })
  app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  await app.listen({ port: 0, host: '127.0.0.1' })
  return app
}

module.exports = async function digestCost ({ log = () => {}, hashMiB = 256, fileMiB = 64, rounds = 3 } = {}) {
  const { digestOfFd } = require(path.join(REPO, 'dist', 'lib', 'digest.js'))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-bench-digest-'))
  try {
    const big = path.join(dir, 'hash.bin')
    const bytes = crypto.randomBytes(hashMiB * MiB)
    fs.writeFileSync(big, bytes)
    const fd = fs.openSync(big, 'r')
    let poolMs = Infinity
    let floorMs = Infinity
    try {
      for (let i = 0; i < rounds; i++) {
        let t0 = performance.now()
        await digestOfFd(fd, bytes.length)
        poolMs = Math.min(poolMs, performance.now() - t0)
        t0 = performance.now()
        crypto.createHash('sha256').update(bytes).digest()
        floorMs = Math.min(floorMs, performance.now() - t0)
      }
    } finally {
      fs.closeSync(fd)
    }
    log(`digest: ${hashMiB} MiB hashed in ${poolMs.toFixed(0)} ms on the pool (one-shot sha256 on the main thread: ${floorMs.toFixed(0)} ms)`)

    const file = `f${fileMiB}.bin`
    fs.writeFileSync(path.join(dir, file), bytes.subarray(0, fileMiB * MiB))
    const first = []
    const next = []
    const statFirst = []
    for (let i = 0; i < rounds; i++) {
      const digestApp = await serverWith(dir, 'digest')
      const port = digestApp.server.address().port
      first.push((await timedHead(port, '/' + file)).ms)
      next.push((await timedHead(port, '/' + file)).ms)
      await digestApp.close()
      const statApp = await serverWith(dir, true)
      statFirst.push((await timedHead(statApp.server.address().port, '/' + file)).ms)
      await statApp.close()
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
    const result = {
      hashMiB,
      fileMiB,
      rounds,
      poolMBps: (hashMiB * MiB / 1e6) / (poolMs / 1000),
      floorMBps: (hashMiB * MiB / 1e6) / (floorMs / 1000),
      firstMs: median(first),
      nextMs: median(next),
      statFirstMs: median(statFirst)
    }
    log(`digest: first HEAD of ${fileMiB} MiB ${result.firstMs.toFixed(1)} ms, next ${result.nextMs.toFixed(2)} ms; stat tag first ${result.statFirstMs.toFixed(2)} ms`)
    return result
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (require.main === module) {
  module.exports({ log: console.log }).then((r) => console.log(JSON.stringify(r, null, 2)), (err) => {
    console.error(err)
    process.exit(1)
  })
}
