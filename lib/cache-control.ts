// Cache-Control for served files, matching @fastify/static (via
// @fastify/send): maxAge in milliseconds or as a duration string, rounded
// down to whole seconds and capped at one year.
//
// These run when the plugin's options are validated, not per request, so an
// invalid maxAge throws to fail registration loudly instead of silently
// sending max-age=0.

const ONE_YEAR_SECONDS = 60 * 60 * 24 * 365

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

// The unit spellings @lukeed/ms (used by @fastify/send) accepts, so a
// maxAge string written for @fastify/static means the same here. Its year
// is 365.25 days; any year exceeds the cap anyway. A Map, so that a unit
// like 'constructor' cannot reach Object.prototype.
const UNIT_MS = new Map<string, number>(Object.entries({
  '': 1,
  ms: 1,
  msec: 1,
  msecs: 1,
  millisecond: 1,
  milliseconds: 1,
  s: SECOND,
  sec: SECOND,
  secs: SECOND,
  second: SECOND,
  seconds: SECOND,
  m: MINUTE,
  min: MINUTE,
  mins: MINUTE,
  minute: MINUTE,
  minutes: MINUTE,
  h: HOUR,
  hr: HOUR,
  hrs: HOUR,
  hour: HOUR,
  hours: HOUR,
  d: DAY,
  day: DAY,
  days: DAY,
  w: 7 * DAY,
  wk: 7 * DAY,
  wks: 7 * DAY,
  week: 7 * DAY,
  weeks: 7 * DAY,
  y: 365.25 * DAY,
  yr: 365.25 * DAY,
  yrs: 365.25 * DAY,
  year: 365.25 * DAY,
  years: 365.25 * DAY
}))

// A non-negative decimal number, optional spaces, optional unit: '1d',
// '1.5h', '500 ms', '3600000'. No sign: a negative max-age is a mistake.
const DURATION = /^(\d+(?:\.\d+)?|\.\d+) *([a-z]*)$/

function durationToMs (duration: string): number {
  const match = DURATION.exec(duration.trim().toLowerCase())
  const unitMs = match === null ? undefined : UNIT_MS.get(match[2])
  if (match === null || unitMs === undefined) {
    throw new TypeError(`maxAge must be a number of milliseconds or a duration like '1d', got ${JSON.stringify(duration)}`)
  }
  return Number(match[1]) * unitMs
}

export function maxAgeToSeconds (maxAge: number | string): number {
  let ms: number
  if (typeof maxAge === 'number') {
    if (Number.isNaN(maxAge) || maxAge < 0) {
      throw new TypeError(`maxAge must be a non-negative number of milliseconds, got ${maxAge}`)
    }
    ms = maxAge
  } else if (typeof maxAge === 'string') {
    ms = durationToMs(maxAge)
  } else {
    throw new TypeError(`maxAge must be a number or a string, got ${typeof maxAge}`)
  }
  // Math.max also turns -0 into 0.
  return Math.max(0, Math.min(Math.floor(ms / SECOND), ONE_YEAR_SECONDS))
}

export function cacheControlValue (maxAge: number | string, immutable: boolean): string {
  const value = `public, max-age=${maxAgeToSeconds(maxAge)}`
  return immutable ? `${value}, immutable` : value
}
