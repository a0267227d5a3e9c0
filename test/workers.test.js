'use strict'
// The plugin in worker_threads and in several Fastify instances: the lease
// machinery is process-wide (one signal handler, one thread), each
// environment has its own event loop and its own break notifications.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const fs = require('node:fs')
const { Worker } = require('node:worker_threads')
const { fixtures, sha256, startServer, urlOf, eventually } = require('./helpers')

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads')
const app = require(workerData.fastify)()
app.register(require(workerData.plugin), { root: workerData.root })
app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
parentPort.on('message', (m) => {
  if (m === 'stats') parentPort.postMessage({ stats: app.zeroCopy.stats() })
  if (m === 'close') app.close().then(() => parentPort.postMessage({ closed: true }))
})
app.listen({ port: 0, host: '127.0.0.1' }).then(() => parentPort.postMessage({ port: app.server.address().port }))
`

function startWorker (t) {
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: {
      fastify: require.resolve('fastify'),
      plugin: path.join(__dirname, '..'),
      root: fixtures()
    }
  })
  t.after(() => worker.terminate())
  // Messages are queued from the start: one may arrive while the test
  // awaits another worker's.
  const queue = []
  const waiting = []
  worker.on('message', (m) => (waiting.length > 0 ? waiting.shift().resolve(m) : queue.push(m)))
  worker.on('error', (err) => { for (const w of waiting.splice(0)) w.reject(err) })
  const next = () => queue.length > 0
    ? Promise.resolve(queue.shift())
    : new Promise((resolve, reject) => waiting.push({ resolve, reject }))
  return { worker, next }
}

test('two worker threads and the main thread serve byte-exact over sendfile, under leases', async (t) => {
  const workers = [startWorker(t), startWorker(t)]
  const ports = []
  for (const w of workers) ports.push((await w.next()).port)
  const main = await startServer(t)
  const expected = sha256(fs.readFileSync(path.join(fixtures(), '1m.bin')))

  const urls = [...ports.map((p) => `http://127.0.0.1:${p}/1m.bin`), urlOf(main, '/1m.bin')]
  const bodies = await Promise.all(urls.map(async (u) => Buffer.from(await (await fetch(u)).arrayBuffer())))
  for (const body of bodies) assert.equal(sha256(body), expected)

  for (const w of workers) {
    w.worker.postMessage('stats')
    const { stats } = await w.next()
    assert.equal(stats.responses.sendfile, 1)
    assert.equal(stats.leases.taken, 1)
  }
  assert.equal(main.zeroCopy.stats().responses.sendfile, 1)

  // A worker that ends (its thread set leases) does not take the process or
  // the other environments down; the lease signal goes to the lease thread.
  workers[0].worker.postMessage('close')
  assert.deepEqual(await workers[0].next(), { closed: true })
  await workers[0].worker.terminate()
  const again = Buffer.from(await (await fetch(urls[1])).arrayBuffer())
  assert.equal(sha256(again), expected)
  const { native } = require('../dist/lib/native')
  assert.ok(await eventually(() => native.binding.leaseHeld() <= 1, { timeoutMs: 5000 }))
})
