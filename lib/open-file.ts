// Opens the file to send and describes it from the same fd (no stat/open
// race): native openat2 (or its walk, see native.ts) + fstat in one call, or Node's fs where the addon
// is missing. Synchronous on purpose: like nginx's open/fstat on its event
// loop, these are metadata calls served from the dentry/inode caches.
import fs from 'node:fs'
import path from 'node:path'
import os from 'node:os'
import { native, openWalk, systemError } from './native'
import type { ResolvedPath } from './resolve-path'

export interface OpenedFile {
  fd: number
  size: number
  ino: number
  mtimeMs: number
  /** Changes with every change to the inode; no user can set it back. */
  ctimeMs: number
  dev: number
  isFile: boolean
  isDirectory: boolean
}

/** What may change under an open fd: size and times. */
export interface FileVersion { size: number, mtimeMs: number, ctimeMs: number }

const S_IFMT = 0o170000
const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const EXDEV = -os.constants.errno.EXDEV
// The layout native/open.c writes (its ST_* enum, same order).
const ST_MODE = 0
const ST_SIZE = 1
const ST_INO = 2
const ST_MTIME_MS = 3
const ST_DEV = 4
const ST_PSEUDO = 5
const ST_CTIME_MS = 6
const ST_FIELDS = 7
const statOut = new Float64Array(ST_FIELDS)

/**
 * Handles on root folders. The plugin's own root is opened once and kept;
 * a per-call root may come from request data (a folder per tenant), so it
 * is opened for the one open it serves and closed: no fd growth per root.
 */
export class RootDirectories {
  private readonly fds = new Map<string, number>()
  private readonly realPaths = new Map<string, string>()

  constructor (private readonly kept: string | undefined) {}

  /** Opens `relative` beneath `root` with the addon; returns fd or -errno. */
  openBeneath (root: string, relative: string, out: Float64Array): number {
    const binding = native.binding!
    let dirFd = this.fds.get(root)
    if (dirFd !== undefined) return binding.openFile(dirFd, relative, out, openWalk)
    dirFd = binding.openDirectory(root)
    if (dirFd < 0) return dirFd
    if (root === this.kept) {
      this.fds.set(root, dirFd)
      return binding.openFile(dirFd, relative, out, openWalk)
    }
    const fd = binding.openFile(dirFd, relative, out, openWalk)
    binding.close(dirFd)
    return fd
  }

  /** The root's real path, with a trailing separator ('/' stays '/'). */
  realPrefix (root: string): string {
    let real = root === this.kept ? this.realPaths.get(root) : undefined
    if (real === undefined) {
      real = fs.realpathSync.native(root)
      if (!real.endsWith(path.sep)) real += path.sep
      if (root === this.kept) this.realPaths.set(root, real)
    }
    return real
  }

  closeAll (): void {
    for (const fd of this.fds.values()) native.binding?.close(fd)
    this.fds.clear()
    this.realPaths.clear()
  }
}

function describe (fd: number, mode: number, size: number, ino: number, mtimeMs: number, ctimeMs: number, dev: number): OpenedFile {
  const type = mode & S_IFMT
  return { fd, size, ino, mtimeMs, ctimeMs, dev, isFile: type === S_IFREG, isDirectory: type === S_IFDIR }
}

function openNative (resolved: Exclude<ResolvedPath, { kind: 'refused' }>, roots: RootDirectories, symlinksAnywhere: boolean): OpenedFile {
  const fd = resolved.kind === 'beneath'
    ? roots.openBeneath(resolved.root, resolved.relative, statOut)
    : native.binding!.openFile(-1, resolved.path, statOut, 0)
  // RESOLVE_BENEATH (and the walk) also refuses symlinks that only *look* like leaving:
  // absolute ones, or a detour through `..` that comes back. The rule we
  // promise is about where the file really is, so ask the slower way.
  if (fd === EXDEV && resolved.kind === 'beneath') {
    try {
      return openPortable(resolved, roots, symlinksAnywhere)
    } catch (err) {
      // Never let the answer depend on what exists outside the root,
      // unless symlinks may lead there (allowSymlinksOutsideRoot): then a
      // missing file behind one is missing (404), as a GET of a file there
      // is served.
      if (symlinksAnywhere) throw err
      throw systemError(EXDEV, 'open')
    }
  }
  if (fd < 0) throw systemError(fd, 'open')
  const file = describe(fd, statOut[ST_MODE], statOut[ST_SIZE], statOut[ST_INO], statOut[ST_MTIME_MS], statOut[ST_CTIME_MS], statOut[ST_DEV])
  // sysfs and kin make up their size: not a file whose length we can promise.
  if (statOut[ST_PSEUDO] === 1) file.isFile = false
  return file
}

// Where the opened file really is. On Linux /proc/self/fd names the file
// behind the fd itself, so no rename can race the check; elsewhere the
// path is resolved again (weaker, still refuses plain escapes).
function realPathOf (fd: number, full: string): string {
  if (process.platform === 'linux') {
    try { return fs.readlinkSync(`/proc/self/fd/${fd}`) } catch {}
  }
  return fs.realpathSync.native(full)
}

function openPortable (resolved: Exclude<ResolvedPath, { kind: 'refused' }>, roots: RootDirectories, symlinksAnywhere: boolean): OpenedFile {
  const full = resolved.kind === 'beneath' ? path.join(resolved.root, resolved.relative) : resolved.path
  const fd = fs.openSync(full, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0) | (fs.constants.O_NOCTTY ?? 0))
  try {
    // The path itself never climbs above root (resolve-path.ts); with
    // allowSymlinksOutsideRoot, only where a symlink leads is not checked.
    if (resolved.kind === 'beneath' && !symlinksAnywhere) {
      const prefix = roots.realPrefix(resolved.root)
      const real = realPathOf(fd, full)
      if (real + path.sep !== prefix && !real.startsWith(prefix)) throw systemError(EXDEV, 'open')
    }
    const st = fs.fstatSync(fd)
    return describe(fd, st.mode, st.size, st.ino, st.mtimeMs, st.ctimeMs, st.dev)
  } catch (err) {
    fs.closeSync(fd)
    throw err
  }
}

/** Throws a Node-shaped system error (code, errno, syscall). */
export function openFile (resolved: Exclude<ResolvedPath, { kind: 'refused' }>, roots: RootDirectories, symlinksAnywhere = false): OpenedFile {
  return native.binding !== null ? openNative(resolved, roots, symlinksAnywhere) : openPortable(resolved, roots, symlinksAnywhere)
}

/**
 * Whether the open file still has the size and times it was described
 * with: an fstat of the fd (under a microsecond with the addon). False
 * when the fstat fails.
 */
export function unchangedSince (file: OpenedFile): boolean {
  if (native.binding !== null) {
    return native.binding.fstatFile(file.fd, statOut) === 0 && statOut[ST_SIZE] === file.size &&
      statOut[ST_MTIME_MS] === file.mtimeMs && statOut[ST_CTIME_MS] === file.ctimeMs
  }
  try { return sameVersion(file, fs.fstatSync(file.fd)) } catch { return false }
}

export function sameVersion (a: FileVersion, b: FileVersion): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs
}

export function closeFile (fd: number): void {
  if (native.binding !== null) native.binding.close(fd)
  else fs.close(fd, () => {})
}
