// `hostguard serve`: load the policy, then bind gRPC and HTTP. Used by main.ts and the tests.

import { resolve } from 'node:path'
import type { Logger } from 'pino'
import { DecisionObserver } from './check/observe.js'
import { type CompiledPolicy, DEFAULT_LIMITS, type Limits } from './check/types.js'
import { DEFAULT_KUBE_TIMINGS, type KubeTimings } from './dynamic/kube-timings.js'
import { DynamicSources } from './dynamic/sources.js'
import { type PolicyError, PolicyLoadError } from './policy/errors.js'
import { type Loaded, PolicyLoader, policyErrors } from './policy/loader.js'
import { DEFAULT_MAX_POLICY_BYTES } from './policy/read.js'
import { PolicyStore } from './policy/store.js'
import { unpackPolicy } from './policy/transfer.js'
import { type PolicyWatcher, watchFiles } from './policy/watch.js'
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
  /** Reload when a file the policy reads changes (on by default). */
  readonly watch?: boolean
  /** `--max-policy-bytes`: the largest policy, secret or address file read (16 MiB). */
  readonly maxPolicyBytes?: number
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
  const loader = new PolicyLoader()
  const loadRequest = {
    file: options.policyFile,
    env: { ...(options.env ?? process.env) },
    limits,
    maxPolicyBytes: options.maxPolicyBytes ?? DEFAULT_MAX_POLICY_BYTES,
  }
  let serving = false
  let stopped = false
  let grpcServing: ((serving: boolean) => void) | undefined
  const ready = (): boolean => serving && store.current !== undefined && dynamic.ready()
  /** Address-file sources, read by the load worker: when each was last read well. */
  const fileSources = new Map<string, { path: string; goodAt: number; failedSince?: number }>()
  const fail = (what: string) => (err: unknown) =>
    log.error({ err: (err as Error).message, policy: options.policyFile }, what)
  const dynamic = new DynamicSources({
    log,
    metrics: metrics.dynamicSources,
    kubeconfig: options.kubeconfig,
    cacheDir: options.cacheDir,
    syncWaitMs: options.syncWaitMs ?? DEFAULT_SYNC_WAIT_MS,
    timings: options.kubeTimings ?? DEFAULT_KUBE_TIMINGS,
    readsFiles: false,
    // Recompiled by the worker from the spec in force, as a reload would.
    onChange: () => {
      recompile().catch(fail('cannot recompile with the new addresses'))
    },
    onReadinessChange: () => grpcServing?.(ready()),
  })
  metrics.readDynamicSyncTimes(() => {
    const times = dynamic.currentTimes()
    for (const [name, s] of fileSources)
      times.set(name, s.failedSince === undefined ? Date.now() : s.goodAt)
    return times
  })
  let sentAddresses = dynamic.addresses()
  const recompile = async (): Promise<void> => {
    sentAddresses = dynamic.addresses()
    const reply = await loader.request({ kind: 'addresses', addresses: sentAddresses })
    if (reply.kind !== 'compiled') return
    const policy = await unpackPolicy(reply.policy)
    if (!stopped) install(policy)
  }
  const rereadFiles = async (): Promise<void> => {
    const reply = await loader.request({ kind: 'files' })
    if (reply.kind !== 'files' || stopped) return
    const now = Date.now()
    for (const { name, errors, count } of reply.failed) {
      const state = fileSources.get(name)
      if (state) state.failedSince ??= now
      metrics.dynamicSources.countError(name)
      log.error(
        { source: name, errors: policyErrors(errors).map((e) => e.message), addresses: count },
        'address file rejected; keeping its last good addresses',
      )
    }
    for (const name of reply.unchanged) {
      const state = fileSources.get(name)
      if (state) Object.assign(state, { goodAt: now, failedSince: undefined })
      log.debug({ source: name }, 'address file read; its addresses are the ones in force')
    }
    for (const { name, count } of reply.changed) {
      const state = fileSources.get(name)
      if (state) Object.assign(state, { goodAt: now, failedSince: undefined })
      metrics.dynamicSources.setAddresses(name, count)
      log.info({ source: name, addresses: count }, 'dynamic source changed')
    }
    if (reply.policy) {
      const policy = await unpackPolicy(reply.policy)
      if (!stopped) install(policy)
    }
  }
  let watcher: PolicyWatcher | undefined
  const watch = (loaded: Loaded): void => {
    if (options.watch === false || stopped) return
    watcher?.close()
    const addressFiles = new Set([...fileSources.values()].map((s) => resolve(s.path)))
    const files = new Set([resolve(options.policyFile), ...loaded.reads.map((f) => resolve(f))])
    watcher = watchFiles(
      [...files],
      (changed) => {
        // Only address files changed: read them again, as a change of a source's addresses.
        if (changed.every((f) => addressFiles.has(f)))
          rereadFiles().catch(fail('cannot read the address files'))
        else void reloadOnce('file change', false, changed)
      },
      (err) =>
        log.error(
          { err, policy: options.policyFile },
          'cannot watch the policy files; reload with SIGHUP',
        ),
    )
  }
  /** Takes a load: its dynamic sources, then the policy, then what to watch. */
  const adopt = async (loaded: Loaded): Promise<void> => {
    const wanted = new Map(loaded.sources.map((s) => [s.name, s]))
    dynamic.update(wanted)
    const counts = new Map(loaded.fileAddresses.map((f) => [f.name, f.count]))
    for (const name of fileSources.keys()) {
      if (counts.has(name)) continue
      fileSources.delete(name)
      metrics.dynamicSources.forget(name)
    }
    for (const { name, source } of loaded.sources) {
      if (source.kind !== 'file') continue
      if (!fileSources.has(name)) fileSources.set(name, { path: source.path, goodAt: Date.now() })
      metrics.dynamicSources.setAddresses(name, counts.get(name) ?? 0)
    }
    // A source started now may already have addresses (its cache): compiled in before the swap.
    if (dynamic.addresses() !== sentAddresses) await recompile()
    else install(loaded.policy)
    watch(loaded)
  }
  const first = await loader.load({ ...loadRequest, force: true }).catch(async (err: unknown) => {
    await loader.close()
    throw err
  })
  if (first === undefined) throw new Error('the first load cannot be unchanged')
  await adopt(first)
  const reloadNow = async (
    trigger: string,
    force: boolean,
    changed: readonly string[] | undefined,
  ): Promise<boolean> => {
    try {
      const next = await loader.load({ ...loadRequest, force })
      if (stopped) return false
      if (next === undefined) {
        log.debug({ trigger, changed }, 'reload skipped: the files the policy reads are unchanged')
        return true
      }
      await adopt(next)
      grpcServing?.(ready())
      metrics.reloads.labels('success').inc()
      logWarnings(next.warnings)
      log.info(
        { trigger, policy: options.policyFile, sites: next.sites, topLevel: next.topLevel },
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
  let active: Promise<boolean> | undefined
  let queued: { trigger: string; force: boolean; result: Promise<boolean> } | undefined
  /** One reload at a time; asked for during one, exactly one more runs after it. */
  const reloadOnce = (
    trigger: string,
    force: boolean,
    changed?: readonly string[],
  ): Promise<boolean> => {
    if (active === undefined) {
      active = reloadNow(trigger, force, changed).finally(() => {
        active = undefined
      })
      return active
    }
    if (queued) {
      queued.force ||= force
      return queued.result
    }
    const running = active
    const next: { trigger: string; force: boolean; result: Promise<boolean> } = {
      trigger,
      force,
      result: running.then((): Promise<boolean> => {
        queued = undefined
        return reloadOnce(next.trigger, next.force, changed)
      }),
    }
    queued = next
    return next.result
  }
  const reload = (trigger: string): Promise<boolean> => reloadOnce(trigger, true)
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
    await Promise.all([stopHttp(http), loader.close()])
    throw err
  })
  serving = true
  grpcServing = grpc.setServing
  grpc.setServing(ready())
  log.info(
    {
      policy: options.policyFile,
      sites: first.sites,
      topLevel: first.topLevel,
      dynamicSources: first.sources.map((s) => s.name),
      listen: options.listen,
      grpcPort: grpc.port,
      httpPort: http.port,
    },
    'hostguard serving',
  )
  logWarnings(first.warnings)
  return {
    grpcPort: grpc.port,
    httpPort: http.port,
    store,
    metrics,
    dynamic,
    reload,
    async shutdown(graceMs) {
      const began = performance.now()
      stopped = true
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
      await Promise.all([stopGrpc(grpc, left), stopHttp(http), loader.close()])
    },
    async stop() {
      stopped = true
      watcher?.close()
      dynamic.stop()
      // Health and readiness go down first, so Envoy and Kubernetes stop sending new calls.
      serving = false
      grpc.setServing(false)
      await Promise.all([stopGrpc(grpc), stopHttp(http), loader.close()])
    },
  }
}
