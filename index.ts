import http from 'node:http'
import path from 'node:path'
import { Readable } from 'node:stream'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { FastifyZeroCopyOptions, SendFileZeroCopyOptions, ZeroCopyStats } from './types/index'
import { resolvePluginOptions, resolveCallOptions, type ResolvedOptions } from './lib/options'
import { resolveRequestPath } from './lib/resolve-path'
import { RootDirectories } from './lib/open-file'
import { FileCache, type OpenFileRef, type InvalidationCause } from './lib/file-cache'
import { DigestStore } from './lib/digest'
import type { ServeCore, RespondExtras, OpenablePath } from './lib/serve-core'
import { registerStaticRoutes } from './lib/serve'
import { planFileResponse, appMayOverride, type RequestFacts, type ResponsePlan, type FileFacts } from './lib/plan-response'
import { native, openResolver } from './lib/native'
import { newStats, snapshot, type FallbackReason } from './lib/stats'
import { socketFallback } from './lib/sendfile-transport'
import { FileBody } from './lib/file-body'
import { payloadIsOursAlone } from './lib/fastify-internals'
import { LeaseLog, LEASE_STALE, LEASE_NO_ADDON, refusalReason } from './lib/lease'
import {
  FST_ZEROCOPY_BAD_PATH, FST_ZEROCOPY_FORBIDDEN, FST_ZEROCOPY_NOT_FOUND, FST_ZEROCOPY_NO_ROOT, FST_ZEROCOPY_LEASE_UNAVAILABLE,
  httpErrorForOpen, sendHttpError
} from './lib/errors'

interface PluginState {
  options: ResolvedOptions
  roots: RootDirectories
  files: FileCache
  /** Content digests for etag: 'digest', by file version. */
  digests: DigestStore
  stats: ZeroCopyStats
  leaseLog: LeaseLog | null
}

async function zeroCopyPlugin (fastify: FastifyInstance, pluginOptions: FastifyZeroCopyOptions): Promise<void> {
  const options = resolvePluginOptions(pluginOptions)
  if (options instanceof Error) throw options

  const roots = new RootDirectories(options.root)
  const stats = newStats()
  const state: PluginState = {
    options,
    roots,
    files: new FileCache(options.cache, roots, stats),
    digests: new DigestStore(options.cache === false ? 1000 : options.cache.maxFiles, stats),
    stats,
    leaseLog: native.binding !== null ? new LeaseLog(fastify.log) : null
  }
  // suppressWarning (serve mode) silences it, as @fastify/static's
  // silences its own registration warning.
  if (native.reason !== null && options.zeroCopy && options.serveOptions?.suppressWarning !== true) {
    fastify.log.warn(`fastify-zero-copy: ${native.reason}; files are sent with the write-based fallback`)
  }

  // Serve mode may be registered once per folder and prefix, as
  // @fastify/static is: later registrations in the same scope serve their
  // routes and leave the first one's decorators (and stats) in place.
  const again = options.serve && fastify.hasReplyDecorator('sendFileZeroCopy')
  if (!again) {
    fastify.decorateReply('zeroCopyTransport', null)
    fastify.decorateReply('sendFileZeroCopy', function (this: FastifyReply, filePath: string, callOptions?: SendFileZeroCopyOptions) {
      sendFile(this, state, filePath, callOptions)
      return this
    })
    fastify.decorate('zeroCopy', {
      stats: () => snapshot(state.stats),
      native: native.binding !== null,
      nativeUnavailableReason: native.reason,
      openat2: openResolver.openat2,
      openat2UnavailableReason: openResolver.reason
    })
  }
  fastify.addHook('onClose', async () => {
    state.files.closeAll()
    state.digests.clear()
    state.roots.closeAll()
    state.leaseLog?.close()
    // Leases are shared process-wide; the idle ones need not outlive us.
    native.binding?.leaseDropIdle()
  })
  if (options.serve) registerStaticRoutes(fastify, serveCore(state))
}

// The whole request flow, top to bottom: sendFile finds and opens the
// file, respond sends it. Everything that can fail is done before a
// transport is chosen, so errors take Fastify's normal path.
function sendFile (reply: FastifyReply, state: PluginState, filePath: string, callOptions: unknown): void {
  const options = callOptions === undefined ? state.options : resolveCallOptions(state.options, callOptions)
  if (options instanceof Error) {
    reply.send(options)
    return
  }
  whenTurn(reply, () => {
    // 1. Which file: refuse escapes, dotfiles and malformed paths.
    const resolved = resolveRequestPath(filePath, options.root, options.dotfiles)
    if (resolved.kind === 'refused') {
      reply.send(refusalError(resolved.status, filePath))
      return
    }
    // 2. Open it and describe it from the same fd (or find it open in the cache).
    const ref = openRegularFile(reply, state, resolved, options.allowSymlinksOutsideRoot)
    if (ref !== null) respond(reply, state, ref, resolved.kind === 'beneath' ? resolved.relative : resolved.path, options)
  })
}

/** The open regular file, or null once the error (404, 403, 503...) is sent. */
function openRegularFile (reply: FastifyReply, state: PluginState, resolved: OpenablePath, symlinksAnywhere: boolean): OpenFileRef | null {
  let ref: OpenFileRef
  try {
    ref = state.files.open(resolved, symlinksAnywhere)
  } catch (err) {
    sendOpenError(reply, err as Error)
    return null
  }
  if (!ref.file.isFile) {
    ref.release()
    reply.send(new FST_ZEROCOPY_NOT_FOUND())
    return null
  }
  return ref
}

// A pipelined response queued behind another opens its file only once it
// is its turn: queued bodies write nothing, so Node's pipelining
// back-pressure never starts, and one connection could otherwise hold
// an open file (and a lease) per request it queued.
function whenTurn (reply: FastifyReply, fn: () => void): void {
  const raw = reply.raw
  if (raw instanceof http.ServerResponse && raw.socket === null) raw.once('socket', fn)
  else fn()
}

function respond (reply: FastifyReply, state: PluginState, ref: OpenFileRef, displayPath: string, options: ResolvedOptions,
  extras?: RespondExtras, retried = false): void {
  const { file } = ref
  // etag: 'digest': the tag is made of this version's bytes. Its first
  // requests wait for the hash (read and hashed on the thread pool, never
  // on the event loop), so no response goes out with a tag other than the
  // one every later response will carry.
  let digest: string | null | undefined
  if (options.etag === 'digest') {
    digest = state.digests.lookup(file)
    if (digest === undefined) {
      state.digests.compute(file).then((computed) => {
        if (clientGone(reply)) ref.release()
        // Changed while it was read: describe it again, once.
        else if (computed === null && !retried) describeAgain(reply, state, ref, 'changed', displayPath, options, extras)
        else respondWithDigest(reply, state, ref, displayPath, options, extras, retried, computed)
      }, (err) => {
        ref.release()
        reply.send(err)
      })
      return
    }
  }
  respondWithDigest(reply, state, ref, displayPath, options, extras, retried, digest)
}

function respondWithDigest (reply: FastifyReply, state: PluginState, ref: OpenFileRef, displayPath: string, options: ResolvedOptions,
  extras: RespondExtras | undefined, retried: boolean, digest: string | null | undefined): void {
  const { file } = ref
  try {
    extras?.beforeHeaders?.(file)
  } catch (err) {
    // An app's setHeaders threw: the file goes back, Fastify sends the error.
    ref.release()
    reply.send(err)
    return
  }

  // 3. Status, headers and byte range (conditionals, Range, slice).
  const request = reply.request.raw
  const facts: RequestFacts = { method: request.method ?? 'GET', headers: request.headers, status: reply.statusCode }
  const typePath = extras?.typePath ?? displayPath
  const coding = extras?.headers?.['content-encoding']
  const fileFacts: FileFacts = digest === undefined && coding === undefined ? file : { size: file.size, mtimeMs: file.mtimeMs, digest, coding }
  const plan = planWithCache(facts, ref, fileFacts, typePath, options)
  if (!plan.body) {
    setPlannedHeaders(reply, plan, extras)
    ref.release()
    state.stats.responses.none++
    reply.zeroCopyTransport = 'none'
    // Fastify's HEAD route (made from the GET) rewrites Content-Length to 0
    // for an undefined payload but leaves it alone for a stream.
    reply.send(facts.method === 'HEAD' ? Readable.from([]) : undefined)
    return
  }

  // 4. A read lease for as long as the body is sent (lib/lease.ts). Taken
  // before any header is set: a refusal must not carry the file's headers.
  let lease = 0
  if (options.lease !== false) {
    lease = native.binding === null
      ? LEASE_NO_ADDON
      : native.binding.leaseAcquire(file.fd, file.dev, file.ino, options.leaseGrace,
        options.integrity === 'fast' ? 1 : 0, file.size, file.mtimeMs)
    // Rewritten between our fstat and the lease, or (a cached fd) being
    // written now: describe the file again, once.
    const stale = lease === LEASE_STALE || (ref.hit && lease < 0 && refusalReason(lease) === 'busy')
    if (stale && !retried) {
      describeAgain(reply, state, ref, lease === LEASE_STALE ? 'changed' : 'lease', displayPath, options, extras)
      return
    }
    if (lease > 0) {
      state.stats.leases.taken++
      state.leaseLog!.using(lease, displayPath)
      ref.leaseTaken(lease)
    } else {
      const reason = lease === LEASE_NO_ADDON ? 'unsupported' : refusalReason(lease)
      state.stats.leases.refused[reason]++
      if (reason === 'busy') ref.forget()
      reply.log.debug({ file: displayPath, reason }, 'fastify-zero-copy: sending without a lease')
      if (options.lease === 'required') {
        ref.release()
        sendHttpError(reply, new FST_ZEROCOPY_LEASE_UNAVAILABLE(lease === LEASE_NO_ADDON ? 'no native addon' : reason))
        return
      }
      lease = 0
    }
  }

  // 5. Send the body as a stream payload: Fastify runs its onSend hooks and
  // pipes it into the response, where it takes the zero-copy path if the
  // connection allows it (lib/file-body.ts).
  const fallback = fallbackReason(reply, options)
  const body = new FileBody({
    reply, fd: file.fd, release: ref, filePath: displayPath, path: absolutePath(ref.resolved), start: plan.start, end: plan.end,
    sendTimeout: options.sendTimeout, stats: state.stats, fallback, lease, leaseLog: state.leaseLog
  })
  // Nothing could see or change the payload on its way (no onSend hook, no
  // trailers): skip the stream-payload machinery, which costs about as much
  // as the rest of a small response, and put the headers straight on the
  // response. onResponse hooks and the request log still run: Fastify
  // watches the response's end for them.
  if (fallback === null && reply.raw.socket !== null && payloadIsOursAlone(reply)) {
    reply.hijack()
    const headers = reply.getHeaders()
    applyPlannedHeaders(plan, extras, (name) => headers[name] !== undefined, (name, value) => { headers[name] = value })
    body.sendDirect(headers, plan.status)
    return
  }
  setPlannedHeaders(reply, plan, extras)
  reply.send(body)
}

// The file changed after it was described: drop what was known of it and
// open it again (once per request: the retry passes retried = true).
function describeAgain (reply: FastifyReply, state: PluginState, ref: OpenFileRef, cause: InvalidationCause,
  displayPath: string, options: ResolvedOptions, extras: RespondExtras | undefined): void {
  ref.invalidate(cause)
  ref.release()
  const fresh = openRegularFile(reply, state, ref.resolved, ref.symlinksAnywhere)
  if (fresh !== null) respond(reply, state, fresh, displayPath, options, extras, true)
}

// The client left while the response waited (for a digest): nothing to send.
function clientGone (reply: FastifyReply): boolean {
  return (reply.raw as { destroyed?: boolean }).destroyed === true || reply.request.raw.socket?.destroyed === true
}

// A plain GET/HEAD of a cached file (no conditional, no Range, no app
// status) gets the headers computed for its first such response.
function planWithCache (facts: RequestFacts, ref: OpenFileRef, file: FileFacts, typePath: string, options: ResolvedOptions): ResponsePlan {
  const h = facts.headers
  const plain = facts.status === 200 && h.range === undefined && h['if-none-match'] === undefined &&
    h['if-modified-since'] === undefined && h['if-match'] === undefined && h['if-unmodified-since'] === undefined &&
    (facts.method === 'GET' || facts.method === 'HEAD')
  if (plain) {
    const headers = ref.plainHeaders(options, typePath)
    if (headers !== null) {
      const size = ref.file.size
      return { status: 200, headers, start: 0, end: size, body: facts.method === 'GET' && size > 0 }
    }
  }
  const plan = planFileResponse(facts, file, typePath, options)
  // (A response without the digest it should carry is not a model for later ones.)
  if (plain && plan.status === 200 && plan.start === 0 && plan.end === ref.file.size && file.digest !== null) {
    ref.rememberPlainHeaders(options, typePath, plan.headers)
  }
  return plan
}

function absolutePath (resolved: OpenablePath): string {
  return resolved.kind === 'beneath' ? path.join(resolved.root, resolved.relative) : resolved.path
}

function sendOpenError (reply: FastifyReply, err: Error): void {
  sendHttpError(reply, httpErrorForOpen(err))
}

function serveCore (state: PluginState): ServeCore {
  return {
    options: state.options,
    whenTurn,
    open: (resolved, options) => state.files.open(resolved, options.allowSymlinksOutsideRoot),
    respond: (reply, ref, displayPath, options, extras) => respond(reply, state, ref as OpenFileRef, displayPath, options, extras),
    sendOpenError,
    sendFile: (reply, filePath, callOptions) => sendFile(reply, state, filePath, callOptions),
    callOptions: (callOptions) => resolveCallOptions(state.options, callOptions)
  }
}

function setPlannedHeaders (reply: FastifyReply, plan: ResponsePlan, extras: RespondExtras | undefined): void {
  applyPlannedHeaders(plan, extras, (name) => reply.hasHeader(name), (name, value) => reply.header(name, value))
  reply.code(plan.status)
}

// The one rule for a file response's headers, on the reply or (direct
// path) on a copy of its headers: extras first, then the plan's, except
// those the app may set and already has.
function applyPlannedHeaders (plan: ResponsePlan, extras: RespondExtras | undefined,
  has: (name: string) => boolean, set: (name: string, value: string) => void): void {
  if (extras?.headers !== undefined) for (const name in extras.headers) set(name, extras.headers[name])
  for (const name in plan.headers) {
    if (!(appMayOverride.includes(name) && has(name))) set(name, plan.headers[name])
  }
}

// sendfile needs our addon, a plain HTTP/1.x response, and the kernel fd
// of an unencrypted socket. A pipelined response has no socket yet: it is
// a real HTTP/1 connection (inject always has one), checked once it has.
function fallbackReason (reply: FastifyReply, options: ResolvedOptions): FallbackReason | null {
  if (!options.zeroCopy) return 'disabled'
  if (native.binding === null) return 'native'
  const res = reply.raw
  if (!(res instanceof http.ServerResponse) || reply.request.raw.httpVersionMajor !== 1) return 'http2'
  return res.socket === null ? null : socketFallback(res.socket)
}

function refusalError (status: 400 | 403 | 404 | 500, filePath: string): Error {
  switch (status) {
    case 400: return new FST_ZEROCOPY_BAD_PATH()
    case 403: return new FST_ZEROCOPY_FORBIDDEN()
    case 404: return new FST_ZEROCOPY_NOT_FOUND()
    case 500: return new FST_ZEROCOPY_NO_ROOT(filePath)
  }
}

const zeroCopy = fp(zeroCopyPlugin, { fastify: '5.x', name: 'fastify-zero-copy' })

// The export triple: require(), import default, and a named import. Node's
// ESM loader finds CommonJS names only in plain `module.exports.x =`
// assignments (cjs-module-lexer), so these two are spelled out; TypeScript
// emits the `export =` after them.
module.exports.default = zeroCopy
module.exports.zeroCopy = zeroCopy
export = Object.assign(zeroCopy, { default: zeroCopy, zeroCopy })
