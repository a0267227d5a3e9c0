'use strict'
// Directory listings (serve mode's `list`): the pure parts of
// lib/serve-list.ts on their own, then the same requests sent to
// @fastify/static 10 and to serve mode over real sockets, for several
// `list` option sets, with the bodies compared byte for byte (sha256).

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Fastify = require('fastify')
const fastifyStatic = require('@fastify/static')
const { sha256, requestWithoutFds, zeroCopy } = require('./helpers')
const list = require('../dist/lib/serve-list')

const FIXTURE = path.join(__dirname, 'fixtures', 'static', 'public')

let tree = null
/** test/fixtures/static/public copied, plus names that need encoding in links. */
function fixtureTree () {
  if (tree !== null) return tree
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-list-'))
  fs.cpSync(FIXTURE, base, { recursive: true, verbatimSymlinks: true })
  fs.mkdirSync(path.join(base, 'odd', 'q?dir'), { recursive: true })
  fs.writeFileSync(path.join(base, 'odd', 'a#b.txt'), 'hash\n')
  fs.writeFileSync(path.join(base, 'odd', 'q?dir', 'x.txt'), 'x\n')
  fs.writeFileSync(path.join(base, 'odd', '.dot.txt'), 'dot\n')
  process.on('exit', () => fs.rmSync(base, { recursive: true, force: true }))
  tree = base
  return tree
}

const options = (o) => ({ format: undefined, names: undefined, extendedFolderInfo: false, jsonFormat: undefined, render: undefined, ...o })

// --- pure functions -----------------------------------------------------------

test('isListingName: a names entry as the last segment, or a folder URL when names has "/"', () => {
  const o = options({ names: ['index.json', 'index'] })
  assert.equal(list.isListingName('/docs/index.json', o), true)
  assert.equal(list.isListingName('/index', o), true)
  assert.equal(list.isListingName('/docs/', o), false)
  assert.equal(list.isListingName('/docs/other.json', o), false)
  assert.equal(list.isListingName('/docs/', options({ names: ['/'] })), true)
  assert.equal(list.isListingName('/docs', options({ names: ['/'] })), false)
  assert.equal(list.isListingName('/docs/index.json', options({})), false)
})

test('listedFolder: the folder of a listing name, never outside root', () => {
  assert.equal(list.listedFolder('/srv', '/docs/index.json'), '/srv/docs')
  assert.equal(list.listedFolder('/srv', '/docs/'), '/srv/docs')
  assert.equal(list.listedFolder('/srv', '/'), '/srv')
  assert.equal(list.listedFolder('/srv/', '/index.json'), '/srv')
  assert.equal(list.listedFolder('/srv', '/../etc/'), null)
  assert.equal(list.listedFolder('/srv', '/a/../../etc/x'), null)
})

test('htmlInfo: links under the prefix, # and ? encoded, a listing name links from its folder', () => {
  const stats = fs.statSync(__filename)
  const entry = (name) => ({ name, stats })
  assert.equal(list.htmlInfo(entry('a.txt'), '/docs/', '/public/', options({})).href, '/public/docs/a.txt')
  assert.equal(list.htmlInfo(entry('a#b?.txt'), '/', '/', options({})).href, '/a%23b%3F.txt')
  assert.equal(list.htmlInfo(entry('ü x.txt'), '/d/', '/', options({})).href, '/d/%C3%BC%20x.txt')
  assert.equal(list.htmlInfo(entry('a.txt'), '/docs/index.json', '/p/', options({ names: ['index.json'] })).href, '/p/docs/a.txt')
  const info = list.htmlInfo({ name: 'd', stats, extendedInfo: { fileCount: 1 } }, '/', '/', options({}))
  assert.deepEqual(Object.keys(info), ['href', 'name', 'stats', 'extendedInfo'])
  assert.equal(info.stats, stats)
})

test('listingJson: names by default, the entries with jsonFormat: extended', () => {
  const entries = { dirs: [{ name: 'd', stats: {} }], files: [{ name: 'f', stats: {} }] }
  assert.deepEqual(list.listingJson(entries, options({})), { dirs: ['d'], files: ['f'] })
  assert.deepEqual(list.listingJson(entries, options({ jsonFormat: 'names' })), { dirs: ['d'], files: ['f'] })
  assert.equal(list.listingJson(entries, options({ jsonFormat: 'extended' })), entries)
})

test('readListing: folders and files apart, sorted, dotfiles by policy, extended totals', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-list-unit-'))
  try {
    fs.mkdirSync(path.join(dir, 'b', 'c'), { recursive: true })
    fs.writeFileSync(path.join(dir, 'b', 'one.txt'), '12345')
    fs.writeFileSync(path.join(dir, 'b', 'c', 'two.txt'), '123')
    fs.writeFileSync(path.join(dir, 'z.txt'), 'z')
    fs.writeFileSync(path.join(dir, 'a.txt'), 'a')
    fs.writeFileSync(path.join(dir, '.env'), 'x')
    fs.symlinkSync(path.join(dir, 'gone'), path.join(dir, 'dangling'))
    let entries = await list.readListing(dir, options({}), { dotfiles: 'ignore', realRoot: fs.realpathSync(dir) })
    assert.deepEqual(entries.dirs.map((e) => e.name), ['b'])
    assert.deepEqual(entries.files.map((e) => e.name), ['a.txt', 'z.txt'])
    assert.equal(entries.dirs[0].extendedInfo, undefined)
    entries = await list.readListing(dir, options({ extendedFolderInfo: true }), { dotfiles: 'allow', realRoot: fs.realpathSync(dir) })
    assert.deepEqual(entries.files.map((e) => e.name), ['.env', 'a.txt', 'z.txt'])
    const info = entries.dirs[0].extendedInfo
    // fileCount/folderCount: the folder's own entries (@fastify/static's README; its code counts all levels).
    assert.deepEqual(info, {
      totalSize: 8, fileCount: 1, totalFileCount: 2, folderCount: 1, totalFolderCount: 1,
      lastModified: Math.max(fs.statSync(path.join(dir, 'b', 'one.txt')).mtimeMs, fs.statSync(path.join(dir, 'b', 'c', 'two.txt')).mtimeMs)
    })
    await assert.rejects(list.readListing(path.join(dir, 'missing'), options({}), { dotfiles: 'allow', realRoot: null }), { code: 'ENOENT' })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('readListing: what a request could not get is neither listed nor counted (symlinks out of root, dot folders); loops are walked once', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-list-scope-'))
  try {
    const root = path.join(base, 'root')
    const outside = path.join(base, 'outside')
    fs.mkdirSync(path.join(outside, 'deep'), { recursive: true })
    fs.writeFileSync(path.join(outside, 'secret.txt'), 'x'.repeat(1000))
    fs.writeFileSync(path.join(outside, 'deep', 'more.txt'), 'y'.repeat(500))
    fs.mkdirSync(path.join(root, 'sub', '.git', 'objects'), { recursive: true })
    fs.writeFileSync(path.join(root, 'sub', '.git', 'objects', 'pack'), 'z'.repeat(300))
    fs.writeFileSync(path.join(root, 'sub', 'page.txt'), '1234')
    fs.symlinkSync(outside, path.join(root, 'link'))
    fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'slink.txt'))
    fs.symlinkSync(path.join(outside, 'deep'), path.join(root, 'sub', 'away'))
    // Inside links are fine, absolute or relative, and counted once.
    fs.symlinkSync(path.join(root, 'sub', 'page.txt'), path.join(root, 'inside.txt'))
    fs.symlinkSync('sub', path.join(root, 'alias'))
    // A loop: two links back up (each walk would branch without end).
    fs.mkdirSync(path.join(root, 'd'))
    fs.writeFileSync(path.join(root, 'd', 'f.txt'), '12')
    fs.symlinkSync('..', path.join(root, 'd', 'l1'))
    fs.symlinkSync('..', path.join(root, 'd', 'l2'))
    const extended = options({ extendedFolderInfo: true })

    const scoped = await list.readListing(root, extended, { dotfiles: 'deny', realRoot: fs.realpathSync(root) })
    assert.deepEqual(scoped.dirs.map((e) => e.name), ['alias', 'd', 'sub'])
    assert.deepEqual(scoped.files.map((e) => e.name), ['inside.txt'])
    const sub = scoped.dirs.find((e) => e.name === 'sub').extendedInfo
    assert.deepEqual([sub.totalSize, sub.fileCount, sub.totalFileCount, sub.folderCount, sub.totalFolderCount], [4, 1, 1, 0, 0])
    const d = scoped.dirs.find((e) => e.name === 'd').extendedInfo
    // d: f.txt; l1 and l2 lead to the listed folder itself, already counted.
    assert.deepEqual([d.totalSize, d.fileCount, d.totalFileCount, d.folderCount, d.totalFolderCount], [2, 1, 1, 0, 0])

    // allowSymlinksOutsideRoot and dotfiles: 'allow' show them all.
    const open = await list.readListing(root, extended, { dotfiles: 'allow', realRoot: null })
    assert.deepEqual(open.dirs.map((e) => e.name), ['alias', 'd', 'link', 'sub'])
    assert.deepEqual(open.files.map((e) => e.name), ['inside.txt', 'slink.txt'])
    const openSub = open.dirs.find((e) => e.name === 'sub').extendedInfo
    // page.txt + .git/objects/pack + away/more.txt; folders .git, objects, away
    assert.deepEqual([openSub.totalSize, openSub.totalFileCount, openSub.totalFolderCount], [4 + 300 + 500, 3, 3])
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})

test('checkListOption: the errors name the sub-option', () => {
  assert.equal(list.checkListOption(undefined, 1), null)
  assert.equal(list.checkListOption(true, 1), null)
  assert.equal(list.checkListOption(false, 2), null)
  assert.match(list.checkListOption({ format: 'xml' }, 1).message, /"list\.format"/)
  assert.match(list.checkListOption({ format: 'html' }, 1).message, /"list\.render"/)
  assert.match(list.checkListOption(true, 2).message, /several roots/)
  assert.equal(list.checkListOption({ format: 'html', render: () => '' }, 1), null)
})

// --- against @fastify/static --------------------------------------------------

const render = (dirs, files) => JSON.stringify({
  dirs: dirs.map((d) => [d.href, d.name, d.stats.isDirectory(), d.extendedInfo === undefined ? null : d.extendedInfo.totalFileCount]),
  files: files.map((f) => [f.href, f.name, f.stats.size])
})

async function pair (t, pluginOptions) {
  const servers = []
  for (const [plugin, extra] of [[fastifyStatic, {}], [zeroCopy, { serve: true }]]) {
    const app = Fastify()
    await app.register(plugin, { root: fixtureTree(), dotfiles: 'allow', ...pluginOptions, ...extra })
    t.after(() => app.close())
    await app.listen({ port: 0, host: '127.0.0.1' })
    servers.push(`http://127.0.0.1:${app.server.address().port}`)
  }
  return async (url) => Promise.all(servers.map(async (base) => {
    const res = await fetch(base + url, { redirect: 'manual' })
    return { status: res.status, type: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) }
  }))
}

// Extended JSON bodies hold fs.Stats: compared by name, kind and size
// (atime may move between the two reads).
function comparable (res, extended) {
  if (!extended || res.status !== 200 || !/json/.test(res.type ?? '')) return sha256(res.body)
  const body = JSON.parse(res.body)
  const strip = (e) => [e.name, e.stats.size, e.stats.mode, e.extendedInfo?.totalSize ?? null, e.extendedInfo?.totalFileCount ?? null]
  return JSON.stringify({ dirs: body.dirs.map(strip), files: body.files.map(strip) })
}

const SETS = [
  { name: 'list: true', options: { list: true } },
  { name: 'list: true, index: false, redirect', options: { list: true, index: false, redirect: true } },
  { name: 'names + html render', options: { index: false, list: { format: 'html', render, names: ['index', 'index.json', '/'] } } },
  { name: 'json names, prefix without slash', options: { prefix: '/public', prefixAvoidTrailingSlash: true, list: { format: 'json', names: ['index', 'index.json', '/'] } } },
  { name: 'json + render (for ?format=html)', options: { prefix: '/p/', list: { format: 'json', render } } },
  { name: 'extended + extendedFolderInfo', options: { index: false, list: { jsonFormat: 'extended', extendedFolderInfo: true, names: ['index.json'] } }, extended: true },
  { name: 'dotfiles deny', options: { dotfiles: 'deny', index: false, list: true } },
  // Folder URLs whose index has no pre-compressed sibling: the index, not
  // the listing that names: ['/'] gives a folder URL with nothing there.
  {
    name: 'preCompressed, names with "/"',
    options: { preCompressed: true, list: { names: ['/', 'index.json'] } },
    // README difference: with preCompressed, @fastify/static answers a
    // folder URL without an index 404 where it would list it without.
    differs: { 'noindex/': [404, 200], 'odd/': [404, 200] }
  }
]

const URLS = ['', 'docs', 'docs/', 'docs/index.json', 'docs/index', 'noindex', 'noindex/', 'noindex/index.json', 'odd/', 'odd',
  'odd/index.json', 'missing/', 'missing/index.json', 'docs/?format=html', 'docs/?format=json', 'docs?format=html',
  'docs/index.json?format=html', 'docs/?format=other', 'link-docs/', 'readme.txt', 'index.json', 'index']

test('listings answer like @fastify/static\'s (status, type, body)', async (t) => {
  let compared = 0
  let listings = 0
  for (const set of SETS) {
    await t.test(set.name, async (t) => {
      const get = await pair(t, set.options)
      const prefix = set.options.prefix === undefined ? '/' : set.options.prefix.endsWith('/') ? set.options.prefix : set.options.prefix + '/'
      for (const url of ['', ...URLS]) {
        const full = url === '' && prefix !== '/' ? prefix.slice(0, -1) : prefix + url
        const [theirs, ours] = await get(full)
        const where = `${set.name}: GET ${full}`
        if (set.differs?.[url] !== undefined) {
          assert.deepEqual([theirs.status, ours.status], set.differs[url], where)
          continue
        }
        assert.equal(ours.status, theirs.status, where)
        if (theirs.status >= 500) {
          // Errors: same status and message, our own code (README difference 13).
          assert.equal(JSON.parse(ours.body).message.includes('list.render'), true, where)
          continue
        }
        assert.equal(ours.type, theirs.type, where)
        assert.equal(comparable(ours, set.extended), comparable(theirs, set.extended), `${where}\n theirs ${theirs.body.subarray(0, 200)}\n ours   ${ours.body.subarray(0, 200)}`)
        compared++
        if (ours.status === 200 && /json|html/.test(ours.type) && !/\.html?$/.test(full)) listings++
      }
    })
  }
  t.diagnostic(`listing conformance: ${compared} responses identical to @fastify/static's, ${listings} of them listings`)
  assert.ok(listings > 30, `${listings} listings compared`)
})

test('listings: files next to listing names are still sent by sendfile', async (t) => {
  const app = Fastify()
  await app.register(zeroCopy, { root: fixtureTree(), serve: true, list: { names: ['index.json', 'readme.txt'] } })
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const res = await fetch(`http://127.0.0.1:${app.server.address().port}/readme.txt`)
  assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(fs.readFileSync(path.join(fixtureTree(), 'readme.txt'))))
  assert.equal(app.zeroCopy.stats().responses.sendfile, 1)
})

test('listings: a symlinked folder that leaves the root is neither listed nor shown in its parent (unless allowSymlinksOutsideRoot)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-list-out-'))
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-list-outside-'))
  t.after(() => { fs.rmSync(dir, { recursive: true, force: true }); fs.rmSync(outside, { recursive: true, force: true }) })
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'secret')
  fs.symlinkSync(outside, path.join(dir, 'out'))
  const app = Fastify()
  await app.register(zeroCopy, { root: dir, serve: true, index: false, list: { names: ['index.json'] } })
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${app.server.address().port}`
  for (const url of ['/out', '/out/', '/out/index.json']) {
    const res = await fetch(base + url)
    const body = await res.text()
    assert.ok(res.status === 403 || res.status === 404, `${url}: ${res.status}`)
    assert.ok(!body.includes('secret.txt'), url)
  }
  // Its name and its target's stats would describe what a GET of it refuses.
  const res = await fetch(base + '/index.json')
  assert.deepEqual(await res.json(), { dirs: [], files: [] })

  const open = Fastify()
  await open.register(zeroCopy, { root: dir, serve: true, index: false, allowSymlinksOutsideRoot: true, list: { names: ['index.json'] } })
  t.after(() => open.close())
  await open.listen({ port: 0, host: '127.0.0.1' })
  const openBase = `http://127.0.0.1:${open.server.address().port}`
  assert.deepEqual(await (await fetch(openBase + '/index.json')).json(), { dirs: ['out'], files: [] })
  assert.deepEqual(await (await fetch(openBase + '/out/index.json')).json(), { dirs: [], files: ['secret.txt'] })
  // Where symlinks may lead, a missing file there is missing; where they
  // may not, the answer never depends on what exists outside (403 both).
  assert.equal((await fetch(openBase + '/out/missing.txt')).status, 404)
  assert.equal((await fetch(base + '/out/missing.txt')).status, 403)
  assert.equal((await fetch(base + '/out/secret.txt')).status, 403)
})

// Out of file descriptors while listing: 503 with Retry-After, as for a
// file (@fastify/static sends the 404 handler). The connection is opened
// before the fd table is filled. With the cache on or off, it is the
// folder's own open (beneath root, before reading it) that fails here: a
// failing readdir takes the same branch in lib/serve.ts but is not
// provoked on its own by this test.
test('listings: EMFILE answers 503 with Retry-After', async (t) => {
  for (const cache of [false, undefined]) {
    const app = Fastify()
    await app.register(zeroCopy, { root: fixtureTree(), serve: true, index: false, list: true, cache })
    t.after(() => app.close())
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = app.server.address().port
    for (const url of ['/docs/', '/docs']) {
      const res = await fetch(`http://127.0.0.1:${port}${url}`)
      assert.equal(res.status, 200)
      await res.arrayBuffer()
      const head = await requestWithoutFds(port, url)
      assert.match(head, /^HTTP\/1\.1 503 /, url)
      assert.match(head, /\r\nretry-after: 1\r\n/i, url)
    }
  }
})

