// `hostguard serve`: load the policy, then bind gRPC and HTTP. Used by main.ts and the tests.

import type { Logger } from 'pino'
import { DecisionObserver } from './check/observe.js'
import type { CompiledPolicy } from './policy/compile.js'
import { readPolicy } from './policy/read.js'
import { PolicyStore } from './policy/store.js'
import { startGrpc, stopGrpc } from './server/grpc.js'
import { startHttp, stopHttp } from './server/http.js'
import { createMetrics, type Metrics } from './server/metrics.js'

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
  readonly metrics: Metrics
  stop(): Promise<void>
}

function counts(policy: CompiledPolicy) {
  const top = policy.top
  return {
    allowedHosts:
      top.allowedHosts.exact.size + top.allowedHosts.suffixes.size + (top.allowedHosts.any ? 1 : 0),
    trustedProxies: top.trustedProxies.size,
    allowedCidrNets: top.allowedCidrNets.size,
  }
}

/** Throws PolicyLoadError before binding anything when the policy is bad. */
export async function serve(options: ServeOptions): Promise<Running> {
  const { log } = options
  const metrics = createMetrics()
  const observer = new DecisionObserver(metrics, log)
  const store = new PolicyStore()
  const policy = readPolicy(options.policyFile, options.env)
  observer.prepare(policy)
  store.swap(policy)
  metrics.loadedTimestamp.set(Date.now() / 1000)
  let serving = false
  const http = await startHttp(
    options.listen,
    options.httpPort,
    () => serving && store.current !== undefined,
    metrics.registry,
  )
  const grpc = await startGrpc(store, observer, log, options.listen, options.grpcPort).catch(
    async (err: unknown) => {
      await stopHttp(http)
      throw err
    },
  )
  serving = true
  grpc.setServing(true)
  log.info(
    {
      policy: options.policyFile,
      sites: [...policy.sites.keys()],
      topLevel: counts(policy),
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
    metrics,
    async stop() {
      // Health and readiness go down first, so Envoy and Kubernetes stop sending new calls.
      serving = false
      grpc.setServing(false)
      await Promise.all([stopGrpc(grpc), stopHttp(http)])
    },
  }
}
