#!/usr/bin/env node
// `fastify-zero-copy [dir] [--port N] [--host H] [--no-precompressed]`:
// serves a folder in serve mode (the @fastify/static drop-in) and prints,
// for each response, the transport that carried it.
import fs from 'node:fs'
import path from 'node:path'
import Fastify from 'fastify'
import zeroCopy from '../index'

const USAGE = 'usage: fastify-zero-copy [dir] [--port N] [--host H] [--no-precompressed]\n' +
  '  dir                 the folder to serve (default: the current folder)\n' +
  '  --port N            port to listen on, 0 for any free one (default 3000)\n' +
  '  --host H            address to listen on (default 127.0.0.1)\n' +
  '  --no-precompressed  do not serve .br/.zst/.gz/.deflate siblings by Accept-Encoding'

interface CliArgs { dir: string, port: number, host: string, preCompressed: boolean }

/** The arguments, or the message saying what is wrong with them. */
export function parseArgs (argv: string[]): CliArgs | string {
  const args: CliArgs = { dir: process.cwd(), port: 3000, host: '127.0.0.1', preCompressed: true }
  let dirGiven = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--port' || arg === '--host') {
      const value = argv[++i]
      if (value === undefined || value === '') return `${arg} needs a value`
      if (arg === '--host') {
        args.host = value
        continue
      }
      if (!/^\d+$/.test(value) || Number(value) > 65535) return `--port must be an integer from 0 to 65535, got "${value}"`
      args.port = Number(value)
    } else if (arg === '--no-precompressed') {
      args.preCompressed = false
    } else if (arg.startsWith('-') && arg !== '-') {
      return `unknown option "${arg}"`
    } else if (dirGiven) {
      return `one folder only, got "${args.dir}" and "${arg}"`
    } else {
      args.dir = path.resolve(arg)
      dirGiven = true
    }
  }
  let isDirectory = false
  try { isDirectory = fs.statSync(args.dir).isDirectory() } catch {}
  if (!isDirectory) return `"${args.dir}" is not a folder`
  return args
}

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE)
    return
  }
  const args = parseArgs(argv)
  if (typeof args === 'string') {
    console.error(`fastify-zero-copy: ${args}\n${USAGE}`)
    process.exit(2)
  }
  const app = Fastify({ logger: { level: 'warn' } })
  // redirect: a folder named without its slash gets one, so relative links work.
  await app.register(zeroCopy, { root: args.dir, serve: true, index: ['index.html'], redirect: true, preCompressed: args.preCompressed })
  app.addHook('onResponse', async (request, reply) => {
    const length = reply.getHeader('content-length') ?? '-'
    // No transport: Fastify itself answered (an error, a redirect).
    const via = reply.zeroCopyTransport ?? (reply.statusCode >= 400 ? 'error' : 'fastify')
    const encoding = reply.getHeader('content-encoding')
    console.log(`${request.method} ${request.url} ${reply.statusCode} ${length} bytes${encoding !== undefined ? ` (${String(encoding)})` : ''} via ${via}`)
  })
  const address = await app.listen({ port: args.port, host: args.host })
  console.log(`fastify-zero-copy serving ${args.dir} at ${address}/ (zero-copy ${app.zeroCopy.native ? 'on' : 'off: ' + app.zeroCopy.nativeUnavailableReason})`)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  }
}

if (require.main === module) {
  main().catch((err: Error) => {
    console.error(`fastify-zero-copy: ${err.message}`)
    process.exit(1)
  })
}
