'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { evaluateConditionals, ifRangeAllowsRange } = require('../dist/lib/conditional.js')

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

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const pad2 = (n) => String(n).padStart(2, '0')
const clock = (d) => `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`

function imfFixdate (ms) {
  return new Date(ms).toUTCString()
}

function rfc850Date (ms) {
  const d = new Date(ms)
  return `${DAYS[d.getUTCDay()]}, ${pad2(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${pad2(d.getUTCFullYear() % 100)} ${clock(d)} GMT`
}

function asctimeDate (ms) {
  const d = new Date(ms)
  const day = String(d.getUTCDate()).padStart(2, ' ')
  return `${DAYS[d.getUTCDay()].slice(0, 3)} ${MONTHS[d.getUTCMonth()]} ${day} ${clock(d)} ${d.getUTCFullYear()}`
}

// Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example instant.
const T = Date.UTC(1994, 10, 6, 8, 49, 37)
const IMF = 'Sun, 06 Nov 1994 08:49:37 GMT'
const RFC850 = 'Sunday, 06-Nov-94 08:49:37 GMT'
const ASCTIME = 'Sun Nov  6 08:49:37 1994'

const ETAG = '"abc"'
// v() is the default validators; v(undefined) really means no etag.
const v = (...args) => ({
  etag: args.length > 0 ? args[0] : ETAG,
  lastModified: args.length > 1 ? args[1] : T
})

test('date helpers produce the RFC 9110 examples', () => {
  assert.equal(imfFixdate(T), IMF)
  assert.equal(rfc850Date(T), RFC850)
  assert.equal(asctimeDate(T), ASCTIME)
})

test('no conditional headers: proceed', () => {
  for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE']) {
    assert.equal(evaluateConditionals(method, {}, v()), 'proceed')
    assert.equal(evaluateConditionals(method, {}, v(undefined, undefined)), 'proceed')
  }
})

test('If-Match: strong comparison', () => {
  const run = (ifMatch, validators = v(), method = 'GET') =>
    evaluateConditionals(method, { 'if-match': ifMatch }, validators)
  assert.equal(run('"abc"'), 'proceed')
  assert.equal(run('"abc"', v(), 'PUT'), 'proceed')
  assert.equal(run('"x", "abc"'), 'proceed')
  assert.equal(run('"x"'), 'precondition-failed')
  assert.equal(run('"x"', v(), 'PUT'), 'precondition-failed')
  // Weak tags never match strongly, on either side.
  assert.equal(run('W/"abc"'), 'precondition-failed')
  assert.equal(run('"abc"', v('W/"abc"')), 'precondition-failed')
  assert.equal(run('W/"abc"', v('W/"abc"')), 'precondition-failed')
  // Opaque tags compare exactly (case-sensitive).
  assert.equal(run('"ABC"'), 'precondition-failed')
  // No current etag: only * can match.
  assert.equal(run('"abc"', v(undefined)), 'precondition-failed')
  // Nothing parseable: an empty list matches nothing.
  assert.equal(run('abc'), 'precondition-failed')
  assert.equal(run(','), 'precondition-failed')
})

test('If-Match: * matches the existing representation', () => {
  for (const validators of [v(), v(undefined), v(undefined, undefined), v('W/"w"')]) {
    assert.equal(evaluateConditionals('PUT', { 'if-match': '*' }, validators), 'proceed')
    assert.equal(evaluateConditionals('GET', { 'if-match': ' * ' }, validators), 'proceed')
  }
  // * is only meaningful as the whole value.
  assert.equal(evaluateConditionals('GET', { 'if-match': '*, "x"' }, v()), 'precondition-failed')
  assert.equal(evaluateConditionals('GET', { 'if-match': '**' }, v()), 'precondition-failed')
})

test('empty or whitespace-only fields count as absent', () => {
  for (const empty of ['', ' ', '\t ']) {
    assert.equal(evaluateConditionals('GET', { 'if-match': empty }, v()), 'proceed')
    assert.equal(evaluateConditionals('GET', { 'if-none-match': empty }, v()), 'proceed')
    assert.equal(evaluateConditionals('GET', { 'if-unmodified-since': empty }, v()), 'proceed')
    assert.equal(evaluateConditionals('GET', { 'if-modified-since': empty }, v()), 'proceed')
    // An empty If-None-Match does not suppress If-Modified-Since.
    assert.equal(evaluateConditionals('GET', { 'if-none-match': empty, 'if-modified-since': IMF }, v()), 'not-modified')
    assert.equal(ifRangeAllowsRange(empty, v()), true)
  }
})

test('entity-tag lists: separators, whitespace, commas inside tags', () => {
  const matches = (ifMatch, etag) =>
    evaluateConditionals('GET', { 'if-match': ifMatch }, v(etag)) === 'proceed'
  assert.ok(matches('"a", W/"b" ,"c"', '"a"'))
  assert.ok(matches('"a", W/"b" ,"c"', '"c"'))
  assert.ok(!matches('"a", W/"b" ,"c"', '"b"'))
  assert.ok(matches('\t"x"\t,\t"a"\t', '"a"'))
  assert.ok(matches(',,"a",,', '"a"'))
  assert.ok(matches('"a","b"', '"b"'))
  // A comma is an etagc, so it belongs to the tag.
  assert.ok(matches('"a,b"', '"a,b"'))
  assert.ok(!matches('"a,b"', '"a"'))
  assert.ok(!matches('"a,b"', '"b"'))
  assert.ok(matches('"x", "a,b" , "y"', '"a,b"'))
  // The empty opaque tag is valid.
  assert.ok(matches('""', '""'))
  assert.ok(!matches('""', '"a"'))
  // obs-text is allowed in tags; anything above \xff is not.
  assert.ok(matches('"\u00e9t\u00e9"', '"\u00e9t\u00e9"'))
  assert.ok(!matches('"\u0100"', '"\u0100"'))
})

test('entity-tag lists: malformed members are ignored, the rest still count', () => {
  const matches = (ifMatch, etag = '"a"') =>
    evaluateConditionals('GET', { 'if-match': ifMatch }, v(etag)) === 'proceed'
  assert.ok(matches('abc, "a"'))
  assert.ok(matches('"x" junk, "a"'))
  assert.ok(!matches('"a" junk'))
  assert.ok(!matches('"a"junk, "b"'))
  assert.ok(matches('"x y", "a"'))
  assert.ok(!matches('"a b"', '"a b"'))
  assert.ok(matches('"a", "b'))
  assert.ok(!matches('"b, "a"'))
  assert.ok(!matches('w/"a"'))
  assert.ok(!matches('W/ "a"'))
  assert.ok(!matches('W"a"'))
  assert.ok(!matches('a'))
  assert.ok(!matches('\'a\''))
  // Line breaks and control characters are neither OWS nor etagc.
  assert.ok(!matches('"a\n"'))
  assert.ok(!matches('"a"\n'))
  assert.ok(matches('"\ta", "a"'))
  // Unquoted: a bare token that equals the opaque content is not a tag.
  assert.ok(!matches('a', '"a"'))
})

test('current etag that is itself malformed never matches', () => {
  const candidates = '"abc", "a", "b", "", W/"abc", abc'
  for (const etag of ['abc', '"abc', '', 'W/abc', '"a" "b"', '"a", "b"']) {
    assert.equal(evaluateConditionals('GET', { 'if-match': candidates }, v(etag)), 'precondition-failed', etag)
    assert.equal(evaluateConditionals('GET', { 'if-none-match': candidates }, v(etag)), 'proceed', etag)
    assert.equal(ifRangeAllowsRange('"abc"', v(etag)), false, etag)
    assert.equal(ifRangeAllowsRange(etag, v(etag)), etag === '', etag)
  }
})

test('If-Unmodified-Since', () => {
  const run = (date, ...rest) =>
    evaluateConditionals(rest[1] ?? 'PUT', { 'if-unmodified-since': date }, v(ETAG, rest.length > 0 ? rest[0] : T))
  assert.equal(run(IMF), 'proceed')
  // Only whole seconds of the modification time count.
  assert.equal(run(IMF, T + 999), 'proceed')
  assert.equal(run(IMF, T + 1000), 'precondition-failed')
  assert.equal(run(IMF, T - 1), 'proceed')
  assert.equal(run(IMF, T + 1000, 'GET'), 'precondition-failed')
  assert.equal(run(RFC850, T + 1000), 'precondition-failed')
  assert.equal(run(ASCTIME, T + 1000), 'precondition-failed')
  // Ignored without a modification time or with an invalid date.
  assert.equal(run(IMF, undefined), 'proceed')
  assert.equal(run(IMF, NaN), 'proceed')
  assert.equal(run('yesterday', T + 1000), 'proceed')
  assert.equal(run('1', T + 1000), 'proceed')
})

test('If-Match takes precedence over If-Unmodified-Since', () => {
  const headers = { 'if-match': ETAG, 'if-unmodified-since': IMF }
  assert.equal(evaluateConditionals('PUT', headers, v(ETAG, T + 5000)), 'proceed')
  headers['if-match'] = '"other"'
  assert.equal(evaluateConditionals('PUT', headers, v(ETAG, T)), 'precondition-failed')
})

test('If-None-Match: weak comparison', () => {
  const run = (ifNoneMatch, method = 'GET', validators = v()) =>
    evaluateConditionals(method, { 'if-none-match': ifNoneMatch }, validators)
  assert.equal(run('"abc"'), 'not-modified')
  assert.equal(run('"abc"', 'HEAD'), 'not-modified')
  assert.equal(run('W/"abc"'), 'not-modified')
  assert.equal(run('"abc"', 'GET', v('W/"abc"')), 'not-modified')
  assert.equal(run('"x", W/"abc"'), 'not-modified')
  assert.equal(run('"x"'), 'proceed')
  assert.equal(run('"abc"', 'GET', v(undefined)), 'proceed')
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'get', 'head']) {
    assert.equal(run('"abc"', method), 'precondition-failed')
    assert.equal(run('"x"', method), 'proceed')
  }
})

test('If-None-Match: * matches the existing representation', () => {
  for (const validators of [v(), v(undefined), v(undefined, undefined)]) {
    assert.equal(evaluateConditionals('GET', { 'if-none-match': '*' }, validators), 'not-modified')
    assert.equal(evaluateConditionals('PUT', { 'if-none-match': '*' }, validators), 'precondition-failed')
  }
})

test('If-Modified-Since', () => {
  const run = (date, ...rest) =>
    evaluateConditionals(rest[1] ?? 'GET', { 'if-modified-since': date }, v(ETAG, rest.length > 0 ? rest[0] : T))
  assert.equal(run(IMF), 'not-modified')
  assert.equal(run(IMF, T - 60000), 'not-modified')
  assert.equal(run(IMF, T + 999), 'not-modified')
  assert.equal(run(IMF, T + 1000), 'proceed')
  assert.equal(run(IMF, T, 'HEAD'), 'not-modified')
  assert.equal(run(RFC850), 'not-modified')
  assert.equal(run(ASCTIME), 'not-modified')
  // Only for GET and HEAD (method names are case-sensitive).
  for (const method of ['POST', 'PUT', 'DELETE', 'get']) assert.equal(run(IMF, T, method), 'proceed')
  // Ignored without a modification time or with an invalid date.
  assert.equal(run(IMF, undefined), 'proceed')
  assert.equal(run(IMF, Infinity), 'proceed')
  assert.equal(run('not a date'), 'proceed')
  assert.equal(run(`${IMF}, ${IMF}`), 'proceed')
})

test('If-None-Match present: If-Modified-Since is not evaluated', () => {
  const headers = { 'if-none-match': '"other"', 'if-modified-since': IMF }
  assert.equal(evaluateConditionals('GET', headers, v()), 'proceed')
  // ...even when If-None-Match has no parseable member.
  headers['if-none-match'] = 'garbage'
  assert.equal(evaluateConditionals('GET', headers, v()), 'proceed')
  headers['if-none-match'] = ETAG
  assert.equal(evaluateConditionals('GET', headers, v(ETAG, T + 10000)), 'not-modified')
})

test('precedence: precondition failures come before 304', () => {
  assert.equal(evaluateConditionals('GET', { 'if-match': '"x"', 'if-none-match': ETAG }, v()), 'precondition-failed')
  assert.equal(evaluateConditionals('GET', { 'if-unmodified-since': IMF, 'if-none-match': ETAG }, v(ETAG, T + 1000)), 'precondition-failed')
  assert.equal(evaluateConditionals('GET', { 'if-unmodified-since': IMF, 'if-modified-since': IMF }, v(ETAG, T + 1000)), 'precondition-failed')
  assert.equal(evaluateConditionals('GET', { 'if-match': ETAG, 'if-none-match': ETAG }, v()), 'not-modified')
  assert.equal(evaluateConditionals('GET', { 'if-unmodified-since': IMF, 'if-modified-since': IMF }, v()), 'not-modified')
})

test('HTTP-date parsing: accepted forms', () => {
  const same = (date) => evaluateConditionals('GET', { 'if-modified-since': date }, v(ETAG, T)) === 'not-modified' &&
    evaluateConditionals('GET', { 'if-modified-since': date }, v(ETAG, T + 1000)) === 'proceed'
  assert.ok(same(IMF))
  assert.ok(same(RFC850))
  assert.ok(same(ASCTIME))
  assert.ok(same('Sun Nov 06 08:49:37 1994'))
  // Names case-insensitive, as Date.parse is.
  assert.ok(same('sun, 06 nov 1994 08:49:37 gmt'))
  assert.ok(same('SUNDAY, 06-NOV-94 08:49:37 GMT'))
  // Surrounding OWS is not part of the value.
  assert.ok(same(` ${IMF}\t`))
  // The day name is not cross-checked against the date.
  assert.ok(same('Mon, 06 Nov 1994 08:49:37 GMT'))
  assert.ok(!same('Sun, 06 Nov 1994 08:49:36 GMT'))
  // Leap second: 60 is a valid second.
  const leap = Date.UTC(2016, 11, 31, 23, 59, 59)
  assert.equal(evaluateConditionals('GET', { 'if-modified-since': 'Sat, 31 Dec 2016 23:59:60 GMT' }, v(ETAG, leap)), 'not-modified')
})

test('HTTP-date parsing: rejected forms', () => {
  for (const date of [
    '1', '2020', '0', '-1', '1994-11-06T08:49:37Z', '1994-11-06', String(T),
    'Sun, 06 Nov 1994 08:49:37 UTC', 'Sun, 06 Nov 1994 08:49:37 +0000', 'Sun, 06 Nov 1994 08:49:37',
    '06 Nov 1994 08:49:37 GMT', 'Sun 06 Nov 1994 08:49:37 GMT', 'Sun,  06 Nov 1994 08:49:37 GMT',
    'Sun, 6 Nov 1994 08:49:37 GMT', 'Sun, 06 Nov 94 08:49:37 GMT', 'Sun, 06 November 1994 08:49:37 GMT',
    'Sun, 06 Nov 1994 8:49:37 GMT', 'Sun, 06 Nov 1994 08:49 GMT', 'Sun, 06 Nov 1994 08:49:37 GMT x',
    'Sun, 06 Xyz 1994 08:49:37 GMT', 'Sun, 31 Feb 1994 08:49:37 GMT', 'Sun, 00 Nov 1994 08:49:37 GMT',
    'Sun, 32 Jan 1994 08:49:37 GMT', 'Sun, 06 Nov 1994 24:00:00 GMT', 'Sun, 06 Nov 1994 08:60:00 GMT',
    'Sun, 06 Nov 1994 08:49:61 GMT', 'Sun, 29 Feb 1900 00:00:00 GMT', 'Foo, 06 Nov 1994 08:49:37 GMT',
    'Sunday, 06-Nov-1994 08:49:37 GMT', 'Sun, 06-Nov-94 08:49:37 GMT', 'Sunday, 6-Nov-94 08:49:37 GMT',
    'Sun Nov 6 08:49:37 1994', 'Sun Nov  6 08:49:37 94', 'Sun Nov  6 08:49:37 1994 GMT',
    'Sun\tNov  6 08:49:37 1994', 'Sun, 06 Nov 1994\u00a008:49:37 GMT', 'Sun, ٠٦ Nov 1994 08:49:37 GMT'
  ]) {
    // A valid old date would give 412 for If-Unmodified-Since; invalid means ignored.
    assert.equal(evaluateConditionals('PUT', { 'if-unmodified-since': date }, v(ETAG, Date.UTC(2100, 0))), 'proceed', date)
    assert.equal(ifRangeAllowsRange(date, v(ETAG, T)), false, date)
  }
})

test('HTTP-date parsing: leap days and four-digit years', () => {
  const at = Date.UTC(2024, 1, 29, 12, 0, 0)
  assert.equal(ifRangeAllowsRange('Thu, 29 Feb 2024 12:00:00 GMT', v(ETAG, at)), true)
  assert.equal(ifRangeAllowsRange('Tue, 29 Feb 2000 00:00:00 GMT', v(ETAG, Date.UTC(2000, 1, 29))), true)
  // Years below 100 are not shifted into the 1900s.
  const early = new Date(0)
  early.setUTCFullYear(50, 0, 1)
  assert.equal(ifRangeAllowsRange('Sat, 01 Jan 0050 00:00:00 GMT', v(ETAG, early.getTime())), true)
})

test('rfc850 two-digit years: more than 50 years ahead means last century', () => {
  const year = new Date().getUTCFullYear()
  const dateFor = (yy) => `Monday, 01-Jan-${pad2(yy)} 00:00:00 GMT`
  // Exactly 50 years ahead stays in the future...
  const latest = year + 50
  assert.equal(ifRangeAllowsRange(dateFor(latest % 100), v(ETAG, Date.UTC(latest, 0, 1))), true)
  // ...one more is 100 years earlier.
  const wrapped = year + 51 - 100
  assert.equal(ifRangeAllowsRange(dateFor(wrapped % 100), v(ETAG, Date.UTC(wrapped, 0, 1))), true)
  assert.equal(ifRangeAllowsRange(dateFor(year % 100), v(ETAG, Date.UTC(year, 0, 1))), true)
  // Fixed points that hold until 2043.
  assert.equal(ifRangeAllowsRange(RFC850, v(ETAG, T)), true)
})

test('If-Range: absent means honour the Range', () => {
  assert.equal(ifRangeAllowsRange(undefined, v()), true)
  assert.equal(ifRangeAllowsRange(undefined, v(undefined, undefined)), true)
})

test('If-Range with an entity-tag: strong match only', () => {
  assert.equal(ifRangeAllowsRange('"abc"', v()), true)
  assert.equal(ifRangeAllowsRange(' "abc" ', v()), true)
  assert.equal(ifRangeAllowsRange('"abd"', v()), false)
  assert.equal(ifRangeAllowsRange('W/"abc"', v()), false)
  assert.equal(ifRangeAllowsRange('"abc"', v('W/"abc"')), false)
  assert.equal(ifRangeAllowsRange('W/"abc"', v('W/"abc"')), false)
  assert.equal(ifRangeAllowsRange('"abc"', v(undefined)), false)
  // A single tag only: not a list, no trailing junk, no *.
  assert.equal(ifRangeAllowsRange('"abc", "abc"', v()), false)
  assert.equal(ifRangeAllowsRange('"abc",', v()), false)
  assert.equal(ifRangeAllowsRange('"abc" x', v()), false)
  assert.equal(ifRangeAllowsRange('"abc', v()), false)
  assert.equal(ifRangeAllowsRange('W/', v()), false)
  assert.equal(ifRangeAllowsRange('*', v()), false)
  assert.equal(ifRangeAllowsRange('abc', v()), false)
})

test('If-Range with a date: exact whole-second match only', () => {
  assert.equal(ifRangeAllowsRange(IMF, v()), true)
  assert.equal(ifRangeAllowsRange(IMF, v(ETAG, T + 999)), true)
  assert.equal(ifRangeAllowsRange(IMF, v(ETAG, T + 1000)), false)
  assert.equal(ifRangeAllowsRange(IMF, v(ETAG, T - 1)), false)
  assert.equal(ifRangeAllowsRange(IMF, v(ETAG, T - 60000)), false)
  assert.equal(ifRangeAllowsRange(RFC850, v()), true)
  assert.equal(ifRangeAllowsRange(ASCTIME, v()), true)
  assert.equal(ifRangeAllowsRange(IMF, v(ETAG, undefined)), false)
  assert.equal(ifRangeAllowsRange(IMF, v(ETAG, NaN)), false)
  assert.equal(ifRangeAllowsRange('garbage', v()), false)
})

test('non-string header values are treated as absent', () => {
  for (const value of [null, 0, 42, {}, ['"abc"']]) {
    assert.equal(evaluateConditionals('GET', { 'if-match': value, 'if-none-match': value, 'if-modified-since': value, 'if-unmodified-since': value }, v()), 'proceed')
    assert.equal(ifRangeAllowsRange(value, v()), true)
  }
})

test('fuzz: dates round-trip in all three formats', () => {
  const random = mulberry32(1994)
  const year = new Date().getUTCFullYear()
  const windowStart = Date.UTC(year - 49, 0, 1)
  const windowEnd = Date.UTC(year + 50, 11, 31)
  for (let i = 0; i < 3000; i++) {
    const seconds = Math.floor(random() * Date.UTC(9999, 11, 31) / 1000) * 1000
    const ms = seconds + Math.floor(random() * 1000)
    for (const date of [imfFixdate(ms), asctimeDate(ms)]) {
      assert.equal(ifRangeAllowsRange(date, v(ETAG, ms)), true, date)
      assert.equal(ifRangeAllowsRange(date, v(ETAG, seconds + 1000)), false, date)
      assert.equal(ifRangeAllowsRange(date, v(ETAG, seconds - 1)), false, date)
      assert.equal(evaluateConditionals('GET', { 'if-modified-since': date }, v(ETAG, ms)), 'not-modified', date)
    }
    const windowed = windowStart + Math.floor(random() * (windowEnd - windowStart))
    const date = rfc850Date(windowed)
    assert.equal(ifRangeAllowsRange(date, v(ETAG, windowed)), true, date)
  }
})

test('fuzz: hostile header values never throw and stay consistent', () => {
  const random = mulberry32(0xc0ffee)
  const pick = (items) => items[Math.floor(random() * items.length)]
  const tokens = [
    '"', '"', 'W/', 'w/', '*', ',', ',', ' ', '\t', 'a', 'b', 'abc', '"abc"', 'W/"abc"', '0', '9', '-', '=',
    'bytes', 'GMT', 'Sun, ', '06 Nov 1994 ', '08:49:37', IMF, '\n', '\u00e9', '\u0100', '\\'
  ]
  const wellFormed = ['*', '"abc"', 'W/"abc"', '"x", W/"abc"', '"a,b"', IMF, RFC850, ASCTIME, imfFixdate(T + 5000), imfFixdate(T - 5000)]
  // Each field is often absent, so that every evaluation step is reached.
  const randomValue = () => {
    if (random() < 0.6) return undefined
    if (random() < 0.4) return pick(wellFormed)
    let value = ''
    const count = Math.floor(random() * 8)
    for (let i = 0; i < count; i++) value += pick(tokens)
    return value
  }
  const validatorChoices = [v(), v(undefined, undefined), v('W/"abc"'), v('"a,b"', T + 500), v('abc', 0)]
  const outcomes = { proceed: 0, 'not-modified': 0, 'precondition-failed': 0 }
  for (let i = 0; i < 20000; i++) {
    const method = pick(['GET', 'HEAD', 'POST', 'PUT', 'get'])
    const headers = {}
    for (const name of ['if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since']) {
      const value = randomValue()
      if (value !== undefined) headers[name] = value
    }
    const validators = pick(validatorChoices)
    const outcome = evaluateConditionals(method, headers, validators)
    assert.ok(outcome in outcomes, JSON.stringify({ method, headers }))
    outcomes[outcome]++
    // 304 is only ever for safe retrievals.
    if (outcome === 'not-modified') assert.ok(method === 'GET' || method === 'HEAD')
    // No header that could fail means no failure.
    if (headers['if-match'] === undefined && headers['if-unmodified-since'] === undefined && headers['if-none-match'] === undefined) {
      assert.notEqual(outcome, 'precondition-failed')
    }

    const ifRange = randomValue()
    const allowed = ifRangeAllowsRange(ifRange, validators)
    assert.equal(typeof allowed, 'boolean')
    if (ifRange === undefined) assert.equal(allowed, true)
    // Without any validator, only an absent If-Range can allow the Range.
    if (validators.etag === undefined && validators.lastModified === undefined && ifRange !== undefined && ifRange.trim() !== '') {
      assert.equal(allowed, false, JSON.stringify(ifRange))
    }
  }
  for (const outcome of Object.keys(outcomes)) assert.ok(outcomes[outcome] > 200, `${outcome}: ${outcomes[outcome]}`)
})

test('fuzz: arbitrary code units never throw', () => {
  const random = mulberry32(99)
  for (let i = 0; i < 20000; i++) {
    let value = ''
    const count = Math.floor(random() * 16)
    for (let j = 0; j < count; j++) {
      value += String.fromCharCode(random() < 0.8 ? Math.floor(random() * 128) : Math.floor(random() * 0x10000))
    }
    const outcome = evaluateConditionals('GET', { 'if-match': value, 'if-none-match': value, 'if-modified-since': value, 'if-unmodified-since': value }, v(value))
    assert.ok(['proceed', 'not-modified', 'precondition-failed'].includes(outcome))
    assert.equal(typeof ifRangeAllowsRange(value, v(value)), 'boolean')
  }
})
