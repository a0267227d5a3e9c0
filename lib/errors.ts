// Every error the plugin makes, in one place (the @fastify/static habit).
// Request-time errors skip the stack trace: a 404 from a scanner is routine.
import createError from '@fastify/error'
import type { FastifyReply } from 'fastify'

export const FST_ZEROCOPY_INVALID_OPTION = createError(
  'FST_ZEROCOPY_INVALID_OPTION', 'Invalid option "%s": %s', 500, TypeError)

export const FST_ZEROCOPY_NO_ROOT = createError(
  'FST_ZEROCOPY_NO_ROOT', 'Relative path "%s" needs a root: set the "root" option', 500, TypeError)

export const FST_ZEROCOPY_BAD_PATH = createError(
  'FST_ZEROCOPY_BAD_PATH', 'Bad file path', 400, undefined, false)

export const FST_ZEROCOPY_FORBIDDEN = createError(
  'FST_ZEROCOPY_FORBIDDEN', 'Forbidden', 403, undefined, false)

export const FST_ZEROCOPY_NOT_FOUND = createError(
  'FST_ZEROCOPY_NOT_FOUND', 'File not found', 404, undefined, false)

export const FST_ZEROCOPY_UNAVAILABLE = createError(
  'FST_ZEROCOPY_UNAVAILABLE', 'Too many open files, retry later', 503, undefined, false)

export const FST_ZEROCOPY_LEASE_UNAVAILABLE = createError(
  'FST_ZEROCOPY_LEASE_UNAVAILABLE', 'The file cannot be leased now (%s), retry later', 503, undefined, false)

export const FST_ZEROCOPY_OPEN_FAILED = createError(
  'FST_ZEROCOPY_OPEN_FAILED', 'Could not open the file: %s', 500, undefined, false)

type ErrorWithCode = Error & { code?: string }

/**
 * Sends an HTTP error on the reply. A 503 (out of file descriptors, or a
 * required lease not to be had now) is a passing state: it says when to
 * try again, on every path that sends one.
 */
export function sendHttpError (reply: FastifyReply, httpError: Error): void {
  if ((httpError as { statusCode?: number }).statusCode === 503) reply.header('retry-after', '1')
  reply.send(httpError)
}

// Maps a failed open/fstat (a Node-shaped error with `code`) to the HTTP
// error a client should see. The system error stays as `cause` for logs.
export function httpErrorForOpen (err: ErrorWithCode): Error {
  let httpError: Error
  switch (err.code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'ENAMETOOLONG':
    case 'ELOOP': // a symlink loop is as unservable as a missing file
    case 'ENXIO': // a Unix socket or a device without a driver: not a file
      httpError = new FST_ZEROCOPY_NOT_FOUND()
      break
    case 'EACCES':
    case 'EPERM':
    case 'EXDEV': // openat2(RESOLVE_BENEATH): the path left the root
      httpError = new FST_ZEROCOPY_FORBIDDEN()
      break
    case 'EMFILE':
    case 'ENFILE':
      httpError = new FST_ZEROCOPY_UNAVAILABLE()
      break
    default:
      httpError = new FST_ZEROCOPY_OPEN_FAILED(err.code ?? 'unknown error')
  }
  httpError.cause = err
  return httpError
}
