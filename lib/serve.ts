// Static-serving mode (option `serve: true`): GET and HEAD routes like
// @fastify/static's, served through the plugin's request flow.
import type { FastifyInstance } from 'fastify'
import type { ServeCore } from './serve-core'

export function registerStaticRoutes (fastify: FastifyInstance, core: ServeCore): void {
  void fastify
  void core
  throw new Error('serve: true is not implemented yet')
}
