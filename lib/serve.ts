// Static-serving mode (option `serve: true`): GET and HEAD routes, and
// reply.sendFile / reply.download (alone with `serve: 'decorators'`),
// like @fastify/static's, served through
// the plugin's request flow (lib/serve-core.ts), so every body goes out
// with sendfile(2) where the connection allows it.
//
// How a URL becomes a file follows @fastify/static 10 step by step (its
// index.js and @fastify/send), so an app can switch by changing the
// import and adding `serve: true`. The differences are deliberate and
// listed in README ("Serve mode: differences from @fastify/static"); the
// ones decided here are marked "Deviation:".
import fs from 'node:fs'
import path from 'node:path'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { ServeCore, FileRef, RespondExtras } from './serve-core'
import type { ResolvedOptions } from './options'
import type { ServeOptions, OnFile } from './serve-options'
import type { IgnoreMatcher } from './glob-ignore'
import type { SendFileOptions } from '../types/index'
import { resolveRequestPath } from './resolve-path'
import { acceptableCodings, PRECOMPRESSED_CODINGS } from './accept-encoding'
import { isListingName, listedFolder, sendListing } from './serve-list'
import { FST_ZEROCOPY_BAD_PATH, FST_ZEROCOPY_FORBIDDEN, FST_ZEROCOPY_INVALID_OPTION, FST_ZEROCOPY_NO_ROOT, httpErrorForOpen, sendHttpError } from './errors'
import { sendThrown } from './fastify-internals'

const CODINGS = PRECOMPRESSED_CODINGS.map((c) => c.coding)
const SUFFIX = new Map(PRECOMPRESSED_CODINGS.map((c) => [c.coding, c.suffix]))

// A `..` segment anywhere, and one at the start (which normalization
// refuses on its own), as @fastify/static tells them apart.
const dotDotSegment = /(?:^|[\\/])\.\.(?:[\\/]|$)/
const leadingDotDotSegment = /^\/?\.\.(?:[\\/]|$)/
const encodedHashOrQuestionMark = /%(?:23|3f)/gi

/** What one request looks for: the merged options, and serve mode's own. */
interface Lookup {
  core: ServeCore
  serve: ServeOptions
  options: ResolvedOptions
  /** Absolute folders searched in order; [] for absolute paths only (decorators without root). */
  roots: string[]
  /** The same roots as spelled for allowedPath (@fastify/static passes them as given). */
  rootNames: string[]
  index: string[]
  extensions: string[]
  onFile: OnFile | undefined
  /** The URL prefix of the routes, with its trailing '/' unless prefixAvoidTrailingSlash (listing links start with it). */
  prefix: string
}

/** What looking for one path in one root found (send's result, in short). */
type Found =
  | { kind: 'file', ref: FileRef, relative: string }
  /** A folder named without its trailing '/' (`relative` under the root). */
  | { kind: 'directory', relative: string }
  /** A folder named with its '/', and no index to serve (send's 403): listed when `list` is on and index is off. */
  | { kind: 'folder', relative: string }
  /** `code` is the system error's, when there was one: ENOENT moves on to the next coding or root. */
  | { kind: 'error', status: number, code?: string, error?: Error }

export function registerStaticRoutes (fastify: FastifyInstance, core: ServeCore): void {
  const serve = core.options.serveOptions
  if (serve === null) throw new FST_ZEROCOPY_INVALID_OPTION('serve', 'serve-mode options are missing')
  let prefix = serve.prefix
  if (!serve.prefixAvoidTrailingSlash && !prefix.endsWith('/')) prefix += '/'
  const base: Lookup = {
    core,
    serve,
    options: core.options,
    roots: serve.roots,
    rootNames: serve.rootNames,
    index: serve.index,
    extensions: serve.extensions,
    onFile: serve.onFile,
    prefix
  }

  if (serve.decorateReply) decorateReply(fastify, base)
  // serve: 'decorators' (@fastify/static's serve: false): no routes.
  if (!serve.routes) return

  // `schema.hide` is read by @fastify/swagger, not by Fastify's types.
  const routeOptions: Partial<RouteOptions> = { schema: { hide: serve.schemaHide } as RouteOptions['schema'] }
  if (serve.constraints !== undefined) routeOptions.constraints = serve.constraints
  if (serve.logLevel !== undefined) routeOptions.logLevel = serve.logLevel as RouteOptions['logLevel']
  // As @fastify/static's routes: a route-level errorHandler (an onRoute
  // hook sees one) that hands the error to the app's, read when the error
  // happens, except a stream closed before its end: no response can be
  // completed then, so the connection is dropped.
  routeOptions.errorHandler = (error, request, reply) => {
    if ((error as { code?: unknown } | null)?.code === 'ERR_STREAM_PREMATURE_CLOSE') {
      request.raw.destroy()
      return
    }
    return fastify.errorHandler(error, request, reply)
  }

  if (serve.wildcard) {
    let matchPrefix: PrefixMatcher | undefined
    fastify.route({
      ...routeOptions,
      method: ['HEAD', 'GET'],
      url: prefix + '*',
      handler (request, reply) {
        matchPrefix ??= prefixMatcher(request.routeOptions.url ?? prefix + '*')
        const pathname = pathnameOf(request.raw.url ?? '/', matchPrefix)
        if (pathname === null) return reply.send(new FST_ZEROCOPY_FORBIDDEN())
        if (pathname === undefined) return reply.callNotFound()
        lookUp(request, reply, pathname, base)
        return reply
      }
    })
    if (serve.redirect && prefix !== serve.prefix) {
      fastify.get(serve.prefix, routeOptions, (request, reply) => reply.redirect(redirectUrl(request.raw.url ?? '/'), 301))
    }
  } else {
    registerFileRoutes(fastify, base, prefix, routeOptions)
  }
}

// --- reply.sendFile and reply.download (@fastify/static's signatures) -------

type CallOptions = Record<string, unknown> & { root?: string }

function decorateReply (fastify: FastifyInstance, base: Lookup): void {
  fastify.decorateReply('sendFile', function (this: FastifyReply, filePath: string, rootPath?: string | SendFileOptions, options?: SendFileOptions) {
    const opts = (typeof rootPath === 'object' && rootPath !== null ? rootPath : options) as CallOptions | undefined
    const root = typeof rootPath === 'string' ? rootPath : opts?.root
    sendWithCallOptions(this, filePath, root, opts, undefined, base)
    return this
  })
  fastify.decorateReply('download', function (this: FastifyReply, filePath: string, fileName?: string | SendFileOptions, options?: SendFileOptions) {
    const opts = (typeof fileName === 'object' && fileName !== null ? fileName : options) as CallOptions | undefined
    // Named by the last segment, as path.basename does ('docs/' is 'docs').
    const name = path.basename(typeof fileName === 'string' ? fileName : String(filePath)) || 'download'
    sendWithCallOptions(this, filePath, opts?.root, opts, name, base)
    return this
  })
}

function sendWithCallOptions (reply: FastifyReply, filePath: string, root: string | undefined, given: CallOptions | undefined,
  filename: string | undefined, base: Lookup): void {
  if (typeof filePath !== 'string') {
    reply.send(new FST_ZEROCOPY_BAD_PATH())
    return
  }
  // index, extensions and onFile are serve mode's; the rest are
  // sendFileZeroCopy's per-call options, validated the same way.
  // serveDotFiles is accepted and, as in @fastify/static's send, has no
  // effect here.
  const { index, extensions, serveDotFiles, onFile, ...callOptions } = given ?? {}
  // As in @fastify/static, an empty root means the plugin's own.
  if (root === '') root = undefined
  if (root !== undefined) callOptions.root = root
  else delete callOptions.root
  if (filename !== undefined) callOptions.filename = filename
  const listError = checkList('index', index, true) ?? checkList('extensions', extensions, false)
  if (listError !== null || (serveDotFiles !== undefined && typeof serveDotFiles !== 'boolean')) {
    reply.send(listError ?? new FST_ZEROCOPY_INVALID_OPTION('serveDotFiles', 'must be boolean'))
    return
  }
  if (onFile !== undefined && typeof onFile !== 'function') {
    reply.send(new FST_ZEROCOPY_INVALID_OPTION('onFile', `must be a function, got ${typeof onFile}`))
    return
  }
  const options = Object.keys(callOptions).length === 0 ? base.options : base.core.callOptions(callOptions)
  if (options instanceof Error) {
    reply.send(options)
    return
  }
  const lookup: Lookup = {
    ...base,
    options,
    roots: root !== undefined ? [options.root as string] : base.roots,
    rootNames: root !== undefined ? [root] : base.rootNames,
    index: index === undefined ? base.index : toList(index),
    extensions: extensions === undefined ? base.extensions : toList(extensions),
    onFile: onFile === undefined ? base.onFile : onFile as OnFile
  }
  lookUp(reply.request, reply, filePath, lookup)
}

function checkList (name: string, value: unknown, falseAllowed: boolean): Error | null {
  if (value === undefined || (falseAllowed && value === false) || (typeof value === 'string' && value !== '')) return null
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && v !== '')) return null
  return new FST_ZEROCOPY_INVALID_OPTION(name, falseAllowed ? 'must be a file name, an array of file names, or false' : 'must be an extension or an array of extensions')
}

function toList (value: unknown): string[] {
  if (value === false) return []
  return typeof value === 'string' ? [value] : [...(value as string[])]
}

// --- from a path to a response ---------------------------------------------

/** Serves `pathname` (decoded; from the URL or a sendFile call) from the lookup's roots. */
function lookUp (request: FastifyRequest, reply: FastifyReply, pathname: string, lookup: Lookup): void {
  // @fastify/send refuses a leading `..` itself but normalizes others away
  // first; and a non-canonical spelling (`//`, `/./`, a trailing `/.`)
  // could slip past a more specific route that guards the canonical one.
  if (dotDotSegment.test(pathname) && !leadingDotDotSegment.test(pathname)) {
    reply.send(new FST_ZEROCOPY_FORBIDDEN())
    return
  }
  if (isNonCanonical(pathname)) {
    reply.send(new FST_ZEROCOPY_FORBIDDEN())
    return
  }
  // No root at all (serve: 'decorators' without one): only absolute paths.
  if (lookup.roots.length === 0 && !path.isAbsolute(pathname)) {
    reply.callNotFound()
    return
  }
  lookup.core.whenTurn(reply, () => {
    try {
      attempt(request, reply, pathname, 0, null, lookup)
    } catch (err) {
      // Nothing may escape: a pipelined request runs from an event of the
      // response before it, where a throw would end the process.
      if (reply.sent) {
        reply.log.error({ err }, 'fastify-zero-copy: error after the response was sent')
      } else if (isOutOfFds(err)) {
        // findIndex ran out of file descriptors: 503 with Retry-After, as
        // for the file itself (not "no index", which would be a 404).
        sendHttpError(reply, httpErrorForOpen(err as Error))
      } else {
        // allowedPath threw: Fastify's error handler, as for a route handler.
        sendThrown(reply, err)
      }
    }
  })
}

// allowedPath on the final path, with that file already open: a throw
// gives the file back before it goes on to the error handler.
function allowsOpened (allowedPath: NonNullable<Lookup['serve']['allowedPath']>, final: string, rootName: string | undefined,
  request: FastifyRequest, ref: { release: () => void }): boolean {
  try {
    return allowedPath(final, rootName, request)
  } catch (err) {
    ref.release()
    throw err
  }
}

function isOutOfFds (err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code
  return code === 'EMFILE' || code === 'ENFILE'
}

/**
 * One step of @fastify/static's pumpSendToReply: the next coding the
 * client accepts (`tried` holds those whose file was missing), else the
 * file itself, in roots[rootIndex]; a miss moves on to the next root.
 */
function attempt (request: FastifyRequest, reply: FastifyReply, pathname: string, rootIndex: number,
  tried: Set<string> | null, lookup: Lookup): void {
  const { serve, roots } = lookup
  const root = roots[rootIndex] as string | undefined
  const rootName = lookup.rootNames[rootIndex] as string | undefined
  const requested = normalizePathname(pathname)
  if (serve.allowedPath !== undefined && !serve.allowedPath(requested, rootName, request)) {
    reply.callNotFound()
    return
  }

  let coding: string | undefined
  let candidate = pathname
  let logical = pathname
  if (serve.preCompressed) {
    tried ??= new Set()
    const untried = tried
    coding = acceptableCodings(request.headers['accept-encoding'], CODINGS).find((c) => !untried.has(c))
    if (coding !== undefined && pathname.endsWith('/')) {
      const indexName = findIndex(pathname, root, lookup)
      // Deviation: no index here, so no encoded index either; the plain
      // lookup below moves on to the next root (@fastify/static answers
      // 404 at once, even when a later root has the index).
      if (indexName === undefined) coding = undefined
      else logical = pathname + indexName
    }
    if (coding !== undefined) candidate = logical + SUFFIX.get(coding)!
  }

  const found = find(candidate, root, lookup, coding === undefined)
  switch (found.kind) {
    case 'file': {
      // The final file may differ from the request (an index, an
      // extension): allowedPath sees that one too, under its logical name.
      const selected = coding === undefined ? found.relative : found.relative.slice(0, -SUFFIX.get(coding)!.length)
      const final = root === undefined || !requested.startsWith('/') ? selected : '/' + selected
      if (serve.allowedPath !== undefined && final !== requested && !allowsOpened(serve.allowedPath, final, rootName, request, found.ref)) {
        found.ref.release()
        reply.callNotFound()
        return
      }
      respond(reply, found.ref, found.relative, root, coding, logical, lookup)
      return
    }
    case 'directory':
      // A listing wins over the redirect and the index (@fastify/static
      // lists first; its later answer finds the reply already sent).
      if (serve.list !== null && root !== undefined) {
        list(reply, root, found.relative, pathname, lookup)
      } else if (serve.redirect) {
        reply.redirect(redirectUrl(request.raw.url ?? '/'), 301)
      } else if (!pathname.endsWith('/') && findIndex(pathname, root, lookup) !== undefined) {
        // A folder named without its slash, with an index: served as if it
        // had one (no redirect), starting again from the first root.
        attempt(request, reply, pathname + '/', 0, tried, lookup)
      } else {
        reply.callNotFound()
      }
      return
    case 'folder':
      // index is off (send's 403 for a folder URL): its listing, or the 403.
      if (serve.list !== null && lookup.index.length === 0 && root !== undefined) {
        list(reply, root, found.relative, pathname, lookup)
        return
      }
      sendHttpError(reply, new FST_ZEROCOPY_FORBIDDEN())
      return
    case 'error':
      if (found.code === 'ENOENT') {
        if (coding !== undefined && !serve.redirect && !pathname.endsWith('/') && findIndex(pathname, root, lookup) !== undefined) {
          attempt(request, reply, pathname + '/', 0, tried, lookup)
          return
        }
        // A missing listing name (`/dir/index.json`): the folder's listing,
        // once the file itself is known to be missing (not only a
        // pre-compressed sibling of it, or of a folder's index).
        if (coding === undefined && serve.list !== null && serve.roots.length > 0 && isListingName(pathname, serve.list) &&
            listNamed(reply, pathname, lookup)) return
        if (coding !== undefined) {
          tried!.add(coding)
          attempt(request, reply, pathname, rootIndex, tried, lookup)
          return
        }
        if (rootIndex < roots.length - 1) {
          attempt(request, reply, pathname, rootIndex + 1, null, lookup)
          return
        }
        reply.callNotFound()
        return
      }
      if (found.status === 404) {
        reply.callNotFound()
        return
      }
      sendHttpError(reply, found.error ?? new FST_ZEROCOPY_FORBIDDEN())
  }
}

// --- listings (lib/serve-list.ts) --------------------------------------------

/**
 * Lists the folder a listing name or a folder URL names, under the
 * plugin's root as @fastify/static does; false when that folder would be
 * outside the root (nothing sent).
 */
function listNamed (reply: FastifyReply, pathname: string, lookup: Lookup): boolean {
  const root = lookup.serve.roots[0]
  const dir = listedFolder(root, pathname)
  if (dir === null) return false
  // Opened through the same rules as a file (openat2 beneath the root):
  // a symlinked folder outside it is not listed.
  const opened = open(path.relative(root, dir) + '/', root, lookup)
  if (opened instanceof Error) {
    if (isOutOfFds(opened)) sendHttpError(reply, httpErrorForOpen(opened))
    else reply.callNotFound()
    return true
  }
  const isFolder = opened.ref.file.isDirectory
  opened.ref.release()
  if (!isFolder) reply.callNotFound()
  else list(reply, root, path.relative(root, dir), pathname, lookup)
  return true
}

function list (reply: FastifyReply, root: string, relative: string, route: string, lookup: Lookup): void {
  const { options } = lookup
  const at = {
    dir: path.join(root, relative), route, prefix: lookup.prefix, root, dotfiles: options.dotfiles, symlinksAnywhere: options.allowSymlinksOutsideRoot
  }
  sendListing(reply, lookup.serve.list!, at, (err) => {
    // Deviation: out of file descriptors is a 503 with Retry-After (as
    // for files); @fastify/static sends any unreadable folder to the 404
    // handler.
    if (isOutOfFds(err)) sendHttpError(reply, httpErrorForOpen(err))
    else reply.callNotFound()
  }).catch((err: Error) => reply.send(err))
}

/** What @fastify/send finds for `candidate` under `root`: a file (opened), a folder, or an error. */
function find (candidate: string, root: string | undefined, lookup: Lookup, useIndex: boolean): Found {
  const { core, options } = lookup
  const resolved = resolveRequestPath(candidate, root, options.dotfiles)
  if (resolved.kind === 'refused') {
    switch (resolved.status) {
      case 400: return { kind: 'error', status: 400, error: new FST_ZEROCOPY_BAD_PATH() }
      case 403: return { kind: 'error', status: 403, error: new FST_ZEROCOPY_FORBIDDEN() }
      case 404: return { kind: 'error', status: 404 }
      case 500: return { kind: 'error', status: 500, error: new FST_ZEROCOPY_NO_ROOT(candidate) }
    }
  }

  // A folder URL: its first index file that is a file.
  if (useIndex && lookup.index.length > 0 && candidate.endsWith('/')) {
    let lastError: Error | undefined
    for (const name of lookup.index) {
      const opened = open(candidate + name, root, lookup)
      if (opened instanceof Error) {
        lastError = opened
        continue
      }
      if (opened.ref.file.isFile) return { kind: 'file', ref: opened.ref, relative: opened.relative }
      opened.ref.release()
    }
    return lastError !== undefined ? openError(lastError) : { kind: 'error', status: 404 }
  }

  const opened = open(candidate, root, lookup)
  if (opened instanceof Error) {
    const code = (opened as { code?: string }).code
    // A missing name without an extension: try the configured ones.
    if (code === 'ENOENT' && lookup.extensions.length > 0 && path.posix.extname(candidate) === '' && !candidate.endsWith('/')) {
      let lastError: Error | undefined
      for (const extension of lookup.extensions) {
        const withExtension = open(`${candidate}.${extension}`, root, lookup)
        if (withExtension instanceof Error) {
          lastError = withExtension
          continue
        }
        if (withExtension.ref.file.isFile) return { kind: 'file', ref: withExtension.ref, relative: withExtension.relative }
        withExtension.ref.release()
        lastError = undefined
      }
      return lastError !== undefined ? openError(lastError) : { kind: 'error', status: 404 }
    }
    return openError(opened)
  }
  const { file } = opened.ref
  if (file.isFile) return { kind: 'file', ref: opened.ref, relative: opened.relative }
  opened.ref.release()
  if (file.isDirectory) {
    // send answers 403 for a folder URL it could not serve an index for.
    return candidate.endsWith('/') ? { kind: 'folder', relative: opened.relative } : { kind: 'directory', relative: opened.relative }
  }
  // Deviation: FIFOs, sockets and devices are not served (send would
  // stream a FIFO and hang); like a missing file, they get the 404 handler.
  return { kind: 'error', status: 404 }
}

/**
 * Opens `candidate` under `root` (or, without a root, the absolute path)
 * through the core and its cache; an Error (Node-shaped) when it cannot.
 * `relative` is the path under root, or the absolute path.
 */
function open (candidate: string, root: string | undefined, lookup: Lookup): { ref: FileRef, relative: string } | Error {
  const resolved = resolveRequestPath(candidate, root, lookup.options.dotfiles)
  if (resolved.kind === 'refused') return Object.assign(new Error(resolved.reason), { code: 'ENOENT' })
  try {
    return { ref: lookup.core.open(resolved, lookup.options), relative: resolved.kind === 'beneath' ? resolved.relative : resolved.path }
  } catch (err) {
    return err as Error
  }
}

function fullPath (root: string | undefined, relative: string): string {
  return root === undefined ? relative : path.join(root, relative)
}

// Missing (ENOENT, ENOTDIR, ENAMETOOLONG, and our other 404s) goes to the
// 404 handler like in @fastify/static; only ENOENT tries the next root.
// Deviation: other errors keep this plugin's mapping (403 for EACCES and
// for a symlink out of root, 503 for EMFILE) instead of send's 500.
function openError (err: Error): Found {
  const code = (err as { code?: string }).code
  const httpError = httpErrorForOpen(err)
  const status = (httpError as { statusCode?: number }).statusCode ?? 500
  if (status === 404) return { kind: 'error', status: 404, code }
  return { kind: 'error', status, code, error: httpError }
}

/** The first index name under the folder `pathname` that is a file (not a folder). */
function findIndex (pathname: string, root: string | undefined, lookup: Lookup): string | undefined {
  const folder = pathname.endsWith('/') ? pathname : pathname + '/'
  for (const name of lookup.index) {
    const opened = open(folder + name, root, lookup)
    if (opened instanceof Error) {
      if (isOutOfFds(opened)) throw opened
      continue
    }
    const isFolder = opened.ref.file.isDirectory
    opened.ref.release()
    if (!isFolder) return name
  }
  return undefined
}

function respond (reply: FastifyReply, ref: FileRef, relative: string, root: string | undefined, coding: string | undefined,
  logical: string, lookup: Lookup): void {
  const { serve, core, options } = lookup
  const filePath = fullPath(root, relative)
  // As with @fastify/static, whose send headers replace the reply's: the
  // file's Content-Type and Cache-Control win over what the app set before
  // sendFile (reply.type('text/html') still gets '; charset=utf-8'); the
  // options turn them off, and setHeaders (below) has the last word.
  if (options.contentType) reply.removeHeader('content-type')
  if (options.cacheControl !== null) reply.removeHeader('cache-control')
  const extras: RespondExtras = {}
  if (coding !== undefined) {
    // Typed as the file it encodes: app.js.br is application/javascript.
    extras.typePath = logical
    extras.headers = { 'content-encoding': coding }
  }
  if (serve.setHeaders !== undefined || serve.preCompressed) {
    const setHeaders = serve.setHeaders
    extras.beforeHeaders = (file) => {
      if (setHeaders !== undefined) setHeaders(reply, filePath, statsOf(file.fd, filePath))
      // The variant depends on Accept-Encoding, even when it is the file
      // itself: a shared cache must not hand it to every client.
      if (serve.preCompressed) addVaryAcceptEncoding(reply)
    }
  }
  const onFile = lookup.onFile
  if (onFile === undefined) {
    core.respond(reply, ref, relative, options, extras)
    return
  }
  // onFile, as send calls it: with the file about to be sent (after
  // allowedPath), awaited before any header is set; what it throws or
  // rejects with goes to Fastify's error handler.
  let result: void | Promise<void>
  try {
    result = onFile(filePath, statsOf(ref.file.fd, filePath))
  } catch (err) {
    ref.release()
    sendThrown(reply, err)
    return
  }
  if (result === undefined || typeof (result as { then?: unknown }).then !== 'function') {
    core.respond(reply, ref, relative, options, extras)
    return
  }
  result.then(() => core.respond(reply, ref, relative, options, extras), (err: unknown) => {
    ref.release()
    sendThrown(reply, err)
  })
}

// setHeaders gets an fs.Stats, as with @fastify/static: of the very file
// being sent (fstat of its fd), so it cannot describe another one.
function statsOf (fd: number, fullPath: string): fs.Stats {
  return fd >= 0 ? fs.fstatSync(fd) : fs.statSync(fullPath)
}

function addVaryAcceptEncoding (reply: FastifyReply): void {
  const current = reply.getHeader('vary')
  if (current === undefined) {
    reply.header('vary', 'accept-encoding')
    return
  }
  const value = Array.isArray(current) ? current.join(', ') : String(current)
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase()
    if (name === 'accept-encoding' || name === '*') return
  }
  reply.header('vary', value + ', accept-encoding')
}

// --- URLs -------------------------------------------------------------------

type PrefixMatcher = (url: string, end: number) => number | undefined

/** Length of the route prefix (with `:params` matching one segment each) at the start of url[0, end). */
function prefixMatcher (route: string): PrefixMatcher {
  const routePrefix = route.replace(/\*$/, '')
  if (routePrefix === '/') return () => 0
  if (!routePrefix.includes(':')) {
    return (url, end) => routePrefix.length <= end && url.startsWith(routePrefix) ? routePrefix.length : undefined
  }
  const tokens = routePrefix.split(/(:[^/]*)/).filter((t) => t !== '')
  return (url, end) => {
    let at = 0
    for (const token of tokens) {
      if (token.startsWith(':')) {
        const slash = url.indexOf('/', at)
        const next = slash === -1 || slash > end ? end : slash
        if (next === at) return undefined
        at = next
      } else {
        if (at + token.length > end || !url.startsWith(token, at)) return undefined
        at += token.length
      }
    }
    return at
  }
}

/**
 * The decoded path below the prefix; null for a path to refuse (`..`,
 * non-canonical), undefined when it does not match or cannot be decoded.
 */
function pathnameOf (url: string, matchPrefix: PrefixMatcher): string | null | undefined {
  const question = url.indexOf('?')
  const end = question === -1 ? url.length : question
  const prefixLength = matchPrefix(url, end)
  if (prefixLength === undefined) return undefined
  let pathname = url.slice(prefixLength, end)
  if (pathname === '') pathname = '/'
  else if (!pathname.startsWith('/')) pathname = '/' + pathname
  try {
    const decodedUrl = decodePathname(url.slice(0, end))
    const decoded = decodePathname(pathname)
    // The whole URL: a route parameter in the prefix may have eaten a `..`.
    if (dotDotSegment.test(decodedUrl) && !leadingDotDotSegment.test(decoded)) return null
    if (isNonCanonical(decoded) || isNonCanonical(decodedUrl)) return null
    // @fastify/static refuses a null byte here too (its spelling check
    // cannot stat the name): 403 rather than send's 400.
    if (decoded.includes('\0')) return null
    return decoded
  } catch {
    return undefined
  }
}

// decodeURI keeps reserved characters encoded (%2F stays %2F, so it can
// never become a separator) but would also keep `#` and `?`, which files
// may be named with: those two are decoded first.
function decodePathname (pathname: string): string {
  return decodeURI(pathname.replace(encodedHashOrQuestionMark, decodeURIComponent))
}

function isNonCanonical (pathname: string): boolean {
  if (pathname.length === 0) return false
  if (pathname.includes('\\')) return true
  return path.posix.normalize(pathname) !== pathname
}

function normalizePathname (pathname: string): string {
  return pathname.startsWith('/') ? path.posix.normalize(pathname) : pathname
}

/** The URL of the folder with its slash; leading slashes and backslashes collapse to one (no open redirect). */
function redirectUrl (url: string): string {
  let i = 0
  while (i < url.length && (url[i] === '/' || url[i] === '\\')) i++
  const parsed = new URL('/' + url.slice(i), 'http://localhost/')
  return parsed.pathname + (parsed.pathname.endsWith('/') ? '' : '/') + parsed.search
}

// --- wildcard: false: one route per file found at registration --------------

function registerFileRoutes (fastify: FastifyInstance, base: Lookup, prefix: string, routeOptions: Partial<RouteOptions>): void {
  const { serve } = base
  const indexNames = new Set(serve.index)
  const indexDirs = new Map<string, string>()
  const routes = new Set<string>()
  const route = (url: string, file: string, root: string, rootName: string): void => {
    fastify.route({
      ...routeOptions,
      method: ['HEAD', 'GET'],
      url,
      handler (request, reply) {
        lookUp(request, reply, file, { ...base, roots: [root], rootNames: [rootName] })
        return reply
      }
    })
  }
  const rootNames = new Map<string, string>()
  serve.roots.forEach((root, i) => {
    // allowedPath gets the root as @fastify/static passes it here: with '/' added.
    const name = serve.rootNames[i]
    rootNames.set(root, name.endsWith('/') ? name : name + '/')
  })
  for (const root of serve.roots) {
    for (const file of filesUnder(root, serve.serveDotFiles, serve.globIgnore)) {
      const url = prefix + file
      if (routes.has(url)) continue
      routes.add(url)
      route(url, '/' + file, root, rootNames.get(root)!)
      const dir = path.posix.dirname(url)
      if (indexNames.has(path.posix.basename(url)) && !indexDirs.has(dir)) indexDirs.set(dir, root)
    }
  }
  for (const [dir, root] of indexDirs) {
    const folderUrl = dir.endsWith('/') ? dir : dir + '/'
    const file = '/' + folderUrl.slice(prefix.length)
    route(folderUrl, file, root, rootNames.get(root)!)
    if (serve.redirect && folderUrl.length > 1) route(folderUrl.slice(0, -1), file.slice(0, -1), root, rootNames.get(root)!)
  }
}

/**
 * Files under root (relative, '/'-separated), following symlinks like
 * glob's `follow: true`; a folder that is its own ancestor (a symlink
 * loop) is not entered again.
 */
function filesUnder (root: string, dot: boolean, ignore: IgnoreMatcher | null): string[] {
  const files: string[] = []
  const ancestors = new Set<string>()
  const walk = (dir: string, relative: string): void => {
    let st: fs.Stats
    try { st = fs.statSync(dir) } catch { return }
    const key = `${st.dev}:${st.ino}`
    if (ancestors.has(key)) return
    let names: string[]
    try { names = fs.readdirSync(dir).sort() } catch { return }
    ancestors.add(key)
    for (const name of names) {
      if (!dot && name.startsWith('.')) continue
      const full = path.join(dir, name)
      let entry: fs.Stats
      try { entry = fs.statSync(full) } catch { continue }
      const rel = relative === '' ? name : relative + '/' + name
      if (entry.isDirectory()) {
        if (ignore === null || !ignore.childrenIgnored(rel, full)) walk(full, rel)
      } else if (ignore === null || !ignore.ignored(rel, full)) {
        files.push(rel)
      }
    }
    ancestors.delete(key)
  }
  walk(root, '')
  return files
}
