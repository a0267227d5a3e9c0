import fastify, { FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify'
import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import zeroCopy, {
  SendFileZeroCopyOptions, FastifyZeroCopyOptions, ZeroCopyStats, Transport, ZeroCopyDecorator, ServeModeOptions, SendFileOptions,
  ListDir, ListFile
} from '..'
import { Stats } from 'node:fs'
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
app.register(zeroCopy, { etag: 'digest' })
expectError(app.register(zeroCopy, { etag: 'sha1' }))
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
  expectType<FastifyReply>(reply.sendFileZeroCopy('x', { etag: 'digest' }))
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
expectType<boolean>(app.zeroCopy.openat2)
expectType<string | null>(app.zeroCopy.openat2UnavailableReason)
expectError(app.zeroCopy.openat2 = false)

// Inside a plugin the decorator is on the instance type too.
function plugin (instance: FastifyInstance): void {
  expectType<number>(instance.zeroCopy.stats().aborts)
}
plugin(app)

// --- serve mode (serve: true) -------------------------------------------------
app.register(zeroCopy, { serve: true, root: '/srv/public' })
app.register(zeroCopy, { serve: true, root: ['/srv/a', '/srv/b'], prefix: '/static/' })
app.register(zeroCopy, {
  serve: true,
  root: '/srv/public',
  prefix: '/assets',
  prefixAvoidTrailingSlash: true,
  index: ['index.html', 'default.htm'],
  redirect: true,
  extensions: ['html', 'htm'],
  dotfiles: 'allow',
  preCompressed: true,
  decorateReply: false,
  schemaHide: false,
  constraints: { host: 'example.com' },
  logLevel: 'warn',
  wildcard: false,
  serveDotFiles: true,
  maxAge: '1d',
  immutable: true,
  etag: true,
  lastModified: true,
  acceptRanges: true,
  cacheControl: true,
  cache: { maxFds: 100 },
  setHeaders (reply, filePath, stat) {
    expectType<FastifyReply>(reply)
    expectType<string>(filePath)
    expectType<Stats>(stat)
    reply.header('x-file', filePath)
  },
  allowedPath (pathName, root, request) {
    expectType<string>(pathName)
    expectType<string | undefined>(root)
    expectType<FastifyRequest>(request)
    return !pathName.includes('private')
  }
})
app.register(zeroCopy, { serve: true, root: '/srv', index: false })
app.register(zeroCopy, { serve: true, root: '/srv', index: 'main.html', extensions: 'html' })
app.register(zeroCopy, { serve: false, root: '/srv' })
expectAssignable<FastifyZeroCopyOptions>({ serve: true, root: ['/a'] })
expectAssignable<ServeModeOptions>({ prefix: '/x/', redirect: true })

// serve-mode options need serve: true, and root arrays too.
expectError(app.register(zeroCopy, { root: '/srv', prefix: '/static/' }))
expectError(app.register(zeroCopy, { root: '/srv', serve: false, preCompressed: true }))
expectError(app.register(zeroCopy, { root: ['/a', '/b'] }))
expectNotAssignable<FastifyZeroCopyOptions>({ root: '/srv', redirect: true })
// serve: true needs a root.
expectError(app.register(zeroCopy, { serve: true }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', index: true }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', setHeaders: 'x-a: 1' }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', allowedPath: true }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', prefix: 1 }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', logLevel: 'loud' }))
expectError(app.register(zeroCopy, { serve: true, root: [1] }))
// list, globIgnore, onFile, suppressWarning: @fastify/static's meanings.
app.register(zeroCopy, { serve: true, root: '/srv', list: true })
app.register(zeroCopy, { serve: true, root: '/srv', list: { names: ['index.json', '/'], jsonFormat: 'extended', extendedFolderInfo: true } })
app.register(zeroCopy, {
  serve: true,
  root: '/srv',
  list: {
    format: 'html',
    render (dirs, files) {
      expectType<ListDir[]>(dirs)
      expectType<ListFile[]>(files)
      expectType<number | undefined>(dirs[0].extendedInfo?.totalFileCount)
      return dirs.map((d) => d.href).concat(files.map((f) => `${f.name} ${f.stats.size}`)).join('\n')
    }
  }
})
app.register(zeroCopy, { serve: true, root: '/srv', wildcard: false, globIgnore: ['**/*.map', 'private/**'] })
app.register(zeroCopy, { serve: true, root: '/srv', wildcard: false, globIgnore: '*.map' })
app.register(zeroCopy, { serve: true, root: '/srv', suppressWarning: true })
app.register(zeroCopy, {
  serve: true,
  root: '/srv',
  onFile (filePath, stat) {
    expectType<string>(filePath)
    expectType<Stats>(stat)
  }
})
app.register(zeroCopy, { serve: true, root: '/srv', async onFile () {} })
expectError(app.register(zeroCopy, { serve: true, root: '/srv', list: { format: 'html' } }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', list: { format: 'xml' } }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', list: { jsonFormat: 'full' } }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', list: { names: 'index.json' } }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', list: 'yes' }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', globIgnore: [1] }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', onFile: 'log' }))
expectError(app.register(zeroCopy, { serve: true, root: '/srv', suppressWarning: 'yes' }))
expectError(app.register(zeroCopy, { root: '/srv', list: true }))
expectError(app.register(zeroCopy, { root: '/srv', onFile () {} }))
// @fastify/static 10 has no `send` option: not in the types either.
expectError(app.register(zeroCopy, { serve: true, root: '/srv', send: { dotfiles: 'ignore' } }))

// serve: 'decorators' (@fastify/static's serve: false): root optional.
app.register(zeroCopy, { serve: 'decorators' })
app.register(zeroCopy, { serve: 'decorators', root: '/srv', allowedPath: (p) => p !== '/secret', onFile () {} })
app.register(zeroCopy, { serve: 'decorators', root: ['/a', '/b'] })
expectAssignable<FastifyZeroCopyOptions>({ serve: 'decorators' })
expectError(app.register(zeroCopy, { serve: 'routes', root: '/srv' }))
expectError(app.register(zeroCopy, { serve: 'decorators', root: 1 }))

// reply.sendFile and reply.download: @fastify/static's signatures.
app.get('/serve', (request, reply) => {
  expectType<FastifyReply>(reply.sendFile('a.html'))
  expectType<FastifyReply>(reply.sendFile('a.html', '/other/root'))
  expectType<FastifyReply>(reply.sendFile('a.html', { maxAge: '1h', immutable: true }))
  expectType<FastifyReply>(reply.sendFile('a.html', '/other/root', { cacheControl: false, index: false, extensions: ['html'] }))
  expectType<FastifyReply>(reply.download('a.pdf'))
  expectType<FastifyReply>(reply.download('a.pdf', 'report.pdf'))
  expectType<FastifyReply>(reply.download('a.pdf', { acceptRanges: false }))
  expectType<FastifyReply>(reply.download('a.pdf', 'report.pdf', { root: '/other/root' }))
  expectType<FastifyReply>(reply.sendFile('a.html', { onFile (p, stat) { expectType<string>(p); expectType<Stats>(stat) } }))
  expectType<FastifyReply>(reply.download('a.pdf', { async onFile () {} }))
  expectError(reply.sendFile('a.html', { onFile: true }))
  expectError(reply.sendFile())
  expectError(reply.sendFile(1))
  expectError(reply.sendFile('a.html', 1))
  expectError(reply.sendFile('a.html', { maxAge: true }))
  expectError(reply.sendFile('a.html', '/root', { unknownKey: 1 }))
  expectError(reply.download('a.pdf', 1))
  expectError(reply.download('a.pdf', 'x', { etag: 'yes' }))
  return reply.sendFile('a.html')
})
app.get('/serve-async', async (request, reply) => {
  return reply.download('a.pdf', 'a.pdf')
})
expectAssignable<SendFileOptions>({ root: '/r', index: ['i.html'], extensions: 'html', serveDotFiles: true, dotfiles: 'deny' })
expectNotAssignable<SendFileOptions>({ index: 1 })
