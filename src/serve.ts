// `hostguard serve`: load the policy, then bind gRPC and HTTP. Used by main.ts and the tests.

import type { Logger } from 'pino'
import { DecisionObserver } from './decision/observe.js'
import { DEFAULT_LIMITS, type Limits } from './decision/types.js'
import { DEFAULT_KUBE_TIMINGS, type KubeTimings } from './dynamic/kube-timings.js'
import { LivePolicy } from './live-policy.js'
import { PolicyLoader } from './policy/loader.js'
import { DEFAULT_MAX_POLICY_BYTES } from './policy/read.js'
import { PolicyStore } from './policy/store.js'
import {
  type AuthzHttpLimits,
  type AuthzHttpServer,
  DEFAULT_AUTHZ_HTTP_LIMITS,
  startAuthzHttp,
  stopAuthzHttp,
} from './server/authz-http.js'
import {
  type ConnectionLimits,
  DEFAULT_CONNECTION_LIMITS,
  type GrpcServer,
  type GrpcTransport,
} from './server/grpc.js'
import { startGrpcHttp2 } from './server/grpc-http2.js'
import { startGrpcJs } from './server/grpc-js.js'
import { type HttpServer, startHttp, stopHttp } from './server/http.js'
import { createMetrics, type Metrics } from './server/metrics.js'

export interface ServeOptions {
  readonly policyFile: string
  readonly listen: string
  readonly grpcPort: number
  readonly httpPort: number
  /** `--authz-port`: the HTTP authorization listener; off when undefined. */
  readonly authzPort?: number
  /** Time and size limits of the HTTP authorization listener (DEFAULT_AUTHZ_HTTP_LIMITS). */
  readonly authzLimits?: AuthzHttpLimits
  readonly log: Logger
  readonly env?: NodeJS.ProcessEnv
  /** Reload when a file the policy reads changes (on by default). */
  readonly watch?: boolean
  /**
   * How long a policy file written in place must keep its size, mtime and inode before a reload
   * reads it (1 s; under 10 s): a test sets a longer one, so a pause between two writes is far
   * shorter than it however slow the machine.
   */
  readonly watchSettleMs?: number
  /** `--max-policy-bytes`: the largest policy, secret or address file read (16 MiB). */
  readonly maxPolicyBytes?: number
  /** Parsing bounds (defaults: DEFAULT_LIMITS). */
  readonly limits?: Limits
  /** Largest CheckRequest accepted, in bytes (default 1 MiB); a larger one gets RESOURCE_EXHAUSTED. */
  readonly maxRequestBytes?: number
  /** What serves the gRPC port (DEFAULT_GRPC_TRANSPORT). */
  readonly grpcTransport?: GrpcTransport
  /** Streams per connection and the request and preface time limits (DEFAULT_CONNECTION_LIMITS). */
  readonly connections?: ConnectionLimits
  /** Kubeconfig file for `k8s:` sources; default KUBECONFIG, ~/.kube/config or in-cluster. */
  readonly kubeconfig?: string
  /** Where the last known addresses of `k8s:` sources are kept across restarts. */
  readonly cacheDir?: string
  /** How long readiness waits for a new dynamic source's first addresses (DEFAULT_SYNC_WAIT_MS). */
  readonly syncWaitMs?: number
  /** Kubernetes call timeouts and retry delays (DEFAULT_KUBE_TIMINGS). */
  readonly kubeTimings?: KubeTimings
}

export const DEFAULT_SYNC_WAIT_MS = 30_000
export const DEFAULT_GRPC_TRANSPORT: GrpcTransport = 'node-http2'
/** Each transport's start: a transport added to GRPC_TRANSPORTS does not compile until it is here. */
const START_GRPC: Record<GrpcTransport, typeof startGrpcHttp2> = {
  'node-http2': startGrpcHttp2,
  'grpc-js': startGrpcJs,
}

export interface Running {
  readonly grpcPort: number
  readonly httpPort: number
  /** The HTTP authorization port; undefined when it is off. */
  readonly authzPort: number | undefined
  readonly metrics: Metrics
  /**
   * Reads, validates and compiles the policy file again (in the load worker) and swaps it in if
   * it is good; resolves whether it was. One reload runs at a time: one asked for meanwhile runs
   * once after it, however many were asked for.
   */
  reload(trigger: string): Promise<boolean>
  /**
   * Graceful stop (SIGTERM): health NOT_SERVING and readiness 503 at once, so Envoy and
   * Kubernetes take this instance out; calls are still answered until none came for
   * QUIET_MS or the grace period is nearly over; then in-flight calls finish, cut at its end.
   */
  shutdown(graceMs: number): Promise<void>
  /** Stops at once (tests). */
  stop(): Promise<void>
}

export const DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024

/** A drain ends early once no call arrived for this long: the clients have moved away. */
const QUIET_MS = 1000
/** Part of the grace period kept for in-flight calls to finish after the drain. */
const FINISH_MS = 500

/** Throws PolicyLoadError before binding anything when the policy is bad. */
export async function serve(options: ServeOptions): Promise<Running> {
  const { log } = options
  const metrics = createMetrics()
  const observer = new DecisionObserver(
    metrics,
    log,
    options.authzPort === undefined ? ['grpc'] : ['grpc', 'http'],
  )
  const store = new PolicyStore()
  const policy = new LivePolicy({
    policyFile: options.policyFile,
    env: { ...(options.env ?? process.env) },
    limits: options.limits ?? DEFAULT_LIMITS,
    maxPolicyBytes: options.maxPolicyBytes ?? DEFAULT_MAX_POLICY_BYTES,
    watch: options.watch ?? true,
    watchSettleMs: options.watchSettleMs,
    kubeconfig: options.kubeconfig,
    cacheDir: options.cacheDir,
    syncWaitMs: options.syncWaitMs ?? DEFAULT_SYNC_WAIT_MS,
    kubeTimings: options.kubeTimings ?? DEFAULT_KUBE_TIMINGS,
    log,
    metrics,
    observer,
    store,
    loader: new PolicyLoader(),
  })
  const first = await policy.start()
  /** From both ports bound until shutdown begins. */
  let serving = false
  const ready = (): boolean => serving && policy.ready()
  const { grpc, http, authz } = await bind(options, store, observer, metrics, ready).catch(
    async (err: unknown) => {
      await policy.stop()
      throw err
    },
  )
  serving = true
  const publishReadiness = (): void => grpc.setServing(ready())
  policy.onReadinessChange(publishReadiness)
  publishReadiness()
  log.info(
    {
      policy: options.policyFile,
      sites: first.sites,
      topLevel: first.topLevel,
      dynamicSources: first.sources.map((s) => s.name),
      listen: options.listen,
      grpcPort: grpc.port,
      httpPort: http.port,
      authzPort: authz?.port,
    },
    'hostguard serving',
  )
  /** Health NOT_SERVING and readiness 503 first, so Envoy and Kubernetes stop sending calls. */
  const stopServing = (): Promise<void> => {
    serving = false
    grpc.setServing(false)
    return policy.stop()
  }
  return {
    grpcPort: grpc.port,
    httpPort: http.port,
    authzPort: authz?.port,
    metrics,
    reload: (trigger) => policy.reload(trigger),
    async shutdown(graceMs) {
      const began = performance.now()
      const stopped = stopServing()
      const drainUntil = began + Math.max(0, graceMs - FINISH_MS)
      for (;;) {
        const now = performance.now()
        const lastCall = Math.max(grpc.lastCallAt(), authz?.lastCallAt() ?? 0, began)
        if (now >= drainUntil || now - lastCall >= QUIET_MS) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      log.info(
        { drainedMs: Math.round(performance.now() - began) },
        'drained; finishing in-flight calls',
      )
      const left = Math.max(0, began + graceMs - performance.now())
      await Promise.all([
        grpc.stop(left),
        authz && stopAuthzHttp(authz, left),
        stopHttp(http),
        stopped,
      ])
    },
    async stop() {
      await Promise.all([
        stopServing(),
        grpc.stop(0),
        authz && stopAuthzHttp(authz),
        stopHttp(http),
      ])
    },
  }
}

/**
 * The HTTP port, then the gRPC port (its health NOT_SERVING until told otherwise), then the HTTP
 * authorization port when asked for; readiness waits for all of them.
 */
async function bind(
  options: ServeOptions,
  store: PolicyStore,
  observer: DecisionObserver,
  metrics: Metrics,
  ready: () => boolean,
): Promise<{ grpc: GrpcServer; http: HttpServer; authz: AuthzHttpServer | undefined }> {
  const http = await startHttp(options.listen, options.httpPort, ready, metrics.registry)
  const startGrpc = START_GRPC[options.grpcTransport ?? DEFAULT_GRPC_TRANSPORT]
  const grpc = await startGrpc({
    store,
    observer,
    log: options.log,
    host: options.listen,
    port: options.grpcPort,
    maxRequestBytes: options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES,
    connections: options.connections ?? DEFAULT_CONNECTION_LIMITS,
    onInternalError: () => metrics.internalErrors.inc(),
  }).catch(async (err: unknown) => {
    await stopHttp(http)
    throw err
  })
  if (options.authzPort === undefined) return { grpc, http, authz: undefined }
  const authz = await startAuthzHttp(
    store,
    observer,
    options.log,
    options.listen,
    options.authzPort,
    options.authzLimits ?? DEFAULT_AUTHZ_HTTP_LIMITS,
    () => metrics.internalErrors.inc(),
  ).catch(async (err: unknown) => {
    await Promise.all([grpc.stop(0), stopHttp(http)])
    throw err
  })
  return { grpc, http, authz }
}
