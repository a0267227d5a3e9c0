'use strict'
// The walk that replaces openat2 where it is missing or blocked
// (native/open-walk.c), called directly: each edge case gets the errno
// openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) gives, and where openat2
// works here, the very same answer (errno, or the same inode) from both.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const net = require('node:net')
const path = require('node:path')
const util = require('node:util')
const { execFileSync } = require('node:child_process')
const { native } = require('../dist/lib/native')

const binding = native.binding
const skip = binding === null ? `no native addon: ${native.reason}` : false
const openat2Works = binding !== null && binding.openat2Probe() === 0

const S_IFMT = 0o170000
const TYPES = { 0o100000: 'file', 0o040000: 'dir', 0o010000: 'fifo', 0o140000: 'socket' }
const O_CLOEXEC = 0o2000000

/** 'file:<ino>' / 'dir:<ino>' / 'fifo:<ino>' for an fd, else the errno name. */
function attempt (dirFd, relative, walk) {
  const out = new Float64Array(7) // native/open.c ST_FIELDS
  const fd = binding.openFile(dirFd, relative, out, walk)
  if (fd < 0) return { result: util.getSystemErrorName(fd) }
  const flags = parseInt(/^flags:\s+(\d+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))[1], 8)
  binding.close(fd)
  return { result: `${TYPES[out[0] & S_IFMT] ?? 'other'}:${out[2]}`, cloexec: (flags & O_CLOEXEC) !== 0 }
}

const openFds = () => fs.readdirSync('/proc/self/fd').length

/** A root full of symlink traps, a folder outside it, and their inodes. */
function layout (t) {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-walk-'))
  t.after(() => fs.rmSync(base, { recursive: true, force: true }))
  const root = path.join(base, 'root')
  const outside = path.join(base, 'outside')
  fs.mkdirSync(path.join(root, 'sub', 'deeper'), { recursive: true })
  fs.mkdirSync(outside)
  fs.writeFileSync(path.join(root, 'hello.txt'), 'hello\n')
  fs.writeFileSync(path.join(root, 'sub', 'deeper', 'file.txt'), 'deep\n')
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'secret\n')
  const links = {
    'link-in': 'hello.txt',
    'link-in-slash': 'hello.txt/',
    'link-in-abs': path.join(root, 'hello.txt'),
    'link-out-rel': '../outside/secret.txt',
    'link-out-abs': path.join(outside, 'secret.txt'),
    'link-out-dir': '../outside',
    'link-dir': 'sub',
    'link-deep': 'sub/deeper',
    'link-dot': '.',
    'link-dangling': 'nowhere',
    'link-dangling-dir': 'nowhere/file.txt',
    'loop-a': 'loop-b',
    'loop-b': 'loop-a',
    'loop-self': 'loop-self',
    'link-long-name': 'n'.repeat(256),
    'link-magic': '/proc/self/fd/0',
    'link-proc': '/proc/self',
    'sub/link-up': '..',
    'sub/link-up-up': '../..',
    'sub/link-hello': '../hello.txt',
    'sub/deeper/link-back': '../../hello.txt',
    'sub/deeper/link-out': '../../../outside/secret.txt'
  }
  for (const [name, target] of Object.entries(links)) fs.symlinkSync(target, path.join(root, name))
  // A chain of symlinks: chain-0 -> chain-1 -> ... -> chain-40 -> hello.txt.
  // Opening chain-1 follows 40 links (the kernel's MAXSYMLINKS), chain-0 41.
  for (let i = 0; i <= 40; i++) {
    fs.symlinkSync(i === 40 ? 'hello.txt' : `chain-${i + 1}`, path.join(root, `chain-${i}`))
  }
  execFileSync('mkfifo', [path.join(root, 'fifo')])
  const ino = (p) => fs.statSync(path.join(root, p)).ino
  return { base, root, outside, ino }
}

test('the walk gives the errno openat2 gives, case by case, and the same file', { skip }, async (t) => {
  const { root, ino } = layout(t)
  const server = net.createServer()
  await new Promise((resolve) => server.listen(path.join(root, 'socket'), resolve))
  t.after(() => server.close())

  const rootFd = binding.openDirectory(root)
  assert.ok(rootFd >= 0)
  t.after(() => binding.close(rootFd))
  const file = `file:${ino('hello.txt')}`
  const deep = `file:${ino('sub/deeper/file.txt')}`
  const cases = [
    // plain names, folders and what a trailing slash asks for
    ['hello.txt', file],
    ['.', `dir:${ino('.')}`],
    ['sub', `dir:${ino('sub')}`],
    ['sub/', `dir:${ino('sub')}`],
    ['sub//deeper/./file.txt', deep],
    ['hello.txt/', 'ENOTDIR'],
    ['hello.txt/.', 'ENOTDIR'],
    ['hello.txt/x', 'ENOTDIR'],
    ['nope', 'ENOENT'],
    ['nope/x', 'ENOENT'],
    ['', 'ENOENT'],
    // `..` inside the root and above it
    ['sub/..', `dir:${ino('.')}`],
    ['sub/deeper/../../hello.txt', file],
    ['..', 'EXDEV'],
    ['sub/../..', 'EXDEV'],
    ['sub/../../root/hello.txt', 'EXDEV'],
    ['/hello.txt', 'EXDEV'],
    // symlink chains inside the root
    ['link-in', file],
    ['sub/link-hello', file],
    ['sub/deeper/link-back', file],
    ['chain-1', file],
    ['chain-0', 'ELOOP'],
    ['link-in/', 'ENOTDIR'],
    ['link-in-slash', 'ENOTDIR'],
    ['link-dot/hello.txt', file],
    ['link-dot/..', 'EXDEV'],
    // `..` through a symlinked folder: the folder the link leads to
    ['link-dir/deeper/file.txt', deep],
    ['link-dir/../hello.txt', file],
    ['link-deep/../../hello.txt', file],
    ['link-deep/../../..', 'EXDEV'],
    ['sub/link-up/hello.txt', file],
    ['sub/link-up/sub/link-up/hello.txt', file],
    ['sub/link-up/..', 'EXDEV'],
    ['sub/link-up-up/outside/secret.txt', 'EXDEV'],
    // symlinks that leave, absolute symlinks (even those landing inside)
    ['link-out-rel', 'EXDEV'],
    ['link-out-abs', 'EXDEV'],
    ['link-out-dir/secret.txt', 'EXDEV'],
    ['sub/deeper/link-out', 'EXDEV'],
    ['link-in-abs', 'EXDEV'],
    ['link-proc/status', 'EXDEV'],
    // an absolute symlink to a magic link: refused before /proc is reached
    ['link-magic', 'EXDEV'],
    // dangling, loops, too long
    ['link-dangling', 'ENOENT'],
    ['link-dangling-dir', 'ENOENT'],
    ['loop-a', 'ELOOP'],
    ['loop-self', 'ELOOP'],
    ['loop-self/x', 'ELOOP'],
    ['n'.repeat(255), 'ENOENT'],
    ['n'.repeat(256), 'ENAMETOOLONG'],
    ['sub/' + 'n'.repeat(256) + '/x', 'ENAMETOOLONG'],
    ['link-long-name', 'ENAMETOOLONG'],
    ['a/'.repeat(2100), 'ENAMETOOLONG'],
    // not regular files: opened, the caller's fstat judges them
    ['fifo', `fifo:${ino('fifo')}`],
    ['socket', 'ENXIO']
  ]

  const before = openFds()
  const rows = []
  for (const [relative, expected] of cases) {
    const walked = attempt(rootFd, relative, 1)
    const label = JSON.stringify(relative.slice(0, 60))
    assert.equal(walked.result, expected, `walk ${label}`)
    if (walked.cloexec !== undefined) assert.equal(walked.cloexec, true, `walk ${label}: O_CLOEXEC`)
    if (openat2Works) {
      const kernel = attempt(rootFd, relative, 0)
      assert.equal(walked.result, kernel.result, `walk and openat2 differ on ${label}`)
    }
    rows.push(`${label.slice(0, 30)}=${walked.result.split(':')[0]}`)
  }
  assert.equal(openFds(), before, 'the walk closed every fd of its own')
  t.diagnostic(`${cases.length} cases, compared with openat2: ${openat2Works}: ${rows.join(' ')}`)
})

test('magic links (/proc/<pid>/fd, exe, cwd, root) are ELOOP, plain /proc symlinks are walked', { skip }, async (t) => {
  const { base, root } = layout(t)
  // A relative symlink inside the served tree that leads into /proc: with
  // root '/', nothing above stops it before the magic link itself.
  const depth = base.split('/').length - 1
  fs.symlinkSync('../'.repeat(depth) + 'proc/self/fd/0', path.join(base, 'rel-magic'))
  fs.symlinkSync('../'.repeat(depth) + 'proc/self/cwd', path.join(base, 'rel-cwd'))
  const slash = binding.openDirectory('/')
  t.after(() => binding.close(slash))
  const held = fs.openSync(path.join(root, 'hello.txt'), 'r')
  t.after(() => fs.closeSync(held))
  const rel = base.slice(1)
  const cases = [
    [`proc/self/fd/${held}`, 'ELOOP'],
    [`proc/${process.pid}/fd/${held}`, 'ELOOP'],
    [`proc/self/fdinfo/${held}`, 'file'],
    ['proc/self/exe', 'ELOOP'],
    ['proc/self/cwd/package.json', 'ELOOP'],
    ['proc/self/root/etc/passwd', 'ELOOP'],
    ['proc/self/ns/net', 'ELOOP'],
    ['proc/thread-self/fd/0', 'ELOOP'],
    ['proc/self/status', 'file'],
    ['proc/thread-self/status', 'file'],
    ['proc/mounts', 'file'],
    [`${rel}/rel-magic`, 'ELOOP'],
    [`${rel}/rel-cwd/package.json`, 'ELOOP'],
    [`${rel}/root/link-magic`, 'EXDEV']
  ]
  const before = openFds()
  for (const [relative, expected] of cases) {
    const walked = attempt(slash, relative, 1)
    assert.equal(walked.result.split(':')[0], expected, `walk ${relative}`)
    if (openat2Works) assert.equal(walked.result, attempt(slash, relative, 0).result, `walk and openat2 differ on ${relative}`)
  }
  assert.equal(openFds(), before)
})

test('the root handle stays open and usable after walks that fail', { skip }, async (t) => {
  const { root, ino } = layout(t)
  const rootFd = binding.openDirectory(root)
  t.after(() => binding.close(rootFd))
  for (const relative of ['..', 'loop-a', 'chain-0', 'link-out-abs', 'sub/link-up/..', 'nope']) attempt(rootFd, relative, 1)
  assert.equal(attempt(rootFd, 'hello.txt', 1).result, `file:${ino('hello.txt')}`)
})

test('openat2Probe answers 0 or a -errno, and the choice is what the plugin reports', { skip }, () => {
  const { openResolver } = require('../dist/lib/native')
  const probe = binding.openat2Probe()
  assert.ok(probe <= 0)
  if (process.env.FASTIFY_ZERO_COPY_OPENAT2 === '0') {
    assert.deepEqual(openResolver, { openat2: false, reason: 'disabled by FASTIFY_ZERO_COPY_OPENAT2=0' })
  } else if (probe === 0) {
    assert.deepEqual(openResolver, { openat2: true, reason: null })
  } else {
    assert.deepEqual(openResolver, { openat2: false, reason: `openat2 failed: ${util.getSystemErrorName(probe)}` })
  }
})
