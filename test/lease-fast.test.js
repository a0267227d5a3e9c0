'use strict'
// integrity: 'fast': after the grace the lease goes right away, even while
// a same-host client still holds unread bytes (it may then read new bytes:
// the documented price). The strict default would hold the writer until
// that client reads (test/leases.test.js, scenario 3).
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { startServer, patternBytes, eventually } = require('./helpers')
const { RawClient } = require('./raw-client')

test("integrity 'fast': the writer is released after the grace although the same-host client reads nothing", { timeout: 60000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-fast-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'big.bin')
  fs.writeFileSync(file, patternBytes(64 << 20, 5))

  const app = await startServer(t, { root: dir, leaseGrace: 300, integrity: 'fast' })
  const client = new RawClient(app.server.address().port)
  t.after(() => client.destroy())
  client.send([['GET', '/big.bin']])
  await client.until((x) => x.bytes >= 1 << 20, { what: 'the first MiB' })
  client.socket.pause()
  assert.equal(app.zeroCopy.stats().leases.taken, 1)

  // The writer runs in another process: this one must keep its loop free.
  const started = Date.now()
  const writer = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e',
      `require('fs').closeSync(require('fs').openSync(${JSON.stringify(file)}, 'r+'))`])
    child.on('exit', (code) => resolve(code))
  })
  const waited = Date.now() - started
  assert.equal(writer, 0)
  console.log(`writer waited ${waited} ms with grace 300 ms, integrity 'fast', client not reading`)
  assert.ok(waited < 2500, `released without waiting for the client (${waited} ms)`)

  const { native } = require('../dist/lib/native')
  assert.ok(await eventually(() => native.binding.leaseHeld() === 0, { timeoutMs: 5000 }))
  assert.ok(app.zeroCopy.stats().leases.aborted >= 1)
})
