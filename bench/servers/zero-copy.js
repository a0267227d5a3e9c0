'use strict'
// 1. Fastify + fastify-zero-copy, zero-copy path (sendfile(2) from the native addon).
require('./_plugin')(true).catch((err) => { console.error(err && err.stack ? err.stack : err); process.exit(1) })
