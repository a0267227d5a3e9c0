import type { ZeroCopyStats } from '../types/index'

export type FallbackReason = keyof ZeroCopyStats['fallbacks']

export function newStats (): ZeroCopyStats {
  return {
    responses: { sendfile: 0, write: 0, none: 0 },
    bytes: { sendfile: 0, write: 0 },
    fallbacks: { native: 0, disabled: 0, inject: 0, tls: 0, http2: 0, refused: 0 },
    truncations: 0,
    timeouts: 0,
    aborts: 0
  }
}

export function snapshot (stats: ZeroCopyStats): ZeroCopyStats {
  return structuredClone(stats)
}
