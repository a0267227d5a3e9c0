'use strict'
// The package as a user gets it: pack the tarball (from a temp copy of the
// project, so prebuildify and the fresh dist/ never touch the work tree),
// check what is in it (and attw + publint on it), install it offline into
// a fresh project with no compiler on PATH, build a strict nodenext
// TypeScript app against its types, and fetch files from that app over a
// real socket: zero-copy from the prebuild, the write path with
// `zeroCopy: false`, and the write path when there is neither a matching
// prebuild nor a compiler (the install must still succeed).
//
// Needs no network: the consumer's other dependencies are copied from this
// project's node_modules (see seedNodeModules), the tarball is local.
// KEEP_CONSUMER_TMP=1 keeps the temp folder for a look after a failure.

const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const readline = require('node:readline')
const { execFile, spawn } = require('node:child_process')

const PACKAGE_ROOT = path.join(__dirname, '..')
const FIXTURE = path.join(__dirname, 'fixtures', 'consumer')
const PKG = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8'))
const { TARGETS: PREBUILD_TARGETS, strictFromEnv } = require('../scripts/prebuild-all.js')
const STRICT_PREBUILDS = strictFromEnv()

const skip = process.platform !== 'linux' ? 'the zero-copy path and its prebuild are Linux-only' : false

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex')

// --- tools -------------------------------------------------------------------

/** npm's own CLI script, run with this node (never through a shell). */
function npmCli () {
  const fromNpm = process.env.npm_execpath
  if (fromNpm && /npm-cli\.js$/.test(fromNpm)) return fromNpm
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'npm')
    if (!dir || !fs.existsSync(candidate)) continue
    const real = fs.realpathSync(candidate)
    if (real.endsWith('.js')) return real
  }
  return path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')
}

// The project's own devDependencies (some do not export ./package.json).
const manifestOf = (pkg) => JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'node_modules', pkg, 'package.json'), 'utf8'))

/** A devDependency's bin script, run with this node. */
function binOf (pkg, name) {
  const { bin } = manifestOf(pkg)
  return path.join(PACKAGE_ROOT, 'node_modules', pkg, typeof bin === 'string' ? bin : bin[name])
}

const installedVersion = (pkg) => manifestOf(pkg).version

// npm config worth passing on to the nested npm (the one that packs): its
// cache and config files, and nodedir (node-gyp's headers, for prebuildify).
const KEEP_NPM_CONFIG = new Set(['cache', 'userconfig', 'globalconfig', 'registry', 'cafile', 'nodedir'])

/**
 * The environment without what `npm test` and `node --test` leave in it:
 * the rest of npm_* (prefix, node_gyp, lifecycle and package variables)
 * would steer the nested npm, and NODE_TEST_CONTEXT would turn a child node
 * into a test-runner child.
 */
function cleanEnv (extra = {}) {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    const npmConfig = /^npm_config_(.+)$/i.exec(k)
    if (npmConfig && KEEP_NPM_CONFIG.has(npmConfig[1].toLowerCase())) { env[k] = v; continue }
    if (/^npm_/i.test(k) || k === 'INIT_CWD' || k === 'NODE_TEST_CONTEXT' || k === 'NODE_OPTIONS') continue
    if (k === 'FASTIFY_ZERO_COPY_NATIVE' || k === 'PREBUILDS_ONLY' || /_PREBUILD$/.test(k)) continue
    env[k] = v
  }
  return { ...env, ...extra }
}

function run (file, args, { cwd, env = cleanEnv(), timeout = 60000 } = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, signal: err?.signal ?? null, stdout, stderr })
    })
  })
}

/**
 * Copies `names` and everything they depend on from this project's
 * node_modules into `dir`/node_modules, at the same places (a subset of a
 * valid tree is a valid tree), with their .bin links.
 */
function seedNodeModules (dir, names) {
  const source = path.join(PACKAGE_ROOT, 'node_modules')
  const copied = new Set()
  const locate = (from, name) => { // Node's lookup, from a package folder up to the project
    for (let d = from; d.startsWith(source); d = path.dirname(d)) {
      const candidate = path.join(d, d === source ? '' : 'node_modules', name)
      if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate
      if (d === source) break
    }
    return null
  }
  const visit = (pkgDir) => {
    if (copied.has(pkgDir)) return
    copied.add(pkgDir)
    fs.cpSync(pkgDir, path.join(dir, 'node_modules', path.relative(source, pkgDir)), {
      recursive: true,
      verbatimSymlinks: true,
      filter: (src) => path.relative(pkgDir, src).split(path.sep)[0] !== 'node_modules'
    })
    const m = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'))
    // Its .bin links too, or npm takes it for half-installed and fetches it.
    const parentModules = m.name.startsWith('@') ? path.dirname(path.dirname(pkgDir)) : path.dirname(pkgDir)
    const bins = typeof m.bin === 'string' ? [m.name.split('/').pop()] : Object.keys(m.bin ?? {})
    for (const bin of bins) {
      const link = path.join(parentModules, '.bin', bin)
      let target
      try { target = fs.readlinkSync(link) } catch { continue }
      const copy = path.join(dir, 'node_modules', path.relative(source, link))
      fs.mkdirSync(path.dirname(copy), { recursive: true })
      if (!fs.existsSync(copy)) fs.symlinkSync(target, copy)
    }
    const deps = { ...m.dependencies, ...m.optionalDependencies, ...m.peerDependencies }
    for (const name of Object.keys(deps)) {
      const found = locate(pkgDir, name)
      if (found !== null) visit(found)
      else assert.ok(m.optionalDependencies?.[name] !== undefined || m.peerDependencies?.[name] !== undefined,
        `${name}, needed by ${m.name}, is not installed in this project`)
    }
  }
  for (const name of names) {
    const found = locate(source, name)
    assert.ok(found, `${name} is not installed in this project: run npm install`)
    visit(found)
  }
}

const npm = (args, opts) => run(process.execPath, [npmCli(), ...args], opts)
const tail = (r, n = 40) => `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}\n--- stdout\n${r.stdout.split('\n').slice(-n).join('\n')}\n--- stderr\n${r.stderr.split('\n').slice(-n).join('\n')}`

// --- shared state (the tests below run in order) ------------------------------

const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-consumer-'))
after(() => {
  if (process.env.KEEP_CONSUMER_TMP === '1') console.log(`# consumer temp folder kept: ${WORK}`)
  else fs.rmSync(WORK, { recursive: true, force: true })
})

const STAGE = path.join(WORK, 'stage')
const APP = path.join(WORK, 'app')
const FILES = path.join(WORK, 'files')
// PATH for "no compiler": only node and npm (no cc, make or python). npm
// runs scripts with /bin/sh, given by its absolute path since PATH has no
// sh, and its node-gyp shim is pointed at nothing, so no build can start.
const NO_COMPILER_BIN = path.join(WORK, 'bin-no-compiler')
const noCompilerEnv = () => cleanEnv({
  PATH: NO_COMPILER_BIN,
  npm_config_cache: path.join(WORK, 'empty-npm-cache'),
  npm_config_script_shell: '/bin/sh',
  npm_config_node_gyp: path.join(WORK, 'no-node-gyp', 'bin', 'node-gyp.js')
})

const LIBC = fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc'
const PREBUILD_REL = path.join('prebuilds', `${process.platform}-${process.arch}`, `${PKG.name}.${LIBC}.node`)
const INSTALLED = path.join(APP, 'node_modules', PKG.name)
// The install script's own line (npm's banner echoes the command, which
// holds the same words after `console.warn(`).
const FALLBACK_NOTICE = /^fastify-zero-copy: the native addon did not build/m

const state = { tarball: null, installed: false, compiled: false }

const CONTENT = {
  'big.bin': crypto.randomBytes((1 << 20) + 123),
  'hello.txt': Buffer.from('hello from the consumer\n')
}

// --- 1. pack -----------------------------------------------------------------

test('npm pack: the tarball holds dist/, types, the native sources, binding.gyp, prebuilds/, README and LICENSE only', { skip, timeout: 330000 }, async () => {
  // A copy of the work tree as a fresh clone would have it: sources, tests,
  // benchmarks (so `files` has something to leave out), no build output.
  const leaveOut = new Set(['node_modules', '.git', 'build', 'prebuilds', 'dist'])
  fs.cpSync(PACKAGE_ROOT, STAGE, {
    recursive: true,
    verbatimSymlinks: true,
    filter: (src) => {
      const rel = path.relative(PACKAGE_ROOT, src)
      if (rel === '') return true
      const parts = rel.split(path.sep)
      if (leaveOut.has(parts[0])) return false
      if (parts.length === 1 && rel.endsWith('.tgz')) return false
      return !(parts[0] === 'bench' && parts[1] === 'results')
    }
  })
  fs.symlinkSync(path.join(PACKAGE_ROOT, 'node_modules'), path.join(STAGE, 'node_modules'), 'dir')

  // prepack: prebuildify (prebuilds/) and a clean dist/; prepare: tsc.
  const packed = path.join(WORK, 'packed')
  fs.mkdirSync(packed)
  // 300 s: prepack cross-compiles up to four prebuilds (about 30 s on an
  // idle 2-core machine).
  const r = await npm(['pack', '--pack-destination', packed], { cwd: STAGE, timeout: 300000 })
  assert.equal(r.code, 0, tail(r))
  const tgz = fs.readdirSync(packed).filter((f) => f.endsWith('.tgz'))
  assert.deepEqual(tgz, [`${PKG.name}-${PKG.version}.tgz`])
  state.tarball = path.join(packed, tgz[0])

  const list = await run('tar', ['-tzf', state.tarball])
  assert.equal(list.code, 0, tail(list))
  const entries = list.stdout.split('\n').filter((l) => l && !l.endsWith('/')).map((l) => l.replace(/^package\//, ''))

  const allowed = (f) => ['package.json', 'README.md', 'LICENSE', 'binding.gyp', 'types/index.d.ts'].includes(f) ||
    /^dist\/(lib\/)?[^/]+\.js$/.test(f) || /^native\/[^/]+\.[ch]$/.test(f) || /^prebuilds\/[^/]+\/[^/]+\.node$/.test(f)
  assert.deepEqual(entries.filter((f) => !allowed(f)), [], `unexpected files in the tarball:\n${entries.join('\n')}`)

  // Everything an install needs is there.
  for (const f of ['package.json', 'README.md', 'LICENSE', 'binding.gyp', 'types/index.d.ts', 'dist/index.js', PREBUILD_REL.split(path.sep).join('/')]) {
    assert.ok(entries.includes(f), `${f} missing from the tarball:\n${entries.join('\n')}`)
  }
  // Every prebuild this machine has the toolchain for (scripts/prebuild-all.js
  // builds them all in prepack); with CI=true, where .ci/run installs every
  // toolchain, all four, and prepack itself fails if one was skipped.
  const prebuilds = entries.filter((f) => f.startsWith('prebuilds/')).sort()
  const buildable = PREBUILD_TARGETS.filter((t) => t.missing() === null)
  const expected = (STRICT_PREBUILDS ? PREBUILD_TARGETS : buildable).map((t) => t.file.split(path.sep).join('/')).sort()
  assert.deepEqual(prebuilds, expected, `prebuilds in the tarball (CI=${process.env.CI ?? ''}); skipped here: ${
    PREBUILD_TARGETS.filter((t) => t.missing() !== null).map((t) => `${t.id}: ${t.missing()}`).join('; ') || 'none'}\n${tail(r, 12)}`)
  if (STRICT_PREBUILDS) assert.equal(prebuilds.length, 4)
  const gypSources = fs.readFileSync(path.join(PACKAGE_ROOT, 'binding.gyp'), 'utf8').match(/native\/[\w.-]+\.[ch]/g)
  assert.ok(gypSources.length > 0)
  for (const f of gypSources) assert.ok(entries.includes(f), `${f} (a binding.gyp source) missing from the tarball`)
  const headers = fs.readdirSync(path.join(PACKAGE_ROOT, 'native')).filter((f) => f.endsWith('.h')).map((f) => `native/${f}`)
  for (const f of headers) assert.ok(entries.includes(f), `${f} missing from the tarball`)

  // dist/ is exactly the compiled sources: no leftovers of deleted modules.
  const expectedDist = ['dist/index.js', ...fs.readdirSync(path.join(STAGE, 'lib'))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => `dist/lib/${f.replace(/\.ts$/, '.js')}`)].sort()
  assert.deepEqual(entries.filter((f) => f.startsWith('dist/')).sort(), expectedDist)

  // What package.json points at is in the tarball.
  const targets = [PKG.main, PKG.types, ...Object.values(PKG.bin ?? {}),
    PKG.exports['.'].types, PKG.exports['.'].default].map((p) => p.replace(/^\.\//, ''))
  for (const f of targets) assert.ok(entries.includes(f), `package.json points at ${f}, which is not packed`)
})

test('attw and publint find nothing wrong with the tarball', { skip, timeout: 60000 }, async () => {
  assert.ok(state.tarball, 'needs the tarball')
  const attw = await run(process.execPath, [binOf('@arethetypeswrong/cli', 'attw'), state.tarball, '--no-definitely-typed', '--format', 'ascii', '--no-color'])
  assert.equal(attw.code, 0, tail(attw))
  assert.match(attw.stdout, /No problems found/, tail(attw))
  const publint = await run(process.execPath, [binOf('publint', 'publint'), 'run', state.tarball, '--level', 'warning', '--strict'])
  assert.equal(publint.code, 0, tail(publint))
  assert.doesNotMatch(publint.stdout + publint.stderr, /Warnings:|Errors:/, tail(publint))
})

// --- 2. install and compile ------------------------------------------------------

test('offline install from the tarball with no compiler on PATH: the prebuild is kept, nothing is compiled', { skip, timeout: 60000 }, async () => {
  assert.ok(state.tarball, 'needs the tarball')
  fs.mkdirSync(NO_COMPILER_BIN)
  fs.symlinkSync(process.execPath, path.join(NO_COMPILER_BIN, 'node'))
  fs.symlinkSync(npmCli(), path.join(NO_COMPILER_BIN, 'npm'))
  assert.deepEqual(fs.readdirSync(NO_COMPILER_BIN).sort(), ['node', 'npm'])

  fs.cpSync(FIXTURE, APP, { recursive: true })
  fs.mkdirSync(FILES)
  for (const [name, bytes] of Object.entries(CONTENT)) fs.writeFileSync(path.join(FILES, name), bytes)

  // fastify (the peer), @types/node and our dependencies come from this
  // project's node_modules, copied in as if installed earlier: `npm install
  // --offline fastify@x` would need full packuments in npm's cache, which
  // `npm ci` does not leave there. The tarball itself goes through a normal
  // npm install: its manifest, its files, its install script. npm runs with
  // an empty cache of its own, so --offline proves nothing was fetched.
  seedNodeModules(APP, ['fastify', '@types/node', ...Object.keys(PKG.dependencies)])
  const manifest = JSON.parse(fs.readFileSync(path.join(APP, 'package.json'), 'utf8'))
  manifest.dependencies = { fastify: installedVersion('fastify'), '@types/node': installedVersion('@types/node') }
  fs.writeFileSync(path.join(APP, 'package.json'), JSON.stringify(manifest, null, 2) + '\n')

  // --legacy-peer-deps: with it npm checks the fastify peer against the
  // installed fastify only; without, it fetches fastify's packument again.
  const r = await npm(['install', '--offline', '--legacy-peer-deps', '--no-audit', '--no-fund', '--foreground-scripts', state.tarball],
    { cwd: APP, env: noCompilerEnv(), timeout: 55000 })
  assert.equal(r.code, 0, `offline install failed\n${tail(r)}`)
  // The install script (node-gyp-build) found the prebuild, loaded it in
  // its test step, and so neither tried a build nor printed the fallback.
  assert.match(r.stdout, /> fastify-zero-copy@[^ ]+ install/, `the install script did not run\n${tail(r)}`)
  assert.doesNotMatch(r.stdout + r.stderr, FALLBACK_NOTICE, tail(r))
  assert.ok(fs.existsSync(path.join(INSTALLED, PREBUILD_REL)), `${PREBUILD_REL} not installed`)
  assert.ok(!fs.existsSync(path.join(INSTALLED, 'build')), 'something was compiled: build/ exists')
  state.installed = true
})

test('a strict nodenext TypeScript app compiles against the installed types (ESM import and CJS require)', { skip, timeout: 60000 }, async () => {
  assert.ok(state.installed, 'needs the install')
  // The project's own TypeScript (the consumer does not need one of its own
  // for this); types resolve from the consumer's node_modules.
  const tsc = await run(process.execPath, [binOf('typescript', 'tsc'), '-p', path.join(APP, 'tsconfig.json')], { cwd: APP, env: noCompilerEnv() })
  assert.equal(tsc.code, 0, tail(tsc))
  assert.ok(fs.existsSync(path.join(APP, 'out', 'server.js')))

  const cjs = await run(process.execPath, [path.join(APP, 'out', 'require-style.cjs')], { cwd: APP, env: noCompilerEnv() })
  assert.equal(cjs.code, 0, tail(cjs))
  assert.deepEqual(JSON.parse(cjs.stdout), { type: 'function', defaultIsSelf: true, namedIsSelf: true, pluginName: PKG.name })
  state.compiled = true
})

// --- 3. run -------------------------------------------------------------------

/** Starts the compiled consumer server; collects its warn lines. */
async function startConsumer (t, mode) {
  const child = spawn(process.execPath, [path.join(APP, 'out', 'server.js'), FILES, mode], {
    cwd: APP, env: noCompilerEnv(), stdio: ['ignore', 'pipe', 'pipe']
  })
  t.after(() => { if (child.exitCode === null) child.kill() })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  const logs = []
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumer did not start: ${stderr}`)), 15000)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`consumer exited ${code}: ${stderr}`)) })
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let entry
      try { entry = JSON.parse(line) } catch { entry = { raw: line } }
      if (entry.ready) { clearTimeout(timer); resolve(entry.port) } else logs.push(entry)
    })
  })
  const base = `http://127.0.0.1:${port}`
  return { base, logs, report: async () => (await fetch(`${base}/__report`)).json() }
}

/** Fetches every CONTENT file over a real socket and checks its bytes. */
async function fetchAll (base) {
  for (const [name, bytes] of Object.entries(CONTENT)) {
    const res = await fetch(`${base}/files/${name}`)
    assert.equal(res.status, 200, name)
    assert.equal(res.headers.get('content-length'), String(bytes.length), name)
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(bytes), `${name}: bytes differ`)
  }
}

const TOTAL_BYTES = Object.values(CONTENT).reduce((n, b) => n + b.length, 0)
const FILE_COUNT = Object.keys(CONTENT).length

async function settledReport (consumer, done) {
  let report
  for (let i = 0; i < 60; i++) {
    report = await consumer.report()
    if (done(report)) return report
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return report
}

const fallbackWarnings = (logs) => logs.filter((l) => l.level === 40 && /fallback/.test(l.msg ?? ''))
const ourAddons = (report) => report.addons.filter((f) => f.includes(`${path.sep}${PKG.name}${path.sep}`))

test('the prebuild is loaded: files go out with sendfile, bytes intact (sha256)', { skip, timeout: 30000 }, async (t) => {
  assert.ok(state.compiled, 'needs the compiled app')
  const consumer = await startConsumer(t, 'on')
  await fetchAll(consumer.base)
  const report = await settledReport(consumer, (r) => r.stats.bytes.sendfile === TOTAL_BYTES)
  assert.equal(report.native, true, report.reason)
  assert.equal(report.reason, null)
  assert.deepEqual(ourAddons(report), [fs.realpathSync(path.join(INSTALLED, PREBUILD_REL))], 'the mapped addon is the prebuild')
  assert.deepEqual(report.transports, Array(FILE_COUNT).fill('sendfile'))
  assert.equal(report.stats.responses.sendfile, FILE_COUNT)
  assert.equal(report.stats.responses.write, 0)
  assert.equal(report.stats.bytes.sendfile, TOTAL_BYTES)
  assert.deepEqual(fallbackWarnings(consumer.logs), [])
})

test('zeroCopy: false: files go out with the write path, bytes intact, no warning', { skip, timeout: 30000 }, async (t) => {
  assert.ok(state.compiled, 'needs the compiled app')
  const consumer = await startConsumer(t, 'off')
  await fetchAll(consumer.base)
  const report = await settledReport(consumer, (r) => r.stats.bytes.write === TOTAL_BYTES)
  assert.equal(report.native, true)
  assert.deepEqual(report.transports, Array(FILE_COUNT).fill('write'))
  assert.equal(report.stats.responses.sendfile, 0)
  assert.equal(report.stats.responses.write, FILE_COUNT)
  assert.equal(report.stats.fallbacks.disabled, FILE_COUNT)
  assert.equal(report.stats.bytes.write, TOTAL_BYTES)
  assert.deepEqual(fallbackWarnings(consumer.logs), [])
})

test('no matching prebuild and no compiler: the install still succeeds and says so; the app uses the write path and warns once', { skip, timeout: 60000 }, async (t) => {
  assert.ok(state.compiled, 'needs the compiled app')
  // Last, as it changes the install: as on a platform we ship no binary for.
  fs.rmSync(path.join(INSTALLED, 'prebuilds'), { recursive: true, force: true })
  const r = await npm(['rebuild', '--offline', '--foreground-scripts', PKG.name], { cwd: APP, env: noCompilerEnv(), timeout: 55000 })
  assert.equal(r.code, 0, tail(r))
  const out = r.stdout + r.stderr
  assert.equal(out.match(new RegExp(FALLBACK_NOTICE.source, 'gm'))?.length, 1, `the install's fallback notice, once:\n${tail(r)}`)
  assert.ok(!fs.existsSync(path.join(INSTALLED, 'build', 'Release')), 'nothing can have been compiled')

  const consumer = await startConsumer(t, 'on')
  await fetchAll(consumer.base)
  const report = await settledReport(consumer, (r) => r.stats.bytes.write === TOTAL_BYTES)
  assert.equal(report.native, false)
  assert.match(report.reason, /native addon did not load/)
  assert.deepEqual(ourAddons(report), [])
  assert.deepEqual(report.transports, Array(FILE_COUNT).fill('write'))
  assert.equal(report.stats.responses.sendfile, 0)
  assert.equal(report.stats.fallbacks.native, FILE_COUNT)
  assert.equal(report.stats.bytes.write, TOTAL_BYTES)
  const warnings = fallbackWarnings(consumer.logs)
  assert.equal(warnings.length, 1, JSON.stringify(consumer.logs))
  assert.match(warnings[0].msg, /fastify-zero-copy: native addon did not load/)
})
