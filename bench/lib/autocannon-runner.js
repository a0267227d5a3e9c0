'use strict'
// Fallback load generator, used only when wrk is missing and autocannon is
// already installed (the bench never installs npm packages). Prints one
// ACJSON line with the same shape as the wrk result.
const path = require('node:path')
const autocannon = require(require.resolve('autocannon', { paths: [path.join(__dirname, '..', '..')] }))

const [url, connections, durationSec, timeoutSec] = process.argv.slice(2)
const cpu0 = process.cpuUsage()
const t0 = process.hrtime.bigint()
autocannon({
  url,
  connections: Number(connections),
  duration: Number(durationSec),
  timeout: Number(timeoutSec),
  pipelining: 1
}, (err, res) => {
  if (err) { console.error(String(err)); process.exit(1) }
  const c = process.cpuUsage(cpu0)
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const errors = (res.errors || 0) + (res.timeouts || 0) + (res.non2xx || 0)
  const out = {
    ok: true,
    requests: res.requests.total,
    bytes: res.throughput.total,
    durationSec: res.duration || wall,
    errors,
    errorDetail: `errors=${res.errors} timeouts=${res.timeouts} non2xx=${res.non2xx}`,
    p50Ms: res.latency.p50,
    p99Ms: res.latency.p99,
    maxMs: res.latency.max,
    loadCpuSec: (c.user + c.system) / 1e6
  }
  process.stdout.write('ACJSON ' + JSON.stringify(out) + '\n')
})
