'use strict'
// A lease break with a client on another host: the lease thread cannot see
// the peer's socket (inet_diag only sees our network namespace), so it
// resets the connection at the end of the grace (connect(AF_UNSPEC) drops
// our unsent queue) and releases the lease at once, without waiting for the
// client to read. The "other host" is a network namespace joined to ours by
// a veth pair, made by this test and removed after it. (A veth peer is
// still on this machine and may share page-cache pages with us, which is
// the documented "same host, other namespace" limit; so the writer here
// only rewrites bytes the client has already read, and the test checks the
// reset, the prompt release and the old-bytes prefix, as for a real NIC.)
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const { startServer, patternBytes, sha256, eventually } = require('./helpers')

const isRoot = process.getuid?.() === 0
const hasIp = spawnSync('ip', ['-V']).status === 0
const skip = !isRoot ? 'needs root to make a network namespace' : !hasIp ? 'needs iproute2 (ip)' : false

const id = process.pid % 200 + 20
const ns = `zc-peer-${process.pid}`
const hostSide = `zcv${process.pid % 100000}a`
const peerSide = `zcv${process.pid % 100000}b`
const serverAddress = `10.231.${id}.1`
const peerAddress = `10.231.${id}.2`

function ip (...args) {
  const r = spawnSync('ip', args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`)
}

function makePeerHost (t) {
  ip('netns', 'add', ns)
  t.after(() => spawnSync('ip', ['netns', 'del', ns]))
  ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', peerSide)
  t.after(() => spawnSync('ip', ['link', 'del', hostSide]))
  ip('link', 'set', peerSide, 'netns', ns)
  ip('addr', 'add', `${serverAddress}/30`, 'dev', hostSide)
  ip('link', 'set', hostSide, 'up')
  ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${peerAddress}/30`, 'dev', peerSide)
  ip('netns', 'exec', ns, 'ip', 'link', 'set', peerSide, 'up')
  ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up')
}

function lines (child) {
  const events = []
  let waiters = []
  let buffer = ''
  child.stdout.on('data', (d) => {
    buffer += d
    let i
    while ((i = buffer.indexOf('\n')) >= 0) {
      const event = JSON.parse(buffer.slice(0, i))
      buffer = buffer.slice(i + 1)
      events.push(event)
      waiters = waiters.filter((w) => !(w.name === event.event && (w.resolve(event), true)))
    }
  })
  return (name) => {
    const seen = events.find((e) => e.event === name)
    return seen ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ name, resolve }))
  }
}

test('a client on another host that stopped reading is reset after the grace; the writer does not wait for it', { skip, timeout: 60000 }, async (t) => {
  makePeerHost(t)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-remote-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'big.bin')
  const old = patternBytes(64 << 20, 77)
  fs.writeFileSync(file, old)

  const app = await startServer(t, { root: dir, leaseGrace: 300 }, { listen: false })
  await app.listen({ port: 0, host: serverAddress })
  const port = app.server.address().port

  const client = spawn('ip', ['netns', 'exec', ns, process.execPath, path.join(__dirname, 'fixtures', 'netns', 'slow-client.js'),
    serverAddress, String(port), 'big.bin', String(1 << 20)], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => client.kill('SIGKILL'))
  const next = lines(client)
  const paused = await next('paused')
  assert.ok(paused.received >= 1 << 20)
  assert.equal(app.zeroCopy.stats().leases.taken, 1)

  // Another process asks for the file while the client reads nothing.
  const started = Date.now()
  const writer = spawnSync(process.execPath, ['-e',
    `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(file)}, 'r+'); fs.writeSync(fd, Buffer.alloc(65536, 0x4e), 0, 65536, 0); fs.closeSync(fd)`],
  { timeout: 30000 })
  const waited = Date.now() - started
  assert.equal(writer.status, 0)
  console.log(`writer waited ${waited} ms (grace 300 ms); the client was not reading`)
  // A same-host client would hold the writer until it read (3 s here):
  // this one is remote, so the reset lets the writer go after the grace.
  assert.ok(waited >= 250, `the writer waited for the grace (${waited} ms)`)
  assert.ok(waited < 2500, `the writer did not wait for the stalled remote client (${waited} ms)`)

  const closed = await next('closed')
  console.log(`client: ${closed.bodyLength} of ${old.length} bytes, ${closed.error ?? 'closed'}`)
  assert.ok(closed.bodyLength < old.length, 'the body was cut short')
  assert.equal(closed.sha256, sha256(old.subarray(0, closed.bodyLength)), 'what arrived is a prefix of the old bytes')
  const stats = app.zeroCopy.stats()
  assert.ok(stats.leases.broken >= 1)
  assert.ok(stats.leases.aborted >= 1)
  const { native } = require('../dist/lib/native')
  assert.ok(await eventually(() => native.binding.leaseHeld() === 0, { timeoutMs: 5000 }))
})
