'use strict'
// 5. node:http + fs.createReadStream().pipe(res). One fs.stat per request so the
// response carries Content-Length (as any real server would) instead of chunking.
const http = require('node:http')
const fs = require('node:fs')
const path = require('node:path')
const { args, ready, exitOnSignals } = require('./_common')

const { dir, port, host } = args()
const server = http.createServer((req, res) => {
  let rel
  try { rel = decodeURIComponent(req.url.split('?')[0]) } catch { rel = '' }
  const file = path.join(dir, path.normalize(rel))
  if (!file.startsWith(dir + path.sep)) { res.writeHead(403).end(); return }
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) { res.writeHead(404).end(); return }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size })
    if (req.method === 'HEAD') { res.end(); return }
    const stream = fs.createReadStream(file)
    stream.on('error', () => res.destroy())
    stream.pipe(res)
  })
})
server.keepAliveTimeout = 72000
server.listen(port, host, () => {
  exitOnSignals(() => new Promise((resolve) => server.close(resolve)))
  ready(server.address().port)
})
