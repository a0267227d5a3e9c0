// Range request parsing (RFC 9110 §14).
//
// Only one contiguous byte range is ever served. A request whose ranges do
// not coalesce into one is answered 200 with the full body, which §14.2
// allows ("A server MAY ignore the Range header field"), and which is what
// the `send` module behind @fastify/static does. A multipart/byteranges body
// would have to interleave generated part headers with file bytes, giving up
// the single sendfile(2) call this plugin exists for.
//
// Headers are hostile input: nothing here throws, and anything the grammar
// does not allow makes the whole header ignored ('none'), per §14.2.

export type RangeResult =
  | { kind: 'none' }
  | { kind: 'single', start: number, end: number }
  | { kind: 'unsatisfiable' }

interface ByteRange { start: number, end: number }

// Bounds on work done for one header, in the spirit of nginx's limits: real
// clients send a handful of specs in a few dozen bytes.
const MAX_HEADER_LENGTH = 8192
const MAX_RANGE_SPECS = 100

const NONE: RangeResult = Object.freeze({ kind: 'none' })
const UNSATISFIABLE: RangeResult = Object.freeze({ kind: 'unsatisfiable' })

// first-pos "-" [ last-pos ] or "-" suffix-length, digits only (§14.1.1).
// Without the u flag \d is exactly [0-9].
const RANGE_SPEC = /^(\d*)-(\d*)$/

const SP = 0x20
const HTAB = 0x09

// OWS is SP / HTAB only (§5.6.3); String.prototype.trim would also accept
// line breaks and Unicode spaces, which the grammar does not.
function trimOws (value: string): string {
  let start = 0
  let end = value.length
  while (start < end && isOws(value.charCodeAt(start))) start++
  while (end > start && isOws(value.charCodeAt(end - 1))) end--
  return value.slice(start, end)
}

function isOws (code: number): boolean {
  return code === SP || code === HTAB
}

// Values past MAX_SAFE_INTEGER become Infinity rather than a rounded number,
// so an oversized position can never turn into a wrong but plausible offset:
// an infinite first-pos is past the end, an infinite last-pos or
// suffix-length covers to the end. Number() rounds monotonically, so every
// true value above MAX_SAFE_INTEGER also parses above it.
function parsePosition (digits: string): number {
  const value = Number(digits)
  return value <= Number.MAX_SAFE_INTEGER ? value : Infinity
}

// Exact order of two digit strings, for when both are too large for a number.
function compareDigits (a: string, b: string): number {
  const x = a.replace(/^0+/, '')
  const y = b.replace(/^0+/, '')
  if (x.length !== y.length) return x.length - y.length
  return x < y ? -1 : x > y ? 1 : 0
}

type SpecResult = ByteRange | 'invalid' | 'unsatisfiable' | 'empty'

function parseRangeSpec (spec: string, size: number): SpecResult {
  const match = RANGE_SPEC.exec(spec)
  if (match === null) return 'invalid'
  const firstDigits = match[1]
  const lastDigits = match[2]

  if (firstDigits === '') {
    if (lastDigits === '') return 'invalid'
    // suffix-range: the last N bytes, or all of them when N >= size
    // (§14.1.1). A zero suffix selects nothing.
    const suffixLength = parsePosition(lastDigits)
    if (suffixLength === 0) return 'unsatisfiable'
    // A non-zero suffix is satisfiable even on an empty representation
    // (§14.1.1), yet selects no byte a Content-Range could name.
    if (size === 0) return 'empty'
    return { start: Math.max(0, size - suffixLength), end: size - 1 }
  }

  const first = parsePosition(firstDigits)
  let end = size - 1
  if (lastDigits !== '') {
    const last = parsePosition(lastDigits)
    const lastBeforeFirst = first === Infinity && last === Infinity
      ? compareDigits(lastDigits, firstDigits) < 0
      : last < first
    // §14.1.1: last-pos below first-pos makes the range-spec invalid.
    if (lastBeforeFirst) return 'invalid'
    // A last-pos at or past the end means "to the end" (§14.1.1).
    end = Math.min(last, size - 1)
  }
  // §14.1.1: an int-range is satisfiable only if first-pos < length.
  if (first >= size) return 'unsatisfiable'
  return { start: first, end }
}

export function parseRange (header: string | undefined, size: number): RangeResult {
  if (typeof header !== 'string' || header.length > MAX_HEADER_LENGTH) return NONE
  // A size that is not a byte count could only produce bogus offsets.
  if (!Number.isSafeInteger(size) || size < 0) return NONE

  const value = trimOws(header)
  const equals = value.indexOf('=')
  if (equals === -1) return NONE
  // Range units are case-insensitive (§14.1); any unit but bytes is ignored.
  if (value.slice(0, equals).toLowerCase() !== 'bytes') return NONE

  const ranges: ByteRange[] = []
  let specCount = 0
  let selectsEmpty = false
  // range-set is a #list: OWS around elements, and empty elements are
  // skipped (§5.6.1.2), but at least one spec must be present.
  for (const element of value.slice(equals + 1).split(',')) {
    const spec = trimOws(element)
    if (spec === '') continue
    if (++specCount > MAX_RANGE_SPECS) return NONE
    const result = parseRangeSpec(spec, size)
    if (result === 'invalid') return NONE
    if (result === 'empty') selectsEmpty = true
    // Unsatisfiable specs are dropped; the rest may still be served (§14.2).
    else if (result !== 'unsatisfiable') ranges.push(result)
  }
  if (specCount === 0) return NONE
  // The empty representation, satisfiably asked for: serve it whole (200).
  if (selectsEmpty) return NONE
  // §15.5.17: 416 only when no spec overlaps the representation.
  if (ranges.length === 0) return UNSATISFIABLE

  // Overlapping or adjacent ranges are coalesced (§14.2 permits it); a gap
  // left after sorting means a true multi-range request, served in full.
  ranges.sort((a, b) => a.start - b.start)
  const start = ranges[0].start
  let end = ranges[0].end
  for (let i = 1; i < ranges.length; i++) {
    const next = ranges[i]
    if (next.start > end + 1) return NONE
    if (next.end > end) end = next.end
  }
  return { kind: 'single', start, end }
}

// Content-Range for a 206 (§14.4); end is inclusive.
export function contentRangeHeader (start: number, end: number, size: number): string {
  return `bytes ${start}-${end}/${size}`
}

// Content-Range for a 416 (§14.4, §15.5.17).
export function unsatisfiedRangeHeader (size: number): string {
  return `bytes */${size}`
}
