'use strict'
// 1b. Fastify + fastify-zero-copy, zero-copy path with the open-file cache off
// (cache: false): every response opens, fstats and closes its file.
require('./_plugin')(true, { cache: false }).catch((err) => { console.error(err && err.stack ? err.stack : err); process.exit(1) })
