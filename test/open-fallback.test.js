'use strict'
// Where openat2 is missing (kernels before 5.6, qemu-user, gVisor) or
// blocked (seccomp: EPERM), files beneath the root are opened by the walk
// in native/open-walk.c. Here the containment tests run again with the
// walk forced (FASTIFY_ZERO_COPY_OPENAT2=0): they must all pass, and every
// process of that run must report that it used the walk.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const readline = require('node:readline')
const { native } = require('../dist/lib/native')
const { startServer, rawExchange } = require('./helpers')

const PACKAGE_ROOT = path.join(__dirname, '..')
const hasStrace = spawnSync('strace', ['-V']).status === 0

// Every test that judges containment: traversal, symlinks in and out of
// the root, magic links, dotfiles; plus the strace proof (no openat2 call)
// and the walk's own edge cases.
const CONTAINMENT_TESTS = [
  'hostile-input.test.js',
  'paths.test.js',
  'conformance.test.js',
  'open-walk.test.js',
  'sendfile-proof.test.js'
]
const DISABLED = 'disabled by FASTIFY_ZERO_COPY_OPENAT2=0'
const forcedHere = process.env.FASTIFY_ZERO_COPY_OPENAT2 === '0'

test('app.zeroCopy says which way files are opened', async (t) => {
  const app = await startServer(t, {}, { listen: false })
  await app.ready()
  if (native.binding === null) {
    assert.equal(app.zeroCopy.openat2, false)
    assert.match(app.zeroCopy.openat2UnavailableReason, /^no native addon/)
  } else if (forcedHere) {
    assert.equal(app.zeroCopy.openat2, false)
    assert.equal(app.zeroCopy.openat2UnavailableReason, DISABLED)
  } else {
    const works = native.binding.openat2Probe() === 0
    assert.equal(app.zeroCopy.openat2, works)
    assert.equal(app.zeroCopy.openat2UnavailableReason === null, works)
  }
  t.diagnostic(`openat2: ${app.zeroCopy.openat2} (${app.zeroCopy.openat2UnavailableReason})`)
})

test('the containment tests pass with openat2 turned off, and the walk is what ran', {
  skip: native.binding === null
    ? `no native addon: ${native.reason}`
    : forcedHere && 'this whole run already has FASTIFY_ZERO_COPY_OPENAT2=0',
  timeout: 600000
}, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-open-fallback-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const log = path.join(dir, 'resolvers.jsonl')
  const preload = path.join(__dirname, 'fixtures', 'open-fallback', 'record-resolver.js')
  const env = {
    ...process.env,
    FASTIFY_ZERO_COPY_OPENAT2: '0',
    ZC_OPEN_RESOLVER_LOG: log,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${preload}`.trim()
  }
  // Set by our own runner: the nested one would think it is a test file.
  delete env.NODE_TEST_CONTEXT
  const files = CONTAINMENT_TESTS.map((f) => path.join(__dirname, f))
  const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=tap', ...files], {
    env, cwd: path.join(__dirname, '..'), stdio: ['ignore', 'pipe', 'pipe']
  })
  t.after(() => { if (child.exitCode === null) child.kill() })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const code = await new Promise((resolve) => child.once('close', resolve))

  const count = (name) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(stdout)?.[1])
  // Each failure with the lines that explain it (TAP's YAML block).
  const lines = stdout.split('\n')
  const failures = lines.flatMap((l, i) => /^\s*not ok /.test(l) ? lines.slice(i, i + 30) : [])
  assert.equal(code, 0, `the run failed:\n${failures.join('\n')}\n${stdout.slice(-3000)}\n${stderr.slice(-2000)}`)
  assert.equal(count('fail'), 0)
  assert.equal(count('cancelled'), 0)
  assert.equal(count('pass') + count('skipped') + count('todo'), count('tests'))
  // 39 when this was written: a run that quietly ran little is a failure.
  assert.ok(count('pass') >= 39, `${count('pass')} tests passed`)

  const records = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  for (const file of CONTAINMENT_TESTS) {
    assert.ok(records.some((r) => r.script === file), `${file} recorded how it opened files`)
  }
  for (const r of records) assert.deepEqual({ openat2: r.openat2, reason: r.reason }, { openat2: false, reason: DISABLED }, r.script)
  t.diagnostic(`with the walk: ${count('pass')} passed, ${count('fail')} failed, ${count('skipped')} skipped ` +
    `in ${CONTAINMENT_TESTS.length} files; ${records.length} processes used the walk ` +
    `(${[...new Set(records.map((r) => r.script))].join(', ')})`)
})

// A kernel without openat2, or a seccomp profile blocking it, made real:
// strace makes every openat2 call of the server fail with ENOSYS or EPERM
// without running it. The probe must see it and choose the walk, and the
// walk must keep the root's rules.
const PROBED_SERVER = `
'use strict'
const app = require(require.resolve('fastify', { paths: [${JSON.stringify(PACKAGE_ROOT)}] }))()
app.register(require(${JSON.stringify(PACKAGE_ROOT)}), { root: process.argv[2] })
app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
app.listen({ port: 0, host: '127.0.0.1' }).then(() => {
  const { openat2, openat2UnavailableReason, native } = app.zeroCopy
  console.log(JSON.stringify({ port: app.server.address().port, pid: process.pid, native, openat2, reason: openat2UnavailableReason }))
})
`

for (const errno of ['ENOSYS', 'EPERM']) {
  test(`openat2 answering ${errno} (strace fault injection): the probe picks the walk, the root's rules hold`, {
    skip: (native.binding === null && `no native addon: ${native.reason}`) || (!hasStrace && 'strace is not installed'),
    timeout: 120000
  }, async (t) => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-no-openat2-'))
    t.after(() => fs.rmSync(base, { recursive: true, force: true }))
    const root = path.join(base, 'root')
    fs.mkdirSync(path.join(root, 'sub'), { recursive: true })
    fs.writeFileSync(path.join(root, 'hello.txt'), 'hello\n')
    fs.writeFileSync(path.join(base, 'secret.txt'), 'secret outside\n')
    fs.symlinkSync('hello.txt', path.join(root, 'link-in'))
    fs.symlinkSync(path.join(root, 'hello.txt'), path.join(root, 'link-in-abs'))
    fs.symlinkSync('../secret.txt', path.join(root, 'link-out'))
    fs.symlinkSync('..', path.join(root, 'sub', 'up'))
    fs.symlinkSync('..', path.join(root, 'up'))
    fs.symlinkSync('loop', path.join(root, 'loop'))
    fs.symlinkSync('/proc/self/fd/0', path.join(root, 'magic'))
    const script = path.join(base, 'server.js')
    fs.writeFileSync(script, PROBED_SERVER)

    const env = { ...process.env }
    delete env.FASTIFY_ZERO_COPY_OPENAT2
    const child = spawn('strace', ['-f', '-qq', '--seccomp-bpf', '-o', '/dev/null', '-e', 'trace=openat2',
      '-e', `inject=openat2:error=${errno}`, process.execPath, script, root], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => { stderr += d })
    const info = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 60000)
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${stderr}`)) })
      readline.createInterface({ input: child.stdout }).once('line', (line) => { clearTimeout(timer); resolve(JSON.parse(line)) })
    })
    // strace waits for the program it started: end the server, then strace.
    t.after(async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try { process.kill(info.pid, 'SIGKILL') } catch {}
      await exited
    })

    assert.deepEqual({ native: info.native, openat2: info.openat2, reason: info.reason },
      { native: true, openat2: false, reason: `openat2 failed: ${errno}` })
    const expected = [
      ['/hello.txt', 200, 'hello\n'],
      ['/link-in', 200, 'hello\n'],
      ['/link-in-abs', 200, 'hello\n'], // absolute, inside: EXDEV, then the realpath check serves it
      ['/sub/up/hello.txt', 200, 'hello\n'],
      ['/link-out', 403],
      ['/up/secret.txt', 403],
      ['/sub/up/up/secret.txt', 403],
      ['/../secret.txt', 403],
      ['/magic', 403],
      ['/loop', 404],
      ['/nope', 404],
      ['/hello.txt/', 404]
    ]
    const seen = []
    for (const [target, status, body] of expected) {
      const raw = await rawExchange(info.port, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
      const text = raw.toString('latin1')
      assert.doesNotMatch(text, /secret outside/, target)
      assert.equal(Number(text.split(' ')[1]), status, `${target}: ${text.slice(0, 300)}`)
      if (body !== undefined) assert.equal(text.slice(text.indexOf('\r\n\r\n') + 4), body, target)
      seen.push(`${target}=${status}`)
    }
    t.diagnostic(`openat2 -> ${errno}: ${info.reason}; ${seen.join(' ')}`)
  })
}
