// Three of Fastify's internals. Two are read to know when a file body may
// skip the stream-payload machinery: the route's onSend hooks and the
// reply's trailers; if a Fastify version names them differently, nothing
// is skipped. The third marks a payload as an error, as Fastify does for a
// handler that throws or rejects with something that is not an Error. All
// are looked up by symbol description, once.
import type { FastifyReply } from 'fastify'

let kRouteContext: symbol | null | undefined
let kReplyTrailers: symbol | null | undefined
let kReplyIsError: symbol | null | undefined

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

/**
 * Sends what an application callback (allowedPath, onFile) threw or
 * rejected with to Fastify's error handler, as Fastify does for a route
 * handler: a non-Error too (`throw 'denied'`, `{ statusCode: 403 }`), which
 * reply.send alone would send as a 200 body.
 */
export function sendThrown (reply: FastifyReply, thrown: unknown): void {
  if (thrown instanceof Error) {
    reply.send(thrown)
    return
  }
  if (kReplyIsError === undefined) kReplyIsError = findSymbol(reply, 'fastify.reply.isError')
  if (kReplyIsError !== null) {
    (reply as unknown as Record<symbol, unknown>)[kReplyIsError] = true
    reply.send(thrown)
    return
  }
  // A Fastify without the flag: an Error that says what was thrown.
  reply.send(new Error(`non-error thrown: ${String(thrown)}`))
}
