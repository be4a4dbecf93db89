// `hostguard serve`: load the policy, then bind gRPC and HTTP. Used by main.ts and the tests.

import type { Logger } from 'pino'
import { DecisionObserver } from './check/observe.js'
import {
  DEFAULT_KUBE_TIMINGS,
  DynamicSources,
  type KubeTimings,
  sourcesOf,
} from './dynamic/sources.js'
import {
  type CompiledPolicy,
  compilePolicy,
  DEFAULT_LIMITS,
  type Limits,
} from './policy/compile.js'
import { type PolicyError, PolicyLoadError } from './policy/errors.js'
import { loadPolicyFile } from './policy/load.js'
import type { PolicySpec } from './policy/schema.js'
import { PolicyStore } from './policy/store.js'
import { watchPolicy } from './policy/watch.js'
import {
  type ConnectionLimits,
  DEFAULT_CONNECTION_LIMITS,
  startGrpc,
  stopGrpc,
} from './server/grpc.js'
import { startHttp, stopHttp } from './server/http.js'
import { createMetrics, type Metrics } from './server/metrics.js'

export interface ServeOptions {
  readonly policyFile: string
  readonly listen: string
  readonly grpcPort: number
  readonly httpPort: number
  readonly log: Logger
  readonly env?: NodeJS.ProcessEnv
  /** Reload when the policy file's directory changes (on by default). */
  readonly watch?: boolean
  /** Parsing bounds (defaults: DEFAULT_LIMITS). */
  readonly limits?: Limits
  /** Largest CheckRequest accepted, in bytes (default 1 MiB); a larger one gets RESOURCE_EXHAUSTED. */
  readonly maxRequestBytes?: number
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

export interface Running {
  readonly grpcPort: number
  readonly httpPort: number
  readonly store: PolicyStore
  readonly metrics: Metrics
  readonly dynamic: DynamicSources
  /** Reads, validates and compiles the policy file again and swaps it in if it is good. */
  reload(trigger: string): boolean
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
export const QUIET_MS = 1000
/** Part of the grace period kept for in-flight calls to finish after the drain. */
const FINISH_MS = 500

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
  const install = (policy: CompiledPolicy): void => {
    observer.prepare(policy)
    // One assignment: a request reads `store.current` once and sees exactly one policy.
    store.swap(policy)
    metrics.loadedTimestamp.set(Date.now() / 1000)
  }
  const logWarnings = (warnings: readonly PolicyError[]): void => {
    if (warnings.length > 0)
      log.warn(
        { policy: options.policyFile, warnings: warnings.map((w) => w.message) },
        'policy warnings',
      )
  }
  const limits = options.limits ?? DEFAULT_LIMITS
  let spec: PolicySpec
  let serving = false
  let grpcServing: ((serving: boolean) => void) | undefined
  const ready = (): boolean => serving && store.current !== undefined && dynamic.ready()
  const dynamic = new DynamicSources({
    log,
    metrics: metrics.dynamicSources,
    kubeconfig: options.kubeconfig,
    cacheDir: options.cacheDir,
    syncWaitMs: options.syncWaitMs ?? DEFAULT_SYNC_WAIT_MS,
    timings: options.kubeTimings ?? DEFAULT_KUBE_TIMINGS,
    // Recompiled from the spec in force, as a reload would; only the changed lists are rebuilt.
    onChange: () => install(compilePolicy(spec, limits, dynamic.addresses())),
    onReadinessChange: () => grpcServing?.(ready()),
  })
  metrics.readDynamicSyncTimes(() => dynamic.currentTimes())
  /** The policy file, with its dynamic sources started (a bad address file fails the load). */
  const load = (): { policy: CompiledPolicy; spec: PolicySpec } => {
    const next = loadPolicyFile(options.policyFile, options.env)
    dynamic.update(next)
    return { spec: next, policy: compilePolicy(next, limits, dynamic.addresses()) }
  }
  const first = load()
  spec = first.spec
  install(first.policy)
  const reload = (trigger: string): boolean => {
    try {
      const next = load()
      spec = next.spec
      install(next.policy)
      grpcServing?.(ready())
      const nextWarnings = spec.warnings
      metrics.reloads.labels('success').inc()
      logWarnings(nextWarnings)
      log.info(
        {
          trigger,
          policy: options.policyFile,
          sites: [...next.policy.sites.keys()],
          topLevel: counts(next.policy),
        },
        'policy reloaded',
      )
      return true
    } catch (err) {
      metrics.reloads.labels('failure').inc()
      const errors =
        err instanceof PolicyLoadError ? err.errors.map((e) => e.message) : [(err as Error).message]
      log.error(
        { trigger, policy: options.policyFile, errors },
        'policy reload failed; serving the last good policy',
      )
      return false
    }
  }
  const http = await startHttp(options.listen, options.httpPort, ready, metrics.registry).catch(
    (err: unknown) => {
      dynamic.stop()
      throw err
    },
  )
  const grpc = await startGrpc(
    store,
    observer,
    log,
    options.listen,
    options.grpcPort,
    options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES,
    options.connections ?? DEFAULT_CONNECTION_LIMITS,
    () => metrics.internalErrors.inc(),
  ).catch(async (err: unknown) => {
    dynamic.stop()
    await stopHttp(http)
    throw err
  })
  serving = true
  grpcServing = grpc.setServing
  grpc.setServing(ready())
  const watcher =
    options.watch === false
      ? undefined
      : watchPolicy(
          options.policyFile,
          () => reload('file change'),
          (err) =>
            log.error(
              { err, policy: options.policyFile },
              'cannot watch the policy directory; reload with SIGHUP',
            ),
        )
  log.info(
    {
      policy: options.policyFile,
      sites: [...first.policy.sites.keys()],
      topLevel: counts(first.policy),
      dynamicSources: [...sourcesOf(spec).keys()],
      listen: options.listen,
      grpcPort: grpc.port,
      httpPort: http.port,
    },
    'hostguard serving',
  )
  logWarnings(spec.warnings)
  return {
    grpcPort: grpc.port,
    httpPort: http.port,
    store,
    metrics,
    dynamic,
    reload,
    async shutdown(graceMs) {
      const began = performance.now()
      watcher?.close()
      dynamic.stop()
      serving = false
      grpc.setServing(false)
      const drainUntil = began + Math.max(0, graceMs - FINISH_MS)
      for (;;) {
        const now = performance.now()
        if (now >= drainUntil || now - Math.max(grpc.lastCallAt(), began) >= QUIET_MS) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      log.info(
        { drainedMs: Math.round(performance.now() - began) },
        'drained; finishing in-flight calls',
      )
      const left = Math.max(0, began + graceMs - performance.now())
      await Promise.all([stopGrpc(grpc, left), stopHttp(http)])
    },
    async stop() {
      watcher?.close()
      dynamic.stop()
      // Health and readiness go down first, so Envoy and Kubernetes stop sending new calls.
      serving = false
      grpc.setServing(false)
      await Promise.all([stopGrpc(grpc), stopHttp(http)])
    },
  }
}
