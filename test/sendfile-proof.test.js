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
app.listen({ port: 0, host: '127.0.0.1' }).then(() => console.log('PORT ' + app.server.address().port + ' PID ' + process.pid + ' OPENAT2 ' + app.zeroCopy.openat2))
`

test('bodies leave through sendfile(2) only, with no read or write of their bytes', { skip: !hasStrace && 'strace is not installed' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-strace-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = path.join(dir, 'server.js')
  const trace = path.join(dir, 'trace.txt')
  fs.writeFileSync(script, serverScript)

  const child = spawn('strace', ['-f', '-qq', '-o', trace, '-e', 'trace=openat2,openat,open,close,fcntl,dup,dup2,dup3,accept4,sendfile,read,pread64,readv,preadv,preadv2,write,writev,sendmsg,sendto',
    process.execPath, script, fixtures()], { stdio: ['ignore', 'pipe', 'inherit'], cwd: path.join(__dirname, '..') })
  t.after(() => child.kill('SIGKILL'))
  let serverPid = 0
  let openat2 = true
  const port = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      const m = /PORT (\d+) PID (\d+) OPENAT2 (true|false)/.exec(String(d))
      if (m) { serverPid = Number(m[2]); openat2 = m[3] === 'true'; resolve(Number(m[1])) }
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
  // What each fd number is, followed through the trace in order: fd
  // numbers are reused (a closed file's number can come back as a socket, a
  // dup for a pool read, or /dev/null), so a number means what its latest
  // open, dup or close made it. Served files are opened with openat2, or
  // where it is missing or turned off (FASTIFY_ZERO_COPY_OPENAT2=0) with the
  // walk's openat(O_NOFOLLOW), and then no openat2 call is made at all.
  const opener = openat2
    ? /openat2\(\d+, "([^"]+)".*\)\s+= (\d+)$/
    : /openat\(\d+, "([^"]+)", [^)]*O_NOFOLLOW[^)]*\)\s+= (\d+)$/
  const what = new Map()
  let filesOpened = 0
  let sendfileBytes = 0
  let sendfileCalls = 0
  let coldReadBytes = 0
  let written = 0
  const readsOfFiles = []
  for (const line of lines) {
    let m = opener.exec(line)
    if (m && files.includes(m[1])) {
      what.set(m[2], 'file')
      filesOpened++
      continue
    }
    if ((m = /^\d+\s+openat\(AT_FDCWD, "\/dev\/null", .*\)\s+= (\d+)$/.exec(line))) {
      what.set(m[1], 'sink') // a pool read's sink (lib/cold reads): sendfile into it copies nothing
      continue
    }
    if ((m = /^\d+\s+accept4\(.*\)\s+= (\d+)$/.exec(line))) {
      what.set(m[1], 'client')
      continue
    }
    if ((m = /^\d+\s+(?:open|openat|openat2)\(.*\)\s+= (\d+)$/.exec(line))) {
      what.delete(m[1])
      continue
    }
    if ((m = /^\d+\s+(?:fcntl\((\d+), F_DUPFD(?:_CLOEXEC)?|dup\((\d+)|dup[23]\((\d+), \d+).*\)\s+= (\d+)$/.exec(line))) {
      const from = m[1] ?? m[2] ?? m[3]
      if (what.has(from)) what.set(m[4], what.get(from))
      else what.delete(m[4])
      continue
    }
    if ((m = /^\d+\s+close\((\d+)\)/.exec(line))) {
      what.delete(m[1])
      continue
    }
    if ((m = /sendfile\((\d+), (\d+), .*\)\s+= (\d+)$/.exec(line)) && what.get(m[2]) === 'file') {
      if (what.get(m[1]) === 'sink') {
        coldReadBytes += Number(m[3])
      } else {
        assert.equal(what.get(m[1]), 'client', `sendfile of a served file into a client connection: ${line}`)
        sendfileCalls++
        sendfileBytes += Number(m[3])
      }
      continue
    }
    // Whatever the server wrote to its clients itself: headers and the stats JSON.
    if ((m = /^\d+\s+(?:write|writev|sendmsg|sendto)\((\d+),.*\)\s+= (\d+)$/.exec(line)) && what.get(m[1]) === 'client') {
      written += Number(m[2])
      continue
    }
    if ((m = /^\d+\s+(read|pread64|readv|preadv2?)\((\d+),/.exec(line)) && what.get(m[2]) === 'file') readsOfFiles.push(line)
  }
  if (openat2) {
    assert.ok(filesOpened > 0, 'the files were opened with openat2 (RESOLVE_BENEATH)')
  } else {
    assert.ok(filesOpened > 0, 'the files were opened with the walk (openat, O_NOFOLLOW)')
    assert.deepEqual(lines.filter((l) => /^\d+\s+openat2\(/.test(l)), [], 'no openat2 call when the walk is used')
  }

  const total = files.reduce((sum, f) => sum + fs.statSync(path.join(fixtures(), f)).size, 0)
  assert.equal(sendfileBytes, total, 'every body byte went through sendfile to the client')
  assert.deepEqual(readsOfFiles, [], 'no read of a served file into user space')

  assert.ok(written < 16 * 1024, `socket writes stayed header-sized (${written} bytes), bodies were ${total} bytes`)
  assert.equal(stats.responses.sendfile, 3)
  assert.equal(stats.bytes.sendfile, total)
  console.log(`sendfile calls: ${sendfileCalls} for ${total} bytes; bytes written by write/writev: ${written}; ` +
    `read in on the pool (sendfile into /dev/null, pages evicted by other processes): ${coldReadBytes}`)
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
