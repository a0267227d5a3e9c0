// Turns the path a handler passes into something safe to open, or the
// HTTP status that refuses it. Pure: no file system access. The kernel has
// the last word on symlinks (openat2 RESOLVE_BENEATH in native/open.c, or
// the same rules walked one name at a time in native/open-walk.c).
import path from 'node:path'

export type DotfilesPolicy = 'allow' | 'deny' | 'ignore'

export type ResolvedPath =
  /** Under `root`: `relative` has no leading slash and no `..` segment. */
  | { kind: 'beneath', root: string, relative: string }
  /** No root: an absolute, normalized path. */
  | { kind: 'absolute', path: string }
  | { kind: 'refused', status: 400 | 403 | 404 | 500, reason: string }

// A `..` that survives normalization climbs above the root (the `send`
// module's rule, which @fastify/static users know).
const climbsAbove = /(?:^|\/)\.\.(?:\/|$)/

function hasDotSegment (normalized: string): boolean {
  for (const segment of normalized.split('/')) {
    if (segment.length > 1 && segment[0] === '.' && segment !== '..') return true
  }
  return false
}

export function resolveRequestPath (input: string, root: string | undefined, dotfiles: DotfilesPolicy): ResolvedPath {
  if (typeof input !== 'string') return { kind: 'refused', status: 400, reason: 'path is not a string' }
  if (input.includes('\0')) return { kind: 'refused', status: 400, reason: 'null byte in path' }

  let normalized: string
  if (root !== undefined) {
    // Leading slashes mean "from the root", as in a URL.
    normalized = path.posix.normalize('./' + input)
    if (climbsAbove.test(normalized)) return { kind: 'refused', status: 403, reason: 'path leaves the root' }
  } else {
    if (!path.isAbsolute(input)) return { kind: 'refused', status: 500, reason: 'relative path without root' }
    normalized = path.posix.normalize(input)
  }

  if (dotfiles !== 'allow' && hasDotSegment(normalized)) {
    return dotfiles === 'deny'
      ? { kind: 'refused', status: 403, reason: 'dotfile denied' }
      : { kind: 'refused', status: 404, reason: 'dotfile ignored' }
  }

  if (root === undefined) return { kind: 'absolute', path: normalized }
  // normalize('./') is './'; openat2 wants '.' for the root itself.
  const relative = normalized === './' ? '.' : normalized.replace(/^\.\//, '')
  return { kind: 'beneath', root, relative }
}
