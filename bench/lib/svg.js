'use strict'
// Hand-written SVG: stacked panels of grouped bars (one group per size/config,
// one bar per server), log-scaled y axis, value printed on each bar.

function esc (s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;') }

function niceStep (raw) {
  const e = 10 ** Math.floor(Math.log10(raw))
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * e >= raw) return m * e
  return 10 * e
}

function compact (v) {
  if (!Number.isFinite(v)) return 'n/a'
  const a = Math.abs(v)
  if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 0 : 1) + 'G'
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M'
  if (a >= 1e4) return (v / 1e3).toFixed(0) + 'k'
  if (a >= 1e3) return (v / 1e3).toFixed(1) + 'k'
  if (a >= 100) return v.toFixed(0)
  if (a >= 10) return v.toFixed(1)
  if (a >= 1) return v.toFixed(2)
  return v.toPrecision(2)
}

/**
 * @param {object} o
 * @param {string} o.title
 * @param {string} [o.subtitle]
 * @param {string[]} o.groups   x-axis group labels
 * @param {{label:string,color:string}[]} o.series
 * @param {{title:string, value:(g:number,s:number)=>number, better?:string}[]} o.panels
 */
function groupedBars (o) {
  const barW = 18
  const gap = 26
  const left = 64
  const right = 16
  const groupW = o.series.length * barW + gap
  const plotW = o.groups.length * groupW
  const width = Math.max(left + plotW + right, 640)
  const legendRows = Math.ceil(o.series.length / 3)
  const headerH = 46 + legendRows * 18
  const panelH = 250
  const plotH = 170
  const height = headerH + o.panels.length * panelH + 10
  const out = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`)
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`)
  out.push(`<text x="${left}" y="20" font-size="15" font-weight="bold">${esc(o.title)}</text>`)
  if (o.subtitle) out.push(`<text x="${left}" y="36" fill="#555">${esc(o.subtitle)}</text>`)
  o.series.forEach((s, i) => {
    const x = left + (i % 3) * 210
    const y = 50 + Math.floor(i / 3) * 18
    out.push(`<rect x="${x}" y="${y - 9}" width="12" height="12" fill="${s.color}"/><text x="${x + 17}" y="${y + 1}">${esc(s.label)}</text>`)
  })

  o.panels.forEach((p, pi) => {
    const top = headerH + pi * panelH + 24
    const bottom = top + plotH
    const vals = []
    for (let g = 0; g < o.groups.length; g++) for (let s = 0; s < o.series.length; s++) { const v = p.value(g, s); if (Number.isFinite(v) && (p.linear ? v >= 0 : v > 0)) vals.push(v) }
    out.push(`<text x="${left}" y="${top - 8}" font-size="13" font-weight="bold">${esc(p.title)}</text>`)
    if (p.better) out.push(`<text x="${left + plotW}" y="${top - 8}" text-anchor="end" fill="#555">${esc(p.better)}</text>`)
    if (!vals.length) { out.push(`<text x="${left + 10}" y="${top + 40}" fill="#999">no data</text>`); return }
    let y
    if (p.linear) {
      const step = niceStep(Math.max(...vals, 1e-9) * 1.15 / 4)
      const hi = step * 4
      y = (v) => bottom - Math.max(0, v) / hi * plotH
      for (let k = 0; k <= 4; k++) {
        const yy = y(k * step)
        out.push(`<line x1="${left}" x2="${left + plotW}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="${k ? '#ddd' : '#ccc'}"/>`)
        out.push(`<text x="${left - 6}" y="${(yy + 4).toFixed(1)}" text-anchor="end" fill="#444">${compact(k * step)}</text>`)
      }
    } else {
      const lo = Math.floor(Math.log10(Math.min(...vals)) - 0.2)
      let hi = Math.ceil(Math.log10(Math.max(...vals)) + 0.15)
      if (hi <= lo) hi = lo + 1
      y = (v) => bottom - (Math.log10(v) - lo) / (hi - lo) * plotH
      // grid: decades solid, 2 and 5 dotted
      for (let d = lo; d <= hi; d++) {
        const yy = y(10 ** d)
        out.push(`<line x1="${left}" x2="${left + plotW}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="#ccc"/>`)
        out.push(`<text x="${left - 6}" y="${(yy + 4).toFixed(1)}" text-anchor="end" fill="#444">${compact(10 ** d)}</text>`)
        if (d < hi) for (const k of [2, 5]) { const yk = y(k * 10 ** d); out.push(`<line x1="${left}" x2="${left + plotW}" y1="${yk.toFixed(1)}" y2="${yk.toFixed(1)}" stroke="#eee" stroke-dasharray="2,3"/>`) }
      }
    }
    out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}" stroke="#888"/>`)
    out.push(`<text transform="translate(14 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" fill="#444">${p.linear ? 'linear scale' : 'log scale'}</text>`)
    for (let g = 0; g < o.groups.length; g++) {
      const gx = left + g * groupW + gap / 2
      for (let s = 0; s < o.series.length; s++) {
        const v = p.value(g, s)
        const x = gx + s * barW
        if (Number.isFinite(v) && (p.linear ? v >= 0 : v > 0)) {
          const yy = Math.min(y(v), bottom - 1)
          out.push(`<rect x="${x + 1}" y="${yy.toFixed(1)}" width="${barW - 2}" height="${(bottom - yy).toFixed(1)}" fill="${o.series[s].color}"><title>${esc(o.series[s].label)} — ${esc(o.groups[g])}: ${esc(compact(v))}</title></rect>`)
          out.push(`<text transform="translate(${x + barW / 2 + 3} ${(yy - 3).toFixed(1)}) rotate(-90)" font-size="9" fill="#222">${esc(compact(v))}</text>`)
        } else {
          out.push(`<text x="${x + barW / 2}" y="${bottom - 3}" font-size="9" text-anchor="middle" fill="#999">×</text>`)
        }
      }
      out.push(`<text x="${gx + (o.series.length * barW) / 2}" y="${bottom + 16}" text-anchor="middle">${esc(o.groups[g])}</text>`)
    }
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${bottom}" y2="${bottom}" stroke="#888"/>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

module.exports = { groupedBars, compact, esc }
