'use strict'
// The served directory: random bytes (crypto), one file per size, with sha256.
const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')

const KiB = 1024
const MiB = 1024 * KiB

function sizeLabel (bytes) {
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB} KiB`
  return `${bytes} B`
}

function fileName (bytes) { return sizeLabel(bytes).replace(' ', '') + '.bin' }

/** Creates one file per size in dir; returns [{ size, label, name, path, sha256 }]. */
function generate (dir, sizes) {
  fs.mkdirSync(dir, { recursive: true })
  return sizes.map((size) => {
    const name = fileName(size)
    const p = path.join(dir, name)
    const hash = crypto.createHash('sha256')
    const fd = fs.openSync(p, 'w', 0o644)
    try {
      const chunk = 4 * MiB
      for (let off = 0; off < size; off += chunk) {
        const buf = crypto.randomBytes(Math.min(chunk, size - off))
        hash.update(buf)
        fs.writeSync(fd, buf)
      }
    } finally { fs.closeSync(fd) }
    return { size, label: sizeLabel(size), name, path: p, sha256: hash.digest('hex') }
  })
}

module.exports = { KiB, MiB, sizeLabel, fileName, generate }
