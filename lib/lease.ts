// The JS face of native/lease.c: take a read lease for a response, say why
// one was refused, and log breaks. Policy ('auto' | 'required' | false,
// grace, integrity) is decided here; the break itself is handled natively.
import os from 'node:os'
import type { FastifyBaseLogger } from 'fastify'
import { native, ERR_FOREIGN_HANDLER } from './native'

const { EAGAIN, EACCES, EPERM, EINVAL, ENOLCK, ESTALE } = os.constants.errno

/** Why the kernel (or we) refused a lease. */
export type LeaseRefusal = 'busy' | 'notOwner' | 'unsupported' | 'signal' | 'other'

export function refusalReason (status: number): LeaseRefusal {
  switch (-status) {
    case EAGAIN: return 'busy' // someone has the file open for writing
    case EACCES:
    case EPERM: return 'notOwner' // not the file's owner, no CAP_LEASE
    case EINVAL:
    case ENOLCK: return 'unsupported' // file system without leases, or table full
    default: return status === ERR_FOREIGN_HANDLER ? 'signal' : 'other'
  }
}

/** -ESTALE from leaseAcquire: the file changed since it was described. */
export const LEASE_STALE = -ESTALE

/** Stands for leaseAcquire's answer when there is no addon to ask; no errno. */
export const LEASE_NO_ADDON = ERR_FOREIGN_HANDLER - 1

export interface LeaseCounters { broken: number, finishedInGrace: number, aborted: number, integrityUnverified: number }

const countersOut = new Float64Array(5)
export function processLeaseCounters (): LeaseCounters {
  native.binding!.leaseCounters(countersOut)
  return { broken: countersOut[1], finishedInGrace: countersOut[2], aborted: countersOut[3], integrityUnverified: countersOut[4] }
}

// Each environment (main thread, worker) hears every break once; each
// plugin instance logs the ones about files it is sending.
type BreakListener = (handle: number, kind: number, affected: number) => void
const listeners = new Set<BreakListener>()
let listening = false

export function onLeaseEvent (listener: BreakListener): () => void {
  if (!listening && native.binding !== null) {
    native.binding.onLeaseEvent((handle, kind, affected) => {
      for (const l of listeners) l(handle, kind, affected)
    })
    listening = true
  }
  listeners.add(listener)
  return () => listeners.delete(listener)
}

/** leaseState(): held, and no writer has asked for it (0); breaking (1, 2) or gone (3) otherwise. */
export const LEASE_STATE_HELD = 0

/**
 * Whether the lease behind `handle` is held with no break started. While it
 * is, no one can have written to the file since the lease was taken: every
 * open for writing and every truncate(2) breaks it first. (The one gap,
 * open(O_RDONLY | O_TRUNC), truncates without a break; a send then sees the
 * file end early and cuts the connection.)
 */
export function leaseHeld (handle: number): boolean {
  return handle > 0 && native.binding !== null && native.binding.leaseState(handle) === LEASE_STATE_HELD
}

export const LEASE_EVENT_BREAK = 1
export const LEASE_EVENT_UNVERIFIED = 2

/** Files this plugin instance holds leases on, for the logs. */
export class LeaseLog {
  private readonly files = new Map<number, { path: string, count: number }>()
  private readonly stop: () => void

  constructor (log: FastifyBaseLogger) {
    this.stop = onLeaseEvent((handle, kind, affected) => {
      const file = this.files.get(handle)
      if (file === undefined) return
      if (kind === LEASE_EVENT_BREAK) {
        log.warn({ file: file.path, transfers: affected }, 'fastify-zero-copy: lease broken: a writer opened or truncated the file')
      } else {
        log.error({ file: file.path, connections: affected },
          'fastify-zero-copy: integrity unverified: a same-host client had not read its bytes by lease-break-time')
      }
    })
  }

  using (handle: number, filePath: string): void {
    const file = this.files.get(handle)
    if (file === undefined) this.files.set(handle, { path: filePath, count: 1 })
    else file.count++
  }

  done (handle: number): void {
    const file = this.files.get(handle)
    if (file !== undefined && --file.count === 0) this.files.delete(handle)
  }

  close (): void {
    this.stop()
  }
}
