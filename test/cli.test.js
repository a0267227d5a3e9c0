'use strict'
// The bin (`npm start`): serves a folder in serve mode on the port asked
// for (0: any free one, printed), logs each response with its transport,
// and refuses bad arguments with exit status 2.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const zlib = require('node:zlib')
const { spawn, spawnSync } = require('node:child_process')

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js')
const EXAMPLE = path.join(__dirname, 'fixtures', 'example')

/** Starts the CLI; resolves with the child, its URL and a way to read what it printed. */
function startCli (t, args) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { err += d })
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL printed; stdout: ${out} stderr: ${err}`)), 10000)
    child.stdout.on('data', () => {
      const match = /at (http:\/\/\S+?)\/ \(zero-copy (on|off[^)]*)\)/.exec(out)
      if (match) {
        clearTimeout(timer)
        resolve({ child, url: match[1], zeroCopy: match[2], output: () => out })
      }
    })
    child.on('exit', (code) => reject(new Error(`exited with ${code}: ${err}`)))
  })
}

async function until (check, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && !check()) await new Promise((resolve) => setTimeout(resolve, 20))
  return check()
}

test('serves a folder on --port 0, prints the real URL and each response\'s transport', async (t) => {
  const { child, url, zeroCopy, output } = await startCli(t, [EXAMPLE, '--port', '0'])
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.notEqual(url, 'http://127.0.0.1:0')

  const hello = await fetch(url + '/hello.txt')
  assert.equal(hello.status, 200)
  assert.equal(await hello.text(), fs.readFileSync(path.join(EXAMPLE, 'hello.txt'), 'utf8'))
  const index = await fetch(url + '/')
  assert.equal(index.status, 200)
  assert.match(await index.text(), /<title>fastify-zero-copy<\/title>/)
  const missing = await fetch(url + '/missing.txt')
  assert.equal(missing.status, 404)
  await missing.arrayBuffer()
  const folder = await fetch(url + '/data', { redirect: 'manual' })
  assert.equal(folder.status, 301)
  assert.equal(folder.headers.get('location'), '/data/')

  const transport = zeroCopy === 'on' ? 'sendfile' : 'write'
  assert.ok(await until(() => output().includes('GET /data 301')), output())
  const size = fs.statSync(path.join(EXAMPLE, 'hello.txt')).size
  assert.match(output(), new RegExp(`^GET /hello\\.txt 200 ${size} bytes via ${transport}$`, 'm'))
  assert.match(output(), new RegExp(`^GET / 200 \\d+ bytes via ${transport}$`, 'm'))
  assert.match(output(), /^GET \/missing\.txt 404 \d+ bytes via error$/m)
  assert.match(output(), /^GET \/data 301 0 bytes via fastify$/m)

  child.kill('SIGTERM')
  const code = await new Promise((resolve) => child.on('exit', resolve))
  assert.equal(code, 0)
})

test('serves pre-compressed siblings, and not with --no-precompressed', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-cli-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const text = 'compress me '.repeat(200)
  fs.writeFileSync(path.join(dir, 'a.txt'), text)
  fs.writeFileSync(path.join(dir, 'a.txt.gz'), zlib.gzipSync(text))

  const on = await startCli(t, [dir, '--port', '0'])
  const gz = await fetch(on.url + '/a.txt', { headers: { 'accept-encoding': 'gzip' } })
  assert.equal(gz.headers.get('content-encoding'), 'gzip')
  assert.equal(gz.headers.get('vary'), 'accept-encoding')
  assert.equal(await gz.text(), text) // fetch decodes it
  assert.ok(await until(() => /GET \/a\.txt 200 \d+ bytes \(gzip\) via/.test(on.output())), on.output())
  on.child.kill('SIGTERM')

  const off = await startCli(t, [dir, '--port', '0', '--no-precompressed'])
  const plain = await fetch(off.url + '/a.txt', { headers: { 'accept-encoding': 'gzip' } })
  assert.equal(plain.headers.get('content-encoding'), null)
  assert.equal(await plain.text(), text)
  off.child.kill('SIGTERM')
})

test('bad arguments: a clear message and exit status 2', () => {
  const cases = [
    [['--port', 'abc'], /--port must be an integer from 0 to 65535, got "abc"/],
    [['--port', '70000'], /--port must be an integer/],
    [['--port', '-1'], /--port must be an integer/],
    [['--port'], /--port needs a value/],
    [['--host'], /--host needs a value/],
    [['--bogus'], /unknown option "--bogus"/],
    [[EXAMPLE, EXAMPLE], /one folder only/],
    [[path.join(EXAMPLE, 'does-not-exist')], /is not a folder/],
    [[path.join(EXAMPLE, 'hello.txt')], /is not a folder/]
  ]
  for (const [args, message] of cases) {
    const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10000 })
    assert.equal(run.status, 2, `${args.join(' ')}: exit ${run.status}, stderr ${run.stderr}`)
    assert.match(run.stderr, message, args.join(' '))
    assert.match(run.stderr, /usage: fastify-zero-copy \[dir\]/)
  }
  const help = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8', timeout: 10000 })
  assert.equal(help.status, 0)
  assert.match(help.stdout, /usage: fastify-zero-copy/)
})
