// `k8s:nodes`: the addresses of the cluster's Nodes, from a list-then-watch informer of
// @kubernetes/client-node (one per label selector). The informer keeps its cache through a
// dropped watch (it resumes from the last resourceVersion) and relists on 410 Gone; what it does
// not do is retry after an error, so that is here, with backoff.

import {
  CoreV1Api,
  ERROR,
  KubeConfig,
  ListWatch,
  type V1Node,
  type V1NodeList,
  Watch,
} from '@kubernetes/client-node'
import { type KubeTimings, WATCH_TIMEOUT_SECONDS } from './kube-timings.js'

/** `--kubeconfig FILE`, else KUBECONFIG, ~/.kube/config or the Pod's ServiceAccount. */
export function loadKubeConfig(file: string | undefined): KubeConfig {
  const config = new KubeConfig()
  if (file === undefined) config.loadFromDefault()
  else config.loadFromFile(file)
  return config
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

export interface NodeWatchOptions {
  readonly config: KubeConfig
  readonly labelSelector: string
  readonly timings: KubeTimings
  /** After a (re)list or a watch event: read `nodes()` again. Called once per burst. */
  readonly onChange: () => void
  /** A list or watch failed; the last known nodes are kept and it retries in `retryMs`. */
  readonly onError: (err: Error, retryMs: number) => void
}

export class NodeWatch {
  readonly #options: NodeWatchOptions
  readonly #informer: ListWatch<V1Node>
  #listed = false
  #watching = false
  /** Date.now() of the last moment the nodes were known current. */
  #currentAt: number | undefined
  #failures = 0
  #retry: NodeJS.Timeout | undefined
  #scheduled = false
  #stopped = false

  constructor(options: NodeWatchOptions) {
    this.#options = options
    const api = options.config.makeApiClient(CoreV1Api)
    const selector = options.labelSelector === '' ? undefined : options.labelSelector
    const list = async (): Promise<V1NodeList> => {
      const nodes = await withTimeout(
        api.listNode(selector === undefined ? {} : { labelSelector: selector }),
        options.timings.listTimeoutMs,
        'the node list',
      )
      // The informer applies the list after this resolves, synchronously: a change scheduled
      // now runs after it, even when the list is empty and no add event fires.
      this.#listed = true
      this.#currentAt = Date.now()
      this.#schedule()
      return nodes
    }
    const watch = new Watch(options.config)
    const open = watch.watch.bind(watch)
    // Wrapped to know whether a watch is open (while it is, the nodes are current), to have the
    // API server end it in time, and to give up one that went silent past that.
    watch.watch = async (path, query, callback, done) => {
      // The informer opens a watch after a list without asking whether it was stopped meanwhile.
      if (this.#stopped) return new AbortController()
      let ended = false
      let idle: NodeJS.Timeout | undefined
      let controller: AbortController | undefined
      const arm = (): void => {
        clearTimeout(idle)
        idle = setTimeout(() => controller?.abort(), options.timings.watchIdleMs)
      }
      controller = await open(
        path,
        { ...query, allowWatchBookmarks: true, timeoutSeconds: WATCH_TIMEOUT_SECONDS },
        (phase: string, object: unknown, event: unknown) => {
          arm()
          callback(phase, object, event)
        },
        (err: unknown) => {
          ended = true
          clearTimeout(idle)
          if (this.#watching) this.#currentAt = Date.now()
          this.#watching = false
          done(err)
        },
      )
      if (this.#stopped) controller.abort()
      else if (!ended) {
        this.#watching = true
        this.#failures = 0
        arm()
      }
      return controller
    }
    this.#informer = new ListWatch('/api/v1/nodes', watch, list, false, selector)
    this.#informer.on('add', () => this.#schedule())
    this.#informer.on('update', () => this.#schedule())
    this.#informer.on('delete', () => this.#schedule())
    this.#informer.on(ERROR, (err: unknown) => this.#failed(err))
    this.#start()
  }

  /** The nodes as last listed and watched; kept through errors and outages. */
  nodes(): readonly V1Node[] {
    return this.#informer.list()
  }

  /** Whether a list has ever succeeded (an empty list counts). */
  get listed(): boolean {
    return this.#listed
  }

  /** The last moment the nodes were known current: now while a watch is open. */
  currentAt(): number | undefined {
    return this.#watching ? Date.now() : this.#currentAt
  }

  stop(): void {
    this.#stopped = true
    this.#watching = false
    clearTimeout(this.#retry)
    void this.#informer.stop()
  }

  #start(): void {
    this.#informer.start().catch((err: unknown) => this.#failed(err))
  }

  #failed(err: unknown): void {
    if (this.#stopped) return
    const { retryInitialMs, retryMaxMs } = this.#options.timings
    const delay = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.min(this.#failures, 20))
    this.#failures++
    // ±20 % so that many replicas do not retry in step after an API outage.
    const retryMs = Math.round(delay * (0.8 + 0.4 * Math.random()))
    clearTimeout(this.#retry)
    this.#retry = setTimeout(() => this.#start(), retryMs)
    this.#options.onError(err instanceof Error ? err : new Error(String(err)), retryMs)
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      if (!this.#stopped) this.#options.onChange()
    })
  }
}
