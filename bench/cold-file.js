'use strict'
// Latency of hot requests while cold files are sent (issue #6).
//
// sendfile(2) reads missing pages from disk in the calling thread, the
// event loop: every other request waits meanwhile. The plugin asks whether
// each burst's pages are cached (cachestat) and reads cold ones in on the
// thread pool first. This bench shows what that buys: the p99 latency of
// 4 KiB requests for a hot file (wrk, one connection set, bounded time)
//   (a) alone, and
//   (b) while clients keep downloading a 64 MiB file whose pages are
//       dropped from the page cache before every download,
// with the check on, and off (FASTIFY_ZERO_COPY_COLD_CHECK=0). The target
// is p99(b) / p99(a) <= 2.
//
// The server (this file with --server: Fastify + the plugin, and Node's
// event-loop delay histogram, read and reset through /__bench/eld) runs
// pinned to CPU 0, wrk and the cold downloader to CPU 1 (taskset, when
// present). Dropping the page cache
// needs root (/proc/sys/vm/drop_caches, `1`: pages only, so dentries and
// inodes stay and opens stay cheap); otherwise `dd iflag=nocache` drops the
// one file's pages.
//
//   node bench/cold-file.js [seconds]        prints both variants
//   require('./bench/cold-file')(opts)        resolves to the numbers
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')
const crypto = require('node:crypto')
const { spawnSync } = require('node:child_process')
const children = require('./lib/children')
const { runWrk, runAutocannon, autocannonAvailable } = require('./lib/load')

const MiB = 1024 * 1024

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0

function pinned (cpu, cmd, args, canPin) {
  return canPin ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]
}

function canDropAll () {
  try {
    fs.accessSync('/proc/sys/vm/drop_caches', fs.constants.W_OK)
    return true
  } catch {
    return false
  }
}

/** Drops the file's pages from the page cache (all pages, when root). */
function dropCache (file, all) {
  if (all) fs.writeFileSync('/proc/sys/vm/drop_caches', '1')
  else spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'])
}

function makeFiles (fileMiB) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-cold-bench-'))
  fs.writeFileSync(path.join(dir, 'hot.bin'), crypto.randomBytes(4096))
  const fd = fs.openSync(path.join(dir, 'cold.bin'), 'w')
  for (let i = 0; i < fileMiB; i++) fs.writeSync(fd, crypto.randomBytes(MiB))
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  return dir
}

/** The server child: the plugin on 127.0.0.1, its stats and the event-loop delay. */
async function serverMain (dir) {
  const { monitorEventLoopDelay } = require('node:perf_hooks')
  const Fastify = require('fastify')
  const zeroCopy = require(path.join(__dirname, '..'))
  const app = Fastify({ logger: false })
  await app.register(zeroCopy, { root: dir })
  const eld = monitorEventLoopDelay({ resolution: 5 })
  eld.enable()
  app.get('/__bench/stats', async () => app.zeroCopy.stats())
  let faults = process.resourceUsage().majorPageFault
  app.get('/__bench/eld', async () => {
    const now = process.resourceUsage().majorPageFault
    const out = { p99Ms: eld.percentile(99) / 1e6, maxMs: eld.max / 1e6, majorFaults: now - faults }
    faults = now
    eld.reset()
    return out
  })
  app.get('/*', (req, reply) => reply.sendFileZeroCopy(req.params['*']))
  await app.listen({ port: 0, host: '127.0.0.1' })
  process.on('SIGTERM', () => { app.close().finally(() => process.exit(0)) })
  process.stdout.write(`READY port=${app.server.address().port}\n`)
}

function startServer (dir, env, canPin) {
  const [cmd, args] = pinned(0, process.execPath, [__filename, '--server', dir], canPin)
  const child = children.spawnTracked(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error('server did not start in 15 s')), 15000)
    child.stdout.on('data', (d) => {
      out += d
      const m = /READY port=(\d+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve({ child, port: Number(m[1]) })
      }
    })
    child.once('exit', (code) => reject(new Error(`server exited (${code}) before READY`)))
  })
}

function stopChild (child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const timer = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL') } catch {} }, 3000)
    child.once('exit', () => { clearTimeout(timer); resolve() })
    try { process.kill(child.pid, 'SIGTERM') } catch {}
  })
}

function getJson (port, p) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => { try { resolve(JSON.parse(body)) } catch (err) { reject(err) } })
    }).on('error', reject)
  })
}

async function hotLoad (port, durationSec, connections, canPin) {
  const url = `http://127.0.0.1:${port}/hot.bin`
  const cpu = canPin ? 1 : null
  if (has('wrk')) return { tool: 'wrk', ...await runWrk({ url, connections, durationSec, timeoutSec: 5, cpu }) }
  if (autocannonAvailable()) return { tool: 'autocannon', ...await runAutocannon({ url, connections, durationSec, timeoutSec: 5, cpu }) }
  throw new Error('neither wrk nor autocannon is installed (apt-get install -y wrk)')
}

/** The downloader child: `clients` loops, each drop-cache-then-GET, until told to stop. */
function startColdClients (port, dir, clients, dropAll, canPin) {
  const [cmd, args] = pinned(1, process.execPath, [__filename, '--cold-client', String(port), path.join(dir, 'cold.bin'), String(clients), dropAll ? 'all' : 'file'], canPin)
  const child = children.spawnTracked(cmd, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const started = new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`cold client exited (${code})`)))
  })
  const stop = () => new Promise((resolve) => {
    child.once('message', (m) => resolve(m))
    child.send('stop')
  })
  return { child, started, stop }
}

async function coldClientMain (port, file, clients, dropAll) {
  const size = fs.statSync(file).size
  const result = { downloads: 0, bytes: 0, errors: 0, ms: 0 }
  let stopping = false
  process.on('message', (m) => { if (m === 'stop') stopping = true })
  const once = () => new Promise((resolve) => {
    dropCache(file, dropAll)
    const t0 = process.hrtime.bigint()
    let got = 0
    http.get({ host: '127.0.0.1', port, path: '/cold.bin', agent: false }, (res) => {
      res.on('data', (d) => { got += d.length })
      res.on('end', () => {
        if (res.statusCode === 200 && got === size) {
          result.downloads++
          result.ms += Number(process.hrtime.bigint() - t0) / 1e6
        } else {
          result.errors++
        }
        result.bytes += got
        resolve()
      })
      res.on('error', () => { result.errors++; resolve() })
    }).on('error', () => { result.errors++; resolve() })
  })
  const loop = async () => { while (!stopping) await once() }
  process.send('started')
  await Promise.all(Array.from({ length: clients }, loop))
  process.send(result)
  process.disconnect()
}

const ms = (x) => `${x.toFixed(2)} ms`

async function runVariant (name, env, dir, opts, canPin) {
  const log = opts.log
  const { child, port } = await startServer(dir, env, canPin)
  try {
    // Warm-up: the hot file in the page cache, the server's code paths hot.
    await hotLoad(port, 2, opts.connections, canPin)
    await getJson(port, '/__bench/eld')
    const alone = await hotLoad(port, opts.durationSec, opts.connections, canPin)
    if (!alone.ok) throw new Error(`(a) ${alone.error}`)
    const eldA = await getJson(port, '/__bench/eld')
    const before = await getJson(port, '/__bench/stats')
    const cold = startColdClients(port, dir, opts.coldClients, opts.drop === 'all', canPin)
    await cold.started
    await getJson(port, '/__bench/eld')
    const busy = await hotLoad(port, opts.durationSec, opts.connections, canPin)
    const eldB = await getJson(port, '/__bench/eld')
    const downloads = await cold.stop()
    if (!busy.ok) throw new Error(`(b) ${busy.error}`)
    const after = await getJson(port, '/__bench/stats')
    const r = {
      variant: name,
      tool: alone.tool,
      p99a: alone.p99Ms,
      p99b: busy.p99Ms,
      ratio: busy.p99Ms / alone.p99Ms,
      p50a: alone.p50Ms,
      p50b: busy.p50Ms,
      maxb: busy.maxMs,
      loopDelayP99a: eldA.p99Ms,
      loopDelayP99b: eldB.p99Ms,
      loopDelayMaxa: eldA.maxMs,
      loopDelayMaxb: eldB.maxMs,
      majorFaultsA: eldA.majorFaults,
      majorFaultsB: eldB.majorFaults,
      rpsA: alone.requests / alone.durationSec,
      rpsB: busy.requests / busy.durationSec,
      hotErrors: alone.errors + busy.errors,
      coldDownloads: downloads.downloads,
      coldErrors: downloads.errors,
      coldMsPerDownload: downloads.downloads > 0 ? downloads.ms / downloads.downloads : NaN,
      poolReads: after.cold ? after.cold.reads - before.cold.reads : null,
      poolBytes: after.cold ? after.cold.bytes - before.cold.bytes : null
    }
    log(`${name}: p99 (a) ${ms(r.p99a)}, p99 (b) ${ms(r.p99b)}, ratio b/a ${r.ratio.toFixed(2)}x` +
      ` | p50 ${ms(r.p50a)} -> ${ms(r.p50b)}, max (b) ${ms(r.maxb)}, hot req/s ${r.rpsA.toFixed(0)} -> ${r.rpsB.toFixed(0)}, hot errors ${r.hotErrors}` +
      ` | event-loop delay p99 ${ms(r.loopDelayP99a)} -> ${ms(r.loopDelayP99b)}, max ${ms(r.loopDelayMaxa)} -> ${ms(r.loopDelayMaxb)}` +
      `, server major page faults ${r.majorFaultsA} -> ${r.majorFaultsB}` +
      ` | cold downloads ${r.coldDownloads} (${r.coldMsPerDownload.toFixed(0)} ms each, errors ${r.coldErrors}), pool reads ${r.poolReads} (${((r.poolBytes ?? 0) / MiB).toFixed(0)} MiB)`)
    return r
  } finally {
    await stopChild(child)
  }
}

/**
 * opts: durationSec (10), connections (16), coldClients (2), fileMiB (64),
 * variants (['on', 'off']), log (console.log). Resolves to
 * { on?: {...}, off?: {...}, setup: {...} } with p99a/p99b in ms and ratio.
 */
async function runColdBench (opts = {}) {
  opts = { durationSec: 10, connections: 16, coldClients: 2, fileMiB: 64, variants: ['on', 'off'], drop: 'all', log: console.log, ...opts }
  if (opts.drop === 'all' && !canDropAll()) opts.drop = 'file'
  children.install()
  const canPin = has('taskset') && os.cpus().length >= 2
  const dir = makeFiles(opts.fileMiB)
  children.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }))
  const setup = {
    kernel: os.release(),
    cpus: os.cpus().length,
    pinned: canPin ? 'server CPU 0, wrk and cold clients CPU 1' : 'not pinned',
    dropCache: opts.drop === 'all' ? 'drop_caches (1) before each download' : 'the cold file\'s pages only (dd iflag=nocache) before each download',
    durationSec: opts.durationSec,
    connections: opts.connections,
    coldClients: opts.coldClients,
    fileMiB: opts.fileMiB
  }
  opts.log(`cold-file bench: ${JSON.stringify(setup)}`)
  const out = { setup }
  try {
    for (const v of opts.variants) {
      const env = v === 'off' ? { FASTIFY_ZERO_COPY_COLD_CHECK: '0' } : { FASTIFY_ZERO_COPY_COLD_CHECK: '1' }
      out[v] = await runVariant(v === 'off' ? 'check off (FASTIFY_ZERO_COPY_COLD_CHECK=0)' : 'check on', env, dir, opts, canPin)
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  if (out.on && out.off) {
    opts.log(`summary: p99 ratio b/a with the check ${out.on.ratio.toFixed(2)}x (target <= 2x), without ${out.off.ratio.toFixed(2)}x`)
  }
  return out
}

module.exports = runColdBench

if (require.main === module) {
  if (process.argv[2] === '--server') {
    serverMain(process.argv[3]).catch((err) => {
      console.error(err)
      process.exit(1)
    })
  } else if (process.argv[2] === '--cold-client') {
    coldClientMain(Number(process.argv[3]), process.argv[4], Number(process.argv[5]), process.argv[6] === 'all').catch((err) => {
      console.error(err)
      process.exit(1)
    })
  } else {
    const durationSec = Number(process.argv[2]) || 10
    const drop = process.argv[3] === 'file' ? 'file' : 'all'
    const coldClients = Number(process.argv[4]) || 2
    runColdBench({ durationSec, drop, coldClients }).catch((err) => {
      console.error(err && err.stack ? err.stack : err)
      process.exit(1)
    })
  }
}
