// The write-based fallback: the same status, headers and bytes as the
// sendfile path, through a read stream with backpressure (memory does not
// grow with the file). Used for inject, TLS, HTTP/2, no addon, zeroCopy:
// false, and files sendfile refuses.
import fs from 'node:fs'
import { pipeline } from 'node:stream'
import type { ServerResponse } from 'node:http'
import type { FastifyReply } from 'fastify'
import type { ZeroCopyStats } from '../types/index'

const highWaterMark = 64 * 1024

function bodyStream (fd: number, start: number, end: number): fs.ReadStream {
  // createReadStream's end is inclusive; autoClose closes the fd on end,
  // error and destroy alike.
  return fs.createReadStream('', { fd, start, end: end - 1, autoClose: true, highWaterMark })
}

/** Through Fastify's own reply.send: hooks, HTTP/2 and inject all work. */
export function sendWithWrite (reply: FastifyReply, fd: number, start: number, end: number, stats: ZeroCopyStats): void {
  const stream = bodyStream(fd, start, end)
  stream.once('end', () => {
    stats.bytes.write += end - start
  })
  stats.responses.write++
  reply.zeroCopyTransport = 'write'
  reply.send(stream)
}

/**
 * On a hijacked response: the sendfile path fell back here, perhaps after
 * sending the headers itself. `onDone` runs once, with whether all bytes went.
 */
export function writeRawBody (res: ServerResponse, fd: number, start: number, end: number,
  stats: ZeroCopyStats, onDone: (complete: boolean) => void): void {
  pipeline(bodyStream(fd, start, end), res, (err) => {
    if (err) {
      res.destroy()
      stats.aborts++
      onDone(false)
      return
    }
    stats.bytes.write += end - start
    onDone(true)
  })
}
