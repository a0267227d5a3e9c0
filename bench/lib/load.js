'use strict'
// Load generators. wrk (preferred): one thread, pinned with taskset, keep-alive,
// bounded by -d and by a kill timer. autocannon (fallback, only if already
// installed): run in a pinned child process with the same result shape.
const path = require('node:path')
const children = require('./children')
const { clkTck } = require('./proc')

const LUA = path.join(__dirname, 'wrk-report.lua')

function autocannonAvailable () {
  try { require.resolve('autocannon', { paths: [path.join(__dirname, '..', '..')] }); return true } catch { return false }
}

function pinned (cpu, cmd, args) {
  if (cpu == null) return [cmd, args]
  return ['taskset', ['-c', String(cpu), cmd, ...args]]
}

function collect (child, killAfterMs) {
  return new Promise((resolve) => {
    let out = ''
    let err = ''
    let killed = false
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { err += d })
    const timer = setTimeout(() => { killed = true; try { process.kill(child.pid, 'SIGKILL') } catch {} }, killAfterMs)
    child.on('error', (e) => { err += String(e) })
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ out, err, code, signal, killed }) })
  })
}

/**
 * Run one bounded load. Returns
 * { ok, error?, requests, bytes, durationSec, errors, errorDetail, p50Ms, p99Ms, maxMs, loadCpuSec }
 */
async function runWrk ({ url, connections, durationSec, timeoutSec, cpu }) {
  const args = ['-t1', `-c${connections}`, `-d${durationSec}s`, `--timeout`, `${timeoutSec}s`, '-s', LUA, url]
  const [cmd, argv] = pinned(cpu, 'wrk', args)
  const child = children.spawnTracked(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  const r = await collect(child, (durationSec + timeoutSec + 10) * 1000)
  const line = r.out.split('\n').find((l) => l.startsWith('WRKJSON '))
  if (!line) {
    return { ok: false, error: `wrk produced no result (code ${r.code}${r.killed ? ', killed by timer' : ''}): ${(r.err || r.out).trim().slice(-300)}` }
  }
  const j = JSON.parse(line.slice(8))
  const errors = j.connect + j.read + j.write + j.timeout + j.status
  return {
    ok: true,
    requests: j.requests,
    bytes: j.bytes,
    durationSec: j.durationUs / 1e6,
    errors,
    errorDetail: `connect=${j.connect} read=${j.read} write=${j.write} timeout=${j.timeout} non2xx/3xx=${j.status}`,
    p50Ms: j.p50Us / 1000,
    p99Ms: j.p99Us / 1000,
    maxMs: j.maxUs / 1000,
    loadCpuSec: j.utimeTicks >= 0 ? (j.utimeTicks + j.stimeTicks) / clkTck : NaN
  }
}

async function runAutocannon ({ url, connections, durationSec, timeoutSec, cpu }) {
  const runner = path.join(__dirname, 'autocannon-runner.js')
  const [cmd, argv] = pinned(cpu, process.execPath, [runner, url, String(connections), String(durationSec), String(timeoutSec)])
  const child = children.spawnTracked(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  const r = await collect(child, (durationSec + timeoutSec + 15) * 1000)
  const line = r.out.split('\n').find((l) => l.startsWith('ACJSON '))
  if (!line) return { ok: false, error: `autocannon produced no result (code ${r.code}): ${(r.err || r.out).trim().slice(-300)}` }
  return JSON.parse(line.slice(7))
}

module.exports = { autocannonAvailable, runWrk, runAutocannon, LUA }
