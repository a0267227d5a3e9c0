import { FastifyPluginCallback, FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify'
import { Stats } from 'node:fs'

declare module 'fastify' {
  interface FastifyReply {
    /**
     * Sends a file: with sendfile(2) straight from the page cache to the
     * socket where that is possible (Linux, plain HTTP/1.x), otherwise with
     * a write-based stream. Returns the reply, so `return
     * reply.sendFileZeroCopy(path)` works in async and sync handlers.
     */
    sendFileZeroCopy (filePath: string, options?: fastifyZeroCopy.SendFileZeroCopyOptions): FastifyReply
    /** How this reply's body was sent, once known; null before. */
    zeroCopyTransport: fastifyZeroCopy.Transport | null
    // In serve mode (serve: true or 'decorators') with decorateReply
    // (default true), @fastify/static's
    // reply decorators, sent zero-copy. Declared as methods with its exact
    // signatures, so they merge as overloads with @fastify/static's own
    // declarations when both packages' types are installed.
    /** Sends a file under `rootPath` (default: the plugin's root, each root of an array in turn). */
    sendFile (filename: string, rootPath?: string): FastifyReply
    sendFile (filename: string, options?: fastifyZeroCopy.SendFileOptions): FastifyReply
    sendFile (filename: string, rootPath?: string, options?: fastifyZeroCopy.SendFileOptions): FastifyReply
    /** Sends a file as a download: Content-Disposition: attachment with `filename` (default: the file's name). */
    download (filepath: string, options?: fastifyZeroCopy.SendFileOptions): FastifyReply
    download (filepath: string, filename?: string): FastifyReply
    download (filepath: string, filename?: string, options?: fastifyZeroCopy.SendFileOptions): FastifyReply
  }
  interface FastifyInstance {
    zeroCopy: fastifyZeroCopy.ZeroCopyDecorator
  }
}

type FastifyZeroCopy = FastifyPluginCallback<fastifyZeroCopy.FastifyZeroCopyOptions>

declare namespace fastifyZeroCopy {
  /** 'sendfile': zero-copy; 'write': the write-based fallback; 'none': no body (HEAD, 304, 412, 416). */
  export type Transport = 'sendfile' | 'write' | 'none'

  export interface FileResponseOptions {
    /** Absolute folder; relative paths resolve under it and nothing escapes it. */
    root?: string
    /** Files and folders whose name starts with a dot: 'ignore' (404, default), 'deny' (403) or 'allow'. */
    dotfiles?: 'allow' | 'deny' | 'ignore'
    /**
     * Serve files that a symlink under root points to outside root (as
     * @fastify/static does). Default false: such files are refused with 403.
     * A path that climbs above root with `..` is refused either way.
     */
    allowSymlinksOutsideRoot?: boolean
    /**
     * Send a strong ETag. `true` (default): from the file's size and mtime,
     * the same on every replica holding a copy made with its mtimes.
     * `'digest'`: from a SHA-256 of the bytes (hashed once per file version,
     * on the thread pool), the same wherever the bytes are. `false`: none.
     */
    etag?: boolean | 'digest'
    /** Send Last-Modified. Default true. */
    lastModified?: boolean
    /** Send Cache-Control (unless the reply already has one). Default true. */
    cacheControl?: boolean
    /** max-age of Cache-Control: milliseconds, or a string such as '1d', '2h', '10s'. Default 0. */
    maxAge?: number | string
    /** Add `immutable` to Cache-Control. Default false. */
    immutable?: boolean
    /** Honour Range requests and send `Accept-Ranges: bytes`. Default true. */
    acceptRanges?: boolean
    /** Set Content-Type from the file extension (unless the reply already has one). Default true. */
    contentType?: boolean
    /** Milliseconds without progress before a stalled client is dropped, on both transports. Default 60000; 0 disables. */
    sendTimeout?: number
    /** false forces the write-based fallback. Default true. */
    zeroCopy?: boolean
    /**
     * Read lease while the file is sent. 'auto' (default): take one when the
     * kernel allows, serve without one when it refuses; 'required': refuse
     * with 503 + Retry-After when no lease can be had; false: never.
     */
    lease?: 'auto' | 'required' | false
    /** Milliseconds a transfer may go on after a writer asked for the file. Default 1000. */
    leaseGrace?: number
    /**
     * 'strict' (default): after a break, release the lease only once the bytes
     * already handed to the kernel are safe; 'fast': release right after
     * stopping (a stalled same-host reader may then see new bytes).
     */
    integrity?: 'strict' | 'fast'
  }

  export interface CacheOptions {
    /** Files described (fd, fstat, headers, lease) at most. Default 10000. */
    maxFiles?: number
    /** Of those, how many keep their fd open. Default 1000. */
    maxFds?: number
    /**
     * At most this often (ms) a cached file's path is stat()ed again, to see
     * rename-replace, unlink and changes no lease reported. Default 1000; 0 = every request.
     */
    validateMs?: number
  }

  /** Options of the plugin in both modes. */
  export interface PluginOptions extends FileResponseOptions {
    /** The open-file cache: bounds, or false to open every file per response. */
    cache?: CacheOptions | false
  }

  /** Totals of a listed folder (list.extendedFolderInfo). */
  export interface ExtendedInformation {
    /** Files directly in the folder. */
    fileCount: number
    /** Files in the folder and below. */
    totalFileCount: number
    /** Folders directly in the folder. */
    folderCount: number
    /** Folders in the folder and below. */
    totalFolderCount: number
    /** Bytes of all files in the folder and below. */
    totalSize: number
    /** Latest mtime (ms) of the files in the folder and below; 0 when none. */
    lastModified: number
  }

  /** A folder in a listing, as list.render gets it. */
  export interface ListDir {
    href: string
    name: string
    stats: Stats
    extendedInfo?: ExtendedInformation
  }

  /** A file in a listing, as list.render gets it. */
  export interface ListFile {
    href: string
    name: string
    stats: Stats
  }

  export interface ListRender {
    (dirs: ListDir[], files: ListFile[]): string
  }

  export interface ListOptions {
    /** Missing paths whose last segment is one of these list their folder ('/': a folder URL). */
    names?: string[]
    /** Add recursive totals to each folder (extendedInfo). */
    extendedFolderInfo?: boolean
    /** JSON listings: names only (default), or entries with their stats. */
    jsonFormat?: 'names' | 'extended'
  }

  export interface ListOptionsJsonFormat extends ListOptions {
    /** Default 'json'; `?format=html` picks HTML per request (then render is needed). */
    format?: 'json'
    render?: ListRender
  }

  export interface ListOptionsHtmlFormat extends ListOptions {
    format: 'html'
    render: ListRender
  }

  /**
   * Static-serving mode (serve: true, or 'decorators'): @fastify/static's
   * options, with its names and meanings. See README for the differences.
   */
  export interface ServeModeOptions {
    /** URL prefix of the routes. Default '/'. A trailing '/' is added unless prefixAvoidTrailingSlash. */
    prefix?: string
    /** Keep `prefix` exactly as given (no trailing '/'). Default false. */
    prefixAvoidTrailingSlash?: boolean
    /** Index file(s) for a URL ending in '/', in order; false for none. Default 'index.html'. */
    index?: string | string[] | false
    /** Redirect a folder URL without its trailing '/' (301). Default false: serve its index, or 404. */
    redirect?: boolean
    /** Extensions (without the dot) tried, in order, for a missing path that has none. */
    extensions?: string | string[]
    /** Called before the file's headers are sent, with the file's path and fs.Stats (of the open fd). */
    setHeaders?: (reply: FastifyReply, path: string, stat: Stats) => void
    /** false sends the request to the 404 handler. Called with the requested path, then with the final one (index, extension). */
    allowedPath?: (pathName: string, root: string | undefined, request: FastifyRequest) => boolean
    /** Serve .br / .zst / .gz / .deflate siblings by Accept-Encoding (equal q: br, zstd, gzip, deflate), with Content-Encoding and Vary. Default false. */
    preCompressed?: boolean
    /** Decorate reply.sendFile and reply.download. Default true. */
    decorateReply?: boolean
    /** schema.hide of the routes (for @fastify/swagger). Default true. */
    schemaHide?: boolean
    /** Route constraints of the routes. */
    constraints?: RouteShorthandOptions['constraints']
    /** Log level of the routes. */
    logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
    /** false: one route per file found under root at registration, instead of a wildcard route. Default true. */
    wildcard?: boolean
    /** With wildcard: false, also register routes for files and folders whose name starts with a dot. Default false. */
    serveDotFiles?: boolean
    /** With wildcard: false, glob patterns (relative to root) of files not to register, as glob's `ignore`. */
    globIgnore?: string | string[]
    /** Directory listings (JSON, or HTML from render). Needs a single root. Default off. */
    list?: boolean | ListOptionsJsonFormat | ListOptionsHtmlFormat
    /** Called with the file about to be sent (absolute path, fs.Stats), after allowedPath; awaited; a throw goes to the error handler. */
    onFile?: (path: string, stat: Stats) => void | Promise<void>
    /** Log no warning at registration (the only one: the native addon is missing). Default false. */
    suppressWarning?: boolean
  }

  /** serve-mode options are `never` without serve: true. */
  type WithoutServeMode = { [K in keyof ServeModeOptions]?: never }

  export type FastifyZeroCopyOptions =
    | (PluginOptions & WithoutServeMode & {
      /** Register GET and HEAD routes serving `root`, like @fastify/static. Default false. */
      serve?: false
    })
    | (Omit<PluginOptions, 'root'> & ServeModeOptions & {
      serve: true
      /** The folder to serve, or several, searched in order ("first found, first served"). */
      root: string | string[]
    })
    | (Omit<PluginOptions, 'root'> & ServeModeOptions & {
      /** reply.sendFile and reply.download without routes (@fastify/static's serve: false). */
      serve: 'decorators'
      /** The folder(s) sendFile looks in; without one, sendFile takes absolute paths only. */
      root?: string | string[]
    })

  /** Per-call options of reply.sendFile and reply.download (as @fastify/static's SendOptions). */
  export interface SendFileOptions extends FileResponseOptions {
    index?: string | string[] | false
    extensions?: string | string[]
    /** Accepted for @fastify/static compatibility; it has no effect on a single file (as there). */
    serveDotFiles?: boolean
    /** Replaces the plugin's onFile for this call. */
    onFile?: (path: string, stat: Stats) => void | Promise<void>
  }

  export interface SendFileZeroCopyOptions extends FileResponseOptions {
    /** First byte of the file to serve (inclusive). Default 0. */
    start?: number
    /** Last byte of the file to serve (inclusive). Default: the end of the file. */
    end?: number
    /** Send `Content-Disposition: attachment` with this file name. */
    filename?: string
  }

  export interface ZeroCopyStats {
    responses: { sendfile: number, write: number, none: number }
    bytes: { sendfile: number, write: number }
    /**
     * Why responses went through the write-based fallback: no addon, zeroCopy
     * false, inject, TLS, HTTP/2, sendfile refused the file, or the body was
     * piped into another stream by an onSend hook (or with trailers).
     * `replaced`: an onSend hook replaced the body (no file bytes sent).
     */
    fallbacks: { native: number, disabled: number, inject: number, tls: number, http2: number, refused: number, piped: number, replaced: number }
    /** The file ended before Content-Length: the connection was cut. */
    truncations: number
    /** Clients dropped after `sendTimeout` without progress. */
    timeouts: number
    /** Connections that ended before the body was sent. */
    aborts: number
    leases: {
      /** Responses sent under a read lease. */
      taken: number
      /** Responses sent without one, by why the lease was refused. */
      refused: { busy: number, notOwner: number, unsupported: number, signal: number, other: number }
      /** Process-wide: leases a writer broke. */
      broken: number
      /** Process-wide: breaks whose transfers all ended within the grace. */
      finishedInGrace: number
      /** Process-wide: sendfile transfers stopped at the end of a grace; plus this instance's fallback reads stopped and sends that found the lease already past its grace. */
      aborted: number
      /** Process-wide: leases released by the deadline before a same-host reader had read its bytes. */
      integrityUnverified: number
    }
    /** The open-file cache (option `cache`). */
    cache: {
      /** Responses that used a cached open file: no open, fstat or close. */
      hits: number
      /** Responses that had to open their file. */
      misses: number
      /**
       * Entries dropped because the file changed: `lease` a writer broke the
       * lease; `changed` same file, other size or mtime; `replaced` the path
       * now names another file (rename-replace); `removed` the path is gone.
       */
      invalidations: { lease: number, changed: number, replaced: number, removed: number }
      /** Entries dropped to stay within maxFiles/maxFds, or to free fds on EMFILE. */
      evictions: number
      /** Entries held now, and how many of them keep an open fd. */
      files: number
      fds: number
    }
    /** File ranges not in the page cache, read in on the thread pool before sendfile. */
    cold: { reads: number, bytes: number }
    /**
     * Content digests made for `etag: 'digest'` (each file version once):
     * how many, the bytes hashed, and how many could not be made (a read
     * failed, or the file changed while it was read).
     */
    digests: { computed: number, bytes: number, failed: number }
  }

  export interface ZeroCopyDecorator {
    /** A snapshot of the counters of this plugin instance. */
    stats (): ZeroCopyStats
    /** Whether the native addon is loaded (zero-copy possible at all). */
    readonly native: boolean
    /** Why the native addon is not used, when it is not. */
    readonly nativeUnavailableReason: string | null
    /**
     * Whether files beneath `root` are opened with openat2(RESOLVE_BENEATH).
     * false: openat2 is missing or blocked here (or FASTIFY_ZERO_COPY_OPENAT2=0),
     * and the addon walks the path one name at a time with the same rules.
     */
    readonly openat2: boolean
    /** Why openat2 is not used, when it is not. */
    readonly openat2UnavailableReason: string | null
  }

  export const zeroCopy: FastifyZeroCopy
  export { zeroCopy as default }
}

declare function fastifyZeroCopy (...params: Parameters<FastifyZeroCopy>): ReturnType<FastifyZeroCopy>

export = fastifyZeroCopy
