// The options of static-serving mode (`serve: true`), the ones
// @fastify/static users know. lib/options.ts validates them with the rest
// (ajv schema below, plus what ajv cannot check) and keeps the result in
// ResolvedOptions.serveOptions; lib/serve.ts uses it.
import path from 'node:path'
import fs from 'node:fs'
import type { Stats } from 'node:fs'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { FST_ZEROCOPY_INVALID_OPTION } from './errors'

export interface ServeOptions {
  /** Absolute folders, searched in order ("first found, first served"); roots[0] is ResolvedOptions.root. */
  roots: string[]
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
  // @fastify/static options this plugin does not have; named here so the
  // error says why (see UNSUPPORTED) rather than "unknown option".
  list: {},
  globIgnore: {},
  onFile: {},
  suppressWarning: {}
} as const

/** @fastify/static options refused at registration, with the reason the error gives. */
export const UNSUPPORTED: Record<string, string> = {
  list: 'directory listings are not supported by fastify-zero-copy',
  globIgnore: 'is not supported by fastify-zero-copy (wildcard: false serves every file found under root)',
  onFile: 'is not supported by fastify-zero-copy (use setHeaders, which runs with the opened file)',
  suppressWarning: 'is not supported by fastify-zero-copy'
}

/** The options that only make sense with serve: true. */
export const SERVE_ONLY = Object.keys(serveSchemaProperties).filter((k) => !(k in UNSUPPORTED))

export const anyOfMessages: Record<string, string> = {
  root: 'must be an absolute path, or (with serve: true) a non-empty array of absolute paths',
  index: 'must be a file name, an array of file names, or false',
  extensions: 'must be an extension or an array of extensions (without the dot)'
}

type RawOptions = Record<string, unknown>

/** Refuses serve-mode options without serve: true, unsupported ones, and what ajv cannot check. */
export function checkServeValues (o: RawOptions): Error | null {
  for (const name of Object.keys(UNSUPPORTED)) {
    if (o[name] !== undefined) return new FST_ZEROCOPY_INVALID_OPTION(name, UNSUPPORTED[name])
  }
  if (o.serve !== true) {
    for (const name of SERVE_ONLY) {
      if (o[name] !== undefined) return new FST_ZEROCOPY_INVALID_OPTION(name, 'is a serve-mode option: it needs serve: true')
    }
    if (Array.isArray(o.root)) return new FST_ZEROCOPY_INVALID_OPTION('root', 'can be an array only with serve: true')
    return null
  }
  if (o.root === undefined) return new FST_ZEROCOPY_INVALID_OPTION('root', 'is required with serve: true')
  for (const name of ['setHeaders', 'allowedPath'] as const) {
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
  return null
}

function list (value: unknown, fallback: string[]): string[] {
  if (value === undefined) return fallback
  if (value === false) return []
  return typeof value === 'string' ? [value] : [...(value as string[])]
}

/** The serve-mode options with defaults; call after checkServeValues passed and only with serve: true. */
export function resolveServeOptions (o: RawOptions): ServeOptions {
  const roots = (Array.isArray(o.root) ? o.root as string[] : [o.root as string]).map((r) => path.resolve(r))
  return {
    roots,
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
    serveDotFiles: (o.serveDotFiles as boolean | undefined) ?? false
  }
}
