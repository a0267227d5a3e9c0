// globIgnore (with wildcard: false): the files @fastify/static's glob
// call leaves out through its `ignore` option, decided the way glob 11's
// Ignore class decides it (minimatch, always in dot mode, no comments or
// negation): a file is left out when a pattern matches its path relative
// to root (or, for a pattern starting with '/', its absolute path); a
// folder is not entered when a pattern ending in `/**` matches it.
import { Minimatch, type MinimatchOptions } from 'minimatch'

export interface IgnoreMatcher {
  /** Whether the file at `relative` ('/'-separated, under root; `full` is its absolute path) is left out. */
  ignored (relative: string, full: string): boolean
  /** Whether nothing below the folder at `relative` is looked at. */
  childrenIgnored (relative: string, full: string): boolean
}

const options: MinimatchOptions = { dot: true, nocomment: true, nonegate: true, optimizationLevel: 2 }

export function globIgnoreMatcher (patterns: string[]): IgnoreMatcher {
  const relative: Minimatch[] = []
  const absolute: Minimatch[] = []
  const relativeChildren: Minimatch[] = []
  const absoluteChildren: Minimatch[] = []
  for (let pattern of patterns) {
    // glob strips leading `./` (isaacs/node-glob#570).
    while (pattern.startsWith('./')) pattern = pattern.slice(2)
    const m = new Minimatch(pattern, options)
    const isAbsolute = pattern.startsWith('/')
    const children = m.globParts.some((parts) => parts[parts.length - 1] === '**')
    ;(isAbsolute ? absolute : relative).push(m)
    if (children) (isAbsolute ? absoluteChildren : relativeChildren).push(m)
  }
  return {
    ignored (rel, full) {
      const r = rel === '' ? '.' : rel
      return relative.some((m) => m.match(r) || m.match(r + '/')) || absolute.some((m) => m.match(full) || m.match(full + '/'))
    },
    childrenIgnored (rel, full) {
      const r = (rel === '' ? '.' : rel) + '/'
      return relativeChildren.some((m) => m.match(r)) || absoluteChildren.some((m) => m.match(full + '/'))
    }
  }
}
