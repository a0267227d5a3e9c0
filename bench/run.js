#!/usr/bin/env node
'use strict'
// fastify-zero-copy benchmark orchestrator. See bench/README.md.
//   npm run bench -- --quick      (< 2 min)
//   npm run bench                 (full, < 15 min)
const startedAt = Date.now()
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const net = require('node:net')
const { spawnSync } = require('node:child_process')

const children = require('./lib/children')
const proc = require('./lib/proc')
const setup = require('./lib/setup')
const files = require('./lib/files')
const load = require('./lib/load')
const nginxLib = require('./lib/nginx')
const { checkServer, getJson } = require('./lib/check')
const report = require('./lib/report')

children.install()

const REPO = path.resolve(__dirname, '..')
const { KiB, MiB } = files

// ---------------------------------------------------------------- options
function usage () {
  return `usage: node bench/run.js [--quick] [options]
  --quick              short mode (< 2 minutes): 2 rounds × 1 s, one warm-up pass
  --rounds N           timed rounds per config (default: quick 2, full 4)
  --duration S         seconds per timed run, integer (default: quick 1, full 5)
  --warmup S           seconds per warm-up run (default: quick 1, full 2)
  --servers a,b,...    subset of: ${SERVERS.map((s) => s.id).join(', ')} (digest: only when named)
  --configs a,b,...    subset of: ${CONFIGS.map((c) => c.id).join(', ')}
  --out DIR            results folder (default: bench/results)
  --no-install         never apt-get install wrk / nginx-light
  --no-pin             do not pin with taskset
  --cold / --no-cold   run the cold-file case (bench/cold-file.js: hot 4 KiB p99 alone and while
                       64 MiB files are fetched cold, residency check on and off); default: full only
  -h, --help`
}

const SERVERS = [
  { id: 'zero-copy', label: 'fastify-zero-copy (sendfile)', script: 'zero-copy.js', plugin: true, color: '#d62728' },
  { id: 'fallback', label: 'fastify-zero-copy (fallback)', script: 'zero-copy-fallback.js', plugin: true, color: '#ff9896' },
  { id: 'no-cache', label: 'fastify-zero-copy (sendfile, cache: false)', script: 'zero-copy-nocache.js', plugin: true, color: '#e377c2' },
  // Only when named in --servers: it keeps the full run within its budget.
  { id: 'digest', label: "fastify-zero-copy (sendfile, etag: 'digest')", script: 'zero-copy-digest.js', plugin: true, color: '#bcbd22', optIn: true },
  { id: 'static', label: '@fastify/static', script: 'fastify-static.js', color: '#1f77b4' },
  { id: 'memory', label: 'Fastify from memory', script: 'fastify-memory.js', color: '#2ca02c' },
  { id: 'node-stream', label: 'node:http + createReadStream', script: 'node-stream.js', color: '#9467bd' },
  { id: 'nginx', label: 'nginx (sendfile)', nginx: true, color: '#7f7f7f' }
]

const CONFIGS = [
  { id: '4k', size: 4 * KiB, connections: 16 },
  { id: '64k', size: 64 * KiB, connections: 16 },
  { id: '1m', size: 1 * MiB, connections: 16 },
  { id: '64m', size: 64 * MiB, connections: 4 },
  { id: '64m-mem', size: 64 * MiB, connections: 64, memory: true }
].map((c) => {
  const label = files.sizeLabel(c.size)
  return {
    ...c,
    short: c.memory ? `${label} ×${c.connections} (memory)` : `${label} ×${c.connections}`,
    title: c.memory ? `${label}, ${c.connections} connections (memory)` : `${label}, ${c.connections} connections`,
    timeoutSec: c.size >= 16 * MiB ? 60 : 10
  }
})

function parseArgs (argv) {
  const o = { quick: false, install: true, pin: true, out: path.join(__dirname, 'results') }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => { const v = argv[++i]; if (v === undefined) throw new Error(`${a} needs a value`); return v }
    if (a === '--quick' || a === '-q') o.quick = true
    else if (a === '--full') o.quick = false
    else if (a === '--rounds') o.rounds = Math.max(1, parseInt(next(), 10))
    else if (a === '--duration') o.duration = Math.max(1, parseInt(next(), 10))
    else if (a === '--warmup') o.warmup = Math.max(0, parseInt(next(), 10))
    else if (a === '--servers') o.servers = next().split(',').map((s) => s.trim()).filter(Boolean)
    else if (a === '--configs') o.configs = next().split(',').map((s) => s.trim()).filter(Boolean)
    else if (a === '--out') o.out = path.resolve(next())
    else if (a === '--no-install') o.install = false
    else if (a === '--no-pin') o.pin = false
    else if (a === '--cold') o.cold = true
    else if (a === '--no-cold') o.cold = false
    else if (a === '-h' || a === '--help') { console.log(usage()); process.exit(0) }
    else throw new Error(`unknown option ${a}\n${usage()}`)
  }
  o.rounds = o.rounds || (o.quick ? 2 : 4)
  o.duration = o.duration || (o.quick ? 1 : 5)
  o.warmup = o.warmup !== undefined ? o.warmup : (o.quick ? 1 : 2)
  o.warmupEveryConfig = !o.quick
  if (o.cold === undefined) o.cold = !o.quick && o.configs === undefined && o.servers === undefined
  return o
}

// ---------------------------------------------------------------- helpers
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const log = (...a) => process.stderr.write(`[bench] ${a.join(' ')}\n`)
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`

function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)) })
  })
}

function canConnect (port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1')
    const done = (ok) => { sock.destroy(); resolve(ok) }
    sock.setTimeout(500, () => done(false))
    sock.once('connect', () => done(true))
    sock.once('error', () => done(false))
  })
}

function pinned (cpu, cmd, args) {
  return cpu == null ? [cmd, args] : ['taskset', ['-c', String(cpu), cmd, ...args]]
}

function tail (s, n = 600) { s = String(s || '').trim(); return s.length > n ? '…' + s.slice(-n) : s }

// Start a Node server script; resolves { child, pid, port } once it prints READY.
function startNodeServer (srv, dir, cpu) {
  return new Promise((resolve, reject) => {
    const script = path.join(__dirname, 'servers', srv.script)
    const [cmd, args] = pinned(cpu, process.execPath, [script, dir, '0'])
    const child = children.spawnTracked(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'production' } })
    let out = ''
    let err = ''
    const timer = setTimeout(() => { children.stop(child, 200); reject(new Error(`no READY line within 20 s. stderr: ${tail(err)}`)) }, 20000)
    child.stdout.on('data', (d) => {
      out += d
      const m = out.match(/READY port=(\d+)/)
      if (m && timer) { clearTimeout(timer); resolve({ child, pid: child.pid, port: Number(m[1]), stderr: () => err }) }
    })
    child.stderr.on('data', (d) => { err += d; if (err.length > 20000) err = err.slice(-10000) })
    child.on('error', (e) => { clearTimeout(timer); reject(e) })
    child.on('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`exited (${sig || code}) before READY. stderr: ${tail(err)}`)) })
  })
}

async function startNginx (nginxPath, dir, tmp, cpu) {
  const port = await freePort()
  const prefix = path.join(tmp, 'nginx')
  const { args } = nginxLib.prepare({ nginx: nginxPath, prefix, root: dir, port })
  const [cmd, argv] = pinned(cpu, nginxPath, args)
  const child = children.spawnTracked(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (d) => { err += d })
  child.stdout.resume()
  const deadline = Date.now() + 10000
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break
    if (await canConnect(port)) return { child, pid: child.pid, port, stderr: () => err }
    await sleep(50)
  }
  await children.stop(child, 200)
  let elog = ''
  try { elog = fs.readFileSync(path.join(prefix, 'error.log'), 'utf8') } catch {}
  throw new Error(`nginx did not start: ${tail(err + elog)}`)
}

function alive (s) { return s.child && s.child.exitCode === null && s.child.signalCode === null }

// ---------------------------------------------------------------- one timed run
async function measure (s, cfg, file, durationSec, runLoad, cpus) {
  const pid = s.pid
  const peakReset = proc.resetPeak(pid)
  const mem0 = proc.memory(pid)
  const cpu0 = proc.cpuSeconds(pid)
  const cores0 = proc.cpuTimes()
  const w0 = process.hrtime.bigint()
  const r = await runLoad({ url: `http://127.0.0.1:${s.port}/${file.name}`, connections: cfg.connections, durationSec, timeoutSec: cfg.timeoutSec, cpu: cpus.load })
  const wallSec = Number(process.hrtime.bigint() - w0) / 1e9
  if (!alive(s)) return { ok: false, error: `server process died during the run (${s.child.signalCode || s.child.exitCode}). stderr: ${tail(s.stderr())}` }
  const cpu1 = proc.cpuSeconds(pid)
  const cores1 = proc.cpuTimes()
  const mem1 = proc.memory(pid)
  if (!r.ok) return { ok: false, error: r.error }
  const serverCpuSec = cpu1 - cpu0
  const gib = r.bytes / (1024 * MiB)
  const idleRssMiB = mem0.rssKiB / 1024
  const peakRssMiB = (peakReset ? mem1.hwmKiB : Math.max(mem0.rssKiB, mem1.rssKiB)) / 1024
  return {
    ok: true,
    requests: r.requests,
    bytes: r.bytes,
    durationSec: r.durationSec,
    wallSec,
    reqPerSec: r.requests / r.durationSec,
    mbPerSec: r.bytes / r.durationSec / 1e6,
    serverCpuSec,
    cpuSecPerGiB: gib > 0 ? serverCpuSec / gib : NaN,
    serverCpuPct: serverCpuSec / wallSec * 100,
    loadCpuPct: r.loadCpuSec / wallSec * 100,
    serverCoreBusyPct: proc.busyPct(cores0, cores1, cpus.server),
    // whole CPU 0 (server process + softirq/loopback work the kernel charges to no process)
    serverCoreCpuSecPerGiB: gib > 0 ? proc.busySec(cores0, cores1, cpus.server) / gib : NaN,
    loadCoreBusyPct: proc.busyPct(cores0, cores1, cpus.load),
    idleRssMiB,
    peakRssMiB,
    peakOverIdleMiB: Math.max(0, peakRssMiB - idleRssMiB),
    peakReset,
    p99Ms: r.requests > 0 ? r.p99Ms : NaN,
    errors: r.errors,
    errorDetail: r.errorDetail
  }
}

// ---------------------------------------------------------------- main
async function main () {
  const opt = parseArgs(process.argv.slice(2))
  const mode = opt.quick ? 'quick' : 'full'
  const notes = []
  const excluded = {}

  let servers = SERVERS.filter((s) => opt.servers ? opt.servers.includes(s.id) : !s.optIn)
  const configs = CONFIGS.filter((c) => !opt.configs || opt.configs.includes(c.id))
  if (!servers.length || !configs.length) throw new Error(`nothing to run\n${usage()}`)

  log(`mode: ${mode} — ${opt.rounds} rounds × ${opt.duration} s, warm-up ${opt.warmup} s ${opt.warmupEveryConfig ? 'per config' : 'once per server'}`)

  // --- tools
  const tSetup = Date.now()
  const wrk = setup.ensure('wrk', ['wrk'], { install: opt.install, log })
  let loadGen = null
  let runLoad = null
  if (wrk.path) {
    loadGen = `wrk ${setup.version(wrk.path, ['-v'], /wrk\s+(\S+)/)} (1 thread)`
    runLoad = load.runWrk
    if (wrk.note) notes.push(`wrk: ${wrk.note}`)
  } else if (load.autocannonAvailable()) {
    loadGen = 'autocannon (fallback: wrk missing)'
    runLoad = load.runAutocannon
    const w = `WARNING: wrk is not available (${wrk.note}); falling back to autocannon, which is slower and heavier than wrk: the load generator will be the bottleneck sooner, so numbers are not comparable with wrk runs.`
    log(w); notes.push(w)
  } else {
    const w = `wrk is required for timing and is not available (${wrk.note}); autocannon is not installed either (the bench does not install npm packages). Byte checks only; timing skipped.`
    log(w); notes.push(w)
  }
  let nginxPath = null
  if (servers.some((s) => s.nginx)) {
    const ng = setup.ensure('nginx', ['nginx-light', 'nginx'], { install: opt.install, log })
    nginxPath = ng.path
    if (!ng.path) {
      excluded.nginx = `skipped: nginx not available — ${ng.note}`
      log(`nginx ${excluded.nginx}`)
      servers = servers.filter((s) => !s.nginx)
    } else if (ng.note) notes.push(`nginx: ${ng.note}`)
  }
  const setupMs = Date.now() - tSetup

  // --- pinning
  const cpus = { server: null, load: null }
  const ncpu = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
  const hasTaskset = !!setup.which('taskset')
  if (opt.pin && hasTaskset && ncpu >= 2) {
    cpus.server = 0; cpus.load = 1
    // keep this orchestrator off the server's CPU as well
    spawnSync('taskset', ['-a', '-p', '-c', String(cpus.load), String(process.pid)], { stdio: 'ignore' })
  } else {
    const why = !opt.pin ? '--no-pin' : !hasTaskset ? 'taskset not found (util-linux)' : `only ${ncpu} CPU available`
    notes.push(`NOT pinned (${why}): server and load generator share CPUs, CPU % columns are less meaningful.`)
    log(`warning: not pinning (${why})`)
  }

  // --- files
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fzc-bench-'))
  children.rmTree(tmp)
  const dir = path.join(tmp, 'files')
  const sizes = [...new Set(configs.map((c) => c.size))].sort((a, b) => a - b)
  const generated = files.generate(dir, sizes)
  fs.chmodSync(tmp, 0o755); fs.chmodSync(dir, 0o755)
  const fileFor = (size) => generated.find((f) => f.size === size)
  log(`files: ${generated.map((f) => f.name).join(', ')} in ${dir}`)

  // --- plugin availability
  const distOk = fs.existsSync(path.join(REPO, 'dist', 'index.js'))
  const addons = (() => {
    const found = []
    for (const d of [path.join(REPO, 'build', 'Release'), path.join(REPO, 'prebuilds')]) {
      try { for (const f of fs.readdirSync(d, { recursive: true })) if (String(f).endsWith('.node')) found.push(path.join(d, String(f))) } catch {}
    }
    return found
  })()
  if (!distOk) {
    for (const s of servers.filter((x) => x.plugin)) excluded[s.id] = 'plugin not built: dist/index.js missing (run `npm run build`)'
    servers = servers.filter((s) => !s.plugin)
  } else if (!addons.length && servers.some((s) => s.id === 'zero-copy')) {
    notes.push('no native addon found (build/Release/*.node or prebuilds/): the "sendfile" server may be running the fallback; see the plugin counters below.')
  }

  // --- start servers
  const live = []
  for (const srv of servers) {
    try {
      const s = srv.nginx ? await startNginx(nginxPath, dir, tmp, cpus.server) : await startNodeServer(srv, dir, cpus.server)
      live.push({ ...srv, ...s })
      log(`started ${srv.label}: pid ${s.pid}, port ${s.port}`)
    } catch (err) {
      excluded[srv.id] = `EXCLUDED: failed to start: ${err.message}`
      log(`${srv.label} failed to start: ${err.message}`)
    }
  }

  // --- byte-exact check
  let active = []
  for (const s of live) {
    const r = await checkServer(`http://127.0.0.1:${s.port}`, generated)
    if (r.ok) { active.push(s); continue }
    excluded[s.id] = `EXCLUDED: failed the byte-exact check (sha256 of a full GET vs the file): ${r.problems.join('; ')}`
    log(`${s.label} FAILED the byte-exact check: ${r.problems.join('; ')}`)
    await children.stop(s.child)
  }
  log(`byte-exact check (sha256 of full GETs of ${generated.length} files): ${active.length}/${live.length} servers passed`)

  const results = {}
  const pluginStats = {}
  const perRunOverhead = 0.3
  const warmupRuns = runLoad ? (opt.warmup > 0 ? (opt.warmupEveryConfig ? configs.length : 1) * active.length : 0) : 0
  const dur = () => opt.duration
  const timedSec = runLoad ? configs.reduce((a, c) => a + opt.rounds * active.length * (dur(c) + perRunOverhead), 0) : 0
  const budget = timedSec + warmupRuns * (opt.warmup + perRunOverhead)
  const elapsedSoFar = (Date.now() - startedAt) / 1000
  const budgetLine = `wall-time budget: ${elapsedSoFar.toFixed(1)} s spent on setup (apt ${secs(setupMs)}), ` +
    `${configs.length} configs × ${active.length} servers × ${opt.rounds} rounds + ${warmupRuns} warm-up runs ≈ ${budget.toFixed(0)} s of load, ` +
    `≈ ${(elapsedSoFar + budget + 3).toFixed(0)} s in all (${mode} mode limit: ${opt.quick ? '120' : '900'} s)`
  log(budgetLine)

  if (runLoad && active.length) {
    const loadRun = async (s, cfg, seconds) => measure(s, cfg, fileFor(cfg.size), seconds, runLoad, cpus)
    const drop = (s, why) => {
      excluded[s.id] = `EXCLUDED mid-run (results so far kept): ${why}`
      log(`${s.label}: ${why}`)
      active = active.filter((x) => x !== s)
    }
    let runNo = 0
    for (const [ci, cfg] of configs.entries()) {
      results[cfg.id] = {}
      if (opt.warmup > 0 && (opt.warmupEveryConfig || ci === 0)) {
        for (const s of [...active]) {
          const w = await loadRun(s, cfg, opt.warmup)
          if (!w.ok && !alive(s)) drop(s, w.error)
          await sleep(100)
        }
      }
      for (let round = 0; round < opt.rounds; round++) {
        const k = (round + ci) % Math.max(1, active.length)
        const order = [...active.slice(k), ...active.slice(0, k)]
        for (const [position, s] of order.entries()) {
          if (!alive(s)) { drop(s, `server process died (${s.child.signalCode || s.child.exitCode}). stderr: ${tail(s.stderr())}`); continue }
          await sleep(cfg.size >= 16 * MiB ? 200 : 50)
          const m = await loadRun(s, cfg, dur(cfg))
          runNo++
          if (!m.ok) {
            if (!alive(s)) drop(s, m.error)
            else notes.push(`${cfg.short} ${s.label} round ${round + 1}: run failed — ${m.error}`)
            continue
          }
          const bucket = results[cfg.id][s.id] || (results[cfg.id][s.id] = { runs: [] })
          bucket.runs.push({ round: round + 1, position: position + 1, ...m })
          log(`${cfg.short.padEnd(22)} r${round + 1} ${s.label.padEnd(30)} ${Math.round(m.reqPerSec).toString().padStart(7)} req/s ` +
            `${m.mbPerSec.toFixed(0).padStart(5)} MB/s  ${m.cpuSecPerGiB.toPrecision(3).padStart(6)} CPU s/GiB  srv ${m.serverCpuPct.toFixed(0).padStart(3)}%  gen ${m.loadCpuPct.toFixed(0).padStart(3)}% (cores ${m.serverCoreBusyPct.toFixed(0)}/${m.loadCoreBusyPct.toFixed(0)}%)  ` +
            `peak +${m.peakOverIdleMiB.toFixed(1)} MiB  p99 ${m.p99Ms.toPrecision(3)} ms${m.errors ? `  ERRORS ${m.errors} (${m.errorDetail})` : ''}`)
        }
      }
      for (const id of Object.keys(results[cfg.id])) results[cfg.id][id].summary = report.summarize(results[cfg.id][id].runs)
    }
    if (configs.some((c) => results[c.id] && Object.values(results[c.id]).some((r) => r.runs.some((x) => !x.peakReset)))) {
      notes.push('could not reset VmHWM via /proc/PID/clear_refs: peak RSS is max(RSS before, RSS after) and may miss the real peak.')
    }
  }

  for (const s of active.filter((x) => x.plugin)) {
    const st = await getJson(`http://127.0.0.1:${s.port}/__bench/stats`)
    if (st) pluginStats[s.label] = st
    // counters are named { sendfile, write } (or { zeroCopy, fallback } in the brief's example)
    const rsp = st && st.responses
    if (rsp) {
      const zc = Number(rsp.sendfile !== undefined ? rsp.sendfile : rsp.zeroCopy) || 0
      const fb = Number(rsp.write !== undefined ? rsp.write : rsp.fallback) || 0
      if (s.id === 'zero-copy' && fb > zc) notes.push(`the "sendfile" server answered mostly through the write fallback (responses ${JSON.stringify(rsp)}): its numbers are NOT the zero-copy path.`)
      if (s.id === 'fallback' && zc > 0) notes.push(`the "fallback" server reports ${zc} sendfile responses although started with zeroCopy: false.`)
    }
  }

  for (const s of live) await children.stop(s.child)

  // --- report
  const meta = {
    mode,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpu: setup.cpuModel(),
    cpus: ncpu,
    kernel: os.release(),
    node: process.versions.node,
    loadGen: loadGen || 'none',
    nginx: nginxPath ? setup.version(nginxPath, ['-v'], /nginx\/(\S+)/) : 'not available',
    serverCpu: cpus.server == null ? 'any' : cpus.server,
    loadCpu: cpus.load == null ? 'any' : cpus.load,
    rounds: opt.rounds,
    duration: opt.duration,
    warmup: opt.warmup > 0 ? `${opt.warmup} s ${opt.warmupEveryConfig ? 'per config and server' : 'once per server'}` : 'none'
  }
  const shownServers = SERVERS.filter((s) => configs.some((c) => results[c.id] && results[c.id][s.id]))
  // The cold-file case: its own servers and load (bench/cold-file.js).
  let cold = null
  if (opt.cold && runLoad) {
    log('cold-file case: hot 4 KiB p99 alone and during cold 64 MiB downloads (residency check on, then off)')
    try {
      cold = await require('./cold-file')({ durationSec: opt.quick ? 4 : 10, log: (m) => log(m) })
    } catch (err) {
      notes.push(`cold-file case failed: ${err.message}`)
    }
  }
  // What etag: 'digest' costs: hashing speed and the first response's wait (bench/digest.js).
  let digest = null
  if (runLoad) {
    try {
      digest = await require('./digest')({ log: (m) => log(m) })
    } catch (err) {
      notes.push(`digest case failed: ${err.message}`)
    }
  }
  const ctx = { configs, allConfigs: CONFIGS, servers: SERVERS, results, meta, excluded, notes, pluginStats, cold, digest }
  const md = report.markdown(ctx)
  process.stdout.write('\n' + md + '\n')

  if (runLoad && shownServers.length) {
    const stamp = meta.date.replace(/[-:]/g, '').replace('T', '-').replace('Z', '')
    const outDir = path.join(opt.out, `${stamp}-${mode}`)
    fs.mkdirSync(outDir, { recursive: true })
    const written = {
      'summary.csv': report.summaryCsv(ctx),
      'runs.csv': report.runsCsv(ctx),
      'chart.svg': report.chart(ctx),
      'report.md': md + '\n'
    }
    for (const [name, text] of Object.entries(written)) {
      fs.writeFileSync(path.join(outDir, name), text)
      fs.writeFileSync(path.join(opt.out, `latest-${name}`), text)
    }
    console.log(`results: ${path.relative(process.cwd(), outDir) || outDir}/{summary.csv,runs.csv,chart.svg,report.md} (copies: ${path.relative(process.cwd(), opt.out)}/latest-*)`)
  } else {
    console.log('no timing results: nothing written to bench/results/.')
  }
  const wall = (Date.now() - startedAt) / 1000
  console.log(`wall time: ${wall.toFixed(1)} s (estimate was ${(elapsedSoFar + budget + 3).toFixed(0)} s; apt/setup ${secs(setupMs)}; ${mode} mode limit ${opt.quick ? '120' : '900'} s)`)
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`bench: error: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
