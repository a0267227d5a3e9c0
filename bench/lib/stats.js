'use strict'
function finite (xs) { return xs.filter((x) => typeof x === 'number' && Number.isFinite(x)) }
function median (xs) {
  const v = finite(xs).sort((a, b) => a - b)
  if (!v.length) return NaN
  const m = v.length >> 1
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}
function min (xs) { const v = finite(xs); return v.length ? Math.min(...v) : NaN }
function max (xs) { const v = finite(xs); return v.length ? Math.max(...v) : NaN }
function sum (xs) { return finite(xs).reduce((a, b) => a + b, 0) }
/** Spread as ± half the min..max range, in % of the median. */
function spreadPct (xs) {
  const m = median(xs)
  if (!Number.isFinite(m) || m === 0 || finite(xs).length < 2) return NaN
  return (max(xs) - min(xs)) / 2 / Math.abs(m) * 100
}
module.exports = { median, min, max, sum, spreadPct }
