// Two of Fastify's internals, read to know when a file body may skip the
// stream-payload machinery: the route's onSend hooks and the reply's
// trailers. Looked up by symbol description once; if a Fastify version
// names them differently, nothing is skipped.
import type { FastifyReply } from 'fastify'

let kRouteContext: symbol | null | undefined
let kReplyTrailers: symbol | null | undefined

function findSymbol (object: object, description: string): symbol | null {
  for (let o: object | null = object; o !== null; o = Object.getPrototypeOf(o) as object | null) {
    for (const s of Object.getOwnPropertySymbols(o)) if (s.description === description) return s
  }
  return null
}

/** True when no onSend hook could see or replace this reply's payload, and it has no trailers. */
export function payloadIsOursAlone (reply: FastifyReply): boolean {
  if (kRouteContext === undefined) {
    kRouteContext = findSymbol(reply, 'fastify.context')
    kReplyTrailers = findSymbol(reply, 'fastify.reply.trailers')
  }
  if (kRouteContext === null || kReplyTrailers === null) return false
  const internals = reply as unknown as Record<symbol, unknown>
  const context = internals[kRouteContext] as { onSend?: unknown } | undefined
  return context !== undefined && context.onSend === null && internals[kReplyTrailers!] === null
}
