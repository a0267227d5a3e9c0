// The zero-copy path: headers through Node, body with sendfile(2) from the
// page cache straight into the socket. Runs on a hijacked reply.
import os from 'node:os'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyReply } from 'fastify'
import type { ZeroCopyStats } from '../types/index'
import { native, STATUS_EOF, systemError } from './native'
import { closeFile, type OpenedFile } from './open-file'
import { writeRawBody } from './write-transport'

const { EAGAIN, ECANCELED, ETIMEDOUT, EPIPE, ECONNRESET, EINVAL, ENOSYS, EOPNOTSUPP, ENOTSOCK, EXDEV } = os.constants.errno

// nginx's sendfile_max_chunk default: the first, synchronous burst stops
// here so one fast client cannot hold the event loop.
const BURST_BUDGET = 2 * 1024 * 1024

// sendfile errors that mean "this file/socket pair cannot do sendfile":
// before the first byte, the write-based path takes over (libuv's rule).
const refusals = new Set([-EINVAL, -ENOSYS, -EOPNOTSUPP, -ENOTSOCK, -EXDEV])

const sentOut = new Float64Array(1)

interface StreamHandle { fd?: number, writeQueueSize?: number }

/** The kernel fd of a plain TCP/pipe socket, or -1 (inject, TLS, none). */
export function plainSocketFd (socket: Socket | null): number {
  if (socket === null || (socket as { encrypted?: boolean }).encrypted === true) return -1
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle
  return typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : -1
}

export interface SendfileJob {
  reply: FastifyReply
  status: number
  file: OpenedFile
  filePath: string
  start: number
  end: number
  sendTimeout: number
  stats: ZeroCopyStats
}

export function sendWithSendfile (job: SendfileJob): void {
  const { reply } = job
  reply.hijack()
  reply.zeroCopyTransport = 'sendfile'
  job.stats.responses.sendfile++
  const res = reply.raw
  if (res.socket !== null) {
    writeHeaders(job, res, res.socket)
    return
  }
  // Pipelining: this response waits for the one before it to finish.
  const onClose = (): void => {
    job.stats.aborts++
    closeFile(job.file.fd)
  }
  res.once('close', onClose)
  res.once('socket', (socket: Socket) => {
    res.removeListener('close', onClose)
    writeHeaders(job, res, socket)
  })
}

function writeHeaders (job: SendfileJob, res: ServerResponse, socket: Socket): void {
  if (socket.destroyed) {
    job.stats.aborts++
    closeFile(job.file.fd)
    return
  }
  const headers = job.reply.getHeaders() as OutgoingHttpHeaders
  const sock = plainSocketFd(socket)
  if (sock < 0) {
    // Only reachable when the socket arrived later than the decision.
    res.writeHead(job.status, headers)
    fallBack(job, res, job.start)
    return
  }
  // Cork: the header waits in the kernel for the first body bytes, so small
  // files leave in one segment (nginx's tcp_nopush).
  native.binding!.setCork(sock, 1)
  res.writeHead(job.status, headers)
  res.flushHeaders()
  const handle = (socket as unknown as { _handle: StreamHandle })._handle
  if (socket.writableLength === 0 && handle.writeQueueSize === 0) {
    firstBurst(job, res, socket, sock)
    return
  }
  // The header (or an earlier response's tail) is still queued in Node:
  // an empty write's callback runs once everything before it is written.
  socket.write('', () => {
    const fd = plainSocketFd(socket)
    if (socket.destroyed || fd < 0) {
      job.stats.aborts++
      closeFile(job.file.fd)
      return
    }
    firstBurst(job, res, socket, fd)
  })
}

function firstBurst (job: SendfileJob, res: ServerResponse, socket: Socket, sock: number): void {
  const binding = native.binding!
  const rc = binding.sendfileBurst(sock, job.file.fd, job.start, job.end, BURST_BUDGET, sentOut)
  binding.setCork(sock, 0)
  const offset = job.start + sentOut[0]
  if (rc === 0) {
    finish(job, res, offset - job.start)
  } else if (rc === -EAGAIN) {
    continueInLoop(job, res, socket, sock, offset)
  } else if (offset === job.start && refusals.has(rc)) {
    job.stats.fallbacks.refused++
    job.stats.responses.sendfile--
    fallBack(job, res, offset)
  } else {
    fail(job, socket, rc, offset - job.start)
  }
}

function continueInLoop (job: SendfileJob, res: ServerResponse, socket: Socket, sock: number, offset: number): void {
  const binding = native.binding!
  // Node's socket timeout does not see our writes; the native send timeout
  // watches progress instead while the transfer runs.
  const nodeTimeout = socket.timeout ?? 0
  if (nodeTimeout > 0) socket.setTimeout(0)
  const sentBefore = offset - job.start
  const onSocketClose = (): void => binding.transferCancel(transfer as object)
  const transfer = binding.transferStart(sock, job.file.fd, offset, job.end, job.sendTimeout, (status, sent) => {
    socket.removeListener('close', onSocketClose)
    if (status === 0) {
      if (nodeTimeout > 0 && !socket.destroyed) socket.setTimeout(nodeTimeout)
      finish(job, res, sentBefore + sent)
    } else {
      fail(job, socket, status, sentBefore + sent)
    }
  })
  if (typeof transfer === 'number') {
    fail(job, socket, transfer, sentBefore)
    return
  }
  socket.once('close', onSocketClose)
}

function finish (job: SendfileJob, res: ServerResponse, bytes: number): void {
  job.stats.bytes.sendfile += bytes
  closeFile(job.file.fd)
  // Content-Length is met: end() writes nothing and keep-alive goes on.
  res.end()
}

function fallBack (job: SendfileJob, res: ServerResponse, offset: number): void {
  job.reply.zeroCopyTransport = 'write'
  job.stats.responses.write++
  writeRawBody(res, job.file.fd, offset, job.end, job.stats, () => {})
}

function fail (job: SendfileJob, socket: Socket, status: number, bytes: number): void {
  const { stats, reply } = job
  stats.bytes.sendfile += bytes
  closeFile(job.file.fd)
  const sent = { file: job.filePath, sent: bytes, expected: job.end - job.start }
  if (status === STATUS_EOF) {
    // The file shrank under us: cutting the connection is the only way to
    // tell the client its body is short (never pad it).
    stats.truncations++
    reply.log.error(sent, 'fastify-zero-copy: file truncated during send, connection closed')
  } else if (status === -ETIMEDOUT) {
    stats.timeouts++
    reply.log.info(sent, 'fastify-zero-copy: client took nothing for sendTimeout, connection closed')
  } else if (status === -ECANCELED || status === -EPIPE || status === -ECONNRESET) {
    stats.aborts++
    reply.log.debug(sent, 'fastify-zero-copy: client went away during send')
  } else {
    stats.aborts++
    reply.log.error({ ...sent, err: systemError(status, 'sendfile') }, 'fastify-zero-copy: send failed, connection closed')
  }
  socket.destroy()
}
