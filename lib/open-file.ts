// Opens the file to send and describes it from the same fd (no stat/open
// race): native openat2 + fstat in one call, or Node's fs where the addon
// is missing. Synchronous on purpose: like nginx's open/fstat on its event
// loop, these are metadata calls served from the dentry/inode caches.
import fs from 'node:fs'
import path from 'node:path'
import os from 'node:os'
import { native, systemError } from './native'
import type { ResolvedPath } from './resolve-path'

export interface OpenedFile {
  fd: number
  size: number
  ino: number
  mtimeMs: number
  isFile: boolean
  isDirectory: boolean
}

const S_IFMT = 0o170000
const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const EXDEV = -os.constants.errno.EXDEV
const statOut = new Float64Array(5)

/** Per-process handles on root folders, opened once and kept. */
export class RootDirectories {
  private readonly fds = new Map<string, number>()
  private readonly realPaths = new Map<string, string>()

  fd (root: string): number {
    let fd = this.fds.get(root)
    if (fd === undefined) {
      fd = native.binding!.openDirectory(root)
      if (fd < 0) throw systemError(fd, 'open', root)
      this.fds.set(root, fd)
    }
    return fd
  }

  realPath (root: string): string {
    let real = this.realPaths.get(root)
    if (real === undefined) {
      real = fs.realpathSync.native(root)
      this.realPaths.set(root, real)
    }
    return real
  }

  closeAll (): void {
    for (const fd of this.fds.values()) native.binding?.close(fd)
    this.fds.clear()
    this.realPaths.clear()
  }
}

function describe (fd: number, mode: number, size: number, ino: number, mtimeMs: number): OpenedFile {
  const type = mode & S_IFMT
  return { fd, size, ino, mtimeMs, isFile: type === S_IFREG, isDirectory: type === S_IFDIR }
}

function openNative (resolved: Exclude<ResolvedPath, { kind: 'refused' }>, roots: RootDirectories): OpenedFile {
  const binding = native.binding!
  const fd = resolved.kind === 'beneath'
    ? binding.openFile(roots.fd(resolved.root), resolved.relative, statOut)
    : binding.openFile(-1, resolved.path, statOut)
  if (fd < 0) throw systemError(fd, 'open')
  return describe(fd, statOut[0], statOut[1], statOut[2], statOut[3])
}

// Without openat2 the symlink rule is checked after the open, on the
// resolved path: weaker (a rename can race it) but still refuses escapes.
function openPortable (resolved: Exclude<ResolvedPath, { kind: 'refused' }>, roots: RootDirectories): OpenedFile {
  const full = resolved.kind === 'beneath' ? path.join(resolved.root, resolved.relative) : resolved.path
  const fd = fs.openSync(full, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0))
  try {
    if (resolved.kind === 'beneath') {
      const realRoot = roots.realPath(resolved.root)
      const real = fs.realpathSync.native(full)
      if (real !== realRoot && !real.startsWith(realRoot + path.sep)) throw systemError(EXDEV, 'open')
    }
    const st = fs.fstatSync(fd)
    return describe(fd, st.mode, st.size, st.ino, st.mtimeMs)
  } catch (err) {
    fs.closeSync(fd)
    throw err
  }
}

/** Throws a Node-shaped system error (code, errno, syscall). */
export function openFile (resolved: Exclude<ResolvedPath, { kind: 'refused' }>, roots: RootDirectories): OpenedFile {
  return native.binding !== null ? openNative(resolved, roots) : openPortable(resolved, roots)
}

export function closeFile (fd: number): void {
  if (native.binding !== null) native.binding.close(fd)
  else fs.close(fd, () => {})
}
