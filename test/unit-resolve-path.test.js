'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { resolveRequestPath } = require('../dist/lib/resolve-path')

const root = '/srv/www'
const beneath = (relative) => ({ kind: 'beneath', root, relative })
const refused = (status) => (r) => r.kind === 'refused' && r.status === status

test('paths under root resolve to a relative path without ..', () => {
  assert.deepEqual(resolveRequestPath('a.txt', root, 'ignore'), beneath('a.txt'))
  assert.deepEqual(resolveRequestPath('/a.txt', root, 'ignore'), beneath('a.txt'))
  assert.deepEqual(resolveRequestPath('//a//b.txt', root, 'ignore'), beneath('a/b.txt'))
  assert.deepEqual(resolveRequestPath('a/../b.txt', root, 'ignore'), beneath('b.txt'))
  assert.deepEqual(resolveRequestPath('', root, 'ignore'), beneath('.'))
  assert.deepEqual(resolveRequestPath('/', root, 'ignore'), beneath('.'))
  // a backslash is a file name character on POSIX, not a separator: this
  // is one name, starting with a dot
  assert.deepEqual(resolveRequestPath('..\\x', root, 'allow'), beneath('..\\x'))
  assert.ok(refused(404)(resolveRequestPath('..\\x', root, 'ignore')))
})

test('climbing above root, null bytes and non-strings are refused', () => {
  for (const p of ['..', '../x', 'a/../../x', '/../etc/passwd', 'a/b/../../../c']) {
    assert.ok(refused(403)(resolveRequestPath(p, root, 'allow')), p)
  }
  assert.ok(refused(400)(resolveRequestPath('a\0b', root, 'allow')))
  assert.ok(refused(400)(resolveRequestPath(42, root, 'allow')))
})

test('dotfiles: ignore → 404, deny → 403, allow → served; . and .. are not dotfiles', () => {
  for (const p of ['.env', 'a/.git/config', '.hidden/x']) {
    assert.ok(refused(404)(resolveRequestPath(p, root, 'ignore')), p)
    assert.ok(refused(403)(resolveRequestPath(p, root, 'deny')), p)
    assert.equal(resolveRequestPath(p, root, 'allow').kind, 'beneath', p)
  }
  assert.deepEqual(resolveRequestPath('./a.txt', root, 'deny'), beneath('a.txt'))
})

test('without root: absolute paths only; a relative one is a programming error (500)', () => {
  assert.deepEqual(resolveRequestPath('/etc/hostname', undefined, 'ignore'), { kind: 'absolute', path: '/etc/hostname' })
  assert.deepEqual(resolveRequestPath('/a/../b', undefined, 'ignore'), { kind: 'absolute', path: '/b' })
  assert.ok(refused(500)(resolveRequestPath('a.txt', undefined, 'ignore')))
  assert.ok(refused(404)(resolveRequestPath('/home/u/.ssh/id_rsa', undefined, 'ignore')))
})
