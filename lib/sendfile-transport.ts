// The zero-copy path: Fastify has set the headers on the response; we
// write them through Node (corked), then move the body with sendfile(2)
// from the page cache straight into the socket.
import os from 'node:os'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { native, coldCheck, STATUS_EOF, STATUS_LEASE_STOPPED, STATUS_LEASE_BROKEN, STATUS_COLD, systemError } from './native'
import type { FileBody } from './file-body'
import type { FallbackReason } from './stats'

const { EAGAIN, ECANCELED, ETIMEDOUT, EPIPE, ECONNRESET, EINVAL, ENOSYS, EOPNOTSUPP, ENOTSOCK, EXDEV, EMFILE, ENFILE } = os.constants.errno

// nginx's sendfile_max_chunk default: the first, synchronous burst stops
// here so one fast client cannot hold the event loop.
const BURST_BUDGET = 2 * 1024 * 1024

// sendfile errors that mean "this file/socket pair cannot do sendfile":
// before the first byte, the write-based path takes over (libuv's rule).
const refusals = new Set([-EINVAL, -ENOSYS, -EOPNOTSUPP, -ENOTSOCK, -EXDEV])

// [body bytes sent, header bytes sent, then either the cold range's offset
// and length (STATUS_COLD) or the new warmEnd]
const sentOut = new Float64Array(4)

// warmEnd for native calls that must not ask about the page cache.
const NO_CHECK = -1

interface StreamHandle { fd?: number, writeQueueSize?: number }

// Per connection, its address pair as native code saw it once (the lease's
// drain watch needs it for every response; it never changes).
const addressCaches = new WeakMap<Socket, Uint8Array>()
function addressCacheOf (socket: Socket): Uint8Array {
  let cache = addressCaches.get(socket)
  if (cache === undefined) {
    cache = new Uint8Array(8 + 256) // a flag, then two sockaddr_storage
    addressCaches.set(socket, cache)
  }
  return cache
}

/** Why this socket cannot take sendfile: TLS, or no kernel fd (inject); null if it can. */
export function socketFallback (socket: Socket): FallbackReason | null {
  if ((socket as { encrypted?: boolean }).encrypted === true) return 'tls'
  return plainSocketFd(socket) < 0 ? 'inject' : null
}

/** The kernel fd of a plain TCP/pipe socket, or -1 (inject, TLS, none). */
export function plainSocketFd (socket: Socket | null): number {
  if (socket === null || (socket as { encrypted?: boolean }).encrypted === true) return -1
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle
  return typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : -1
}

export function sendWithSendfile (body: FileBody, res: ServerResponse): void {
  const { reply, stats } = body.job
  reply.zeroCopyTransport = 'sendfile'
  stats.responses.sendfile++
  // Pipelining: this response waits for the one before it to finish. If
  // the connection dies first, FileBody's connection watch cleans up.
  if (res.socket === null) res.once('socket', (socket: Socket) => writeHeaders(body, res, socket))
  else writeHeaders(body, res, res.socket)
}

// What of Node's ServerResponse we touch: the header it built, and the
// flag that stops it from writing that header itself.
interface ResponseInternals { _header: string | null, _headerSent: boolean }

function writeHeaders (body: FileBody, res: ServerResponse, socket: Socket): void {
  if (body.destroyed) return
  const sock = plainSocketFd(socket)
  if (sock < 0) {
    // Known only now that the queued response has its socket.
    body.continueWithWrite(res, socketFallback(socket) ?? 'inject')
    return
  }
  // Builds the header (from the headers Fastify set) without writing it.
  res.writeHead(res.statusCode)
  const handle = (socket as unknown as { _handle: StreamHandle })._handle
  if (socket.writableLength === 0 && handle.writeQueueSize === 0) {
    // Nothing of Node's is queued: the header goes out with the first
    // body bytes, from native code (MSG_MORE, then sendfile).
    firstBurst(body, res, socket, sock, (res as unknown as ResponseInternals)._header)
    return
  }
  // An earlier response's tail is still queued in Node: the header goes
  // after it through Node, and an empty write's callback says when.
  res.flushHeaders()
  socket.write('', () => burstWhenWritten(body, res, socket))
}

// Node has written what was queued before the body: the body can start.
function burstWhenWritten (body: FileBody, res: ServerResponse, socket: Socket): void {
  const fd = plainSocketFd(socket)
  if (body.destroyed || fd < 0) return
  firstBurst(body, res, socket, fd, null)
}

// warmEnd: file pages below it were found cached or just read in, and are
// not asked about again (0: nothing known yet). cold: they had to be read
// in, so the event-loop transfer reads ahead from its start.
function firstBurst (body: FileBody, res: ServerResponse, socket: Socket, sock: number, header: string | null, warmEnd = 0, cold = false): void {
  const { job } = body
  const rc = native.binding!.sendfileBurst(sock, job.fd, body.position, job.end, BURST_BUDGET, sentOut, job.lease,
    header ?? undefined, coldCheck ? warmEnd : NO_CHECK, job.lease > 0 ? addressCacheOf(socket) : undefined)
  if (rc === STATUS_COLD) {
    // Nothing sent, not even the header: the pages come in off the loop first.
    readIn(body, res, socket, sock, header, sentOut[2], sentOut[3])
    return
  }
  if (header !== null) {
    // Node must never write this header again.
    (res as unknown as ResponseInternals)._headerSent = true
    const headerSent = sentOut[1]
    if (headerSent < header.length) {
      if (rc !== -EAGAIN) {
        fail(body, socket, rc)
        return
      }
      // The socket filled up within the header: Node writes the rest.
      socket.write(header.slice(headerSent), 'latin1', () => burstWhenWritten(body, res, socket))
      return
    }
  }
  const sent = sentOut[0]
  body.position += sent
  job.stats.bytes.sendfile += sent
  if (rc === 0) {
    finish(body, res)
  } else if (rc === STATUS_LEASE_STOPPED) {
    stoppedByLease(body)
  } else if (rc === -EAGAIN) {
    continueInLoop(body, res, socket, sock, coldCheck ? sentOut[2] : NO_CHECK, cold)
  } else if (sent === 0 && body.position === job.start && refusals.has(rc)) {
    body.continueWithWrite(res, 'refused')
  } else {
    fail(body, socket, rc)
  }
}

// sendfile would read [from, from + length) from disk on the event loop: a
// pool thread reads it into the page cache first, other requests go on
// meanwhile, and the burst is tried again. body.transfer holds the read so
// that a destroyed body cancels it (no callback then).
function readIn (body: FileBody, res: ServerResponse, socket: Socket, sock: number, header: string | null, from: number, length: number): void {
  const { job } = body
  const read = native.binding!.coldRead(job.fd, from, length, (status, bytesRead) => {
    body.transfer = null
    job.stats.cold.reads++
    job.stats.cold.bytes += bytesRead
    if (status < 0) {
      fail(body, socket, status, 'pread')
      return
    }
    // Read in (or the file ended early: sendfile will report the truncation).
    // The socket's fd again: if Node closed it meanwhile, the number may
    // name something else by now.
    const fd = plainSocketFd(socket)
    if (body.destroyed || fd < 0) return
    firstBurst(body, res, socket, fd, header, from + length, true)
  })
  if (typeof read === 'number') {
    // No fd left for the read: send from the loop, as without the check.
    firstBurst(body, res, socket, sock, header, from + length)
    return
  }
  body.transfer = read
}

function continueInLoop (body: FileBody, res: ServerResponse, socket: Socket, sock: number, warmEnd: number, cold: boolean): void {
  const { job } = body
  // Node's socket timeout does not see our writes; the native send timeout
  // watches progress instead while the transfer runs.
  const nodeTimeout = socket.timeout ?? 0
  if (nodeTimeout > 0) socket.setTimeout(0)
  const transfer = native.binding!.transferStart(sock, job.fd, body.position, job.end, job.sendTimeout, job.lease, (status, sent, coldReads, coldBytes, syscall) => {
    body.transfer = null
    body.position += sent
    job.stats.bytes.sendfile += sent
    job.stats.cold.reads += coldReads
    job.stats.cold.bytes += coldBytes
    // Destroyed first (the connection closed while native code was winding
    // down, whatever status it saw): FileBody has accounted for it.
    if (status === -ECANCELED || body.destroyed) return
    if (status === 0) {
      if (nodeTimeout > 0 && !socket.destroyed) socket.setTimeout(nodeTimeout)
      finish(body, res)
    } else if (status === STATUS_LEASE_STOPPED) {
      stoppedByLease(body)
    } else {
      fail(body, socket, status, syscall)
    }
  }, warmEnd, cold ? 1 : 0)
  if (typeof transfer === 'number') {
    if (nodeTimeout > 0) socket.setTimeout(nodeTimeout)
    // No fd left for our dup of the socket: the write path needs none, so
    // the rest of the body goes that way instead of cutting the response.
    if (transfer === -EMFILE || transfer === -ENFILE) body.continueWithWrite(res, 'refused')
    else fail(body, socket, transfer)
  } else {
    body.transfer = transfer
  }
}

function finish (body: FileBody, res: ServerResponse): void {
  // Content-Length is met: end() writes nothing and keep-alive goes on.
  res.end()
  body.endAfterSendfile()
}

// The lease thread stopped the send after the grace of a break. It ends the
// connection itself: a reset for a remote peer; for a peer on this host,
// a shutdown once that peer has read what it holds (closing now could
// reset it, and a reset peer still holds our pages, out of our sight).
// Node then sees the connection end, and FileBody cleans up.
function stoppedByLease (body: FileBody): void {
  body.settled = true
  body.job.reply.log.warn({ file: body.job.filePath, sent: body.position - body.job.start },
    'fastify-zero-copy: lease broken, transfer stopped after its grace')
}

function fail (body: FileBody, socket: Socket, status: number, syscall = 'sendfile'): void {
  const { job } = body
  const { stats, reply } = job
  body.settled = true
  const progress = { file: job.filePath, sent: body.position - job.start, expected: job.end - job.start }
  if (status === STATUS_LEASE_BROKEN) {
    // The lease was past its grace when this send would have begun.
    stats.leases.aborted++
    reply.log.warn(progress, 'fastify-zero-copy: lease past its grace before this send, connection closed')
  } else if (status === STATUS_EOF) {
    // The file shrank under us: cutting the connection is the only way to
    // tell the client its body is short; we never pad it. (Without a lease,
    // bytes already queued may still read as zeros: truncation frees the
    // very pages the socket holds.)
    stats.truncations++
    // A cached open file would go on promising the old size: drop it, as
    // the write path does.
    job.release.invalidate('changed')
    reply.log.error(progress, 'fastify-zero-copy: file truncated during send, connection closed')
  } else if (status === -ETIMEDOUT) {
    stats.timeouts++
    reply.log.info(progress, 'fastify-zero-copy: client took nothing for sendTimeout, connection closed')
  } else if (status === -EPIPE || status === -ECONNRESET) {
    stats.aborts++
    reply.log.debug(progress, 'fastify-zero-copy: client went away during send')
  } else {
    stats.aborts++
    reply.log.error({ ...progress, err: systemError(status, syscall) }, 'fastify-zero-copy: send failed, connection closed')
  }
  // Fastify sees the response close and destroys the body (closing the fd).
  socket.destroy()
  body.destroy()
}
