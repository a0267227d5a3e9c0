// Loads the native addon, or explains once why the write-based fallback
// will be used instead (the bufferutil pattern: the package works without
// its binary, only slower).
import path from 'node:path'
import util from 'node:util'

export interface NativeBinding {
  openFile (dirFd: number, filePath: string, statOut: Float64Array): number
  openDirectory (dirPath: string): number
  close (fd: number): number
  sendfileBurst (sock: number, file: number, offset: number, end: number, budget: number, sentOut: Float64Array, lease: number, header?: string): number
  transferStart (sock: number, file: number, offset: number, end: number, timeoutMs: number, lease: number,
    callback: (status: number, sent: number) => void): object | number
  transferCancel (handle: object): void
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
