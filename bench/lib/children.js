'use strict'
// Registry of every child process the bench starts, so that all of them are
// killed on normal exit, on errors and on SIGINT/SIGTERM. Only processes we
// spawned ourselves are ever signalled, by pid.
const { spawn } = require('node:child_process')
const fs = require('node:fs')

const live = new Set()
const cleanups = []
let installed = false

function track (child) {
  live.add(child)
  child.once('exit', () => live.delete(child))
  return child
}

function spawnTracked (cmd, args, opts) {
  return track(spawn(cmd, args, opts))
}

function killAll (signal = 'SIGKILL') {
  for (const child of live) {
    try { if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, signal) } catch {}
  }
}

function onCleanup (fn) { cleanups.push(fn) }

function runCleanups () {
  killAll('SIGKILL')
  while (cleanups.length) {
    const fn = cleanups.pop()
    try { fn() } catch {}
  }
}

function install () {
  if (installed) return
  installed = true
  process.on('exit', runCleanups)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: got ${sig}, stopping every child process\n`)
      runCleanups()
      process.exit(sig === 'SIGINT' ? 130 : 143)
    })
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: fatal: ${err && err.stack ? err.stack : err}\n`)
    runCleanups()
    process.exit(1)
  })
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: fatal (unhandled rejection): ${err && err.stack ? err.stack : err}\n`)
    runCleanups()
    process.exit(1)
  })
}

function rmTree (dir) { onCleanup(() => fs.rmSync(dir, { recursive: true, force: true })) }

// Stop one child (SIGTERM, then SIGKILL after `graceMs`); resolves when gone.
function stop (child, graceMs = 2000) {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve()
    const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL') } catch {} }, graceMs)
    child.once('exit', () => { clearTimeout(t); resolve() })
    try { process.kill(child.pid, 'SIGTERM') } catch { clearTimeout(t); resolve() }
  })
}

module.exports = { install, track, spawnTracked, killAll, onCleanup, rmTree, stop }
