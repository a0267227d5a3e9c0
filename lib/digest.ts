// Content digests for `etag: 'digest'`: a tag made of the file's bytes, so
// replicas agree even where their copies' mtimes differ, and a deploy that
// only touches mtimes revalidates with 304.
//
// The digest is SHA-256 over the SHA-256 of each 4 MiB chunk of the file
// (the last one shorter; an empty file has no chunk), in base64url:
//   base64url(sha256(sha256(c0) || sha256(c1) || ...))
// Hashed in chunks because the only SHA-256 Node runs on libuv's thread
// pool is WebCrypto's `subtle.digest`, which takes one whole buffer: per
// chunk, the read (fs.read) and the hash both run on the pool, the event
// loop only passes buffers along, and a job holds one chunk of memory.
// A version is hashed once: the result is kept by what identifies the
// version on this host (device, inode, size, mtime, ctime), so any
// change to the file makes a new key and an old digest is never served for
// new bytes; requests for a version being hashed wait for the same job.
import fs from 'node:fs'
import { webcrypto } from 'node:crypto'
import type { ZeroCopyStats } from '../types/index'
import { unchangedSince, type OpenedFile } from './open-file'

export const DIGEST_CHUNK = 4 * 1024 * 1024
/** Hash jobs running at once (each holds one chunk); the rest queue. */
const CONCURRENT_JOBS = 2

export class DigestStore {
  // Map order is recency: a hit moves its key to the end.
  private readonly known = new Map<string, string>()
  private readonly running = new Map<string, Promise<string | null>>()
  private readonly queue: Array<() => void> = []
  private active = 0

  constructor (private readonly limit: number, private readonly stats: ZeroCopyStats) {}

  /** This version's digest if it is known, else undefined. */
  lookup (file: OpenedFile): string | undefined {
    const key = versionKey(file)
    const digest = this.known.get(key)
    if (digest !== undefined) {
      this.known.delete(key)
      this.known.set(key, digest)
    }
    return digest
  }

  /**
   * Hashes this version from `file.fd` (which the caller keeps open until
   * the promise settles), or joins the job already hashing it. Null when no
   * digest can be given: a read failed, or the file changed while it was
   * read (then it is not this version's).
   */
  compute (file: OpenedFile): Promise<string | null> {
    const key = versionKey(file)
    let job = this.running.get(key)
    if (job === undefined) {
      job = this.whenSlotFree().then(() => this.hash(file, key))
      this.running.set(key, job)
    }
    return job
  }

  clear (): void {
    this.known.clear()
  }

  private async hash (file: OpenedFile, key: string): Promise<string | null> {
    try {
      const digest = await digestOfFd(file.fd, file.size)
      // Read while a writer changed it: the bytes were of no one version.
      if (!unchangedSince(file)) {
        this.stats.digests.failed++
        return null
      }
      this.stats.digests.computed++
      this.stats.digests.bytes += file.size
      this.known.set(key, digest)
      if (this.known.size > this.limit) this.known.delete(this.known.keys().next().value as string)
      return digest
    } catch {
      this.stats.digests.failed++
      return null
    } finally {
      this.running.delete(key)
      this.active--
      this.queue.shift()?.()
    }
  }

  private whenSlotFree (): Promise<void> {
    if (this.active < CONCURRENT_JOBS) {
      this.active++
      return Promise.resolve()
    }
    return new Promise((resolve) => this.queue.push(() => { this.active++; resolve() }))
  }
}

function versionKey (file: OpenedFile): string {
  return `${file.dev}:${file.ino}:${file.size}:${file.mtimeMs}:${file.ctimeMs}`
}

/** The digest of `size` bytes of `fd` (see the top of this file). Rejects if the file ends early. */
export async function digestOfFd (fd: number, size: number): Promise<string> {
  const chunks = Math.ceil(size / DIGEST_CHUNK)
  const chunkDigests = new Uint8Array(32 * chunks)
  // One read, then one hash, at a time: overlapping them measured slower
  // here (2 cores), and a job then holds one chunk of memory.
  const buffer = Buffer.allocUnsafe(Math.min(size, DIGEST_CHUNK))
  for (let i = 0; i < chunks; i++) {
    const length = Math.min(DIGEST_CHUNK, size - i * DIGEST_CHUNK)
    await readFully(fd, buffer, length, i * DIGEST_CHUNK)
    chunkDigests.set(new Uint8Array(await webcrypto.subtle.digest('SHA-256', buffer.subarray(0, length))), 32 * i)
  }
  const digest = await webcrypto.subtle.digest('SHA-256', chunkDigests)
  return Buffer.from(digest).toString('base64url')
}

async function readFully (fd: number, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0
  while (done < length) {
    const n = await new Promise<number>((resolve, reject) => {
      fs.read(fd, buffer, done, length - done, position + done, (err, bytesRead) => err !== null ? reject(err) : resolve(bytesRead))
    })
    if (n === 0) throw new Error('file ended before its size')
    done += n
  }
}
