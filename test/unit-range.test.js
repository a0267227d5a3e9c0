'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const {
  parseRange,
  contentRangeHeader,
  unsatisfiedRangeHeader
} = require('../dist/lib/range.js')

const NONE = { kind: 'none' }
const UNSATISFIABLE = { kind: 'unsatisfiable' }
const single = (start, end) => ({ kind: 'single', start, end })

const HUGE = '99999999999999999999'
const MAX_SAFE = Number.MAX_SAFE_INTEGER

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

function check (header, size, expected) {
  assert.deepEqual(parseRange(header, size), expected, `parseRange(${JSON.stringify(header)}, ${size})`)
}

test('absent or non-bytes headers are ignored', () => {
  check(undefined, 100, NONE)
  check('', 100, NONE)
  check('   ', 100, NONE)
  check('bytes', 100, NONE)
  check('bytes=', 100, NONE)
  check('bytes= ', 100, NONE)
  check('bytes=,', 100, NONE)
  check('bytes=, ,\t,', 100, NONE)
  check('items=0-1', 100, NONE)
  check('byte=0-1', 100, NONE)
  check('bytesx=0-1', 100, NONE)
  check('0-1', 100, NONE)
  check('-0', 100, NONE)
  check('=0-1', 100, NONE)
  check('bytes:0-1', 100, NONE)
})

test('unit is case-insensitive', () => {
  check('BYTES=0-0', 10, single(0, 0))
  check('Bytes=0-0', 10, single(0, 0))
  check('bYtEs=2-3', 10, single(2, 3))
})

test('int-range first-last', () => {
  check('bytes=0-0', 10, single(0, 0))
  check('bytes=0-9', 10, single(0, 9))
  check('bytes=3-7', 10, single(3, 7))
  check('bytes=9-9', 10, single(9, 9))
  check('bytes=0-99', 1000, single(0, 99))
  check('bytes=007-010', 100, single(7, 10))
})

test('last-pos past the end clamps to size - 1', () => {
  check('bytes=0-10', 10, single(0, 9))
  check('bytes=5-1000', 10, single(5, 9))
  check(`bytes=0-${MAX_SAFE}`, 10, single(0, 9))
  check(`bytes=3-${HUGE}`, 10, single(3, 9))
  check(`bytes=0-${'9'.repeat(5000)}`, 10, single(0, 9))
})

test('open-ended first- runs to the end', () => {
  check('bytes=0-', 10, single(0, 9))
  check('bytes=4-', 10, single(4, 9))
  check('bytes=9-', 10, single(9, 9))
})

test('first-pos at or past the end is unsatisfiable', () => {
  check('bytes=5-', 5, UNSATISFIABLE)
  check('bytes=10-', 10, UNSATISFIABLE)
  check('bytes=10-20', 10, UNSATISFIABLE)
  check('bytes=11-11', 10, UNSATISFIABLE)
  check(`bytes=${MAX_SAFE}-`, 10, UNSATISFIABLE)
  check(`bytes=${HUGE}-`, 10, UNSATISFIABLE)
  check(`bytes=${HUGE}-`, MAX_SAFE, UNSATISFIABLE)
  check(`bytes=${MAX_SAFE + 1}-`, MAX_SAFE, UNSATISFIABLE)
})

test('first-pos just below a huge size is served exactly', () => {
  check(`bytes=${MAX_SAFE - 1}-`, MAX_SAFE, single(MAX_SAFE - 1, MAX_SAFE - 1))
  check(`bytes=${MAX_SAFE - 2}-${HUGE}`, MAX_SAFE, single(MAX_SAFE - 2, MAX_SAFE - 1))
})

test('last-pos below first-pos invalidates the header', () => {
  check('bytes=1-0', 10, NONE)
  check('bytes=9-3', 10, NONE)
  check('bytes=0-1,5-4', 10, NONE)
  // Unsatisfiable and invalid together: invalid wins, header ignored.
  check('bytes=20-19', 10, NONE)
  check(`bytes=${HUGE}-5`, 10, NONE)
})

test('huge positions are compared exactly, not after rounding', () => {
  // Both round to the same double, yet last < first.
  check('bytes=99999999999999999999-99999999999999999998', 10, NONE)
  check('bytes=99999999999999999998-99999999999999999999', 10, UNSATISFIABLE)
  check('bytes=99999999999999999999-99999999999999999999', 10, UNSATISFIABLE)
  check('bytes=0099999999999999999999-99999999999999999999', 10, UNSATISFIABLE)
  check('bytes=100000000000000000000-99999999999999999999', 10, NONE)
  check('bytes=9007199254740993-9007199254740992', MAX_SAFE, NONE)
})

test('suffix ranges', () => {
  check('bytes=-1', 10, single(9, 9))
  check('bytes=-3', 10, single(7, 9))
  check('bytes=-10', 10, single(0, 9))
  check('bytes=-11', 10, single(0, 9))
  check(`bytes=-${MAX_SAFE}`, 10, single(0, 9))
  check(`bytes=-${HUGE}`, 10, single(0, 9))
  check(`bytes=-${HUGE}`, MAX_SAFE, single(0, MAX_SAFE - 1))
  check('bytes=-0001', 10, single(9, 9))
})

test('zero-length suffix is unsatisfiable', () => {
  check('bytes=-0', 10, UNSATISFIABLE)
  check('bytes=-000', 10, UNSATISFIABLE)
  check('bytes=-0', 0, UNSATISFIABLE)
  check('bytes=-0,0-1', 10, single(0, 1))
})

test('size 0: int ranges are unsatisfiable, a non-zero suffix selects the empty whole', () => {
  check('bytes=0-', 0, UNSATISFIABLE)
  check('bytes=0-0', 0, UNSATISFIABLE)
  check('bytes=-0', 0, UNSATISFIABLE)
  // RFC 9110 §14.1.1: a suffix-range with a non-zero length is satisfiable
  check('bytes=-1', 0, NONE)
  check(`bytes=-${HUGE}`, 0, NONE)
  check('bytes=0-0,-5', 0, NONE)
  check('bytes=1-0', 0, NONE)
  check('bytes=x', 0, NONE)
  check(undefined, 0, NONE)
})

test('size 1', () => {
  check('bytes=0-0', 1, single(0, 0))
  check('bytes=0-', 1, single(0, 0))
  check('bytes=-1', 1, single(0, 0))
  check('bytes=-5', 1, single(0, 0))
  check('bytes=0-5', 1, single(0, 0))
  check('bytes=1-', 1, UNSATISFIABLE)
  check('bytes=1-1', 1, UNSATISFIABLE)
})

test('syntax errors invalidate the whole header', () => {
  for (const spec of [
    '-', '--', '0--1', '0-1-2', '+1-2', '1-+2', '-+1', '- 1', '0 -1', '0- 1',
    '1.0-2', '0-1.5', '0x10-0x20', '1e3-', 'a-b', '0-a', '1', '', '=0-1',
    '-0-', '٣-٤', '１-２', '0-1;', 'bytes=0-1', '*', '0\n-1'
  ]) {
    if (spec === '') continue
    check(`bytes=${spec}`, 100, NONE)
    // One bad spec spoils otherwise valid ones too.
    check(`bytes=0-1,${spec}`, 100, NONE)
  }
  check('bytes=0-1,-', 100, NONE)
})

test('whitespace: OWS around specs, commas and the whole value', () => {
  check(' bytes=0-1', 10, single(0, 1))
  check('bytes=0-1 ', 10, single(0, 1))
  check('\tbytes=0-1\t', 10, single(0, 1))
  check('bytes= 0-1', 10, single(0, 1))
  check('bytes=\t0-1', 10, single(0, 1))
  check('bytes=0-1 , 2-3', 10, single(0, 3))
  check('bytes=0-1\t,\t2-3', 10, single(0, 3))
  check('bytes=0-1 ,2-3', 10, single(0, 3))
  // Not allowed: whitespace inside a spec or between unit and '='.
  check('bytes=0 -1', 10, NONE)
  check('bytes=0- 1', 10, NONE)
  check('bytes =0-1', 10, NONE)
  check('bytes= 0 - 1', 10, NONE)
  // Only SP and HTAB are OWS.
  check('bytes=0-1\n', 10, NONE)
  check('bytes=\u00a00-1', 10, NONE)
  check('bytes=0-1\r', 10, NONE)
})

test('empty list elements are skipped', () => {
  check('bytes=0-1,,2-3', 10, single(0, 3))
  check('bytes=,0-1', 10, single(0, 1))
  check('bytes=0-1,', 10, single(0, 1))
  check('bytes=, , 0-1 , ,', 10, single(0, 1))
})

test('overlapping and adjacent ranges coalesce into one', () => {
  check('bytes=0-1,1-2', 10, single(0, 2))
  check('bytes=0-1,2-3', 10, single(0, 3))
  check('bytes=2-3,0-1', 10, single(0, 3))
  check('bytes=0-5,1-2', 10, single(0, 5))
  check('bytes=0-0,0-0', 10, single(0, 0))
  check('bytes=0-4,-5', 10, single(0, 9))
  check('bytes=-3,0-6', 10, single(0, 9))
  check('bytes=5-,0-4', 10, single(0, 9))
  check('bytes=0-0,1-1,2-2,3-3', 10, single(0, 3))
  check('bytes=3-3,0-0,2-2,1-1', 10, single(0, 3))
  check('bytes=0-2,1-', 10, single(0, 9))
})

test('ranges with a gap are a true multi-range request: full body', () => {
  check('bytes=0-0,2-3', 10, NONE)
  check('bytes=0-1,3-4', 10, NONE)
  check('bytes=0-0,-1', 10, NONE)
  check('bytes=0-0,1-1,3-3', 10, NONE)
  check('bytes=8-,0-1', 10, NONE)
})

test('unsatisfiable specs are dropped when others remain', () => {
  check('bytes=20-30,0-1', 10, single(0, 1))
  check('bytes=0-1,10-', 10, single(0, 1))
  check('bytes=-0,3-', 10, single(3, 9))
  check(`bytes=${HUGE}-,2-2`, 10, single(2, 2))
  check('bytes=10-,20-,-0', 10, UNSATISFIABLE)
})

test('at most 100 range specs', () => {
  const specs = (n) => Array.from({ length: n }, () => '0-0').join(',')
  check(`bytes=${specs(100)}`, 10, single(0, 0))
  check(`bytes=${specs(101)}`, 10, NONE)
  // Empty elements do not count as specs.
  check(`bytes=${',,'.repeat(200)}0-0`, 10, single(0, 0))
  // The limit applies before satisfiability is considered.
  check(`bytes=${Array.from({ length: 101 }, () => '50-').join(',')}`, 10, NONE)
})

test('headers over 8 KiB are ignored', () => {
  const padded = (length) => 'bytes=0-0' + ' '.repeat(length - 9)
  assert.equal(padded(8192).length, 8192)
  check(padded(8192), 10, single(0, 0))
  check(padded(8193), 10, NONE)
  check(`bytes=0-${'0'.repeat(8200)}`, 10, NONE)
})

test('a size that is not a byte count yields none', () => {
  for (const size of [-1, 1.5, NaN, Infinity, -Infinity, MAX_SAFE + 1]) {
    check('bytes=0-0', size, NONE)
  }
  check('bytes=0-0', MAX_SAFE, single(0, 0))
})

test('non-string headers are ignored', () => {
  for (const header of [null, 0, 1, {}, ['bytes=0-1'], true]) {
    check(header, 10, NONE)
  }
})

test('results are fresh or frozen, never shared mutable state', () => {
  const a = parseRange('bytes=0-1', 10)
  a.start = 5
  assert.deepEqual(parseRange('bytes=0-1', 10), single(0, 1))
  const none = parseRange(undefined, 10)
  assert.throws(() => { none.kind = 'single' }, TypeError)
  assert.deepEqual(parseRange(undefined, 10), NONE)
})

test('Content-Range values', () => {
  assert.equal(contentRangeHeader(0, 99, 1000), 'bytes 0-99/1000')
  assert.equal(contentRangeHeader(0, 0, 1), 'bytes 0-0/1')
  assert.equal(contentRangeHeader(MAX_SAFE - 1, MAX_SAFE - 1, MAX_SAFE), `bytes ${MAX_SAFE - 1}-${MAX_SAFE - 1}/${MAX_SAFE}`)
  assert.equal(unsatisfiedRangeHeader(1000), 'bytes */1000')
  assert.equal(unsatisfiedRangeHeader(0), 'bytes */0')
})

// Independent, deliberately naive model of the rules, exact via BigInt.
function referenceParseRange (header, size) {
  if (typeof header !== 'string' || header.length > 8192) return NONE
  const match = /^[ \t]*bytes=([^]*?)[ \t]*$/i.exec(header)
  if (match === null) return NONE
  const specs = match[1].split(',').map((s) => s.replace(/^[ \t]+|[ \t]+$/g, '')).filter((s) => s !== '')
  if (specs.length === 0 || specs.length > 100) return NONE
  const length = BigInt(size)
  const ranges = []
  let emptySuffix = false
  for (const spec of specs) {
    const parts = /^([0-9]*)-([0-9]*)$/.exec(spec)
    if (parts === null || (parts[1] === '' && parts[2] === '')) return NONE
    if (parts[1] === '') {
      const suffix = BigInt(parts[2])
      if (suffix === 0n) continue
      if (length === 0n) { emptySuffix = true; continue }
      ranges.push([suffix > length ? 0n : length - suffix, length - 1n])
      continue
    }
    const first = BigInt(parts[1])
    let end = length - 1n
    if (parts[2] !== '') {
      const last = BigInt(parts[2])
      if (last < first) return NONE
      if (last < end) end = last
    }
    if (first >= length) continue
    ranges.push([first, end])
  }
  if (emptySuffix) return NONE
  if (ranges.length === 0) return UNSATISFIABLE
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  let [start, end] = ranges[0]
  for (const [s, e] of ranges.slice(1)) {
    if (s > end + 1n) return NONE
    if (e > end) end = e
  }
  return single(Number(start), Number(end))
}

function assertInvariants (result, size, header) {
  const label = `parseRange(${JSON.stringify(header)}, ${size})`
  assert.ok(['none', 'single', 'unsatisfiable'].includes(result.kind), label)
  if (result.kind === 'single') {
    assert.deepEqual(Object.keys(result).sort(), ['end', 'kind', 'start'], label)
    assert.ok(Number.isSafeInteger(result.start) && Number.isSafeInteger(result.end), label)
    assert.ok(result.start >= 0 && result.start <= result.end && result.end < size, label)
  }
}

test('fuzz: structured headers never throw and match the reference model', () => {
  const random = mulberry32(0x5eed)
  const pick = (items) => items[Math.floor(random() * items.length)]
  const tokens = [
    '0', '1', '2', '3', '5', '9', '10', '00', '-', '-', '-', ',', ',', ',', '=', ' ', '\t',
    'bytes', 'BYTES', 'W/', '"', '*', HUGE, String(MAX_SAFE), String(MAX_SAFE + 1), '.', '+', 'x'
  ]
  const sizes = [0, 1, 2, 5, 10, 100, MAX_SAFE]
  const seen = { none: 0, single: 0, unsatisfiable: 0 }
  for (let i = 0; i < 20000; i++) {
    let header = ''
    const count = Math.floor(random() * 12)
    for (let j = 0; j < count; j++) header += pick(tokens)
    if (random() < 0.7) header = pick(['bytes=', 'BYTES=', ' bytes=', 'bytes= ']) + header
    const size = random() < 0.8 ? pick(sizes) : Math.floor(random() * 1000)
    const result = parseRange(header, size)
    assertInvariants(result, size, header)
    assert.deepEqual(result, referenceParseRange(header, size), `parseRange(${JSON.stringify(header)}, ${size})`)
    seen[result.kind]++
  }
  // The generator must actually reach every outcome to be worth anything.
  for (const kind of Object.keys(seen)) assert.ok(seen[kind] > 100, `${kind}: ${seen[kind]}`)
})

test('fuzz: well-formed multi-spec headers match the reference model', () => {
  const random = mulberry32(42)
  const position = () => random() < 0.05 ? HUGE : String(Math.floor(random() * 40))
  const seen = { none: 0, single: 0, unsatisfiable: 0 }
  for (let i = 0; i < 5000; i++) {
    const specs = []
    const count = 1 + Math.floor(random() * 5)
    for (let j = 0; j < count; j++) {
      const form = random()
      if (form < 0.4) specs.push(`${position()}-${position()}`)
      else if (form < 0.7) specs.push(`${position()}-`)
      else specs.push(`-${position()}`)
    }
    const header = 'bytes=' + specs.join(random() < 0.5 ? ',' : ' , ')
    const size = Math.floor(random() * 30)
    const result = parseRange(header, size)
    assertInvariants(result, size, header)
    assert.deepEqual(result, referenceParseRange(header, size), `parseRange(${JSON.stringify(header)}, ${size})`)
    seen[result.kind]++
  }
  for (const kind of Object.keys(seen)) assert.ok(seen[kind] > 200, `${kind}: ${seen[kind]}`)
})

test('fuzz: arbitrary code units never throw', () => {
  const random = mulberry32(7)
  for (let i = 0; i < 20000; i++) {
    let header = random() < 0.5 ? 'bytes=' : ''
    const count = Math.floor(random() * 16)
    for (let j = 0; j < count; j++) {
      header += String.fromCharCode(random() < 0.8 ? Math.floor(random() * 128) : Math.floor(random() * 0x10000))
    }
    const size = Math.floor(random() * 50)
    const result = parseRange(header, size)
    assertInvariants(result, size, header)
    assert.deepEqual(result, referenceParseRange(header, size))
  }
})
