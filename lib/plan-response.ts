// What a file response is, decided before a byte is sent: status, headers,
// and which bytes of the file form the body. Pure, so every RFC 9110 rule
// is unit-tested without a socket.
import type { ResolvedOptions } from './options'
import { evaluateConditionals, ifRangeAllowsRange, type ConditionalHeaders } from './conditional'
import { parseRange, contentRangeHeader, unsatisfiedRangeHeader } from './range'
import { statEtag, digestEtag } from './etag'
import { contentTypeFor } from './content-type'
import { attachmentHeader } from './content-disposition'

export interface FileFacts {
  size: number
  mtimeMs: number
  /** With etag: 'digest', the content digest of this version (lib/digest.ts); null when it could not be made. */
  digest?: string | null
  /** The Content-Encoding of a pre-compressed sibling sent for the file. */
  coding?: string
}

export interface RequestFacts {
  method: string
  headers: ConditionalHeaders & { range?: string, 'if-range'?: string }
  /** The status already set on the reply (reply.code()); 200 unless the app chose another. */
  status: number
}

export interface ResponsePlan {
  status: number
  headers: Record<string, string>
  /** File offsets of the body: [start, end). */
  start: number
  end: number
  /** False for HEAD, 304, 412, 416 and for statuses that carry no body. */
  body: boolean
}

/** Headers the app may set itself; its value wins over ours. */
export const appMayOverride = ['content-type', 'cache-control', 'content-disposition']

// A file's validators cost a few µs per response to format (Date, base
// 36): keep the last few hundred. The key is what they are made of, so a
// changed file never gets a stale entry.
const MEMO_LIMIT = 512
const validatorMemo = new Map<string, { etag: string | undefined, lastModified: string }>()

function validatorsOf (file: FileFacts): { etag: string | undefined, lastModified: string } {
  const key = `${file.size}:${file.mtimeMs}:${file.coding}:${file.digest}`
  let validators = validatorMemo.get(key)
  if (validators === undefined) {
    // A digest that could not be made (I/O error, or the file kept
    // changing while it was read) gives no tag rather than a guess.
    const etag = file.digest === undefined ? statEtag(file, file.coding) : file.digest === null ? undefined : digestEtag(file.digest)
    validators = { etag, lastModified: new Date(file.mtimeMs).toUTCString() }
    if (validatorMemo.size >= MEMO_LIMIT) validatorMemo.delete(validatorMemo.keys().next().value as string)
    validatorMemo.set(key, validators)
  }
  return validators
}

function sliceEtag (etag: string, start: number, end: number): string {
  return `${etag.slice(0, -1)}.${start.toString(36)}-${end.toString(36)}"`
}

export function planFileResponse (request: RequestFacts, file: FileFacts, filePath: string, options: ResolvedOptions): ResponsePlan {
  // A slice (options.start/end) is the whole representation: ranges,
  // lengths and validators are about it, not about the file.
  const sliceStart = Math.min(options.start, file.size)
  const sliceEnd = options.end === undefined ? file.size : Math.min(options.end + 1, file.size)
  const length = Math.max(0, sliceEnd - sliceStart)
  const sliced = sliceStart !== 0 || sliceEnd !== file.size

  const headers: Record<string, string> = {}
  let etag: string | undefined
  let lastModified: number | undefined
  const validators = options.etag || options.lastModified ? validatorsOf(file) : null
  if (options.etag !== false && validators!.etag !== undefined) {
    etag = validators!.etag
    if (sliced) etag = sliceEtag(etag, sliceStart, sliceEnd)
    headers.etag = etag
  }
  if (options.lastModified) {
    lastModified = file.mtimeMs
    headers['last-modified'] = validators!.lastModified
  }
  if (options.cacheControl !== null) headers['cache-control'] = options.cacheControl

  const method = request.method
  const noBodyStatus = request.status === 204 || request.status === 304 || (request.status >= 100 && request.status < 200)

  // An app-chosen status (an error page, say) is sent as is: conditionals
  // and ranges describe the 200 representation, not this one.
  if (request.status === 200) {
    const outcome = evaluateConditionals(method, request.headers, { etag, lastModified })
    if (outcome === 'not-modified') {
      return { status: 304, headers, start: 0, end: 0, body: false }
    }
    if (outcome === 'precondition-failed') {
      return { status: 412, headers: {}, start: 0, end: 0, body: false }
    }
  }

  if (options.contentType) headers['content-type'] = contentTypeFor(filePath)
  if (options.filename !== undefined) headers['content-disposition'] = attachmentHeader(options.filename)
  if (options.acceptRanges) headers['accept-ranges'] = 'bytes'

  let status = request.status
  let start = sliceStart
  let end = sliceEnd
  // Range is defined for GET only (RFC 9110 §14.2); HEAD shows the 200.
  if (status === 200 && options.acceptRanges && method === 'GET' && request.headers.range !== undefined &&
      ifRangeAllowsRange(request.headers['if-range'], { etag, lastModified })) {
    const range = parseRange(request.headers.range, length)
    if (range.kind === 'unsatisfiable') {
      headers['content-range'] = unsatisfiedRangeHeader(length)
      return { status: 416, headers, start: 0, end: 0, body: false }
    }
    if (range.kind === 'single') {
      status = 206
      headers['content-range'] = contentRangeHeader(range.start, range.end, length)
      start = sliceStart + range.start
      end = sliceStart + range.end + 1
    }
  }

  if (noBodyStatus) return { status, headers, start: 0, end: 0, body: false }
  headers['content-length'] = String(end - start)
  return { status, headers, start, end, body: method !== 'HEAD' && end > start }
}
