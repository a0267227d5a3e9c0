// Loads the native addon, or explains once why the write-based fallback
// will be used instead (the bufferutil pattern: the package works without
// its binary, only slower).
import path from 'node:path'
import util from 'node:util'

export interface NativeBinding {
  /** walk 1: beneath dirFd with native/open-walk.c instead of openat2. */
  openFile (dirFd: number, filePath: string, statOut: Float64Array, walk: number): number
  /** 0 when openat2(RESOLVE_BENEATH) works here, else -errno. */
  openat2Probe (): number
  openDirectory (dirPath: string): number
  close (fd: number): number
  /** The open.c stat layout for an open fd; 0 or -errno. */
  fstatFile (fd: number, statOut: Float64Array): number
  sendfileBurst (sock: number, file: number, offset: number, end: number, budget: number, sentOut: Float64Array, lease: number,
    header?: string, warmEnd?: number, tupleCache?: Uint8Array): number
  transferStart (sock: number, file: number, offset: number, end: number, timeoutMs: number, lease: number,
    callback: (status: number, sent: number, coldReads: number, coldBytes: number, syscall: string) => void,
    warmEnd: number, cold: number): object | number
  /** Cancels a transfer or a coldRead handle. */
  transferCancel (handle: object): void
  coldRead (file: number, offset: number, length: number, callback: (status: number, bytesRead: number) => void): object | number
  residentRange (file: number, offset: number, length: number): number
  residencyMode (mode?: number): number
  coldReadsPending (): number
  leaseAcquire (fd: number, dev: number, ino: number, graceMs: number, fast: number, size: number, mtimeMs: number): number
  leaseRelease (handle: number): void
  leaseState (handle: number): number
  leaseCounters (out: Float64Array): void
  leaseHeld (): number
  leaseDropIdle (): void
  onLeaseEvent (callback: (handle: number, kind: number, affected: number) => void): number
}

/** Returned by sendfileBurst/transfers when the file ended early. */
export const STATUS_EOF = 1
/** The file's lease was past its grace before this send began: nothing sent. */
export const STATUS_LEASE_BROKEN = 2
/** The lease thread stopped this send; it ends the connection once safe. */
export const STATUS_LEASE_STOPPED = 3
/** sendfileBurst: the chunk is not in the page cache; nothing was sent. */
export const STATUS_COLD = 4
/** leaseAcquire: the lease signal already has another handler. */
export const ERR_FOREIGN_HANDLER = -100000

export interface NativeLoad {
  binding: NativeBinding | null
  /** Why the addon is not used; null when it is. */
  reason: string | null
}

function load (): NativeLoad {
  if (process.platform !== 'linux') {
    return { binding: null, reason: `zero-copy needs Linux, this is ${process.platform}` }
  }
  if (process.env.FASTIFY_ZERO_COPY_NATIVE === '0') {
    return { binding: null, reason: 'disabled by FASTIFY_ZERO_COPY_NATIVE=0' }
  }
  try {
    // dist/lib/native.js -> the package root, where build/ and prebuilds/ live
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const binding = require('node-gyp-build')(path.join(__dirname, '..', '..')) as NativeBinding
    return { binding, reason: null }
  } catch (err) {
    return { binding: null, reason: `native addon did not load: ${(err as Error).message.split('\n')[0]}` }
  }
}

export const native: NativeLoad = load()

export interface OpenResolution {
  /** Files beneath a root are opened with openat2(RESOLVE_BENEATH). */
  openat2: boolean
  /** Why not, when not. */
  reason: string | null
}

// Chosen once per process (per worker thread): openat2, or where it is
// missing (ENOSYS: kernels before 5.6, qemu-user, gVisor), blocked (EPERM:
// seccomp) or failing in any other way, the walk of one name at a time in
// native/open-walk.c, which keeps the same rules with older syscalls.
// FASTIFY_ZERO_COPY_OPENAT2=0 asks for the walk (tests, suspicious kernels).
function openResolution (): OpenResolution {
  const binding = native.binding
  if (binding === null) return { openat2: false, reason: `no native addon (${native.reason})` }
  // A binary built before the walk existed knows only openat2.
  if (typeof binding.openat2Probe !== 'function') return { openat2: true, reason: null }
  if (process.env.FASTIFY_ZERO_COPY_OPENAT2 === '0') {
    return { openat2: false, reason: 'disabled by FASTIFY_ZERO_COPY_OPENAT2=0' }
  }
  const probe = binding.openat2Probe()
  if (probe === 0) return { openat2: true, reason: null }
  return { openat2: false, reason: `openat2 failed: ${util.getSystemErrorName(probe)}` }
}

export const openResolver: OpenResolution = openResolution()
/** The 4th argument of openFile(): 1 to walk. */
export const openWalk: number = native.binding !== null && !openResolver.openat2 ? 1 : 0

/** residencyMode(): how page-cache residency is asked. */
export const RESIDENCY_CACHESTAT = 1
export const RESIDENCY_MINCORE = 2

// FASTIFY_ZERO_COPY_COLD_CHECK=0 sends without asking whether the pages are
// cached (sendfile may then read the disk on the event loop: the behaviour
// before the check, kept for benchmarks); =mincore uses the fallback that
// kernels before 6.5 (no cachestat) get.
function coldCheckSetting (): boolean {
  const setting = process.env.FASTIFY_ZERO_COPY_COLD_CHECK
  if (setting === '0') return false
  if (setting === 'mincore') native.binding?.residencyMode(RESIDENCY_MINCORE)
  return true
}

/** Whether sends ask first if their pages are in the page cache. */
export const coldCheck: boolean = native.binding !== null && coldCheckSetting()

export interface SystemError extends Error {
  code: string
  errno: number
  syscall: string
  path?: string
}

// Shaped like Node's own errors (fs.openSync's): `${syscall} ${code}`,
// negative errno, so callers and logs cannot tell them apart.
export function systemError (negativeErrno: number, syscall: string, filePath?: string): SystemError {
  const code = util.getSystemErrorName(negativeErrno)
  const message = filePath === undefined ? `${syscall} ${code}` : `${code}: ${syscall} '${filePath}'`
  const err = new Error(message) as SystemError
  err.code = code
  err.errno = negativeErrno
  err.syscall = syscall
  if (filePath !== undefined) err.path = filePath
  return err
}
