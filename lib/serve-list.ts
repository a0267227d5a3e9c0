// Directory listings of serve mode (option `list`), with the meaning of
// @fastify/static 10's lib/dirList.js: which URLs list a folder, what the
// JSON and HTML forms hold, and which errors they give. Listings are made
// in JavaScript (they are small); the folder is read with fs.promises, so
// a large or slow folder never blocks the event loop.
import os from 'node:os'
import path from 'node:path'
import fsp from 'node:fs/promises'
import type { Dirent, Stats } from 'node:fs'
import type { FastifyReply } from 'fastify'
import Ajv from 'ajv'
import { FST_ZEROCOPY_INVALID_OPTION } from './errors'

/** One entry of a listing: its name, the fs.Stats of what it names (symlinks followed). */
export interface ListEntry {
  name: string
  stats: Stats
  extendedInfo?: ExtendedInfo
}

/** Totals of a folder, recursively (list.extendedFolderInfo). */
export interface ExtendedInfo {
  totalSize: number
  fileCount: number
  totalFileCount: number
  folderCount: number
  totalFolderCount: number
  lastModified: number
}

/** What list.render gets for each entry. */
export interface ListFile {
  href: string
  name: string
  stats: Stats
  extendedInfo?: ExtendedInfo
}

export type ListRender = (dirs: ListFile[], files: ListFile[]) => string

/** `list` once checked: `true` is the same as `{}`. */
export interface ListOptions {
  format: 'json' | 'html' | undefined
  names: string[] | undefined
  extendedFolderInfo: boolean
  jsonFormat: 'names' | 'extended' | undefined
  render: ListRender | undefined
}

// --- the option -------------------------------------------------------------

const listSchema = {
  type: 'object',
  properties: {
    format: { enum: ['json', 'html'] },
    names: { type: 'array', items: { type: 'string' } },
    extendedFolderInfo: { type: 'boolean' },
    jsonFormat: { enum: ['names', 'extended'] },
    render: {}
  },
  additionalProperties: false
}

const validateList = new Ajv({ allErrors: false, strict: true }).compile(listSchema)

/**
 * Checks `list` (ajv, plus what ajv cannot say); the error names the
 * sub-option, as in `Invalid option "list.format": ...`. Several roots are
 * refused, as @fastify/static does (a listing shows one folder).
 */
export function checkListOption (list: unknown, rootCount: number): Error | null {
  if (list === undefined || list === false) return null
  if (list !== true) {
    if (!validateList(list)) {
      const error = validateList.errors![0]
      const where = error.instancePath.slice(1).split('/')[0]
      if (error.keyword === 'additionalProperties') {
        return new FST_ZEROCOPY_INVALID_OPTION(`list.${String(error.params.additionalProperty)}`, 'unknown option')
      }
      if (where === '') return new FST_ZEROCOPY_INVALID_OPTION('list', 'must be true, false or an object')
      const expected = error.keyword === 'enum'
        ? `must be one of ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`
        : error.message ?? 'invalid'
      return new FST_ZEROCOPY_INVALID_OPTION(`list.${where}`, expected)
    }
    const o = list as Record<string, unknown>
    if (o.render !== undefined && typeof o.render !== 'function') {
      return new FST_ZEROCOPY_INVALID_OPTION('list.render', `must be a function, got ${typeof o.render}`)
    }
    if (o.format === 'html' && o.render === undefined) {
      return new FST_ZEROCOPY_INVALID_OPTION('list.render', 'must be a function and is required with html format')
    }
  }
  if (rootCount > 1) return new FST_ZEROCOPY_INVALID_OPTION('list', 'cannot be used with several roots (a listing shows one folder)')
  if (rootCount === 0) return new FST_ZEROCOPY_INVALID_OPTION('list', 'needs a root')
  return null
}

/** The checked option with its defaults; null when listings are off. */
export function resolveListOption (list: unknown): ListOptions | null {
  if (list === undefined || list === false) return null
  const o = (list === true ? {} : list) as Partial<ListOptions>
  return {
    format: o.format,
    names: o.names,
    extendedFolderInfo: o.extendedFolderInfo === true,
    jsonFormat: o.jsonFormat,
    render: o.render
  }
}

// --- which URLs list a folder (pure) -----------------------------------------

/**
 * Whether a missing path is a listing name: its last segment is one of
 * `names` (`/dir/index.json`), or it ends in '/' and names has '/'.
 */
export function isListingName (route: string, list: ListOptions): boolean {
  if (list.names === undefined) return false
  return list.names.includes(path.posix.basename(route)) || (list.names.includes('/') && route.endsWith('/'))
}

/**
 * The folder a listing name lists (`/dir/index.json` and `/dir/` list
 * `root/dir`), or null when it would be outside root.
 */
export function listedFolder (root: string, route: string): string | null {
  const relativeRoute = route.endsWith('/') ? '.' + route + 'none' : '.' + route
  const resolvedRoot = path.resolve(root)
  const dir = path.dirname(path.resolve(resolvedRoot, relativeRoute))
  const relative = path.relative(resolvedRoot, dir)
  const inside = relative === '' || (relative !== '..' && !relative.startsWith('..' + path.sep) && !path.isAbsolute(relative))
  return inside ? dir : null
}

// encodeURI leaves `#` and `?` as they are, which would cut an href short.
const urlDelimiters = /[#?]/g

/** What render gets for one entry: its name, stats and link (from the prefix and the request's route). */
export function htmlInfo (entry: ListEntry, route: string, prefix: string, list: ListOptions): ListFile {
  // A listing name (`/dir/index.json`) links relative to its folder.
  if (list.names?.includes(path.basename(route)) === true) {
    route = path.posix.normalize(path.posix.join(route, '..'))
  }
  return {
    href: encodeURI(path.posix.join(prefix, route, entry.name)).replace(urlDelimiters, encodeURIComponent),
    name: entry.name,
    stats: entry.stats,
    extendedInfo: entry.extendedInfo
  }
}

/** The JSON body of a listing: names only (default), or the entries with their stats. */
export function listingJson (entries: { dirs: ListEntry[], files: ListEntry[] }, list: ListOptions): unknown {
  if (list.jsonFormat === 'extended') return entries
  return { dirs: entries.dirs.map((e) => e.name), files: entries.files.map((e) => e.name) }
}

// --- reading a folder (fs.promises, bounded concurrency) ----------------------

// As many stat calls at once as @fastify/static makes: one per CPU but one.
const concurrency = Math.max(1, os.cpus().length - 1)

async function eachLimited<T> (items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++])
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}

/**
 * What a listing may show, by the rules a request for each entry would
 * meet: no dotfile unless they are allowed, and (unless symlinks may lead
 * anywhere) nothing whose real place is outside the root, so neither the
 * name nor the stats of a symlink's outside target are given away, a GET
 * of it being a 403 anyway.
 */
export interface ListingScope {
  dotfiles: 'allow' | 'deny' | 'ignore'
  /** The root's real path; null: symlinks may lead anywhere (allowSymlinksOutsideRoot). */
  realRoot: string | null
}

// The fs.Stats of a folder entry (symlinks followed), or null when it is
// out of scope, vanished, or a dangling symlink.
async function entryStats (dir: string, entry: Dirent, scope: ListingScope): Promise<Stats | null> {
  const full = path.join(dir, entry.name)
  if (entry.isSymbolicLink() && scope.realRoot !== null) {
    let real: string
    try { real = await fsp.realpath(full) } catch { return null }
    if (real !== scope.realRoot && !real.startsWith(scope.realRoot === '/' ? '/' : scope.realRoot + path.sep)) return null
  }
  try { return await fsp.stat(full) } catch { return null }
}

async function readScoped (dir: string, scope: ListingScope): Promise<Dirent[]> {
  const entries = await fsp.readdir(dir, { withFileTypes: true })
  return scope.dotfiles === 'allow' ? entries : entries.filter((e) => !e.name.startsWith('.'))
}

const folderKey = (stats: Stats): string => `${stats.dev}:${stats.ino}`

// `seen`: the folders this walk has counted. Each is walked once, so a
// symlink back to a folder above (a loop) or many links to one folder cost
// one walk, not one per path to it.
async function addExtendedInfo (dir: string, info: ExtendedInfo, scope: ListingScope, seen: Set<string>): Promise<void> {
  const entries = await readScoped(dir, scope)
  await eachLimited(entries, async (entry) => {
    const stats = await entryStats(dir, entry, scope)
    if (stats === null) return
    if (stats.isDirectory()) {
      if (seen.has(folderKey(stats))) return
      seen.add(folderKey(stats))
      info.totalFolderCount++
      info.folderCount++
      // Counts below the first level go to the totals only.
      const nested: ExtendedInfo = { totalSize: 0, fileCount: 0, totalFileCount: 0, folderCount: 0, totalFolderCount: 0, lastModified: 0 }
      await addExtendedInfo(path.join(dir, entry.name), nested, scope, seen)
      info.totalSize += nested.totalSize
      info.totalFileCount += nested.totalFileCount
      info.totalFolderCount += nested.totalFolderCount
      info.lastModified = Math.max(info.lastModified, nested.lastModified)
    } else {
      info.totalSize += stats.size
      info.totalFileCount++
      info.fileCount++
      info.lastModified = Math.max(info.lastModified, stats.mtimeMs)
    }
  })
}

/** A folder's entries in scope, folders and files apart, each sorted by name. */
export async function readListing (dir: string, list: ListOptions, scope: ListingScope): Promise<{ dirs: ListEntry[], files: ListEntry[] }> {
  const listing: { dirs: ListEntry[], files: ListEntry[] } = { dirs: [], files: [] }
  const entries = await readScoped(dir, scope)
  const self = list.extendedFolderInfo ? folderKey(await fsp.stat(dir)) : ''
  await eachLimited(entries, async (dirent) => {
    const stats = await entryStats(dir, dirent, scope)
    if (stats === null) return
    const entry: ListEntry = { name: dirent.name, stats }
    if (stats.isDirectory()) {
      if (list.extendedFolderInfo) {
        const info: ExtendedInfo = { totalSize: 0, fileCount: 0, totalFileCount: 0, folderCount: 0, totalFolderCount: 0, lastModified: 0 }
        await addExtendedInfo(path.join(dir, dirent.name), info, scope, new Set([self, folderKey(stats)]))
        entry.extendedInfo = info
      }
      listing.dirs.push(entry)
    } else {
      listing.files.push(entry)
    }
  })
  listing.dirs.sort((a, b) => a.name.localeCompare(b.name))
  listing.files.sort((a, b) => a.name.localeCompare(b.name))
  return listing
}

/** Where a listing goes: its folder, the request's route (below the prefix), and the prefix. */
export interface ListingRequest {
  dir: string
  route: string
  prefix: string
  /** The root `dir` was found beneath. */
  root: string
  dotfiles: ListingScope['dotfiles']
  /** allowSymlinksOutsideRoot: entries may lead anywhere. */
  symlinksAnywhere: boolean
}

/**
 * Sends the listing of `dir`: JSON, or HTML from list.render, chosen by
 * `?format=` over list.format. A folder that cannot be read is passed to
 * `unreadable` (the 404 handler, or a 503 when out of file descriptors).
 */
export async function sendListing (reply: FastifyReply, list: ListOptions, at: ListingRequest,
  unreadable: (err: Error) => void): Promise<void> {
  const query = reply.request.query as Record<string, unknown> | undefined
  const asked = query?.format
  if (asked === 'html' && typeof list.render !== 'function') {
    throw new FST_ZEROCOPY_INVALID_OPTION('list.render', 'must be a function and is required with the URL parameter `format=html`')
  }
  let entries
  try {
    const realRoot = at.symlinksAnywhere ? null : await fsp.realpath(at.root)
    entries = await readListing(at.dir, list, { dotfiles: at.dotfiles, realRoot })
  } catch (err) {
    unreadable(err as Error)
    return
  }
  // Any other ?format= value (or none) falls back to list.format, then JSON.
  const format = (typeof asked === 'string' && asked !== '' ? asked : undefined) ?? list.format
  if (format !== 'html') {
    reply.send(listingJson(entries, list))
    return
  }
  const html = list.render!(
    entries.dirs.map((e) => htmlInfo(e, at.route, at.prefix, list)),
    entries.files.map((e) => htmlInfo(e, at.route, at.prefix, list)))
  reply.type('text/html').send(html)
}
