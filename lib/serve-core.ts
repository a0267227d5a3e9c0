// What the static-serving mode (lib/serve.ts) needs from the plugin's
// request flow in index.ts: open a file (through the open-file cache) and
// send an open file, with every rule sendFileZeroCopy applies.
import type { FastifyReply } from 'fastify'
import type { ResolvedOptions } from './options'
import type { OpenedFile } from './open-file'
import type { ResolvedPath } from './resolve-path'

/** An open file; respond() takes it over, otherwise release() it. */
export interface FileRef {
  readonly file: OpenedFile
  release (): void
}

export interface RespondExtras {
  /** The path whose extension gives Content-Type (a .br sibling is typed as the file it encodes). */
  typePath?: string
  /** Headers to send with the file's own (Content-Encoding, Vary); set on 304 too. */
  headers?: Record<string, string>
  /** Runs with the file's facts once it is open, before any header is set (setHeaders). */
  beforeHeaders?: (file: OpenedFile) => void
}

export type OpenablePath = Exclude<ResolvedPath, { kind: 'refused' }>

export interface ServeCore {
  /** The plugin's resolved options. */
  readonly options: ResolvedOptions
  /** Runs fn once this reply's turn on a pipelined connection has come (at once, usually). */
  whenTurn (reply: FastifyReply, fn: () => void): void
  /**
   * Opens a path (via the open-file cache). Throws a Node-shaped system
   * error (code ENOENT, ENOTDIR, EXDEV, EMFILE...). The file may be a
   * directory or another non-regular file: check file.isFile.
   */
  open (resolved: OpenablePath, options: ResolvedOptions): FileRef
  /** Sends an open file (conditionals, Range, lease, transport); takes the ref over. */
  respond (reply: FastifyReply, ref: FileRef, displayPath: string, options: ResolvedOptions, extras?: RespondExtras): void
  /** Sends the HTTP error sendFileZeroCopy sends for a failed open (404, 403, 503 + Retry-After...). */
  sendOpenError (reply: FastifyReply, err: Error): void
  /** reply.sendFileZeroCopy's whole flow. */
  sendFile (reply: FastifyReply, filePath: string, callOptions?: unknown): void
  /** Validates per-call options over the plugin's; returns them or the error. */
  callOptions (callOptions: unknown): ResolvedOptions | Error
}
