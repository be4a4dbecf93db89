// The dynamic sources a policy names, kept running across reloads: their current addresses, the
// metrics about them, their cache files and whether they let the process be ready. A change of
// addresses calls `onChange`, and the caller recompiles and swaps the policy as a reload does.

import type { Logger } from 'pino'
import { type CidrRange, sameRanges } from '../net/cidr.js'
import { readAddressFile } from '../policy/address-file.js'
import type { WantedSources } from '../policy/address-list.js'
import type { DynamicAddresses } from '../policy/compile.js'
import { PolicyLoadError } from '../policy/errors.js'
import type { AddressSource } from '../policy/schema.js'
import { watchFiles } from '../policy/watch.js'
import { loadCache, saveCache } from './cache.js'
import type { NodeWatch } from './k8s-nodes.js'
import type { KubeTimings } from './kube-timings.js'
import { nodeRanges } from './node-addresses.js'

export interface SourceMetrics {
  /** Sets `hostguard_dynamic_addresses{source}`. */
  setAddresses(source: string, count: number): void
  /** Adds to `hostguard_dynamic_source_errors_total{source}`. */
  countError(source: string): void
  /** Drops the series of a source the policy no longer names. */
  forget(source: string): void
}

export interface DynamicSourcesOptions {
  readonly log: Logger
  readonly metrics: SourceMetrics
  /** `--kubeconfig`; undefined: KUBECONFIG, ~/.kube/config or the Pod's ServiceAccount. */
  readonly kubeconfig: string | undefined
  /** `--cache-dir`: where the last known addresses of Kubernetes sources are kept. */
  readonly cacheDir: string | undefined
  /** How long a new source may go without addresses before readiness stops waiting for it. */
  readonly syncWaitMs: number
  readonly timings: KubeTimings
  /** The addresses of some source changed: recompile with `addresses()`. */
  readonly onChange: () => void
  /** `ready()` may have changed. */
  readonly onReadinessChange: () => void
  /**
   * Whether address-file sources are read and watched here (explain); serve's load worker reads
   * them instead, so that no file is read on the thread that answers Checks.
   */
  readonly readsFiles?: boolean
  /** `--max-policy-bytes` for the address files read here. */
  readonly maxPolicyBytes?: number
}

interface SourceState {
  readonly source: AddressSource
  /**
   * `syncWaitMs` has passed since the source started: set by the timer that also logs it, so
   * readiness never turns before the line that says why.
   */
  waitOver: boolean
  widens: boolean
  /** undefined until the first sync (or the cache) gives a set. */
  ranges: readonly CidrRange[] | undefined
  /** Date.now() of the last moment the set was known to match its origin. */
  currentAt: () => number | undefined
  stop: () => void
}

/** One node watch a label selector, shared by the sources that differ only in address types. */
interface SharedNodeWatch {
  /** Set once @kubernetes/client-node is loaded and the watch started. */
  current: NodeWatch | undefined
  readonly users: Set<SourceState>
}

export class DynamicSources {
  readonly #options: DynamicSourcesOptions
  readonly #states = new Map<string, SourceState>()
  readonly #nodeWatches = new Map<string, SharedNodeWatch>()
  #addresses: DynamicAddresses = new Map()

  constructor(options: DynamicSourcesOptions) {
    this.#options = options
  }

  /** The current addresses by source name, for compilePolicy; a new map after every change. */
  addresses(): DynamicAddresses {
    return this.#addresses
  }

  /**
   * Starts the sources named that are not running and stops those no longer named.
   * A new file source is read first: a bad one throws PolicyLoadError and changes nothing.
   */
  update(sources: WantedSources): void {
    const readsFiles = this.#options.readsFiles ?? true
    const wanted = readsFiles
      ? sources
      : new Map([...sources].filter(([, { source }]) => source.kind !== 'file'))
    const files = new Map<string, CidrRange[]>()
    const errors = []
    for (const [name, { source }] of wanted) {
      if (source.kind !== 'file' || this.#states.has(name)) continue
      try {
        files.set(name, readAddressFile(source.path, name, this.#readOptions()))
      } catch (err) {
        if (!(err instanceof PolicyLoadError)) throw err
        errors.push(...err.errors)
      }
    }
    if (errors.length > 0) throw new PolicyLoadError(errors)
    for (const [name, state] of this.#states) {
      if (wanted.has(name)) continue
      state.stop()
      this.#states.delete(name)
      this.#options.metrics.forget(name)
      this.#options.log.info({ source: name }, 'dynamic source no longer in the policy; stopped')
    }
    for (const [name, { source, widens }] of wanted) {
      const running = this.#states.get(name)
      if (running) {
        running.widens = widens
        continue
      }
      const state =
        source.kind === 'file'
          ? this.#startFile(source, files.get(name) as CidrRange[])
          : this.#startNodes(source)
      state.widens = widens
      this.#states.set(name, state)
      this.#options.metrics.setAddresses(name, state.ranges?.length ?? 0)
    }
    this.#publish()
  }

  /**
   * Whether every source lets the process be ready: it has addresses (synced, read or cached),
   * or it waited `syncWaitMs` for them and an empty set of it only denies more.
   */
  ready(): boolean {
    for (const state of this.#states.values()) {
      if (state.ranges !== undefined) continue
      if (state.widens || !state.waitOver) return false
    }
    return true
  }

  /** Whether every source has addresses (`explain` waits for this). */
  synced(): boolean {
    return [...this.#states.values()].every((state) => state.ranges !== undefined)
  }

  /** The last moment each source was known current, for the scrape. */
  currentTimes(): Map<string, number> {
    const out = new Map<string, number>()
    for (const [name, state] of this.#states) {
      const at = state.currentAt()
      if (at !== undefined) out.set(name, at)
    }
    return out
  }

  stop(): void {
    for (const state of this.#states.values()) state.stop()
    this.#states.clear()
  }

  #readOptions() {
    const max = this.#options.maxPolicyBytes
    return max === undefined ? {} : { maxPolicyBytes: max }
  }

  /** A new map only when a set changed: serve recompiles the policy on a new one. */
  #publish(): void {
    const next = new Map<string, readonly CidrRange[]>()
    for (const [name, state] of this.#states) if (state.ranges) next.set(name, state.ranges)
    const was = this.#addresses
    if (next.size === was.size && [...next].every(([name, ranges]) => was.get(name) === ranges))
      return
    this.#addresses = next
  }

  /** Takes a new set for `state`; false when it is the one in force. */
  #set(state: SourceState, ranges: readonly CidrRange[]): boolean {
    if (state.ranges !== undefined && sameRanges(state.ranges, ranges)) return false
    const first = state.ranges === undefined
    state.ranges = ranges
    this.#options.metrics.setAddresses(state.source.name, ranges.length)
    this.#publish()
    if (first) this.#options.onReadinessChange()
    return true
  }

  #startFile(source: AddressSource & { kind: 'file' }, ranges: CidrRange[]): SourceState {
    const { log, metrics } = this.#options
    let failedSince: number | undefined
    let goodAt = Date.now()
    const state: SourceState = {
      source,
      waitOver: true,
      widens: false,
      ranges,
      currentAt: () => (failedSince === undefined ? Date.now() : goodAt),
      stop: () => watcher.close(),
    }
    const reread = (): void => {
      try {
        const next = readAddressFile(source.path, source.name, this.#readOptions())
        failedSince = undefined
        goodAt = Date.now()
        if (this.#set(state, next)) {
          log.info({ source: source.name, addresses: next.length }, 'dynamic source changed')
          this.#options.onChange()
        }
      } catch (err) {
        if (!(err instanceof PolicyLoadError)) throw err
        failedSince ??= Date.now()
        metrics.countError(source.name)
        log.error(
          {
            source: source.name,
            errors: err.errors.map((e) => e.message),
            addresses: state.ranges?.length,
          },
          'address file rejected; keeping its last good addresses',
        )
      }
    }
    const watcher = watchFiles([source.path], reread, (err) =>
      log.error({ err, source: source.name }, 'cannot watch the address file'),
    )
    return state
  }

  #startNodes(source: AddressSource & { kind: 'k8s-nodes' }): SourceState {
    const { log, cacheDir, syncWaitMs } = this.#options
    const shared = this.#shareNodes(source.labelSelector)
    const state: SourceState = {
      source,
      waitOver: false,
      widens: false,
      ranges: cacheDir === undefined ? undefined : this.#cached(source.name, cacheDir),
      // 0 until the first sync: a source that never synced is as stale as can be.
      currentAt: () => shared.current?.currentAt() ?? 0,
      stop: () => this.#releaseNodes(source.labelSelector, state),
    }
    shared.users.add(state)
    if (shared.current?.listed) this.#nodesChanged(shared.current, state)
    setTimeout(() => {
      state.waitOver = true
      if (this.#states.get(source.name) !== state) return
      if (state.ranges === undefined) {
        log.error(
          { source: source.name, waitedMs: syncWaitMs, ready: !state.widens },
          state.widens
            ? 'no addresses from the Kubernetes API and no cache: not ready, since an empty set here could let more through'
            : 'no addresses from the Kubernetes API and no cache: ready with the source empty, which only denies more',
        )
      }
      this.#options.onReadinessChange()
    }, syncWaitMs).unref()
    return state
  }

  #cached(name: string, cacheDir: string): CidrRange[] | undefined {
    try {
      const cached = loadCache(cacheDir, name)
      if (cached)
        this.#options.log.info(
          { source: name, addresses: cached.length, cacheDir },
          'dynamic source starts from its cache until the first sync',
        )
      return cached
    } catch (err) {
      this.#options.log.error({ source: name, err: (err as Error).message }, 'cache ignored')
      this.#options.metrics.countError(name)
      return undefined
    }
  }

  #shareNodes(labelSelector: string): SharedNodeWatch {
    const existing = this.#nodeWatches.get(labelSelector)
    if (existing) return existing
    const { log, metrics, timings } = this.#options
    const shared: SharedNodeWatch = { current: undefined, users: new Set() }
    const failed = (err: Error, retryMs?: number): void => {
      for (const state of shared.users) metrics.countError(state.source.name)
      log.warn(
        {
          labelSelector,
          err: err.message,
          retryMs,
          sources: [...shared.users].map((s) => s.source.name),
        },
        'Kubernetes node watch failed; keeping the last known addresses',
      )
    }
    // Loaded on first use: a policy without Kubernetes sources never pays for the client.
    import('./k8s-nodes.js').then(
      ({ NodeWatch, loadKubeConfig }) => {
        if (this.#nodeWatches.get(labelSelector) !== shared) return
        try {
          const watch: NodeWatch = new NodeWatch({
            config: loadKubeConfig(this.#options.kubeconfig),
            labelSelector,
            timings,
            onChange: () => {
              for (const state of shared.users) this.#nodesChanged(watch, state)
            },
            onError: failed,
          })
          shared.current = watch
        } catch (err) {
          // A kubeconfig that cannot be read: reported, the sources stay as they are.
          failed(err as Error)
        }
      },
      (err: unknown) => failed(err as Error),
    )
    this.#nodeWatches.set(labelSelector, shared)
    return shared
  }

  #releaseNodes(labelSelector: string, state: SourceState): void {
    const shared = this.#nodeWatches.get(labelSelector)
    if (!shared) return
    shared.users.delete(state)
    if (shared.users.size > 0) return
    this.#nodeWatches.delete(labelSelector)
    shared.current?.stop()
  }

  #nodesChanged(watch: NodeWatch, state: SourceState): void {
    const { source } = state
    if (!watch.listed || source.kind !== 'k8s-nodes') return
    const ranges = nodeRanges(watch.nodes(), source.addressTypes, source.name)
    if (!this.#set(state, ranges)) return
    const { log, cacheDir } = this.#options
    log.info({ source: source.name, addresses: ranges.length }, 'dynamic source changed')
    if (cacheDir !== undefined) {
      try {
        saveCache(cacheDir, source.name, ranges)
      } catch (err) {
        log.error({ source: source.name, err: (err as Error).message }, 'cannot write the cache')
      }
    }
    this.#options.onChange()
  }
}
