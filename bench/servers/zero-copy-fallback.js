'use strict'
// 2. Fastify + fastify-zero-copy forced to the write-based fallback (zeroCopy: false).
require('./_plugin')(false).catch((err) => { console.error(err && err.stack ? err.stack : err); process.exit(1) })
