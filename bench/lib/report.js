'use strict'
// Aggregation (medians + spread over rounds), the markdown report, the ratios,
// the informational targets, the CSVs and the SVG chart.
const { median, max, sum, spreadPct } = require('./stats')
const { groupedBars } = require('./svg')

const BOUND_PCT = 90 // a process using >= 90 % of its one CPU is "saturated"
const CORE_BOUND_PCT = 95 // ... or its pinned CPU being >= 95 % busy (incl. softirq)
const MiB = 1024 * 1024

function summarize (runs) {
  const m = (k) => median(runs.map((r) => r[k]))
  const s = {
    rounds: runs.length,
    reqPerSec: m('reqPerSec'),
    reqPerSecSpread: spreadPct(runs.map((r) => r.reqPerSec)),
    mbPerSec: m('mbPerSec'),
    cpuSecPerGiB: m('cpuSecPerGiB'),
    cpuSecPerGiBSpread: spreadPct(runs.map((r) => r.cpuSecPerGiB)),
    serverCpuPct: m('serverCpuPct'),
    loadCpuPct: m('loadCpuPct'),
    serverCoreBusyPct: m('serverCoreBusyPct'),
    serverCoreCpuSecPerGiB: m('serverCoreCpuSecPerGiB'),
    loadCoreBusyPct: m('loadCoreBusyPct'),
    idleRssMiB: m('idleRssMiB'),
    peakRssMiB: max(runs.map((r) => r.peakRssMiB)),
    peakOverIdleMiB: max(runs.map((r) => r.peakOverIdleMiB)),
    p99Ms: m('p99Ms'),
    errors: sum(runs.map((r) => r.errors)),
    requests: sum(runs.map((r) => r.requests)),
    bytes: sum(runs.map((r) => r.bytes))
  }
  // saturated: the process used >= 90 % of a CPU, or its pinned CPU was >= 95 % busy
  // (the CPU also does softirq/loopback work that /proc/PID/stat does not charge to the process)
  const srv = s.serverCpuPct >= BOUND_PCT || s.serverCoreBusyPct >= CORE_BOUND_PCT
  const gen = s.loadCpuPct >= BOUND_PCT || s.loadCoreBusyPct >= CORE_BOUND_PCT
  s.bound = srv && gen ? 'both' : srv ? 'server' : gen ? 'load gen' : 'neither'
  return s
}

// ---------- formatting ----------
function fmtInt (v) { return Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a' }
function fmtSig (v, d = 3) {
  if (!Number.isFinite(v)) return 'n/a'
  if (v === 0) return '0'
  const a = Math.abs(v)
  if (a >= 10 ** d) return Math.round(v).toLocaleString('en-US')
  return Number(v.toPrecision(d)).toString()
}
function fmtFixed (v, d) { return Number.isFinite(v) ? v.toFixed(d) : 'n/a' }
function fmtPm (v) { return Number.isFinite(v) ? `±${v < 10 ? v.toFixed(1) : v.toFixed(0)}%` : '' }
function fmtPct2 (p, core) { return Number.isFinite(core) ? `${fmtFixed(p, 0)} (${fmtFixed(core, 0)})` : fmtFixed(p, 0) }
function fmtX (v) { return Number.isFinite(v) ? `${v >= 10 ? v.toFixed(1) : v.toFixed(2)}×` : 'n/a' }

function table (header, rows, align) {
  const a = align || header.map((_, i) => (i === 0 ? 'l' : 'r'))
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [line(header), line(a.map((x) => (x === 'l' ? ':---' : '---:'))), ...rows.map(line)].join('\n')
}

function ratio (a, b) { return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN }

/**
 * ctx: { configs, servers, results: {cfgId: {srvId: {runs, summary}}}, meta, excluded, notes, pluginStats }
 */
function markdown (ctx) {
  const { configs, servers, results, meta } = ctx
  const out = []
  out.push(`# fastify-zero-copy benchmark (${meta.mode})`)
  out.push('')
  out.push(`${meta.date} · ${meta.cpu} · ${meta.cpus} CPUs · Linux ${meta.kernel} · Node ${meta.node} · load: ${meta.loadGen} · nginx: ${meta.nginx}`)
  out.push(`servers pinned to CPU ${meta.serverCpu}, load generator to CPU ${meta.loadCpu} · ${meta.rounds} rounds × ${meta.duration} s (warm-up ${meta.warmup}) · medians over rounds, ± = half the min–max range in % of the median`)
  out.push('')
  for (const cfg of configs) {
    const byServer = results[cfg.id] || {}
    const rows = []
    for (const srv of servers) {
      const r = byServer[srv.id]
      if (!r || !r.summary) continue
      const s = r.summary
      rows.push([
        srv.label,
        fmtInt(s.reqPerSec), fmtPm(s.reqPerSecSpread),
        fmtFixed(s.mbPerSec, 0),
        fmtSig(s.cpuSecPerGiB), fmtPm(s.cpuSecPerGiBSpread),
        fmtPct2(s.serverCpuPct, s.serverCoreBusyPct), fmtPct2(s.loadCpuPct, s.loadCoreBusyPct), s.bound,
        `${fmtFixed(s.peakRssMiB, 1)} (+${fmtFixed(s.peakOverIdleMiB, 1)})`,
        fmtSig(s.p99Ms),
        s.errors ? `**${fmtInt(s.errors)}**` : '0'
      ])
    }
    out.push(`## ${cfg.title}`)
    out.push('')
    if (!rows.length) { out.push('_no server measured_'); out.push(''); continue }
    out.push(table(['server', 'req/s', '±', 'MB/s', 'CPU s/GiB', '±', 'server CPU % (its core)', 'load-gen CPU % (its core)', 'saturated', 'peak RSS MiB (+over idle)', 'p99 ms', 'errors'], rows))
    out.push('')
  }

  // ratios
  out.push('## Ratios')
  out.push('')
  out.push('req/s: higher is better for ours. CPU s/GiB: ours ÷ other, lower is better (1.00× = same CPU per byte).')
  out.push('')
  const ratioRows = []
  let dagger = false
  for (const cfg of configs) {
    const by = results[cfg.id] || {}
    const g = (id, k) => by[id] && by[id].summary ? by[id].summary[k] : NaN
    // req/s ratio; when either side completed fewer responses than it had
    // connections per round (64 MiB × 64), compare MB/s instead (partial responses count)
    const fewResponses = (id) => by[id] && by[id].summary && by[id].summary.requests < cfg.connections * by[id].summary.rounds
    const rps = (ours, other) => {
      if (!by[ours] || !by[other] || !by[ours].summary || !by[other].summary) return 'n/a'
      if (fewResponses(ours) || fewResponses(other)) { dagger = true; return `${fmtX(ratio(g(ours, 'mbPerSec'), g(other, 'mbPerSec')))}†` }
      return fmtX(ratio(g(ours, 'reqPerSec'), g(other, 'reqPerSec')))
    }
    for (const ours of ['zero-copy', 'fallback']) {
      if (!by[ours] || !by[ours].summary) continue
      ratioRows.push([
        cfg.short, servers.find((s) => s.id === ours).label,
        rps(ours, 'static'),
        rps(ours, 'memory'),
        rps(ours, 'nginx'),
        fmtX(ratio(g(ours, 'cpuSecPerGiB'), g('static', 'cpuSecPerGiB'))),
        fmtX(ratio(g(ours, 'cpuSecPerGiB'), g('memory', 'cpuSecPerGiB'))),
        fmtX(ratio(g(ours, 'cpuSecPerGiB'), g('nginx', 'cpuSecPerGiB'))),
        g(ours, 'bound') === 'load gen' || g(ours, 'bound') === 'both' ? 'load gen saturated: req/s measures wrk' : ''
      ])
    }
  }
  if (ratioRows.length) {
    out.push(table(['config', 'ours', 'req/s vs @fastify/static', 'req/s vs from-memory', 'req/s vs nginx', 'CPU/GiB vs @fastify/static', 'CPU/GiB vs from-memory', 'CPU/GiB vs nginx', 'note'], ratioRows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'l']))
    if (dagger) out.push('', '† too few complete responses in the run (fewer than one per connection): ratio of MB/s received (partial responses included) instead of req/s.')
  } else out.push('_fastify-zero-copy was not measured, so no ratios._')
  out.push('')

  // the open-file cache's effect: the same plugin with cache: false
  const cacheRows = []
  for (const cfg of configs) {
    const by = results[cfg.id] || {}
    const on = by['zero-copy'] && by['zero-copy'].summary
    const off = by['no-cache'] && by['no-cache'].summary
    if (!on || !off) continue
    cacheRows.push([cfg.short, fmtInt(on.reqPerSec), fmtInt(off.reqPerSec), fmtX(ratio(on.reqPerSec, off.reqPerSec)),
      fmtSig(on.cpuSecPerGiB), fmtSig(off.cpuSecPerGiB), fmtX(ratio(on.cpuSecPerGiB, off.cpuSecPerGiB))])
  }
  if (cacheRows.length) {
    out.push('## Open-file cache: on (default) vs off (`cache: false`)')
    out.push('')
    out.push(table(['config', 'req/s cache on', 'req/s cache off', 'on ÷ off', 'CPU s/GiB on', 'CPU s/GiB off', 'on ÷ off'], cacheRows, ['l', 'r', 'r', 'r', 'r', 'r', 'r']))
    out.push('')
  }

  if (ctx.cold && (ctx.cold.on || ctx.cold.off)) {
    const c = ctx.cold
    out.push('## Cold files: hot 4 KiB p99 while 64 MiB files are fetched cold')
    out.push('')
    out.push(`${c.setup.connections} connections fetch a cached 4 KiB file for ${c.setup.durationSec} s, (a) alone, (b) while ${c.setup.coldClients} clients download a ${c.setup.fileMiB} MiB file, the page cache dropped before each download (${c.setup.dropCache}); ${c.setup.pinned}. Target: p99 (b) ≤ 2× p99 (a).`)
    out.push('')
    const rows = []
    for (const key of ['on', 'off']) {
      const r = c[key]
      if (!r) continue
      rows.push([key === 'on' ? 'residency check on (default)' : 'check off (`FASTIFY_ZERO_COPY_COLD_CHECK=0`)',
        fmtFixed(r.p99a, 2), fmtFixed(r.p99b, 2), fmtX(r.ratio), fmtInt(r.rpsA), fmtInt(r.rpsB),
        fmtFixed(r.loopDelayMaxb, 1), String(r.coldDownloads), r.poolReads == null ? 'n/a' : String(r.poolReads)])
    }
    out.push(table(['plugin', 'p99 (a) ms', 'p99 (b) ms', '(b) ÷ (a)', 'hot req/s (a)', 'hot req/s (b)', 'event-loop delay max (b) ms', 'cold downloads', 'pool reads'], rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']))
    out.push('')
  }

  if (ctx.digest) {
    const d = ctx.digest
    out.push("## `etag: 'digest'`: what hashing costs")
    out.push('')
    out.push(`Hashing (lib/digest.ts: 4 MiB chunks read and hashed on the thread pool) of a ${d.hashMiB} MiB file in the page cache, best of ${d.rounds}; the first HEAD of a ${d.fileMiB} MiB file on a fresh server (it waits for the hash), the next one, and the first one with the default stat-based tag; medians of ${d.rounds}.`)
    out.push('')
    out.push(table(['hashed MB/s (pool)', 'one-shot sha256 MB/s (main thread, for scale)', `first HEAD ${d.fileMiB} MiB ms`, 'next HEAD ms', 'first HEAD, stat tag ms'],
      [[fmtInt(d.poolMBps), fmtInt(d.floorMBps), fmtFixed(d.firstMs, 1), fmtFixed(d.nextMs, 2), fmtFixed(d.statFirstMs, 2)]], ['r', 'r', 'r', 'r', 'r']))
    out.push('')
  }

  out.push('## Targets (informational)')
  out.push('')
  for (const t of targets(ctx)) out.push(`- ${t}`)
  out.push('')

  if (ctx.pluginStats && Object.keys(ctx.pluginStats).length) {
    out.push('## Plugin counters after the runs (`fastify.zeroCopy.stats()`)')
    out.push('')
    for (const [id, st] of Object.entries(ctx.pluginStats)) out.push(`- ${id}: \`${JSON.stringify(st)}\``)
    out.push('')
  }
  const ex = Object.entries(ctx.excluded || {})
  if (ex.length) {
    out.push('## Excluded / skipped servers')
    out.push('')
    for (const [id, why] of ex) {
      const srv = ctx.servers.find((x) => x.id === id)
      out.push(`- ${srv ? srv.label : id}: ${why}`)
    }
    out.push('')
  }
  if (ctx.notes.length) {
    out.push('## Notes')
    out.push('')
    for (const n of ctx.notes) out.push(`- ${n}`)
    out.push('')
  }
  return out.join('\n')
}

function targets (ctx) {
  const { results, configs } = ctx
  const cfg = (id) => configs.find((c) => c.id === id)
  const name = (id) => { const c = cfg(id) || (ctx.allConfigs || []).find((x) => x.id === id); return c ? c.short : id }
  const S = (cfgId, srv) => results[cfgId] && results[cfgId][srv] && results[cfgId][srv].summary
  const lines = []
  const verdict = (ok) => (ok ? '**PASS**' : '**SHORT OF**')
  const missing = (cfgId, ids) => {
    if (!cfg(cfgId)) return 'config not run (--configs)'
    const miss = ids.filter((id) => !S(cfgId, id))
    return miss.length ? `not measured: ${miss.join(', ')}${miss.some((id) => ctx.excluded[id]) ? ' (see "Excluded / skipped servers")' : ''}` : null
  }
  const wrkNote = (cfgId) => {
    const s = S(cfgId, 'zero-copy')
    return s && (s.bound === 'load gen' || s.bound === 'both') ? ` — load generator saturated (${fmtFixed(s.loadCpuPct, 0)} % CPU): req/s measures wrk, not the server` : ''
  }
  const reqTarget = (cfgId, other, otherLabel, want) => {
    const label = `${name(cfgId)}: req/s ≥ ${want.toFixed(1)}× ${otherLabel}`
    const miss = missing(cfgId, ['zero-copy', other])
    if (miss) return `N/A ${label} — ${miss}`
    const a = S(cfgId, 'zero-copy').reqPerSec; const b = S(cfgId, other).reqPerSec
    const r = ratio(a, b)
    return `${verdict(r >= want)} ${label}: ${fmtX(r)} (${fmtInt(a)} vs ${fmtInt(b)} req/s)${wrkNote(cfgId)}`
  }
  const cpuTarget = (cfgId, want) => {
    const label = `${name(cfgId)}: server CPU s/GiB ≤ ${want}× nginx`
    const miss = missing(cfgId, ['zero-copy', 'nginx'])
    if (miss) return `N/A ${label} — ${miss}`
    const a = S(cfgId, 'zero-copy').cpuSecPerGiB; const b = S(cfgId, 'nginx').cpuSecPerGiB
    const r = ratio(a, b)
    return `${verdict(r <= want)} ${label}: ${fmtX(r)} (${fmtSig(a)} vs ${fmtSig(b)} s/GiB)`
  }
  lines.push(reqTarget('4k', 'static', '@fastify/static', 5))
  lines.push(reqTarget('4k', 'memory', 'Fastify-from-memory', 1))
  lines.push(reqTarget('64k', 'static', '@fastify/static', 6))
  lines.push(reqTarget('64k', 'memory', 'Fastify-from-memory', 1.2))
  lines.push(cpuTarget('1m', 1.15))
  lines.push(cpuTarget('64m', 1.15))
  {
    const label = `${name('64m-mem')}: peak RSS ≤ idle RSS + 4 MiB`
    const miss = missing('64m-mem', ['zero-copy'])
    if (miss) lines.push(`N/A ${label} — ${miss}`)
    else {
      const s = S('64m-mem', 'zero-copy')
      lines.push(`${verdict(s.peakOverIdleMiB <= 4)} ${label}: peak ${fmtFixed(s.peakRssMiB, 1)} MiB, idle ${fmtFixed(s.idleRssMiB, 1)} MiB (+${fmtFixed(s.peakOverIdleMiB, 1)} MiB, worst round)`)
    }
  }
  {
    const label = 'cold files: hot 4 KiB p99 while 64 MiB files are fetched cold ≤ 2× its p99 alone'
    const r = ctx.cold && ctx.cold.on
    if (!r) lines.push(`N/A ${label} — not run (full mode, or --cold)`)
    else lines.push(`${verdict(r.ratio <= 2)} ${label}: ${fmtX(r.ratio)} (${fmtFixed(r.p99b, 2)} vs ${fmtFixed(r.p99a, 2)} ms; check off: ${ctx.cold.off ? fmtX(ctx.cold.off.ratio) : 'n/a'})`)
  }
  return lines
}

function csvCell (v) {
  if (typeof v === 'number') return Number.isFinite(v) ? String(Number(v.toPrecision(6))) : ''
  const s = v == null ? '' : String(v)
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}
function csv (header, rows) { return [header, ...rows].map((r) => r.map(csvCell).join(',')).join('\n') + '\n' }

function summaryCsv (ctx) {
  const header = ['config', 'file_bytes', 'connections', 'server', 'rounds', 'req_per_s', 'req_per_s_spread_pct', 'mb_per_s', 'cpu_s_per_gib', 'cpu_s_per_gib_spread_pct', 'server_core_cpu_s_per_gib',
    'server_cpu_pct', 'load_gen_cpu_pct', 'server_core_busy_pct', 'load_gen_core_busy_pct', 'saturated', 'idle_rss_mib', 'peak_rss_mib', 'peak_over_idle_mib', 'p99_ms', 'errors', 'requests', 'bytes']
  const rows = []
  for (const cfg of ctx.configs) {
    for (const srv of ctx.servers) {
      const r = ctx.results[cfg.id] && ctx.results[cfg.id][srv.id]
      if (!r || !r.summary) continue
      const s = r.summary
      rows.push([cfg.id, cfg.size, cfg.connections, srv.id, s.rounds, s.reqPerSec, s.reqPerSecSpread, s.mbPerSec, s.cpuSecPerGiB, s.cpuSecPerGiBSpread, s.serverCoreCpuSecPerGiB,
        s.serverCpuPct, s.loadCpuPct, s.serverCoreBusyPct, s.loadCoreBusyPct, s.bound, s.idleRssMiB, s.peakRssMiB, s.peakOverIdleMiB, s.p99Ms, s.errors, s.requests, s.bytes])
    }
  }
  return csv(header, rows)
}

function runsCsv (ctx) {
  const header = ['config', 'server', 'round', 'position', 'req_per_s', 'mb_per_s', 'cpu_s_per_gib', 'server_core_cpu_s_per_gib', 'server_cpu_s', 'server_cpu_pct', 'load_gen_cpu_pct', 'server_core_busy_pct', 'load_gen_core_busy_pct',
    'idle_rss_mib', 'peak_rss_mib', 'p99_ms', 'errors', 'error_detail', 'requests', 'bytes', 'duration_s', 'wall_s']
  const rows = []
  for (const cfg of ctx.configs) {
    for (const srv of ctx.servers) {
      const r = ctx.results[cfg.id] && ctx.results[cfg.id][srv.id]
      if (!r) continue
      for (const x of r.runs) {
        rows.push([cfg.id, srv.id, x.round, x.position, x.reqPerSec, x.mbPerSec, x.cpuSecPerGiB, x.serverCoreCpuSecPerGiB, x.serverCpuSec, x.serverCpuPct, x.loadCpuPct, x.serverCoreBusyPct, x.loadCoreBusyPct,
          x.idleRssMiB, x.peakRssMiB, x.p99Ms, x.errors, x.errorDetail, x.requests, x.bytes, x.durationSec, x.wallSec])
      }
    }
  }
  return csv(header, rows)
}

function chart (ctx) {
  const series = ctx.servers.filter((s) => ctx.configs.some((c) => ctx.results[c.id] && ctx.results[c.id][s.id] && ctx.results[c.id][s.id].summary))
  const val = (k) => (g, s) => {
    const r = ctx.results[ctx.configs[g].id] && ctx.results[ctx.configs[g].id][series[s].id]
    return r && r.summary ? r.summary[k] : NaN
  }
  return groupedBars({
    title: `fastify-zero-copy benchmark (${ctx.meta.mode})`,
    subtitle: `${ctx.meta.date} · ${ctx.meta.cpu} · load: ${ctx.meta.loadGen} · medians of ${ctx.meta.rounds} rounds`,
    groups: ctx.configs.map((c) => c.short),
    series: series.map((s) => ({ label: s.label, color: s.color })),
    panels: [
      { title: 'requests per second (× = no complete response in the run, or not measured)', better: 'higher is better', value: val('reqPerSec') },
      { title: 'server CPU seconds per GiB sent', better: 'lower is better', value: val('cpuSecPerGiB') },
      { title: 'peak RSS over idle RSS during the run, worst round (MiB)', better: 'lower is better', linear: true, value: val('peakOverIdleMiB') }
    ]
  })
}

module.exports = { summarize, markdown, targets, summaryCsv, runsCsv, chart, BOUND_PCT, MiB }
