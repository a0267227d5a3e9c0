import http from 'node:http'
import { Readable } from 'node:stream'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { FastifyZeroCopyOptions, SendFileZeroCopyOptions, ZeroCopyStats } from './types/index'
import { resolvePluginOptions, resolveCallOptions, type ResolvedOptions } from './lib/options'
import { resolveRequestPath } from './lib/resolve-path'
import { openFile, closeFile, RootDirectories, type OpenedFile } from './lib/open-file'
import { planFileResponse, appMayOverride, type RequestFacts, type ResponsePlan } from './lib/plan-response'
import { native } from './lib/native'
import { newStats, snapshot, type FallbackReason } from './lib/stats'
import { socketFallback } from './lib/sendfile-transport'
import { FileBody } from './lib/file-body'
import { LeaseLog, LEASE_STALE, LEASE_NO_ADDON, refusalReason } from './lib/lease'
import {
  FST_ZEROCOPY_BAD_PATH, FST_ZEROCOPY_FORBIDDEN, FST_ZEROCOPY_NOT_FOUND, FST_ZEROCOPY_NO_ROOT, FST_ZEROCOPY_LEASE_UNAVAILABLE,
  httpErrorForOpen
} from './lib/errors'

interface PluginState {
  options: ResolvedOptions
  roots: RootDirectories
  stats: ZeroCopyStats
  leaseLog: LeaseLog | null
}

async function zeroCopyPlugin (fastify: FastifyInstance, pluginOptions: FastifyZeroCopyOptions): Promise<void> {
  const options = resolvePluginOptions(pluginOptions)
  if (options instanceof Error) throw options

  const state: PluginState = {
    options,
    roots: new RootDirectories(options.root),
    stats: newStats(),
    leaseLog: native.binding !== null ? new LeaseLog(fastify.log) : null
  }
  if (native.reason !== null && options.zeroCopy) {
    fastify.log.warn(`fastify-zero-copy: ${native.reason}; files are sent with the write-based fallback`)
  }

  fastify.decorateReply('zeroCopyTransport', null)
  fastify.decorateReply('sendFileZeroCopy', function (this: FastifyReply, filePath: string, callOptions?: SendFileZeroCopyOptions) {
    sendFile(this, state, filePath, callOptions)
    return this
  })
  fastify.decorate('zeroCopy', {
    stats: () => snapshot(state.stats),
    native: native.binding !== null,
    nativeUnavailableReason: native.reason
  })
  fastify.addHook('onClose', async () => {
    state.roots.closeAll()
    state.leaseLog?.close()
    // Leases are shared process-wide; the idle ones need not outlive us.
    native.binding?.leaseDropIdle()
  })
}

// The whole request flow, top to bottom. Everything that can fail is done
// before a transport is chosen, so errors take Fastify's normal path.
function sendFile (reply: FastifyReply, state: PluginState, filePath: string, callOptions: SendFileZeroCopyOptions | undefined, retried = false): void {
  const options = callOptions === undefined ? state.options : resolveCallOptions(state.options, callOptions)
  if (options instanceof Error) {
    reply.send(options)
    return
  }

  // A pipelined response queued behind another opens its file only once it
  // is its turn: queued bodies write nothing, so Node's pipelining
  // back-pressure never starts, and one connection could otherwise hold
  // an open file (and a lease) per request it queued.
  const raw = reply.raw
  if (raw instanceof http.ServerResponse && raw.socket === null) {
    raw.once('socket', () => sendFile(reply, state, filePath, callOptions, retried))
    return
  }

  // 1. Which file: refuse escapes, dotfiles and malformed paths.
  const resolved = resolveRequestPath(filePath, options.root, options.dotfiles)
  if (resolved.kind === 'refused') {
    reply.send(refusalError(resolved.status, filePath))
    return
  }

  // 2. Open it and describe it from the same fd.
  let file: OpenedFile
  try {
    file = openFile(resolved, state.roots, options.allowSymlinksOutsideRoot)
  } catch (err) {
    const httpError = httpErrorForOpen(err as Error)
    if ((httpError as { statusCode?: number }).statusCode === 503) reply.header('retry-after', '1')
    reply.send(httpError)
    return
  }
  if (!file.isFile) {
    closeFile(file.fd)
    reply.send(new FST_ZEROCOPY_NOT_FOUND())
    return
  }

  // 3. Status, headers and byte range (conditionals, Range, slice).
  const request = reply.request.raw
  const facts: RequestFacts = { method: request.method ?? 'GET', headers: request.headers, status: reply.statusCode }
  const plan = planFileResponse(facts, file, resolved.kind === 'beneath' ? resolved.relative : resolved.path, options)
  if (!plan.body) {
    setPlannedHeaders(reply, plan)
    closeFile(file.fd)
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
    if (lease === LEASE_STALE && !retried) {
      // Rewritten between our fstat and the lease: describe it again.
      closeFile(file.fd)
      sendFile(reply, state, filePath, callOptions, true)
      return
    }
    if (lease > 0) {
      state.stats.leases.taken++
      state.leaseLog!.using(lease, filePath)
    } else {
      const reason = lease === LEASE_NO_ADDON ? 'unsupported' : refusalReason(lease)
      state.stats.leases.refused[reason]++
      reply.log.debug({ file: filePath, reason }, 'fastify-zero-copy: sending without a lease')
      if (options.lease === 'required') {
        closeFile(file.fd)
        reply.header('retry-after', '1')
        reply.send(new FST_ZEROCOPY_LEASE_UNAVAILABLE(lease === LEASE_NO_ADDON ? 'no native addon' : reason))
        return
      }
      lease = 0
    }
  }

  // 5. Send the body as a stream payload: Fastify runs its onSend hooks and
  // pipes it into the response, where it takes the zero-copy path if the
  // connection allows it (lib/file-body.ts).
  setPlannedHeaders(reply, plan)
  reply.send(new FileBody({
    reply, fd: file.fd, filePath, start: plan.start, end: plan.end,
    sendTimeout: options.sendTimeout, stats: state.stats, fallback: fallbackReason(reply, options),
    lease, leaseLog: state.leaseLog
  }))
}

function setPlannedHeaders (reply: FastifyReply, plan: ResponsePlan): void {
  for (const name in plan.headers) {
    if (!(appMayOverride.includes(name) && reply.hasHeader(name))) reply.header(name, plan.headers[name])
  }
  reply.code(plan.status)
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
