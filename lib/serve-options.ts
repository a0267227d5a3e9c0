// The options of static-serving mode (`serve: true`, or `'decorators'`
// for reply.sendFile/download without routes), the ones @fastify/static
// users know. lib/options.ts validates them with the rest
// (ajv schema below, plus what ajv cannot check) and keeps the result in
// ResolvedOptions.serveOptions; lib/serve.ts uses it.
import path from 'node:path'
import fs from 'node:fs'
import type { Stats } from 'node:fs'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { FST_ZEROCOPY_INVALID_OPTION } from './errors'
import { checkListOption, resolveListOption, type ListOptions } from './serve-list'
import { globIgnoreMatcher, type IgnoreMatcher } from './glob-ignore'

export type OnFile = (path: string, stat: Stats) => void | Promise<void>

export interface ServeOptions {
  /** false with serve: 'decorators' (reply.sendFile and reply.download, no routes). */
  routes: boolean
  /** Absolute folders, searched in order ("first found, first served"); roots[0] is ResolvedOptions.root. [] without root (decorators only). */
  roots: string[]
  /** The roots as the app spelled them: what allowedPath gets, as with @fastify/static. */
  rootNames: string[]
  /** The URL prefix as given (default '/'). */
  prefix: string
  prefixAvoidTrailingSlash: boolean
  /** Index file names tried for a URL ending in '/', in order; [] when `index: false`. */
  index: string[]
  redirect: boolean
  /** Extensions (without the dot) tried for a missing path that has none. */
  extensions: string[]
  setHeaders: ((reply: FastifyReply, path: string, stat: Stats) => void) | undefined
  allowedPath: ((pathName: string, root: string | undefined, request: FastifyRequest) => boolean) | undefined
  preCompressed: boolean
  decorateReply: boolean
  schemaHide: boolean
  constraints: Record<string, unknown> | undefined
  logLevel: string | undefined
  wildcard: boolean
  serveDotFiles: boolean
  /** Directory listings; null when off. */
  list: ListOptions | null
  /** Called with each file about to be sent (after allowedPath), awaited. */
  onFile: OnFile | undefined
  /** With wildcard: false, the files not to register (glob's `ignore`). */
  globIgnore: IgnoreMatcher | null
  /** No warning is logged at registration (the native addon missing). */
  suppressWarning: boolean
}

const stringList = { type: 'array', items: { type: 'string', minLength: 1 } } as const

/** ajv schema of the serve-mode options (the functions are checked in checkServeValues). */
export const serveSchemaProperties = {
  prefix: { type: 'string' },
  prefixAvoidTrailingSlash: { type: 'boolean' },
  index: { anyOf: [{ type: 'string', minLength: 1 }, stringList, { const: false }] },
  redirect: { type: 'boolean' },
  extensions: { anyOf: [{ type: 'string', minLength: 1 }, stringList] },
  setHeaders: {},
  allowedPath: {},
  preCompressed: { type: 'boolean' },
  decorateReply: { type: 'boolean' },
  schemaHide: { type: 'boolean' },
  constraints: { type: 'object' },
  logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
  wildcard: { type: 'boolean' },
  serveDotFiles: { type: 'boolean' },
  // Checked in lib/serve-list.ts, so that errors name `list.format` etc.
  list: {},
  onFile: {},
  globIgnore: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
  suppressWarning: { type: 'boolean' },
  // Not an option of @fastify/static 10 (it ignores it, see UNSUPPORTED);
  // named so the error says why rather than "unknown option".
  send: {}
} as const

/** Names that look like options but are refused at registration, with the reason the error gives. */
export const UNSUPPORTED: Record<string, string> = {
  send: 'is not an option of @fastify/static 10 (it ignores it): give its keys (dotfiles, maxAge, etag, ...) at the top level'
}

/** The options that only make sense in serve mode. */
export const SERVE_ONLY = Object.keys(serveSchemaProperties).filter((k) => !(k in UNSUPPORTED))

export const anyOfMessages: Record<string, string> = {
  root: 'must be an absolute path, or (with serve: true) a non-empty array of absolute paths',
  index: 'must be a file name, an array of file names, or false',
  extensions: 'must be an extension or an array of extensions (without the dot)',
  globIgnore: 'must be a glob pattern or an array of glob patterns'
}

type RawOptions = Record<string, unknown>

/** Refuses serve-mode options without serve: true, unsupported ones, and what ajv cannot check. */
export function checkServeValues (o: RawOptions): Error | null {
  for (const name of Object.keys(UNSUPPORTED)) {
    if (o[name] !== undefined) return new FST_ZEROCOPY_INVALID_OPTION(name, UNSUPPORTED[name])
  }
  if (o.serve !== true && o.serve !== 'decorators') {
    for (const name of SERVE_ONLY) {
      if (o[name] !== undefined) return new FST_ZEROCOPY_INVALID_OPTION(name, 'is a serve-mode option: it needs serve: true (or \'decorators\')')
    }
    if (Array.isArray(o.root)) return new FST_ZEROCOPY_INVALID_OPTION('root', 'can be an array only with serve: true (or \'decorators\')')
    return null
  }
  // serve: 'decorators' is @fastify/static's serve: false: no routes, so
  // no root needed (sendFile then takes absolute paths).
  if (o.root === undefined && o.serve === true) return new FST_ZEROCOPY_INVALID_OPTION('root', 'is required with serve: true')
  for (const name of ['setHeaders', 'allowedPath', 'onFile'] as const) {
    if (o[name] !== undefined && typeof o[name] !== 'function') {
      return new FST_ZEROCOPY_INVALID_OPTION(name, `must be a function, got ${typeof o[name]}`)
    }
  }
  if (typeof o.prefix === 'string' && o.prefix !== '' && !o.prefix.startsWith('/')) {
    return new FST_ZEROCOPY_INVALID_OPTION('prefix', 'must start with "/"')
  }
  if (Array.isArray(o.root)) {
    if (o.root.length === 0) return new FST_ZEROCOPY_INVALID_OPTION('root', 'must not be an empty array')
    const resolved = (o.root as string[]).map((r) => path.resolve(r))
    if (new Set(resolved).size !== resolved.length) return new FST_ZEROCOPY_INVALID_OPTION('root', 'contains duplicate paths')
    for (const root of o.root as string[]) {
      if (!path.isAbsolute(root)) return new FST_ZEROCOPY_INVALID_OPTION('root', `"${root}" must be an absolute path`)
      let isDirectory = false
      try { isDirectory = fs.statSync(root).isDirectory() } catch {}
      if (!isDirectory) return new FST_ZEROCOPY_INVALID_OPTION('root', `"${root}" is not a directory`)
    }
  }
  const rootCount = o.root === undefined ? 0 : Array.isArray(o.root) ? o.root.length : 1
  return checkListOption(o.list, rootCount)
}

function list (value: unknown, fallback: string[]): string[] {
  if (value === undefined) return fallback
  if (value === false) return []
  return typeof value === 'string' ? [value] : [...(value as string[])]
}

/** The serve-mode options with defaults; call after checkServeValues passed and only in serve mode. */
export function resolveServeOptions (o: RawOptions): ServeOptions {
  const rootNames = o.root === undefined ? [] : Array.isArray(o.root) ? [...o.root as string[]] : [o.root as string]
  const roots = rootNames.map((r) => path.resolve(r))
  const globIgnore = o.globIgnore === undefined ? [] : typeof o.globIgnore === 'string' ? [o.globIgnore] : o.globIgnore as string[]
  return {
    routes: o.serve === true,
    roots,
    rootNames,
    prefix: (o.prefix as string | undefined) ?? '/',
    prefixAvoidTrailingSlash: (o.prefixAvoidTrailingSlash as boolean | undefined) ?? false,
    index: list(o.index, ['index.html']),
    redirect: (o.redirect as boolean | undefined) ?? false,
    extensions: list(o.extensions, []),
    setHeaders: o.setHeaders as ServeOptions['setHeaders'],
    allowedPath: o.allowedPath as ServeOptions['allowedPath'],
    preCompressed: (o.preCompressed as boolean | undefined) ?? false,
    decorateReply: (o.decorateReply as boolean | undefined) ?? true,
    schemaHide: (o.schemaHide as boolean | undefined) ?? true,
    constraints: o.constraints as Record<string, unknown> | undefined,
    logLevel: o.logLevel as string | undefined,
    wildcard: (o.wildcard as boolean | undefined) ?? true,
    serveDotFiles: (o.serveDotFiles as boolean | undefined) ?? false,
    list: resolveListOption(o.list),
    onFile: o.onFile as OnFile | undefined,
    globIgnore: globIgnore.length === 0 ? null : globIgnoreMatcher(globIgnore),
    suppressWarning: (o.suppressWarning as boolean | undefined) ?? false
  }
}
