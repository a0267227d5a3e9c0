'use strict'
// Shared by the bench servers: DIR and PORT come from argv (node X.js DIR PORT)
// or from the environment (DIR=..., PORT=...). PORT 0 picks a free port.
// Every server listens on 127.0.0.1 only and prints `READY port=N` once listening.
const path = require('node:path')

function args () {
  const dir = process.argv[2] || process.env.DIR
  const port = Number(process.argv[3] || process.env.PORT || 0)
  if (!dir) { console.error('usage: node server.js DIR [PORT]   (or DIR=... PORT=... env)'); process.exit(2) }
  return { dir: path.resolve(dir), port, host: '127.0.0.1' }
}

function ready (port) { process.stdout.write(`READY port=${port}\n`) }

// The repository root: the plugin is `require`d from there (package.json "main").
const REPO_ROOT = path.resolve(__dirname, '..', '..')

function exitOnSignals (close) {
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { Promise.resolve(close && close()).finally(() => process.exit(0)); setTimeout(() => process.exit(0), 500).unref() })
}

module.exports = { args, ready, REPO_ROOT, exitOnSignals }
