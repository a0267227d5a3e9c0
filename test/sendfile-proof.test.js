'use strict'
// Proves the zero-copy path from the outside: a server process under
// strace sends the bodies with sendfile(2), never reads the files into
// user space, and writes only headers to the socket.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const { Agent, request } = require('undici')
const { fixtures, sha256 } = require('./helpers')

const hasStrace = spawnSync('strace', ['-V']).status === 0

const serverScript = `
const app = require(require.resolve('fastify', { paths: [${JSON.stringify(path.join(__dirname, '..'))}] }))()
app.register(require(${JSON.stringify(path.join(__dirname, '..'))}), { root: process.argv[2] })
app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
app.get('/stats', async () => app.zeroCopy.stats())
app.listen({ port: 0, host: '127.0.0.1' }).then(() => console.log('PORT ' + app.server.address().port + ' PID ' + process.pid))
`

test('bodies leave through sendfile(2) only, with no read or write of their bytes', { skip: !hasStrace && 'strace is not installed' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-strace-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = path.join(dir, 'server.js')
  const trace = path.join(dir, 'trace.txt')
  fs.writeFileSync(script, serverScript)

  const child = spawn('strace', ['-f', '-qq', '-o', trace, '-e', 'trace=openat2,sendfile,read,pread64,readv,preadv,preadv2,write,writev,sendmsg,sendto',
    process.execPath, script, fixtures()], { stdio: ['ignore', 'pipe', 'inherit'], cwd: path.join(__dirname, '..') })
  t.after(() => child.kill('SIGKILL'))
  let serverPid = 0
  const port = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      const m = /PORT (\d+) PID (\d+)/.exec(String(d))
      if (m) { serverPid = Number(m[2]); resolve(Number(m[1])) }
    })
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)))
  })

  const agent = new Agent({ connections: 1 })
  t.after(() => agent.close())
  const files = ['4k.bin', '1m.bin', '64m.bin']
  for (const name of files) {
    const res = await request(`http://127.0.0.1:${port}/${name}`, { dispatcher: agent })
    const body = Buffer.from(await res.body.arrayBuffer())
    assert.equal(res.statusCode, 200)
    assert.equal(sha256(body), sha256(fs.readFileSync(path.join(fixtures(), name))), name)
  }
  const stats = await (await request(`http://127.0.0.1:${port}/stats`, { dispatcher: agent })).body.json()
  // strace waits for the program it started: end the server, then strace.
  const exited = new Promise((resolve) => child.once('exit', resolve))
  process.kill(serverPid, 'SIGTERM')
  await exited

  const lines = joinInterrupted(fs.readFileSync(trace, 'utf8').split('\n'))
  // fds the server opened for the served files
  const fileFds = new Set()
  for (const line of lines) {
    const m = /openat2\(\d+, "([^"]+)".* = (\d+)$/.exec(line)
    if (m && files.includes(m[1])) fileFds.add(m[2])
  }
  assert.ok(fileFds.size > 0, 'the files were opened with openat2 (RESOLVE_BENEATH)')

  let sendfileBytes = 0
  let sendfileCalls = 0
  for (const line of lines) {
    const m = /sendfile\((\d+), (\d+), .*\) = (\d+)$/.exec(line)
    if (m && fileFds.has(m[2])) { sendfileCalls++; sendfileBytes += Number(m[3]) }
  }
  const total = files.reduce((sum, f) => sum + fs.statSync(path.join(fixtures(), f)).size, 0)
  assert.equal(sendfileBytes, total, 'every body byte went through sendfile')

  const readsOfFiles = lines.filter((l) => {
    const m = /^\d+\s+(read|pread64|readv|preadv2?)\((\d+),/.exec(l)
    return m && fileFds.has(m[2])
  })
  assert.deepEqual(readsOfFiles, [], 'no read of a served file into user space')

  // Whatever the server wrote to sockets itself: headers and the stats JSON.
  let written = 0
  for (const line of lines) {
    const m = /^\d+\s+(write|writev|sendmsg|sendto)\(.*\) = (\d+)$/.exec(line)
    if (m) written += Number(m[2])
  }
  assert.ok(written < 16 * 1024, `socket writes stayed header-sized (${written} bytes), bodies were ${total} bytes`)
  assert.equal(stats.responses.sendfile, 3)
  assert.equal(stats.bytes.sendfile, total)
  console.log(`sendfile calls: ${sendfileCalls} for ${total} bytes; bytes written by write/writev: ${written}`)
})

// strace -f splits a call that another traced thread interrupts (the
// lease thread's pipe read, a pool thread's read-ahead) into
// `PID call(args <unfinished ...>` and later `PID <... call resumed>rest`:
// join them back into one line per call.
function joinInterrupted (lines) {
  const pending = new Map()
  const out = []
  for (const line of lines) {
    const unfinished = /^(\d+)\s+(.*) <unfinished \.\.\.>$/.exec(line)
    if (unfinished) {
      pending.set(unfinished[1], `${unfinished[1]} ${unfinished[2]}`)
      continue
    }
    const resumed = /^(\d+)\s+<\.\.\. \w+ resumed>(.*)$/.exec(line)
    if (resumed && pending.has(resumed[1])) {
      out.push(pending.get(resumed[1]) + resumed[2])
      pending.delete(resumed[1])
      continue
    }
    out.push(line)
  }
  return out
}
