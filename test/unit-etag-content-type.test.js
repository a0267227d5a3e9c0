'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { statEtag, digestEtag } = require('../dist/lib/etag.js')
const { contentTypeFor } = require('../dist/lib/content-type.js')
const { cacheControlValue, maxAgeToSeconds } = require('../dist/lib/cache-control.js')

// Deterministic PRNG so fuzz failures reproduce.
function mulberry32 (seed) {
  return function next () {
    seed = (seed + 0x6d2b79f5) | 0
    let t = seed
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// -- etag --------------------------------------------------------------------

test('statEtag: "mtimeMicros-size" in base 36', () => {
  assert.equal(statEtag({ size: 0, mtimeMs: 0 }), '"0-0"')
  assert.equal(statEtag({ size: 36, mtimeMs: 1 }), `"${(1000).toString(36)}-10"`)
  const mtimeMs = 1700000000123.456
  assert.equal(
    statEtag({ size: 4096, mtimeMs }),
    `"${(1700000000123456).toString(36)}-${(4096).toString(36)}"`
  )
})

test('statEtag: nothing host-specific (a copy with the same size and mtime has the same tag)', () => {
  const stat = { size: 20, mtimeMs: 30 }
  assert.equal(statEtag({ ...stat, ino: 1, dev: 2049 }), statEtag({ ...stat, ino: 99, dev: 64768 }))
})

test('statEtag: a pre-compressed sibling gets its own tag', () => {
  const stat = { size: 20, mtimeMs: 30 }
  assert.equal(statEtag(stat, 'br'), `"${(30000).toString(36)}-k-br"`)
  assert.notEqual(statEtag(stat, 'br'), statEtag(stat))
  assert.notEqual(statEtag(stat, 'br'), statEtag(stat, 'gzip'))
})

test('statEtag: mtime is rounded to whole microseconds', () => {
  const base = { size: 1 }
  assert.equal(statEtag({ ...base, mtimeMs: 1.0004 }), statEtag({ ...base, mtimeMs: 1 }))
  assert.equal(statEtag({ ...base, mtimeMs: 1.0006 }), statEtag({ ...base, mtimeMs: 1.001 }))
  assert.notEqual(statEtag({ ...base, mtimeMs: 1.001 }), statEtag({ ...base, mtimeMs: 1.002 }))
})

test('statEtag: every field changes the tag', () => {
  const stat = { size: 20, mtimeMs: 30 }
  const tag = statEtag(stat)
  assert.notEqual(statEtag({ ...stat, size: 21 }), tag)
  assert.notEqual(statEtag({ ...stat, mtimeMs: 30.001 }), tag)
})

test('statEtag and digestEtag: strong entity-tags (RFC 9110 §8.8.3)', () => {
  const etagc = /^"[\x21\x23-\x7e]*"$/
  const tag = statEtag({ size: 2 ** 40, mtimeMs: Date.UTC(2100, 0) + 0.123 }, 'gzip')
  assert.match(tag, etagc)
  assert.ok(!tag.startsWith('W/'))
  const digest = digestEtag(Buffer.alloc(32, 0xfb).toString('base64url'))
  assert.match(digest, etagc)
  assert.equal(digest.length, 45)
})

test('fuzz: statEtag is well-formed and injective over realistic stats', () => {
  const random = mulberry32(36)
  const seen = new Map()
  for (let i = 0; i < 20000; i++) {
    const stat = {
      size: Math.floor(random() * 2 ** (random() < 0.5 ? 12 : 45)),
      mtimeMs: Math.floor(random() * 2e12 * 1000) / 1000
    }
    const tag = statEtag(stat)
    assert.match(tag, /^"[0-9a-z]+-[0-9a-z]+"$/)
    const [micros, size] = tag.slice(1, -1).split('-').map((part) => parseInt(part, 36))
    assert.equal(size, stat.size)
    assert.equal(micros, Math.round(stat.mtimeMs * 1000))
    const key = `${stat.size}/${Math.round(stat.mtimeMs * 1000)}`
    if (seen.has(tag)) assert.equal(seen.get(tag), key)
    seen.set(tag, key)
  }
})

// -- content type ------------------------------------------------------------

test('contentTypeFor: textual types get charset=utf-8', () => {
  const cases = {
    'index.html': 'text/html; charset=utf-8',
    'style.css': 'text/css; charset=utf-8',
    'notes.txt': 'text/plain; charset=utf-8',
    'data.csv': 'text/csv; charset=utf-8',
    'README.md': 'text/markdown; charset=utf-8',
    'app.js': 'application/javascript; charset=utf-8',
    'app.mjs': 'application/javascript; charset=utf-8',
    'data.json': 'application/json; charset=utf-8',
    'app.js.map': 'application/json; charset=utf-8',
    'feed.xml': 'application/xml; charset=utf-8',
    'logo.svg': 'image/svg+xml; charset=utf-8',
    'feed.atom': 'application/atom+xml; charset=utf-8',
    'feed.rss': 'application/rss+xml; charset=utf-8',
    'page.xhtml': 'application/xhtml+xml; charset=utf-8',
    'site.webmanifest': 'application/manifest+json; charset=utf-8',
    'doc.jsonld': 'application/ld+json; charset=utf-8'
  }
  for (const [file, type] of Object.entries(cases)) assert.equal(contentTypeFor(file), type, file)
})

test('contentTypeFor: binary types have no charset', () => {
  const cases = {
    'photo.png': 'image/png',
    'photo.jpg': 'image/jpeg',
    'archive.tar.gz': 'application/gzip',
    'module.wasm': 'application/wasm',
    'movie.mp4': 'video/mp4',
    'doc.pdf': 'application/pdf',
    'font.woff2': 'font/woff2'
  }
  for (const [file, type] of Object.entries(cases)) assert.equal(contentTypeFor(file), type, file)
})

test('contentTypeFor: extension is case-insensitive', () => {
  assert.equal(contentTypeFor('INDEX.HTML'), 'text/html; charset=utf-8')
  assert.equal(contentTypeFor('photo.JpG'), 'image/jpeg')
  assert.equal(contentTypeFor('/srv/www/Data.JSON'), 'application/json; charset=utf-8')
})

test('contentTypeFor: only the final path segment is considered', () => {
  assert.equal(contentTypeFor('/srv/www/index.html'), 'text/html; charset=utf-8')
  assert.equal(contentTypeFor('relative/dir/logo.svg'), 'image/svg+xml; charset=utf-8')
  assert.equal(contentTypeFor('/srv/site.html/LICENSE'), 'application/octet-stream')
  assert.equal(contentTypeFor('/srv/v1.2/file'), 'application/octet-stream')
})

test('contentTypeFor: unknown or missing extension is application/octet-stream', () => {
  for (const file of [
    '', '.', '..', '/', 'Makefile', 'LICENSE', 'file.unknownext', 'file.', 'dir/',
    // A bare name is not an extension, and a leading dot starts a hidden name.
    'json', 'html', '.json', '.html', '/srv/.htaccess', 'dir/.bashrc',
    // Extensions must match exactly.
    'file.html ', 'file. html', 'file.h tml', 'file.html\u0000'
  ]) {
    assert.equal(contentTypeFor(file), 'application/octet-stream', JSON.stringify(file))
  }
  assert.equal(contentTypeFor('.hidden.html'), 'text/html; charset=utf-8')
  assert.equal(contentTypeFor('..html'), 'text/html; charset=utf-8')
})

test('fuzz: contentTypeFor always returns a well-formed media type', () => {
  const random = mulberry32(0x3e3e)
  const pieces = ['.', '/', '\\', 'a', 'html', 'JSON', 'svg', 'png', ' ', '..', 'x', 'tar', 'gz', '\u00e9', '\u0000', 'constructor', '__proto__']
  for (let i = 0; i < 20000; i++) {
    let path = ''
    const count = Math.floor(random() * 8)
    for (let j = 0; j < count; j++) path += pieces[Math.floor(random() * pieces.length)]
    const type = contentTypeFor(path)
    assert.match(type, /^[a-z0-9.+-]+\/[a-z0-9.+-]+(; charset=utf-8)?$/, JSON.stringify(path))
    if (/^(text\/|application\/(javascript|json|xml)$|image\/svg\+xml$)|\+(json|xml)$/.test(type.split(';')[0])) {
      assert.ok(type.endsWith('; charset=utf-8'), `${JSON.stringify(path)} -> ${type}`)
    } else {
      assert.ok(!type.includes(';'), `${JSON.stringify(path)} -> ${type}`)
    }
  }
})

// -- cache control -----------------------------------------------------------

test('maxAgeToSeconds: numbers are milliseconds, rounded down', () => {
  assert.equal(maxAgeToSeconds(0), 0)
  assert.equal(maxAgeToSeconds(999), 0)
  assert.equal(maxAgeToSeconds(1000), 1)
  assert.equal(maxAgeToSeconds(1999), 1)
  assert.equal(maxAgeToSeconds(1500.7), 1)
  assert.equal(maxAgeToSeconds(3600000), 3600)
  assert.equal(maxAgeToSeconds(-0), 0)
})

test('maxAgeToSeconds: duration strings', () => {
  const cases = {
    '0': 0,
    '500': 0,
    '3600000': 3600,
    '500ms': 0,
    '1500ms': 1,
    '10s': 10,
    '30m': 1800,
    '2h': 7200,
    '1d': 86400,
    '1w': 604800,
    '1y': 31536000,
    '1.5h': 5400,
    '.5m': 30,
    '7 days': 604800,
    '2 hours': 7200,
    '1 minute': 60,
    '5 secs': 5,
    '90 seconds': 90,
    '2 weeks': 1209600,
    '2 hrs': 7200,
    '10 msecs': 0,
    '1D': 86400,
    '2H': 7200,
    ' 1d ': 86400
  }
  for (const [value, seconds] of Object.entries(cases)) assert.equal(maxAgeToSeconds(value), seconds, value)
})

test('maxAgeToSeconds: capped at one year like send', () => {
  assert.equal(maxAgeToSeconds(365 * 24 * 3600 * 1000), 31536000)
  assert.equal(maxAgeToSeconds(365 * 24 * 3600 * 1000 + 999999), 31536000)
  assert.equal(maxAgeToSeconds('2y'), 31536000)
  assert.equal(maxAgeToSeconds('400d'), 31536000)
  assert.equal(maxAgeToSeconds('99999999999999999999999'), 31536000)
  assert.equal(maxAgeToSeconds(Number.MAX_VALUE), 31536000)
  assert.equal(maxAgeToSeconds(Infinity), 31536000)
  assert.equal(maxAgeToSeconds('364d'), 364 * 86400)
})

test('maxAgeToSeconds: invalid values throw TypeError', () => {
  for (const value of [
    '', ' ', 'abc', '1x', '1 dayz', 'd', 'ms', '-1', '-1d', '+1d', '1e3', '1,000', '1.2.3', '1.', '0x10',
    '1d2h', '1 d h', 'Infinity', 'NaN', '1\n d', 'constructor', '1constructor', '1__proto__', '1toString',
    NaN, -1, -0.5, -Infinity, null, undefined, {}, [], true
  ]) {
    assert.throws(() => maxAgeToSeconds(value), TypeError, String(value))
  }
})

test('cacheControlValue', () => {
  assert.equal(cacheControlValue(0, false), 'public, max-age=0')
  assert.equal(cacheControlValue(0, true), 'public, max-age=0, immutable')
  assert.equal(cacheControlValue('1d', false), 'public, max-age=86400')
  assert.equal(cacheControlValue('1y', true), 'public, max-age=31536000, immutable')
  assert.equal(cacheControlValue(5500, true), 'public, max-age=5, immutable')
  assert.throws(() => cacheControlValue('soon', false), TypeError)
})

test('fuzz: maxAgeToSeconds returns whole seconds in range or throws TypeError', () => {
  const random = mulberry32(0xcace)
  const pieces = ['0', '1', '5', '9', '.', ' ', '-', '+', 'ms', 's', 'm', 'h', 'd', 'w', 'y', 'days', 'e', 'x', '__proto__']
  let valid = 0
  for (let i = 0; i < 20000; i++) {
    let value = ''
    const count = Math.floor(random() * 6)
    for (let j = 0; j < count; j++) value += pieces[Math.floor(random() * pieces.length)]
    let seconds
    try {
      seconds = maxAgeToSeconds(value)
    } catch (err) {
      assert.ok(err instanceof TypeError, JSON.stringify(value))
      continue
    }
    valid++
    assert.ok(Number.isInteger(seconds) && seconds >= 0 && seconds <= 31536000, `${JSON.stringify(value)} -> ${seconds}`)
    assert.equal(cacheControlValue(value, false), `public, max-age=${seconds}`)
  }
  assert.ok(valid > 1000, `valid: ${valid}`)
})
