// `hostguard serve`: load the policy, then bind gRPC and HTTP. Used by main.ts and the tests.

import type { Logger } from 'pino'
import { readPolicy } from './policy/read.js'
import { PolicyStore } from './policy/store.js'
import { startGrpc, stopGrpc } from './server/grpc.js'
import { startHttp, stopHttp } from './server/http.js'

export interface ServeOptions {
  readonly policyFile: string
  readonly listen: string
  readonly grpcPort: number
  readonly httpPort: number
  readonly log: Logger
  readonly env?: NodeJS.ProcessEnv
}

export interface Running {
  readonly grpcPort: number
  readonly httpPort: number
  readonly store: PolicyStore
  stop(): Promise<void>
}

/** Throws PolicyLoadError before binding anything when the policy is bad. */
export async function serve(options: ServeOptions): Promise<Running> {
  const { log } = options
  const store = new PolicyStore()
  const policy = readPolicy(options.policyFile, options.env)
  store.swap(policy)
  let grpcBound = false
  const http = await startHttp(
    options.listen,
    options.httpPort,
    () => grpcBound && store.current !== undefined,
  )
  const grpc = await startGrpc(store, log, options.listen, options.grpcPort).catch(
    async (err: unknown) => {
      await stopHttp(http)
      throw err
    },
  )
  grpcBound = true
  log.info(
    {
      policy: options.policyFile,
      sites: [...policy.sites.keys()],
      listen: options.listen,
      grpcPort: grpc.port,
      httpPort: http.port,
    },
    'hostguard serving',
  )
  return {
    grpcPort: grpc.port,
    httpPort: http.port,
    store,
    async stop() {
      grpcBound = false
      await Promise.all([stopGrpc(grpc), stopHttp(http)])
    },
  }
}
