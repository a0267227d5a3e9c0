'use strict'
// Byte-exact check: a full GET of every file, sha256 of the body compared with
// the file's. A server failing it is excluded from timing (and reported).
const http = require('node:http')
const crypto = require('node:crypto')

function getHash (url, timeoutMs) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      const hash = crypto.createHash('sha256')
      let length = 0
      res.on('data', (d) => { hash.update(d); length += d.length })
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, length, sha256: hash.digest('hex') }))
      res.on('error', (err) => resolve({ error: String(err) }))
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)))
    req.on('error', (err) => resolve({ error: String(err.message || err) }))
  })
}

/** Returns { ok, problems: [string] } */
async function checkServer (baseUrl, files, timeoutMs = 30000) {
  const problems = []
  for (const f of files) {
    const r = await getHash(`${baseUrl}/${f.name}`, timeoutMs)
    if (r.error) { problems.push(`${f.name}: ${r.error}`); continue }
    if (r.status !== 200) { problems.push(`${f.name}: HTTP ${r.status}`); continue }
    const cl = r.headers['content-length']
    if (cl !== undefined && Number(cl) !== f.size) problems.push(`${f.name}: content-length ${cl} != ${f.size}`)
    if (r.length !== f.size) problems.push(`${f.name}: got ${r.length} bytes, file has ${f.size}`)
    else if (r.sha256 !== f.sha256) problems.push(`${f.name}: sha256 differs from the file`)
  }
  return { ok: problems.length === 0, problems }
}

function getJson (url, timeoutMs = 5000) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => { try { resolve(res.statusCode === 200 ? JSON.parse(body) : null) } catch { resolve(null) } })
    })
    req.setTimeout(timeoutMs, () => req.destroy())
    req.on('error', () => resolve(null))
  })
}

module.exports = { checkServer, getHash, getJson }
