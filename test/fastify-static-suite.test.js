'use strict'
// @fastify/static's own test suite, run against serve mode (issue #13).
//
// The test files of the pinned devDependency (node_modules/@fastify/static/
// test, shipped in its npm tarball with their fixtures) are copied to a
// temporary folder, once per file, next to an index.js that loads
// test/fixtures/fastify-static-shim: fastify-zero-copy registered under
// @fastify/static's name with `serve: true` added (README: "change the
// import and add serve: true"). Their `require('..')` and `require('../')`
// get the shim; `require('../lib/...')` gets stand-ins (lib/dirList.js
// throws, lib/errors.js is @fastify/static's, used as expected values).
// Each file runs in its own process with our reporter
// (fixtures/fastify-static-shim/reporter.js, one JSON line per test) and
// guard (guard.js: a test that waits forever fails alone instead of
// cancelling the rest of its file), bounded in time, so an upstream failure
// never crashes this suite.
//
// The same files also run against the real @fastify/static (a copy of the
// whole package), which says which tests exist and that the environment
// lets them pass.
//
// Every upstream test that fails against serve mode must be in ALLOWED
// below, with a category and a reason; an entry whose test now passes, or
// no longer exists, fails this suite too, so the list stays exact.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')

const UPSTREAM = path.dirname(require.resolve('@fastify/static/package.json'))
const UPSTREAM_VERSION = require('@fastify/static/package.json').version
const SHIM = path.join(__dirname, 'fixtures', 'fastify-static-shim')
const REPORTER = path.join(SHIM, 'reporter.js')
const GUARD = path.join(SHIM, 'guard.js')
const NODE_MODULES = path.join(__dirname, '..', 'node_modules')
const FILES = fs.readdirSync(path.join(UPSTREAM, 'test')).filter((f) => f.endsWith('.test.js')).sort()
/** Time bound of one upstream file's process; they take a few seconds. */
const FILE_TIMEOUT_MS = 120_000
/** node:test's own per-test bound, for a test the guard cannot see hang (one that keeps a socket open). */
const TEST_TIMEOUT_MS = 30_000

// ---------------------------------------------------------------------------
// The allow-list. `test` is the name path, ' > ' between a test and its
// subtest; a name that occurs twice in a file gets ' #2' on the second.
// `because` (optional) must match the failure's message, or the
// assertion's actual and expected values (reporter.js `values`): when a
// test starts failing for another reason, its category is checked again.

const CATEGORIES = {
  deliberate: 'deliberate difference (README)',
  proxyquire: 'replaces internals (proxyquire)',
  internals: 'calls internals',
  upstreamToo: 'fails against @fastify/static too'
}

// README "Differences from @fastify/static" (and its Options section),
// quoted by text, not by number (the numbers change). Every quote must be
// in README.md word for word: checked below.
const README = {
  dotfiles: '`dotfiles` defaults to `\'ignore\'` (404), not `\'allow\'`.',
  errorCodes: 'Error codes are `FST_ZEROCOPY_*`; status, error and message are the same.',
  optionErrors: 'Invalid options at registration are refused with `FST_ZEROCOPY_INVALID_OPTION` and a message of our own that names the option.',
  download: 'The name is always quoted',
  caseFold: 'No check for differently cased spellings of a path',
  rootExists: 'The root must exist at registration (@fastify/static only logs a warning',
  onFileRefused: 'an `onFile` that is not a function (`null` included) are refused',
  sendRefused: 'A `send` option is refused (@fastify/static has none and ignores it).'
}
const readme = (key) => `README differences: "${README[key]}"`

// The tree's only dotfile, `.example`, is in @fastify/static's listing and
// left out of ours (dotfiles: 'ignore'); the rest of the listing is equal.
const withoutDotfile = /^actual: (?!.*\.example).*\nexpected: .*\.example/m
const dotfileListTest = (test) => ({
  file: 'dir-list.test.js',
  test,
  category: CATEGORIES.deliberate,
  because: withoutDotfile,
  reason: `expects the dotfile \`.example\` in the listing: ${readme('dotfiles')}`
})
const internalsTest = (test, because = /internal module of @fastify\/static/, how = 'calls lib/dirList.js of @fastify/static directly; the shim\'s stand-in throws') => ({
  file: 'dir-list.test.js',
  test,
  category: CATEGORIES.internals,
  because,
  reason: how
})
const rootExistsTest = (file, test) => ({
  file,
  test,
  category: CATEGORIES.deliberate,
  because: /Invalid option "root": .* is not a directory/,
  reason: `registers with a root that does not exist: ${readme('rootExists')}`
})
const proxyquireTest = (test, stubbed, because, extra = '') => ({
  file: 'static.test.js',
  test,
  category: CATEGORIES.proxyquire,
  because,
  reason: `stubs ${stubbed} inside @fastify/static with proxyquire; the shim never requires it, so the stub never runs${extra}`
})
const caseAliasTest = (test) => proxyquireTest(`rejects emulated filesystem case aliases > ${test}`,
  'node:fs/promises (to emulate a case-insensitive file system)', undefined, `; ${readme('caseFold')}`)

const ALLOWED = [
  // dir-list.test.js: directory listings.
  internalsTest('throws when `root` is an array'),
  internalsTest('throws when `list.format` option is invalid'),
  internalsTest('throws when `list.names option` is not an array'),
  internalsTest('throws when `list.jsonFormat` option is invalid'),
  internalsTest('throws when `list.format` is html and `list render` is not a function'),
  internalsTest('dir list path stays within the configured root'),
  internalsTest('dir list error', /falsy value/,
    'replaces `send` of lib/dirList.js (which serve mode does not have) with one that throws, and expects its 500'),
  {
    file: 'dir-list.test.js',
    test: 'dir list wrong options',
    category: CATEGORIES.deliberate,
    because: /FST_ZEROCOPY_INVALID_OPTION/,
    reason: `compares the registration error with FST_STATIC_INVALID_OPTION_VALUE and its message: ${readme('optionErrors')}`
  },
  dotfileListTest('dir list, custom options > /public/'),
  dotfileListTest('dir list, custom options with empty array index > /public/'),
  dotfileListTest('dir list html format > /public/index.htm'),
  dotfileListTest('dir list html format > /public/index'),
  dotfileListTest('json format with url parameter format'),
  dotfileListTest('json format with url parameter format and without render option'),
  dotfileListTest('html format with url parameter format'),
  rootExistsTest('dir-list.test.js', 'serve a non existent dir and get error'),

  // static.test.js
  {
    file: 'static.test.js',
    test: 'fastify.setNotFoundHandler() is called for dotfiles when send is configured to ignore dotfiles',
    category: CATEGORIES.deliberate,
    because: /Invalid option "send"/,
    reason: readme('sendRefused')
  },
  {
    file: 'static.test.js',
    test: 'allowedPath option - pathname is normalized before filtering > //foobar.html forbidden (non-canonical path)',
    category: CATEGORIES.deliberate,
    because: /FST_ZEROCOPY_FORBIDDEN/,
    reason: `same 403, code FST_ZEROCOPY_FORBIDDEN, not FST_STATIC_FORBIDDEN_PATH: ${readme('errorCodes')}`
  },
  ...[
    'onFile must be a function after registration and per-call options are merged',
    'invalid onFile is hidden by early denials'
  ].map((test) => ({
    file: 'static.test.js',
    test,
    category: CATEGORIES.deliberate,
    because: /Invalid option "onFile": must be a function/,
    reason: `registers with an \`onFile\` that is not a function and expects the error at request time: ${readme('onFileRefused')}`
  })),
  proxyquireTest('allowedPath option - selected paths outside the root fail closed',
    '@fastify/send (to make it pick a file outside the root, expecting 404)', /Expected values to be strictly equal/,
    '; serve mode opens the requested file beneath the root (openat2 RESOLVE_BENEATH), so there is no "selected" path to check'),
  ...[
    'reply.download()',
    'reply.download() with a relative file path uses the registered root',
    'reply.download() with fileName',
    'reply.download() with fileName - override',
    'reply.download() with custom opts',
    'reply.download() with custom opts (2)',
    'reply.download() with rootPath and fileName'
  ].map((name) => ({
    file: 'static.test.js',
    test: `download > ${name}`,
    category: CATEGORIES.deliberate,
    because: /attachment; filename="/,
    reason: `expects \`attachment; filename=index.html\`, gets \`filename="index.html"\`: ${readme('download')}`
  })),
  rootExistsTest('static.test.js', 'root not found warning'),
  rootExistsTest('static.test.js', 'suppress root not found warning'),
  rootExistsTest('static.test.js', 'a missing static root remains not found during spelling validation'),
  proxyquireTest('send options', '@fastify/send', /Invalid option "dotfiles"/,
    ' (and passes strings such as \'dotfiles\' as option values, which serve mode refuses)'),
  proxyquireTest('register with failing glob handler', 'glob (expects registration to fail when it does)', /Missing expected rejection/),
  proxyquireTest('register with rootpath that causes statSync to fail with non-ENOENT code',
    'node:fs (expects registration to fail)', /Missing expected rejection/),

  ...[
    'should serve files into hidden dir with wildcard `false`',
    'should serve files into hidden dir without wildcard option'
  ].map((test) => ({
    file: 'static.test.js',
    test,
    category: CATEGORIES.deliberate,
    because: /response\.ok/,
    reason: `serves /.hidden/sample.json with the default \`dotfiles\` (\`serveDotFiles\` only adds the route): ${readme('dotfiles')}`
  })),
  caseAliasTest('intermediate and final aliases'),
  caseAliasTest('relative sendFile alias is rejected before its allowedPath call'),
  caseAliasTest('relative download alias is rejected before its allowedPath call'),
  caseAliasTest('extension fallback alias'),
  caseAliasTest('pre-compressed alias and encoding fallback'),
  caseAliasTest('multi-root fallback validates the root that resolves the alias'),
  proxyquireTest('extension spelling verification handles candidate status races > an unverifiable candidate fails closed',
    'node:fs/promises (an EACCES stat of the candidate, expecting 403)'),
  proxyquireTest('fails closed when candidate filesystem status cannot be read', 'node:fs/promises (stat fails with EACCES, expecting 403)'),
  proxyquireTest('fails closed when exact filesystem spelling cannot be verified', 'node:fs/promises (readdir fails with EACCES, expecting 403)')
]

// ---------------------------------------------------------------------------
// Running the upstream files.

// Temporary folders and processes still alive, cleaned up if this process
// ends before they are.
const live = { folders: new Set(), children: new Set() }
process.on('exit', () => {
  for (const child of live.children) child.kill('SIGKILL')
  for (const folder of live.folders) fs.rmSync(folder, { recursive: true, force: true })
})

function makeCopy (target) {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), `zc-fastify-static-${target}-`))
  live.folders.add(base)
  const pkg = path.join(base, 'fastify-static')
  if (target === 'upstream') {
    fs.cpSync(UPSTREAM, pkg, { recursive: true, verbatimSymlinks: true })
  } else {
    fs.cpSync(path.join(UPSTREAM, 'test'), path.join(pkg, 'test'), { recursive: true, verbatimSymlinks: true })
    fs.mkdirSync(path.join(pkg, 'lib'))
    const forward = (file, to) => fs.writeFileSync(path.join(pkg, file), `'use strict'\nmodule.exports = require(${JSON.stringify(to)})\n`)
    forward('index.js', SHIM)
    forward('lib/dirList.js', path.join(SHIM, 'lib', 'dirList.js'))
    forward('lib/errors.js', path.join(SHIM, 'lib', 'errors.js'))
  }
  // The two symlinks of upstream's repository that npm leaves out of the tarball.
  const links = [
    ['../origin', 'test/static-symbolic-link/dir/symlink'],
    ['/none', 'test/static/shallow/no-link'] // dangling on purpose
  ]
  for (const [to, at] of links) {
    const where = path.join(pkg, at)
    fs.mkdirSync(path.dirname(where), { recursive: true })
    try { fs.lstatSync(where) } catch { fs.symlinkSync(to, where) }
  }
  return { base, pkg }
}

function runFile (target, file) {
  const { base, pkg } = makeCopy(target)
  const out = path.join(base, 'results.jsonl')
  const args = [
    '--require', GUARD,
    '--test-reporter', REPORTER,
    '--test-reporter-destination', out,
    '--test-timeout', String(TEST_TIMEOUT_MS),
    path.join(pkg, 'test', file)
  ]
  // NODE_PATH: the copy is outside the repository, its bare requires
  // (fastify, pino, proxyquire...) resolve from our node_modules.
  const env = { ...process.env, NODE_PATH: NODE_MODULES, NODE_OPTIONS: '' }
  delete env.NODE_TEST_CONTEXT
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: pkg, env, stdio: ['ignore', 'pipe', 'pipe'] })
    live.children.add(child)
    let output = ''
    const keep = (chunk) => { if (output.length < 200_000) output += chunk }
    child.stdout.on('data', keep)
    child.stderr.on('data', keep)
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, FILE_TIMEOUT_MS)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      live.children.delete(child)
      const results = []
      let text = ''
      try { text = fs.readFileSync(out, 'utf8') } catch {}
      for (const line of text.split('\n')) {
        if (line === '') continue
        try { results.push(JSON.parse(line)) } catch {} // a line cut by SIGKILL
      }
      fs.rmSync(base, { recursive: true, force: true })
      live.folders.delete(base)
      resolve({ file, code, signal, timedOut, output, results })
    })
  })
}

/** Runs every upstream file against `target`; a Map of key -> result. */
async function runSuite (target) {
  const byKey = new Map()
  const problems = []
  for (const file of FILES) {
    const run = await runFile(target, file)
    const seen = new Map()
    for (const r of run.results) {
      const name = r.path.join(' > ')
      const n = (seen.get(name) ?? 0) + 1
      seen.set(name, n)
      const key = `${file} :: ${name}${n > 1 ? ` #${n}` : ''}`
      byKey.set(key, { ...r, key, file, name })
    }
    if (run.timedOut) problems.push(`${file}: did not finish within ${FILE_TIMEOUT_MS / 1000} s (killed)`)
    else if (run.results.length === 0) problems.push(`${file}: reported no test (exit ${run.code}):\n${run.output.slice(-2000)}`)
  }
  return { byKey, problems }
}

// Failed on its own account, not only because a subtest did.
const ownFailure = (r) => r !== undefined && !r.pass && r.failureType !== 'subtestsFailed'

function ancestorFailed (results, r) {
  for (let i = r.path.length - 1; i > 0; i--) {
    const name = r.path.slice(0, i).join(' > ')
    for (const other of results.values()) {
      if (other.file === r.file && other.name === name && !other.pass) return true
    }
  }
  return false
}

// ---------------------------------------------------------------------------

let upstreamRun = null
let serveRun = null
const upstream = () => (upstreamRun ??= runSuite('upstream'))
const serve = () => (serveRun ??= runSuite('serve'))

test(`@fastify/static ${UPSTREAM_VERSION}'s own suite passes against @fastify/static itself (sanity)`, async () => {
  serve().catch(() => {}) // started now, awaited by the next test
  const { byKey, problems } = await upstream()
  assert.deepEqual(problems, [])
  const allowedToo = new Set(ALLOWED.filter((a) => a.category === CATEGORIES.upstreamToo).map((a) => `${a.file} :: ${a.test}`))
  const failing = [...byKey.values()].filter(ownFailure)
  const counts = { total: byKey.size, pass: 0, fail: failing.length, skip: 0 }
  for (const r of byKey.values()) if (r.pass) r.skip ? counts.skip++ : counts.pass++
  console.log(`@fastify/static ${UPSTREAM_VERSION} against itself: ${counts.total} tests, ${counts.pass} pass, ${counts.skip} skipped, ${counts.fail} fail`)
  const unexplained = failing.filter((r) => !allowedToo.has(r.key))
    .map((r) => `${r.key}\n    ${r.error}`)
  assert.deepEqual(unexplained, [], 'these upstream tests fail against @fastify/static itself; add them to ALLOWED ' +
    `with category '${CATEGORIES.upstreamToo}' and the reason`)
  const stale = [...allowedToo].filter((key) => !ownFailure(byKey.get(key)))
  assert.deepEqual(stale, [], `these '${CATEGORIES.upstreamToo}' entries pass against @fastify/static now: remove them from ALLOWED`)
})

test(`@fastify/static ${UPSTREAM_VERSION}'s own suite against serve mode, with the allow-list`, async () => {
  const categories = new Set(Object.values(CATEGORIES))
  const allowed = new Map()
  for (const entry of ALLOWED) {
    const key = `${entry.file} :: ${entry.test}`
    assert.ok(categories.has(entry.category), `${key}: unknown category "${entry.category}"`)
    assert.ok(typeof entry.reason === 'string' && entry.reason.length > 0, `${key}: no reason`)
    assert.ok(!allowed.has(key), `${key}: listed twice`)
    allowed.set(key, entry)
  }

  // The README texts the reasons quote are still there, word for word.
  const readmeText = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const missingQuotes = Object.entries(README).filter(([, text]) => !readmeText.includes(text)).map(([key, text]) => `${key}: ${text}`)
  assert.deepEqual(missingQuotes, [], 'README texts quoted by ALLOWED reasons that README.md no longer has')

  const [{ byKey: theirs }, { byKey: ours, problems }] = await Promise.all([upstream(), serve()])
  assert.deepEqual(problems, [])
  // FASTIFY_STATIC_SUITE_DUMP=file.json: every result of both runs, to categorise new failures.
  if (process.env.FASTIFY_STATIC_SUITE_DUMP) {
    fs.writeFileSync(process.env.FASTIFY_STATIC_SUITE_DUMP, JSON.stringify({
      upstream: [...theirs.values()], serve: [...ours.values()]
    }, null, 1))
  }

  const gone = [...allowed.keys()].filter((key) => !theirs.has(key))
  const unexpected = []
  const stale = []
  const notRun = []
  const changed = []
  const counts = { pass: 0, fail: 0, skip: 0, notReached: 0 }
  const perCategory = Object.fromEntries(Object.values(CATEGORIES).map((c) => [c, 0]))
  for (const [key, their] of theirs) {
    const our = ours.get(key)
    const entry = allowed.get(key)
    if (our === undefined) {
      // Not reached: a parent failed before declaring it.
      const parentFailed = ancestorFailed(ours, their)
      if (parentFailed) counts.notReached++
      else notRun.push(key)
      continue
    }
    if (ownFailure(our)) {
      counts.fail++
      if (entry === undefined) unexpected.push(`${key}\n    ${our.error}`)
      else {
        perCategory[entry.category]++
        if (entry.because !== undefined && !entry.because.test(`${our.error ?? ''}\n${our.values ?? ''}`)) {
          changed.push(`${key} (${entry.category}; expected ${entry.because})\n    ${our.error}\n    ${our.values ?? ''}`)
        }
      }
    } else {
      if (our.skip) counts.skip++
      else if (our.pass) counts.pass++
      if (entry !== undefined && entry.category !== CATEGORIES.upstreamToo) stale.push(key)
    }
  }
  for (const [key, our] of ours) {
    if (!theirs.has(key) && ownFailure(our)) unexpected.push(`${key} (only in the serve-mode run)\n    ${our.error}`)
  }

  console.log(`@fastify/static ${UPSTREAM_VERSION}'s suite against serve mode: ${theirs.size} upstream tests; ` +
    `${counts.pass} pass, ${counts.skip} skipped, ${counts.fail} fail, ${counts.notReached} not reached (a parent failed first)`)
  for (const [category, n] of Object.entries(perCategory)) if (n > 0) console.log(`  allow-listed, ${category}: ${n}`)

  // Every kind of problem at once, so one run says all there is to fix.
  const sections = [
    [gone, 'ALLOWED entries that name tests which no longer exist upstream: remove or rename them'],
    [notRun, 'upstream tests that did not run against serve mode, though no parent failed'],
    [unexpected, 'upstream tests that fail against serve mode and are not in ALLOWED: fix serve mode, ' +
      'or add them with a category and the reason'],
    [stale, 'ALLOWED tests that pass now: remove them from ALLOWED'],
    [changed, 'ALLOWED tests that fail for another reason than the one given (`because`): check their category and reason']
  ].filter(([list]) => list.length > 0)
  if (sections.length > 0) {
    assert.fail(sections.map(([list, what]) => `${list.length} ${what}:\n  ${list.join('\n  ')}`).join('\n\n'))
  }
})
