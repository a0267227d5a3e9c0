'use strict'
// /proc sampling: CPU time (utime+stime, all threads), RSS and peak RSS (VmHWM).
const fs = require('node:fs')
const { execFileSync } = require('node:child_process')

let clkTck = 100
try { clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch {}

// Fields of /proc/PID/stat after the ")" that closes comm: index 0 is field 3 (state),
// so utime (field 14) is index 11 and stime (field 15) is index 12.
function parseStatTicks (text) {
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return Number(rest[11]) + Number(rest[12])
}

/** CPU seconds (user+system, whole process incl. exited threads) used so far by pid. */
function cpuSeconds (pid) {
  return parseStatTicks(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')) / clkTck
}

/** { rssKiB, hwmKiB } from /proc/PID/status. */
function memory (pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const get = (k) => { const m = text.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')); return m ? Number(m[1]) : NaN }
  return { rssKiB: get('VmRSS'), hwmKiB: get('VmHWM') }
}

/** Reset the peak-RSS mark (VmHWM := VmRSS). Returns false when the kernel refuses. */
function resetPeak (pid) {
  try { fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false }
}

module.exports = { clkTck, parseStatTicks, cpuSeconds, memory, resetPeak }

/** Per-CPU jiffies from /proc/stat: { [cpuIndex]: { busy, total } } (busy excludes idle and iowait, includes irq/softirq). */
function cpuTimes () {
  const out = {}
  for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = line.match(/^cpu(\d+)\s+(.*)$/)
    if (!m) continue
    const v = m[2].trim().split(/\s+/).map(Number)
    // user nice system idle iowait irq softirq steal guest guest_nice (guest* already in user/nice)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
    out[Number(m[1])] = { busy: total - v[3] - v[4] - (v[7] || 0), total }
  }
  return out
}

/** Busy % of one CPU between two cpuTimes() samples (NaN when unknown). */
function busyPct (a, b, cpu) {
  if (cpu == null || !a[cpu] || !b[cpu]) return NaN
  const total = b[cpu].total - a[cpu].total
  return total > 0 ? (b[cpu].busy - a[cpu].busy) / total * 100 : NaN
}

/** Busy CPU-seconds of one CPU between two cpuTimes() samples. */
function busySec (a, b, cpu) {
  if (cpu == null || !a[cpu] || !b[cpu]) return NaN
  return (b[cpu].busy - a[cpu].busy) / clkTck
}

module.exports.cpuTimes = cpuTimes
module.exports.busySec = busySec
module.exports.busyPct = busyPct
