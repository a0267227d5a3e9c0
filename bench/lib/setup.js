'use strict'
// Tool discovery and, when root, installation of the Debian packages the bench
// uses (wrk, nginx-light) with `apt-get install -y`. Never installs npm packages.
const fs = require('node:fs')
const { spawnSync, execFileSync } = require('node:child_process')

function which (cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' })
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim()
  for (const dir of ['/usr/sbin', '/usr/local/sbin', '/sbin', '/usr/bin', '/usr/local/bin']) {
    if (fs.existsSync(`${dir}/${cmd}`)) return `${dir}/${cmd}`
  }
  return null
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
let updated = false

function apt (args, timeoutMs) {
  const r = spawnSync('apt-get', args, {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  return { ok: r.status === 0, tail: `${r.stdout || ''}${r.stderr || ''}${r.error ? String(r.error) : ''}`.trim().split('\n').slice(-3).join(' | ') }
}

/**
 * Find `cmd`; if missing and allowed, `apt-get install -y` the first package
 * of `pkgs` that installs (running `apt-get update` once if a plain install fails).
 * Returns { path, note } — path null when unavailable, note says why / what was done.
 */
function ensure (cmd, pkgs, { install = true, log = () => {} } = {}) {
  const found = which(cmd)
  if (found) return { path: found, note: null }
  if (!install) return { path: null, note: `${cmd} not installed (--no-install)` }
  if (!isRoot) return { path: null, note: `${cmd} not installed and not root, so not installing it (try: sudo apt-get install -y ${pkgs[0]})` }
  if (!which('apt-get')) return { path: null, note: `${cmd} not installed and apt-get is not available` }
  let last = ''
  for (const pkg of pkgs) {
    log(`installing ${pkg} with apt-get (${cmd} is missing)...`)
    let r = apt(['install', '-y', '-q', pkg], 300000)
    if (!r.ok && !updated) {
      log('apt-get install failed; running apt-get update once and retrying...')
      updated = true
      apt(['update', '-q'], 300000)
      r = apt(['install', '-y', '-q', pkg], 300000)
    }
    const p = which(cmd)
    if (r.ok && p) return { path: p, note: `installed ${pkg} with apt-get` }
    last = `apt-get install -y ${pkg} failed: ${r.tail}`
  }
  return { path: null, note: last }
}

function version (cmd, args, re) {
  try {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 })
    const text = `${r.stdout || ''}${r.stderr || ''}`
    const m = text.match(re)
    return m ? m[1] : text.split('\n')[0].trim()
  } catch { return '?' }
}

function cpuModel () {
  try { const m = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m); return m ? m[1] : '?' } catch { return '?' }
}

function allowedCpus () {
  try { return execFileSync('nproc', { encoding: 'utf8' }).trim() } catch { return '?' }
}

module.exports = { which, ensure, isRoot, version, cpuModel, allowedCpus }
