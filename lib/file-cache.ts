// The open-file cache: per file, the open fd, its fstat and the headers of
// its plain 200, so a hot file costs no open, fstat, close or header
// formatting per response (nginx's open_file_cache, with stronger
// freshness). An entry is dropped
//  - when the kernel breaks the file's lease (a writer opened it, or it
//    was truncated): at once, from the lease thread's event;
//  - when a lease cannot be taken on the cached fd because the file changed
//    under it (same inode, other size or mtime) or is open for writing;
//  - when the fstat of its fd, done on every hit that finds no lease held,
//    shows another size, mtime or ctime: an in-place write is seen by the
//    next response, whether or not a lease was held when it happened (a
//    lease is held only while bodies are sent and shortly after);
//  - when a stat(path), done at most every `validateMs`, shows another file
//    at the path (rename-replace) or none (unlink).
// The last rule is the freshness bound for what the fd cannot see.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { ZeroCopyStats } from '../types/index'
import type { CacheOptions } from './options'
import type { FileRef, OpenablePath } from './serve-core'
import { openFile, closeFile, unchangedSince, sameVersion, type OpenedFile, type RootDirectories } from './open-file'
import { onLeaseEvent, leaseHeld, LEASE_EVENT_BREAK } from './lease'
import { native } from './native'

export type InvalidationCause = keyof ZeroCopyStats['cache']['invalidations']

/** Headers of a plain 200 (no conditional, no Range), per options object. */
export interface PlainHeaders { options: object, typePath: string, headers: Record<string, string> }

interface Entry {
  readonly key: string
  /** Where to stat() the file again. */
  readonly statPath: string
  file: OpenedFile
  /** Responses using the fd now. */
  refs: number
  /** False once dropped from the map: the fd closes with the last response. */
  listed: boolean
  validatedAt: number
  /** The file's lease while one is held (a handle shared by its responses). */
  lease: number
  plain: PlainHeaders | null
}

const { EMFILE, ENFILE } = os.constants.errno

/** A file a response uses; `entry` when it came from (or went into) the cache. */
export class OpenFileRef implements FileRef {
  private released = false
  constructor (
    readonly file: OpenedFile,
    readonly resolved: OpenablePath,
    readonly symlinksAnywhere: boolean,
    private readonly cache: FileCache,
    readonly entry: Entry | null,
    /** True when this response found the fd open in the cache. */
    readonly hit: boolean
  ) {}

  release (): void {
    if (this.released) return
    this.released = true
    this.cache.release(this)
  }

  /** The plain-200 headers cached for these options, if any. */
  plainHeaders (options: object, typePath: string): Record<string, string> | null {
    const plain = this.entry?.plain
    return plain != null && plain.options === options && plain.typePath === typePath ? plain.headers : null
  }

  rememberPlainHeaders (options: object, typePath: string, headers: Record<string, string>): void {
    if (this.entry !== null && this.entry.listed) this.entry.plain = { options, typePath, headers }
  }

  /** The lease this response took, so a break finds the entry. */
  leaseTaken (handle: number): void {
    if (this.entry !== null && this.entry.listed) this.cache.linkLease(this.entry, handle)
  }

  /** A writer has the file open: its description may change any moment, so it is not kept. */
  forget (): void {
    if (this.entry !== null) this.cache.drop(this.entry, 'none')
  }

  /** The cached description is wrong (the lease said so): drop it. */
  invalidate (cause: InvalidationCause): void {
    if (this.entry !== null) this.cache.drop(this.entry, cause)
  }
}

export class FileCache {
  // Map order is recency: a hit moves its entry to the end.
  private readonly entries = new Map<string, Entry>()
  private readonly byLease = new Map<number, Entry>()
  private fds = 0
  /** maxFds, lowered after EMFILE so the cache gives fds back to requests. */
  private fdLimit: number
  private readonly stopListening: () => void

  constructor (
    private readonly limits: CacheOptions | false,
    private readonly roots: RootDirectories,
    private readonly stats: ZeroCopyStats
  ) {
    // Never more than an eighth of the process's fd limit: sockets, their
    // dups and leases need fds too, and some places that run out of them
    // (libuv's accept) cannot ask the cache to give some back.
    this.fdLimit = limits === false ? 0 : Math.min(limits.maxFds, Math.floor(openFileLimit() / 8))
    this.stopListening = limits !== false && native.binding !== null
      ? onLeaseEvent((handle, kind) => {
        if (kind !== LEASE_EVENT_BREAK) return
        const entry = this.byLease.get(handle)
        if (entry !== undefined) this.drop(entry, 'lease')
      })
      : () => {}
  }

  /** Opens (or finds open) the file at `resolved`. Throws Node-shaped system errors. */
  open (resolved: OpenablePath, symlinksAnywhere: boolean): OpenFileRef {
    if (this.limits === false) return this.openUncached(resolved, symlinksAnywhere)
    const key = keyOf(resolved, symlinksAnywhere)
    let entry = this.entries.get(key)
    if (entry !== undefined && !this.stillValid(entry)) entry = undefined
    // Under a lease held since its fstat, the file cannot have changed: the
    // fstat (about 1.6 µs on this VM, a fifth of that under a lease check)
    // is needed only when no lease is held.
    if (entry !== undefined && entry.file.fd >= 0 && !leaseHeld(entry.lease) && !unchangedSince(entry.file)) {
      this.drop(entry, 'changed')
      entry = undefined
    }
    if (entry !== undefined && entry.file.fd >= 0) {
      this.stats.cache.hits++
      entry.refs++
      this.entries.delete(key)
      this.entries.set(key, entry)
      return new OpenFileRef(entry.file, resolved, symlinksAnywhere, this, entry, true)
    }

    const file = this.openRetryingEMFILE(resolved, symlinksAnywhere)
    this.stats.cache.misses++
    if (!file.isFile) {
      // A folder (or a device...) now where a file was described.
      if (entry !== undefined) this.drop(entry, 'replaced')
      return new OpenFileRef(file, resolved, symlinksAnywhere, this, null, false)
    }
    if (entry !== undefined) {
      // Described, but its fd was given back: the same file keeps its headers.
      if (sameFile(entry.file, file) && sameVersion(entry.file, file)) {
        entry.file = file
      } else {
        this.drop(entry, sameFile(entry.file, file) ? 'changed' : 'replaced')
        entry = undefined
      }
    }
    if (entry === undefined) {
      entry = {
        key,
        statPath: resolved.kind === 'beneath' ? path.join(resolved.root, resolved.relative) : resolved.path,
        file,
        refs: 0,
        listed: true,
        validatedAt: Date.now(),
        lease: 0,
        plain: null
      }
    } else {
      this.entries.delete(key)
    }
    entry.refs++
    this.entries.set(key, entry)
    this.fds++
    this.trim()
    return new OpenFileRef(file, resolved, symlinksAnywhere, this, entry, false)
  }

  release (ref: OpenFileRef): void {
    const entry = ref.entry
    if (entry === null) {
      closeFile(ref.file.fd)
      return
    }
    if (--entry.refs > 0) return
    if (!entry.listed) {
      this.closeFd(entry)
      return
    }
    this.trim()
  }

  linkLease (entry: Entry, handle: number): void {
    if (entry.lease === handle) return
    if (entry.lease !== 0 && this.byLease.get(entry.lease) === entry) this.byLease.delete(entry.lease)
    entry.lease = handle
    this.byLease.set(handle, entry)
  }

  /** cause: why (counted as an invalidation), null (an eviction), 'none' (not counted). */
  drop (entry: Entry, cause: InvalidationCause | null | 'none'): void {
    if (!entry.listed) return
    entry.listed = false
    entry.plain = null
    this.entries.delete(entry.key)
    if (this.byLease.get(entry.lease) === entry) this.byLease.delete(entry.lease)
    if (cause === null) this.stats.cache.evictions++
    else if (cause !== 'none') this.stats.cache.invalidations[cause]++
    if (entry.refs === 0) this.closeFd(entry)
    this.stats.cache.files = this.entries.size
  }

  closeAll (): void {
    this.stopListening()
    for (const entry of [...this.entries.values()]) {
      entry.listed = false
      this.entries.delete(entry.key)
      if (entry.refs === 0) this.closeFd(entry)
    }
    this.byLease.clear()
    this.stats.cache.files = 0
  }

  private openUncached (resolved: OpenablePath, symlinksAnywhere: boolean): OpenFileRef {
    const file = openFile(resolved, this.roots, symlinksAnywhere)
    this.stats.cache.misses++
    return new OpenFileRef(file, resolved, symlinksAnywhere, this, null, false)
  }

  // At most every validateMs: does the path still name this file, unchanged?
  private stillValid (entry: Entry): boolean {
    const limits = this.limits as CacheOptions
    const now = Date.now()
    if (now - entry.validatedAt < limits.validateMs && limits.validateMs > 0) return true
    let cause: InvalidationCause | null = null
    try {
      const st = fs.statSync(entry.statPath, { throwIfNoEntry: false })
      if (st === undefined) cause = 'removed'
      else if (st.ino !== entry.file.ino || st.dev !== entry.file.dev) cause = 'replaced'
      else if (!sameVersion(st, entry.file)) cause = 'changed'
    } catch {
      cause = 'removed' // ENOTDIR, EACCES...: the open will say what it is
    }
    if (cause !== null) {
      this.drop(entry, cause)
      return false
    }
    entry.validatedAt = now
    return true
  }

  // Too many open files: the cache's idle fds go first, so requests keep
  // being served; the cache then stays smaller.
  private openRetryingEMFILE (resolved: OpenablePath, symlinksAnywhere: boolean): OpenedFile {
    try {
      return openFile(resolved, this.roots, symlinksAnywhere)
    } catch (err) {
      const errno = (err as { errno?: number }).errno
      if ((errno !== -EMFILE && errno !== -ENFILE) || this.fds === 0) throw err
      this.fdLimit = Math.floor(this.fds / 2)
      this.trim()
      return openFile(resolved, this.roots, symlinksAnywhere)
    }
  }

  // Least recently used first; entries in use are skipped (their fd is busy).
  private trim (): void {
    const limits = this.limits as CacheOptions
    if (this.entries.size <= limits.maxFiles && this.fds <= this.fdLimit) {
      this.publishCounts()
      return
    }
    for (const entry of this.entries.values()) {
      if (this.entries.size <= limits.maxFiles && this.fds <= this.fdLimit) break
      if (entry.refs > 0) continue
      if (this.entries.size > limits.maxFiles) this.drop(entry, null)
      else if (entry.file.fd >= 0) {
        this.closeFd(entry)
        this.stats.cache.evictions++
      }
    }
    this.publishCounts()
  }

  private closeFd (entry: Entry): void {
    if (entry.file.fd < 0) return
    closeFile(entry.file.fd)
    entry.file = { ...entry.file, fd: -1 }
    this.fds--
    this.stats.cache.fds = this.fds
  }

  private publishCounts (): void {
    this.stats.cache.files = this.entries.size
    this.stats.cache.fds = this.fds
  }
}

/** The soft RLIMIT_NOFILE (Linux: /proc/self/limits), or Infinity when unknown. */
function openFileLimit (): number {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
    const soft = Number(line?.split(/\s+/)[3])
    return Number.isFinite(soft) && soft > 0 ? soft : Infinity
  } catch {
    return Infinity
  }
}

function keyOf (resolved: OpenablePath, symlinksAnywhere: boolean): string {
  const where = resolved.kind === 'beneath' ? `${resolved.root}\0${resolved.relative}` : `\0${resolved.path}`
  return symlinksAnywhere ? where + '\0s' : where
}

function sameFile (a: OpenedFile, b: OpenedFile): boolean {
  return a.ino === b.ino && a.dev === b.dev
}
