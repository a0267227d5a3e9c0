'use strict'
// 1c. Fastify + fastify-zero-copy, zero-copy path with content-digest ETags
// (etag: 'digest'): each file is hashed once, then served like zero-copy.js.
require('./_plugin')(true, { etag: 'digest' }).catch((err) => { console.error(err && err.stack ? err.stack : err); process.exit(1) })
