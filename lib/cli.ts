#!/usr/bin/env node
// `fastify-zero-copy [dir] [--port N] [--host H]`: serves a folder with the
// plugin and prints, for each response, the transport that carried it.
import path from 'node:path'
import Fastify from 'fastify'
import zeroCopy from '../index'

interface CliArgs { dir: string, port: number, host: string }

function parseArgs (argv: string[]): CliArgs {
  const args: CliArgs = { dir: process.cwd(), port: 3000, host: '127.0.0.1' }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--port') args.port = Number(argv[++i])
    else if (arg === '--host') args.host = String(argv[++i])
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: fastify-zero-copy [dir] [--port N] [--host H]')
      process.exit(0)
    } else args.dir = path.resolve(arg)
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    console.error(`fastify-zero-copy: --port must be an integer from 0 to 65535, got "${argv.join(' ')}"`)
    process.exit(2)
  }
  return args
}

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const app = Fastify({ logger: { level: 'warn' } })
  await app.register(zeroCopy, { root: args.dir })
  app.get('/*', (request, reply) => {
    const urlPath = (request.params as { '*': string })['*']
    return reply.sendFileZeroCopy(urlPath === '' || urlPath.endsWith('/') ? urlPath + 'index.html' : urlPath)
  })
  app.addHook('onResponse', async (request, reply) => {
    const length = reply.getHeader('content-length') ?? '-'
    console.log(`${request.method} ${request.url} ${reply.statusCode} ${length} bytes via ${reply.zeroCopyTransport ?? 'error'}`)
  })
  const address = await app.listen({ port: args.port, host: args.host })
  console.log(`fastify-zero-copy serving ${args.dir} at ${address}/ (zero-copy ${app.zeroCopy.native ? 'on' : 'off: ' + app.zeroCopy.nativeUnavailableReason})`)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  }
}

main().catch((err: Error) => {
  console.error(`fastify-zero-copy: ${err.message}`)
  process.exit(1)
})
