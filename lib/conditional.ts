// Conditional request evaluation (RFC 9110 §13).
//
// Headers are hostile input: nothing here throws. A field whose value is
// empty or only whitespace is treated as absent, as `send` does, since some
// intermediaries forward empty fields.

export interface Validators {
  etag: string | undefined
  lastModified: number | undefined
}

export interface ConditionalHeaders {
  'if-match'?: string
  'if-none-match'?: string
  'if-modified-since'?: string
  'if-unmodified-since'?: string
}

export type ConditionalOutcome = 'proceed' | 'not-modified' | 'precondition-failed'

interface EntityTag { weak: boolean, opaque: string }

const SP = 0x20
const HTAB = 0x09
const DQUOTE = 0x22
const COMMA = 0x2c

function isOws (code: number): boolean {
  return code === SP || code === HTAB
}

// OWS is SP / HTAB only (§5.6.3).
function trimOws (value: string): string {
  let start = 0
  let end = value.length
  while (start < end && isOws(value.charCodeAt(start))) start++
  while (end > start && isOws(value.charCodeAt(end - 1))) end--
  return value.slice(start, end)
}

function presentValue (value: string | undefined): string | undefined {
  if (typeof value !== 'string') return undefined
  const trimmed = trimOws(value)
  return trimmed === '' ? undefined : trimmed
}

// etagc = %x21 / %x23-7E / obs-text (§8.8.3)
function isEtagChars (opaque: string): boolean {
  for (let i = 0; i < opaque.length; i++) {
    const code = opaque.charCodeAt(i)
    if (!(code === 0x21 || (code >= 0x23 && code <= 0x7e) || (code >= 0x80 && code <= 0xff))) return false
  }
  return true
}

// Reads one list member starting at `start` (not OWS, not a comma). Returns
// the entity-tag, or null when the member is malformed, and the index of the
// comma ending the member (or the value's length). Since etagc excludes
// DQUOTE, the first DQUOTE after the opening one closes the tag, so commas
// inside a tag are data, not separators.
function readListMember (value: string, start: number): { tag: EntityTag | null, end: number } {
  let i = start
  let tag: EntityTag | null = null
  // The weak prefix is case-sensitive: %s"W/" (§8.8.3).
  const weak = value.startsWith('W/"', i)
  if (weak) i += 2
  if (value.charCodeAt(i) === DQUOTE) {
    const close = value.indexOf('"', i + 1)
    // Unterminated: nothing after the quote can be delimited reliably.
    if (close === -1) return { tag: null, end: value.length }
    const opaque = value.slice(i + 1, close)
    if (isEtagChars(opaque)) tag = { weak, opaque }
    i = close + 1
  }
  while (i < value.length && isOws(value.charCodeAt(i))) i++
  if (i < value.length && value.charCodeAt(i) !== COMMA) {
    // Trailing junk: drop the member and resynchronise at the next comma.
    const comma = value.indexOf(',', i)
    return { tag: null, end: comma === -1 ? value.length : comma }
  }
  return { tag, end: i }
}

// #entity-tag (§5.6.1.2): empty elements and malformed members are skipped.
function parseEntityTagList (value: string): EntityTag[] {
  const tags: EntityTag[] = []
  let i = 0
  while (i < value.length) {
    const code = value.charCodeAt(i)
    if (code === COMMA || isOws(code)) {
      i++
      continue
    }
    const member = readListMember(value, i)
    if (member.tag !== null) tags.push(member.tag)
    i = member.end + 1
  }
  return tags
}

function parseEntityTag (value: string): EntityTag | null {
  const trimmed = trimOws(value)
  if (trimmed === '') return null
  const member = readListMember(trimmed, 0)
  return member.end === trimmed.length ? member.tag : null
}

// §8.8.3.2
function strongMatch (a: EntityTag, b: EntityTag): boolean {
  return !a.weak && !b.weak && a.opaque === b.opaque
}

function weakMatch (a: EntityTag, b: EntityTag): boolean {
  return a.opaque === b.opaque
}

// "*" matches any current representation (§13.1.1, §13.1.2); one always
// exists here since the file is already open.
function listMatches (
  fieldValue: string,
  current: EntityTag | null,
  match: (a: EntityTag, b: EntityTag) => boolean
): boolean {
  if (fieldValue === '*') return true
  if (current === null) return false
  return parseEntityTagList(fieldValue).some((tag) => match(tag, current))
}

const DAY_NAMES = '(?:mon|tue|wed|thu|fri|sat|sun)'
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
// The three HTTP-date forms of §5.6.7. Written out instead of Date.parse,
// which also accepts things like "1" (as the year 2001) or local-time dates.
// Names are matched case-insensitively, as Date.parse would.
// Sun, 06 Nov 1994 08:49:37 GMT
const IMF_FIXDATE = new RegExp(`^${DAY_NAMES}, (\\d{2}) ([a-z]{3}) (\\d{4}) (\\d{2}):(\\d{2}):(\\d{2}) GMT$`, 'i')
// Sunday, 06-Nov-94 08:49:37 GMT
const RFC850_DATE = /^(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday), (\d{2})-([a-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/i
// Sun Nov  6 08:49:37 1994
const ASCTIME_DATE = new RegExp(`^${DAY_NAMES} ([a-z]{3}) (\\d{2}| \\d) (\\d{2}):(\\d{2}):(\\d{2}) (\\d{4})$`, 'i')

// §5.6.7: a two-digit year that would be more than 50 years after the
// current year is the most recent past year with those digits.
function expandTwoDigitYear (twoDigits: number, currentYear: number): number {
  const latest = currentYear + 50
  return latest - (((latest - twoDigits) % 100) + 100) % 100
}

function timestamp (year: number, monthName: string, day: number, hour: number, minute: number, second: number): number | undefined {
  const month = MONTHS.indexOf(monthName.toLowerCase())
  // 60 is allowed for a leap second (§5.6.7); Date folds it into the next minute.
  if (month === -1 || hour > 23 || minute > 59 || second > 60) return undefined
  const date = new Date(0)
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  date.setUTCFullYear(year, month, day)
  // Rejects days the month does not have, e.g. 31 Feb.
  if (day < 1 || date.getUTCDate() !== day) return undefined
  date.setUTCHours(hour, minute, second, 0)
  return date.getTime()
}

// Milliseconds since the epoch, or undefined when not a valid HTTP-date.
function parseHttpDate (value: string): number | undefined {
  let match = IMF_FIXDATE.exec(value)
  if (match !== null) {
    return timestamp(Number(match[3]), match[2], Number(match[1]), Number(match[4]), Number(match[5]), Number(match[6]))
  }
  match = RFC850_DATE.exec(value)
  if (match !== null) {
    const year = expandTwoDigitYear(Number(match[3]), new Date().getUTCFullYear())
    return timestamp(year, match[2], Number(match[1]), Number(match[4]), Number(match[5]), Number(match[6]))
  }
  match = ASCTIME_DATE.exec(value)
  if (match !== null) {
    return timestamp(Number(match[6]), match[1], Number(match[2].trim()), Number(match[3]), Number(match[4]), Number(match[5]))
  }
  return undefined
}

// HTTP-dates have one-second resolution, so only whole seconds of the
// modification time can be compared (§13.1.3, §13.1.4).
function wholeSeconds (ms: number | undefined): number | undefined {
  return typeof ms === 'number' && Number.isFinite(ms) ? Math.floor(ms / 1000) * 1000 : undefined
}

function currentEntityTag (v: Validators): EntityTag | null {
  return typeof v.etag === 'string' ? parseEntityTag(v.etag) : null
}

function isGetOrHead (method: string): boolean {
  // Method names are case-sensitive (§9.1).
  return method === 'GET' || method === 'HEAD'
}

// Precedence of §13.2.2, steps 1-4; step 5 (If-Range) is ifRangeAllowsRange.
export function evaluateConditionals (method: string, headers: ConditionalHeaders, v: Validators): ConditionalOutcome {
  const current = currentEntityTag(v)
  const lastModified = wholeSeconds(v.lastModified)

  const ifMatch = presentValue(headers['if-match'])
  if (ifMatch !== undefined) {
    // §13.1.1: strong comparison. A list with no usable tag matches nothing.
    if (!listMatches(ifMatch, current, strongMatch)) return 'precondition-failed'
  } else {
    const ifUnmodifiedSince = presentValue(headers['if-unmodified-since'])
    if (ifUnmodifiedSince !== undefined && lastModified !== undefined) {
      // §13.1.4: an invalid date means the field is ignored.
      const date = parseHttpDate(ifUnmodifiedSince)
      if (date !== undefined && lastModified > date) return 'precondition-failed'
    }
  }

  const ifNoneMatch = presentValue(headers['if-none-match'])
  if (ifNoneMatch !== undefined) {
    // §13.1.2: weak comparison.
    if (listMatches(ifNoneMatch, current, weakMatch)) {
      return isGetOrHead(method) ? 'not-modified' : 'precondition-failed'
    }
  } else if (isGetOrHead(method)) {
    // §13.1.3: only for GET/HEAD and only without If-None-Match.
    const ifModifiedSince = presentValue(headers['if-modified-since'])
    if (ifModifiedSince !== undefined && lastModified !== undefined) {
      const date = parseHttpDate(ifModifiedSince)
      if (date !== undefined && lastModified <= date) return 'not-modified'
    }
  }

  return 'proceed'
}

// §13.1.5: true when a Range header may be honoured. Any doubt means false,
// which serves the full representation and is always correct.
export function ifRangeAllowsRange (ifRange: string | undefined, v: Validators): boolean {
  const value = presentValue(ifRange)
  if (value === undefined) return true

  // No HTTP-date starts with DQUOTE or "W/" (day names are Mon..Sun).
  if (value.startsWith('"') || value.startsWith('W/')) {
    const tag = parseEntityTag(value)
    const current = currentEntityTag(v)
    // A weak tag never matches: strong comparison is required.
    return tag !== null && current !== null && strongMatch(tag, current)
  }

  const date = parseHttpDate(value)
  const lastModified = wholeSeconds(v.lastModified)
  // Exact equality: the client's copy must be this version (§13.1.5).
  return date !== undefined && lastModified !== undefined && lastModified === date
}
