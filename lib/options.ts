// Option schemas, compiled once with ajv. The plugin throws what these
// return; per-call options go through the same schema plus start/end/filename.
import path from 'node:path'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import Ajv, { ErrorObject } from 'ajv'
import type { PluginOptions, SendFileZeroCopyOptions } from '../types/index'
import { FST_ZEROCOPY_INVALID_OPTION } from './errors'
import { cacheControlValue } from './cache-control'
import { serveSchemaProperties, anyOfMessages, checkServeValues, resolveServeOptions, type ServeOptions } from './serve-options'

const fileResponseProperties = {
  root: { type: 'string', minLength: 1 },
  dotfiles: { enum: ['allow', 'deny', 'ignore'] },
  allowSymlinksOutsideRoot: { type: 'boolean' },
  etag: { enum: [true, false, 'digest'] },
  lastModified: { type: 'boolean' },
  cacheControl: { type: 'boolean' },
  maxAge: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'string', minLength: 1 }] },
  immutable: { type: 'boolean' },
  acceptRanges: { type: 'boolean' },
  contentType: { type: 'boolean' },
  sendTimeout: { type: 'integer', minimum: 0, maximum: 2147483647 },
  zeroCopy: { type: 'boolean' },
  lease: { enum: ['auto', 'required', false] },
  leaseGrace: { type: 'integer', minimum: 0, maximum: 3600000 },
  integrity: { enum: ['strict', 'fast'] }
} as const

const pluginSchema = {
  type: 'object',
  properties: {
    ...fileResponseProperties,
    cache: {
      anyOf: [
        { const: false },
        {
          type: 'object',
          properties: {
            maxFiles: { type: 'integer', minimum: 1, maximum: 1000000 },
            maxFds: { type: 'integer', minimum: 0, maximum: 1000000 },
            validateMs: { type: 'integer', minimum: 0, maximum: 2147483647 }
          },
          additionalProperties: false
        }
      ]
    },
    // true: routes and reply decorators; 'decorators': the reply decorators
    // only (@fastify/static's serve: false); false: neither.
    serve: { enum: [true, false, 'decorators'] },
    // In serve mode, root may list several folders (lib/serve-options.ts).
    root: {
      anyOf: [
        fileResponseProperties.root,
        { type: 'array', items: fileResponseProperties.root }
      ]
    },
    ...serveSchemaProperties
  },
  additionalProperties: false
}

const callSchema = {
  type: 'object',
  properties: {
    ...fileResponseProperties,
    start: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    end: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    filename: { type: 'string', minLength: 1, maxLength: 1024 }
  },
  additionalProperties: false
}

const ajv = new Ajv({ allErrors: false, strict: true })
const validatePluginOptions = ajv.compile(pluginSchema)
const validateCallOptions = ajv.compile(callSchema)

/** Options with every default filled in and derived values computed once. */
export interface ResolvedOptions {
  root: string | undefined
  dotfiles: 'allow' | 'deny' | 'ignore'
  allowSymlinksOutsideRoot: boolean
  etag: boolean | 'digest'
  lastModified: boolean
  /** The Cache-Control value to send, or null when the option is off. */
  cacheControl: string | null
  maxAge: number | string
  immutable: boolean
  acceptRanges: boolean
  contentType: boolean
  sendTimeout: number
  zeroCopy: boolean
  lease: 'auto' | 'required' | false
  leaseGrace: number
  integrity: 'strict' | 'fast'
  start: number
  end: number | undefined
  filename: string | undefined
  /** The open-file cache's bounds, or false (plugin-wide; not a per-call option). */
  cache: CacheOptions | false
  /** Serve mode (serve: true or 'decorators'): reply.sendFile/download, and with true GET/HEAD routes serving `root`. */
  serve: boolean
  /** In serve mode, the serve-mode options (root is then serveOptions.roots[0]); null otherwise. */
  serveOptions: ServeOptions | null
}

export interface CacheOptions { maxFiles: number, maxFds: number, validateMs: number }

export const defaults: ResolvedOptions = {
  root: undefined,
  dotfiles: 'ignore',
  allowSymlinksOutsideRoot: false,
  etag: true,
  lastModified: true,
  cacheControl: 'public, max-age=0',
  maxAge: 0,
  immutable: false,
  acceptRanges: true,
  contentType: true,
  sendTimeout: 60000, // nginx's send_timeout
  zeroCopy: true,
  lease: 'auto',
  leaseGrace: 1000,
  integrity: 'strict',
  start: 0,
  end: undefined,
  filename: undefined,
  // nginx's open_file_cache examples use max=1000; a hot set beyond that
  // keeps its metadata without holding fds.
  cache: { maxFiles: 10000, maxFds: 1000, validateMs: 1000 },
  serve: false,
  serveOptions: null
}

function anyOfMessage (name: string): string {
  if (name === 'cache') return 'must be false or { maxFiles?, maxFds?, validateMs? } with non-negative integers'
  if (name in anyOfMessages) return anyOfMessages[name]
  return 'must be a non-negative integer (ms) or a duration string such as "1d"'
}

function optionError (errors: ErrorObject[] | null | undefined): Error {
  // ajv reports an anyOf's branches before the anyOf itself: say the latter.
  const error = errors?.find((e) => e.keyword === 'anyOf') ?? errors?.[0]
  if (error === undefined) return new FST_ZEROCOPY_INVALID_OPTION('options', 'invalid')
  if (error.keyword === 'additionalProperties') {
    return new FST_ZEROCOPY_INVALID_OPTION(String(error.params.additionalProperty), 'unknown option')
  }
  if (error.instancePath === '') {
    return new FST_ZEROCOPY_INVALID_OPTION('options', 'must be an object')
  }
  const name = error.instancePath.slice(1).split('/')[0]
  const expected = error.keyword === 'enum'
    ? `must be one of ${(error.params.allowedValues as unknown[]).map(v => JSON.stringify(v)).join(', ')}`
    : error.keyword === 'anyOf' ? anyOfMessage(name) : error.message ?? 'invalid'
  return new FST_ZEROCOPY_INVALID_OPTION(name, expected)
}

// What ajv cannot say: an absolute, existing folder; a parsable maxAge;
// a slice whose end is not before its start.
// The folder's existence is checked once at registration; a per-call root
// that is missing surfaces as the open's own error.
function checkValues (o: Partial<SendFileZeroCopyOptions>, atRegistration: boolean): Error | null {
  if (o.root !== undefined) {
    if (!path.isAbsolute(o.root)) return new FST_ZEROCOPY_INVALID_OPTION('root', 'must be an absolute path')
  }
  if (o.root !== undefined && atRegistration) {
    let isDirectory = false
    try { isDirectory = fs.statSync(o.root).isDirectory() } catch {}
    if (!isDirectory) return new FST_ZEROCOPY_INVALID_OPTION('root', `"${o.root}" is not a directory`)
  }
  if (o.maxAge !== undefined) {
    try { cacheControlValue(o.maxAge, false) } catch (err) {
      return new FST_ZEROCOPY_INVALID_OPTION('maxAge', (err as Error).message)
    }
  }
  if (o.start !== undefined && o.end !== undefined && o.end < o.start) {
    return new FST_ZEROCOPY_INVALID_OPTION('end', 'must not be before start')
  }
  return null
}

type AnyOptions = Partial<PluginOptions & SendFileZeroCopyOptions>

function resolve (base: ResolvedOptions, given: AnyOptions): ResolvedOptions {
  // `{ start: undefined }` means "not given", as the optional types say.
  const o: AnyOptions = {}
  for (const [key, value] of Object.entries(given)) {
    if (value !== undefined) (o as Record<string, unknown>)[key] = value
  }
  const merged = { ...base, ...(o as Partial<ResolvedOptions>) }
  if (o.cache !== undefined && o.cache !== false) merged.cache = { ...defaults.cache as CacheOptions, ...o.cache }
  const cacheControlOn = o.cacheControl ?? base.cacheControl !== null
  merged.cacheControl = cacheControlOn ? cacheControlValue(merged.maxAge, merged.immutable) : null
  if (merged.root !== undefined) merged.root = path.resolve(merged.root)
  return merged
}

// @fastify/static accepts file: URLs as roots; so do we (as their paths).
function fileUrlRoots (options: unknown): unknown {
  const root = (options as { root?: unknown } | null)?.root
  const isFileUrl = (r: unknown): r is URL => r instanceof URL && r.protocol === 'file:'
  if (!(isFileUrl(root) || (Array.isArray(root) && root.some(isFileUrl)))) return options
  const toPath = (r: unknown): unknown => isFileUrl(r) ? fileURLToPath(r) : r
  return { ...(options as object), root: Array.isArray(root) ? root.map(toPath) : toPath(root) }
}

/** Validates plugin options; returns the resolved options or the error to throw. */
export function resolvePluginOptions (options: unknown): ResolvedOptions | Error {
  const o = fileUrlRoots(options ?? {})
  if (!validatePluginOptions(o)) return optionError(validatePluginOptions.errors)
  const raw = o as Record<string, unknown>
  const serveError = checkServeValues(raw)
  if (serveError !== null) return serveError
  // What serve mode keeps for itself stays out of the per-response options.
  const serveMode = raw.serve === true || raw.serve === 'decorators'
  const serveOptions = serveMode ? resolveServeOptions(raw) : null
  const fileOptions: Record<string, unknown> = {}
  for (const key in raw) {
    if (!(key in serveSchemaProperties) && key !== 'serve') fileOptions[key] = raw[key]
  }
  if (Array.isArray(raw.root)) fileOptions.root = (raw.root as string[])[0]
  const error = checkValues(fileOptions as PluginOptions, true)
  if (error !== null) return error
  const resolved = resolve(defaults, fileOptions as PluginOptions)
  resolved.serve = serveMode
  resolved.serveOptions = serveOptions
  return resolved
}

/** Validates per-call options over the plugin's; returns them or the error. */
export function resolveCallOptions (base: ResolvedOptions, options: unknown): ResolvedOptions | Error {
  if (!validateCallOptions(options)) return optionError(validateCallOptions.errors)
  return checkValues(options as SendFileZeroCopyOptions, false) ?? resolve(base, options as SendFileZeroCopyOptions)
}
