import { native } from './native'
import { processLeaseCounters } from './lease'
import type { ZeroCopyStats } from '../types/index'

export type FallbackReason = keyof ZeroCopyStats['fallbacks']

export function newStats (): ZeroCopyStats {
  return {
    responses: { sendfile: 0, write: 0, none: 0 },
    bytes: { sendfile: 0, write: 0 },
    fallbacks: { native: 0, disabled: 0, inject: 0, tls: 0, http2: 0, refused: 0, piped: 0, replaced: 0 },
    truncations: 0,
    timeouts: 0,
    aborts: 0,
    leases: {
      taken: 0,
      refused: { busy: 0, notOwner: 0, unsupported: 0, signal: 0, other: 0 },
      broken: 0,
      finishedInGrace: 0,
      aborted: 0,
      integrityUnverified: 0
    },
    cache: {
      hits: 0,
      misses: 0,
      invalidations: { lease: 0, changed: 0, replaced: 0, removed: 0 },
      evictions: 0,
      files: 0,
      fds: 0
    },
    cold: { reads: 0, bytes: 0 },
    digests: { computed: 0, bytes: 0, failed: 0 }
  }
}

/** A copy, with the process-wide lease counters read from the addon. */
export function snapshot (stats: ZeroCopyStats): ZeroCopyStats {
  const copy = structuredClone(stats)
  if (native.binding !== null) {
    const process = processLeaseCounters()
    copy.leases.broken = process.broken
    copy.leases.finishedInGrace = process.finishedInGrace
    copy.leases.aborted += process.aborted
    copy.leases.integrityUnverified = process.integrityUnverified
  }
  return copy
}
