import fastify, { FastifyInstance, FastifyPluginCallback, FastifyReply } from 'fastify'
import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import zeroCopy, { SendFileZeroCopyOptions, FastifyZeroCopyOptions, ZeroCopyStats, Transport, ZeroCopyDecorator } from '..'
import * as ns from '..'
import zeroCopyCjs = require('..')

const app = fastify()

// --- the export triple ------------------------------------------------------
expectType<FastifyPluginCallback<FastifyZeroCopyOptions>>(zeroCopy)
expectType<FastifyPluginCallback<FastifyZeroCopyOptions>>(ns.zeroCopy)
expectType<FastifyPluginCallback<FastifyZeroCopyOptions>>(zeroCopyCjs.zeroCopy)
expectType<FastifyPluginCallback<FastifyZeroCopyOptions>>(zeroCopyCjs.default)
// The `export =` function itself is a plugin too.
app.register(zeroCopyCjs, { root: '/srv' })

// --- registration -------------------------------------------------------------
app.register(zeroCopy)
app.register(zeroCopy, {})
app.register(zeroCopy, { root: '/srv/public' })
app.register(zeroCopy, {
  root: '/srv/public',
  dotfiles: 'deny',
  etag: false,
  lastModified: true,
  cacheControl: true,
  maxAge: '1d',
  immutable: true,
  acceptRanges: false,
  contentType: true,
  sendTimeout: 30000,
  zeroCopy: false
})
app.register(zeroCopy, { maxAge: 86400000 })
app.register(zeroCopy, { dotfiles: 'allow' })
app.register(zeroCopy, { dotfiles: 'ignore' })
app.register(zeroCopy, { root: '/srv' }).after(() => {})
expectAssignable<FastifyZeroCopyOptions>({ root: '/x', maxAge: 0 })
expectAssignable<FastifyZeroCopyOptions>({})

expectError(app.register(zeroCopy, { dotfiles: 'maybe' }))
expectError(app.register(zeroCopy, { etag: 'yes' }))
expectError(app.register(zeroCopy, { unknownKey: true }))
expectError(app.register(zeroCopy, { root: 1 }))
expectError(app.register(zeroCopy, { maxAge: true }))
expectError(app.register(zeroCopy, { sendTimeout: '10' }))
expectError(app.register(zeroCopy, { zeroCopy: 'true' }))
expectNotAssignable<FastifyZeroCopyOptions>({ dotfiles: 'maybe' })
expectNotAssignable<FastifyZeroCopyOptions>({ lastModified: 1 })
expectNotAssignable<FastifyZeroCopyOptions>({ cacheControl: null })
// Per-call-only options are not plugin options.
expectError(app.register(zeroCopy, { start: 0 }))
expectError(app.register(zeroCopy, { filename: 'x' }))

// --- the reply decorator ----------------------------------------------------
app.get('/', (request, reply) => {
  expectType<FastifyReply>(reply.sendFileZeroCopy('x'))
  expectType<FastifyReply>(reply.sendFileZeroCopy('x', {}))
  expectType<FastifyReply>(reply.sendFileZeroCopy('x', { start: 0, end: 99, filename: 'report.pdf' }))
  expectType<FastifyReply>(reply.sendFileZeroCopy('x', { root: '/other', dotfiles: 'allow', etag: false, maxAge: '2h' }))
  expectType<'sendfile' | 'write' | 'none' | null>(reply.zeroCopyTransport)
  expectType<Transport | null>(reply.zeroCopyTransport)

  expectError(reply.sendFileZeroCopy(1))
  expectError(reply.sendFileZeroCopy())
  expectError(reply.sendFileZeroCopy('x', { start: '1' }))
  expectError(reply.sendFileZeroCopy('x', { end: '1' }))
  expectError(reply.sendFileZeroCopy('x', { filename: 1 }))
  expectError(reply.sendFileZeroCopy('x', { unknownKey: 1 }))
  expectError(reply.sendFileZeroCopy('x', { dotfiles: 'maybe' }))
  expectError(reply.zeroCopyTransport = 'stream')
  return reply.sendFileZeroCopy('x')
})

// In an async handler the returned reply is what Fastify expects.
app.get('/async', async (request, reply) => {
  return reply.sendFileZeroCopy('x', { start: 1 })
})

expectAssignable<SendFileZeroCopyOptions>({ start: 0, end: 1, filename: 'a.txt', root: '/r' })
expectAssignable<FastifyZeroCopyOptions>({ root: '/r' } as SendFileZeroCopyOptions)
expectNotAssignable<SendFileZeroCopyOptions>({ start: '1' })
// Without exactOptionalPropertyTypes an explicit undefined is valid usage
// (e.g. `{ start: query.start }`); test/options.test.js shows how the
// runtime mishandles it.
expectAssignable<SendFileZeroCopyOptions>({ start: undefined, root: undefined, etag: undefined })

// --- the instance decorator ---------------------------------------------------
expectType<ZeroCopyDecorator>(app.zeroCopy)
expectType<ZeroCopyStats>(app.zeroCopy.stats())
expectType<number>(app.zeroCopy.stats().responses.sendfile)
expectType<number>(app.zeroCopy.stats().responses.write)
expectType<number>(app.zeroCopy.stats().bytes.sendfile)
expectType<number>(app.zeroCopy.stats().fallbacks.native)
expectType<number>(app.zeroCopy.stats().truncations)
expectType<boolean>(app.zeroCopy.native)
expectType<string | null>(app.zeroCopy.nativeUnavailableReason)
expectError(app.zeroCopy.native = false)

// Inside a plugin the decorator is on the instance type too.
function plugin (instance: FastifyInstance): void {
  expectType<number>(instance.zeroCopy.stats().aborts)
}
plugin(app)
