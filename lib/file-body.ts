// The body of a file response: a Readable that Fastify sends like any
// stream payload, so onSend hooks, headers and error handling stay
// Fastify's own. Piped straight into a plain HTTP/1.x socket it sends with
// sendfile(2) and never yields a chunk; piped anywhere else (a compression
// hook, TLS, HTTP/2, inject) it reads the file like fs.ReadStream: that is
// the write-based fallback, with the same status, headers and bytes.
import fs from 'node:fs'
import http from 'node:http'
import { Readable } from 'node:stream'
import type { Socket } from 'node:net'
import type { FastifyReply } from 'fastify'
import type { ZeroCopyStats } from '../types/index'
import type { FallbackReason } from './stats'
import { native } from './native'
import { sendWithSendfile } from './sendfile-transport'
import type { LeaseLog } from './lease'

// leaseState(): 2 = the grace after a break is over, 3 = the lease is gone.
const LEASE_MUST_STOP = 2

const highWaterMark = 64 * 1024

export interface FileBodyJob {
  reply: FastifyReply
  fd: number
  /** Gives the fd back (closes it, or returns it to the open-file cache). */
  release: { release (): void, invalidate (cause: 'changed'): void }
  filePath: string
  /** The file's absolute path: the body's `path`, as on @fastify/send's stream. */
  path: string
  /** File offsets of the body: [start, end). */
  start: number
  end: number
  sendTimeout: number
  stats: ZeroCopyStats
  /** Why sendfile is out of the question before any socket is seen; null if it may be used. */
  fallback: FallbackReason | null
  /** Handle of the read lease held while sending, or 0. */
  lease: number
  leaseLog: LeaseLog | null
}

// A pipelined response still queued behind another never sees its own
// 'close' if the connection dies (Node only destroys the request): its
// body must watch the connection itself, or the fd would leak. One
// listener per connection, however many responses are queued on it.
const bodiesByConnection = new WeakMap<Socket, Set<FileBody>>()

function watchConnection (socket: Socket, body: FileBody): void {
  let bodies = bodiesByConnection.get(socket)
  if (bodies === undefined) {
    const watched = new Set<FileBody>()
    bodies = watched
    bodiesByConnection.set(socket, watched)
    socket.once('close', () => {
      bodiesByConnection.delete(socket)
      for (const b of watched) b.destroy()
    })
  }
  bodies.add(body)
}

export class FileBody extends Readable {
  readonly job: FileBodyJob
  /** The file's absolute path, for onSend hooks (fs.ReadStream has it too; @fastify/static's payload is one). */
  readonly path: string
  /** Next file offset to send. */
  position: number
  /** Native transfer handle while the event loop carries the body. */
  transfer: object | null = null
  /** Set once the end is accounted for (done, truncated, timed out...). */
  settled = false
  private reading = false
  private piped = false
  /** Sent without reply.send (no onSend hook could see it): we own the response's end. */
  private direct = false
  private pendingDestroy: (() => void) | null = null
  private stallTimer: NodeJS.Timeout | null = null
  /** _read calls so far: each one is the destination taking what it had. */
  private reads = 0
  private readonly connection: Socket | null

  constructor (job: FileBodyJob) {
    super({ highWaterMark })
    this.job = job
    this.path = job.path
    this.position = job.start
    const res = job.reply.raw
    this.connection = res instanceof http.ServerResponse && res.socket === null ? job.reply.request.raw.socket ?? null : null
    if (this.connection !== null) watchConnection(this.connection, this)
    // An onSend hook may replace this payload (with a string, say): then
    // nobody pipes it, and the response's end is the last chance to close
    // the file and let its lease go.
    res.once('finish', this.onResponseEnd)
    res.once('close', this.onResponseEnd)
  }

  private readonly onResponseEnd = (): void => {
    // Nobody else watches a direct response: it ended (done, or the
    // client went away), so nothing more is sent.
    if (this.direct) {
      this.destroy()
      return
    }
    if (this.piped) return
    this.settled = true
    this.job.stats.fallbacks.replaced++
    this.destroy()
  }

  override pipe<T extends NodeJS.WritableStream> (destination: T, options?: { end?: boolean }): T {
    this.piped = true
    const res = this.job.reply.raw
    // Trailers need Fastify to end the response: not ours to end.
    if (this.job.fallback === null &&
        (destination as unknown) === res && options?.end !== false && res instanceof http.ServerResponse) {
      sendWithSendfile(this, res)
      return destination
    }
    // Into another stream (a hook's compression, say), or with trailers.
    this.useWrite(this.job.fallback ?? 'piped')
    return super.pipe(destination, options)
  }

  /**
   * Sends on a hijacked reply: the headers Fastify holds go onto the
   * response and the body straight to sendfile, without the stream-payload
   * path (two end-of-stream watchers and a pipe per response). Only when
   * sendfile can be used and no onSend hook or trailer needs the payload.
   */
  sendDirect (headers: Record<string, unknown>, status: number): void {
    const res = this.job.reply.raw as http.ServerResponse
    this.piped = true
    this.direct = true
    res.statusCode = status
    for (const name in headers) res.setHeader(name, headers[name] as string)
    sendWithSendfile(this, res)
  }

  /** Carry on with reads and writes: from the start, or after sendfile refused. */
  useWrite (reason: FallbackReason | null): void {
    const { reply, stats } = this.job
    if (reason !== null) stats.fallbacks[reason]++
    if (reply.zeroCopyTransport === 'sendfile') stats.responses.sendfile--
    reply.zeroCopyTransport = 'write'
    stats.responses.write++
    // A reader that takes nothing for sendTimeout is dropped, as on the
    // sendfile path: every _read() shows progress.
    if (this.job.sendTimeout > 0) this.stallTimer = setTimeout(this.onStall, this.job.sendTimeout).unref()
  }

  /**
   * sendTimeout measures the client: it fires only while bytes wait for
   * the client to take them. Our own read still in the pool (busy with
   * other responses) or nothing queued for the client: the wait is ours,
   * so a full period starts again.
   */
  private readonly onStall = (): void => {
    if (this.settled) return
    const queued = this.job.reply.raw.writableLength
    if (this.reading || queued === 0) {
      this.stallTimer?.refresh()
      return
    }
    // A loop turn runs its timers before its I/O: after a late turn this
    // fires although the client took bytes meanwhile. Decide after this
    // turn's I/O (nginx handles events before it expires timers); a
    // _read in between is progress and has re-armed the timer.
    const reads = this.reads
    setImmediate(() => {
      if (this.settled || this.destroyed || this.reads !== reads) return
      this.timeOut()
    })
  }

  private timeOut (): void {
    this.settled = true
    this.job.stats.timeouts++
    this.job.reply.log.info({ file: this.job.filePath, sent: this.position - this.job.start },
      'fastify-zero-copy: client took nothing for sendTimeout, connection closed')
    this.destroy(new Error('send timeout: the client took nothing'))
  }

  /** Hands the rest of the body to the read/write path (headers may be out already). */
  continueWithWrite (res: http.ServerResponse, reason: FallbackReason): void {
    this.useWrite(reason)
    super.pipe(res)
  }

  /** The sendfile path sent everything and ended the response. */
  endAfterSendfile (): void {
    this.settled = true
    // Nobody reads a direct body: let the fd and lease go now.
    if (this.direct) {
      this.destroy()
      return
    }
    this.push(null)
    this.resume() // 'end' is what tells Fastify the payload is done
  }

  override _read (size: number): void {
    this.reads++
    this.stallTimer?.refresh()
    const length = Math.min(size, this.job.end - this.position)
    if (length <= 0) {
      this.settled = true
      this.push(null)
      return
    }
    // A writer is waiting for the file and the grace is over: the bytes
    // written so far were copies, so stopping here is all it takes.
    if (this.job.lease > 0 && native.binding!.leaseState(this.job.lease) >= LEASE_MUST_STOP) {
      this.settled = true
      this.job.stats.leases.aborted++
      this.job.reply.log.warn({ file: this.job.filePath, sent: this.position - this.job.start },
        'fastify-zero-copy: lease broken, transfer stopped after its grace')
      this.destroy(new Error('file lease broken during send'))
      return
    }
    const buffer = Buffer.allocUnsafe(length)
    this.reading = true
    fs.read(this.job.fd, buffer, 0, length, this.position, (err, bytesRead) => {
      this.reading = false
      if (this.pendingDestroy !== null) {
        this.pendingDestroy()
        return
      }
      if (err) {
        this.destroy(err)
        return
      }
      if (bytesRead === 0) {
        // The file shrank under us: end the connection short; we never pad.
        this.settled = true
        this.job.stats.truncations++
        this.job.release.invalidate('changed')
        this.job.reply.log.error({ file: this.job.filePath, sent: this.position - this.job.start, expected: this.job.end - this.job.start },
          'fastify-zero-copy: file truncated during send, connection closed')
        this.destroy(new Error('file truncated during send'))
        return
      }
      this.position += bytesRead
      this.job.stats.bytes.write += bytesRead
      this.push(bytesRead < length ? buffer.subarray(0, bytesRead) : buffer)
    })
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    if (this.connection !== null) bodiesByConnection.get(this.connection)?.delete(this)
    const res = this.job.reply.raw
    res.removeListener('finish', this.onResponseEnd)
    res.removeListener('close', this.onResponseEnd)
    if (this.stallTimer !== null) clearTimeout(this.stallTimer)
    if (this.job.lease > 0) {
      native.binding!.leaseRelease(this.job.lease)
      this.job.leaseLog?.done(this.job.lease)
    }
    if (this.transfer !== null) {
      // Synchronous: once this returns, native code never touches the fd.
      native.binding!.transferCancel(this.transfer)
      this.transfer = null
    }
    if (!this.settled) {
      this.settled = true
      this.job.stats.aborts++
    }
    const release = (): void => {
      this.job.release.release()
      callback(err)
    }
    // An fs.read in the thread pool still uses the fd: close after it.
    if (this.reading) this.pendingDestroy = release
    else release()
  }
}
