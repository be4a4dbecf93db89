// The policy in force and what it is made from. One load goes, in this order: the load worker
// reads, validates and compiles the policy file; the dynamic sources it names are started (and
// those it no longer names stopped); if a source already has addresses (its cache), the worker
// compiles them in; the result is swapped into the store; the files the load read are watched.
// Between loads the same object recompiles when a dynamic source's addresses change and reads
// the address files again when only they changed.

import { resolve } from 'node:path'
import type { Logger } from 'pino'
import type { DecisionObserver } from './decision/observe.js'
import type { CompiledPolicy, Limits } from './decision/types.js'
import type { KubeTimings } from './dynamic/kube-timings.js'
import { DynamicSources } from './dynamic/sources.js'
import type { DynamicAddresses } from './policy/compile.js'
import { type PolicyError, PolicyLoadError } from './policy/errors.js'
import { type Loaded, type LoadRequest, type PolicyLoader, policyErrors } from './policy/loader.js'
import type { PolicyStore } from './policy/store.js'
import { unpackPolicy } from './policy/transfer.js'
import { type PolicyWatcher, watchFiles } from './policy/watch.js'
import type { Metrics } from './server/metrics.js'

export interface LivePolicyOptions {
  readonly policyFile: string
  readonly env: NodeJS.ProcessEnv
  readonly limits: Limits
  readonly maxPolicyBytes: number
  /** Reload when a file the policy reads changes. */
  readonly watch: boolean
  /** How long a policy file written in place must stay unchanged before it is read (tests). */
  readonly watchSettleMs: number | undefined
  readonly kubeconfig: string | undefined
  readonly cacheDir: string | undefined
  readonly syncWaitMs: number
  readonly kubeTimings: KubeTimings
  readonly log: Logger
  readonly metrics: Metrics
  readonly observer: DecisionObserver
  /** Where each policy is swapped in; the Check handler reads it. */
  readonly store: PolicyStore
  /** The load worker (a new PolicyLoader); stop() closes it. */
  readonly loader: PolicyLoader
}

/** An address-file source (read by the load worker): when it was last read well. */
interface FileSource {
  readonly path: string
  goodAt: number
  failedSince: number | undefined
}

interface ReloadAsk {
  readonly trigger: string
  /** Load even when the files have the bytes of the policy in force. */
  force: boolean
  /** The files whose change asked for it (for the log). */
  readonly changed: readonly string[] | undefined
}

/**
 * Runs one reload at a time. Reloads asked for while one runs are served by exactly one more
 * after it (the first one's trigger, forced if any of them was), however many were asked for.
 */
class ReloadQueue {
  readonly #run: (ask: ReloadAsk) => Promise<boolean>
  #running: Promise<boolean> | undefined
  #next: { ask: ReloadAsk; result: Promise<boolean> } | undefined

  constructor(run: (ask: ReloadAsk) => Promise<boolean>) {
    this.#run = run
  }

  push(ask: ReloadAsk): Promise<boolean> {
    const running = this.#running
    if (running === undefined) return this.#start(ask)
    if (this.#next) {
      this.#next.ask.force ||= ask.force
      return this.#next.result
    }
    const next: { ask: ReloadAsk; result: Promise<boolean> } = {
      ask,
      result: running.then((): Promise<boolean> => {
        this.#next = undefined
        return this.#start(next.ask)
      }),
    }
    this.#next = next
    return next.result
  }

  #start(ask: ReloadAsk): Promise<boolean> {
    const running = this.#run(ask).finally(() => {
      this.#running = undefined
    })
    this.#running = running
    return running
  }
}

/** The same warning in the next load: same code, field and text; not its line, which an edit above moves. */
function warningKey(w: PolicyError): string {
  return JSON.stringify([w.code, w.at.file, w.at.field, w.detail])
}

export class LivePolicy {
  readonly #options: LivePolicyOptions
  readonly #log: Logger
  readonly #metrics: Metrics
  readonly #loader: PolicyLoader
  readonly #dynamic: DynamicSources
  readonly #fileSources = new Map<string, FileSource>()
  readonly #reloads = new ReloadQueue((ask) => this.#reload(ask))
  /** The dynamic addresses last sent to the worker: the ones the policy in force holds. */
  #compiledWith: DynamicAddresses
  #watcher: PolicyWatcher | undefined
  /**
   * The worker holds a load the store does not (its adoption failed): the next reload loads
   * even if the files have that load's bytes, which are not the bytes of the policy in force.
   */
  #workerAhead = false
  /** The warnings of the policy in force (warningKey): a reload logs only the others. */
  #warnings: ReadonlySet<string> = new Set()
  #onReadinessChange: () => void = () => {}
  #stopped = false

  constructor(options: LivePolicyOptions) {
    this.#options = options
    this.#log = options.log
    this.#metrics = options.metrics
    this.#loader = options.loader
    this.#dynamic = new DynamicSources({
      log: options.log,
      metrics: options.metrics.dynamicSources,
      kubeconfig: options.kubeconfig,
      cacheDir: options.cacheDir,
      syncWaitMs: options.syncWaitMs,
      timings: options.kubeTimings,
      readsFiles: false,
      onChange: () => {
        this.#recompile().catch(this.#logFailure('cannot recompile with the new addresses'))
      },
      onReadinessChange: () => this.#onReadinessChange(),
    })
    this.#compiledWith = this.#dynamic.addresses()
    options.metrics.readDynamicSyncTimes(() => this.#syncTimes())
  }

  /** The first load (forced). Throws PolicyLoadError when the policy is bad, having stopped. */
  async start(): Promise<Loaded> {
    try {
      const first = await this.#loader.load({ ...this.#loadRequest(), force: true })
      if (first === undefined) throw new Error('the first load cannot be unchanged')
      await this.#adopt(first)
      return first
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  /** A policy is in force and every dynamic source lets the process be ready. */
  ready(): boolean {
    return this.#options.store.current !== undefined && this.#dynamic.ready()
  }

  /** Called whenever `ready()` may have changed (one listener: serve's health). */
  onReadinessChange(listener: () => void): void {
    this.#onReadinessChange = listener
  }

  /** Loads the policy file again (queued, see ReloadQueue); resolves whether it is in force. */
  reload(trigger: string, force = true, changed?: readonly string[]): Promise<boolean> {
    return this.#reloads.push({ trigger, force, changed })
  }

  /** Stops watching and the dynamic sources; nothing is swapped in after this. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#watcher?.close()
    this.#dynamic.stop()
    await this.#loader.close()
  }

  #loadRequest(): Omit<LoadRequest, 'kind' | 'force'> {
    const { policyFile, env, limits, maxPolicyBytes } = this.#options
    return { file: policyFile, env, limits, maxPolicyBytes }
  }

  async #reload({ trigger, force, changed }: ReloadAsk): Promise<boolean> {
    const { policyFile } = this.#options
    let next: Loaded | undefined
    try {
      next = await this.#loader.load({ ...this.#loadRequest(), force: force || this.#workerAhead })
      if (this.#stopped) return false
      if (next === undefined) {
        // The files have the bytes of the policy in force again: a failure since is undone.
        this.#metrics.lastReloadSuccess.set(1)
        this.#log.debug(
          { trigger, changed },
          'reload skipped: the files the policy reads are unchanged',
        )
        return true
      }
      await this.#adopt(next)
      this.#workerAhead = false
      this.#onReadinessChange()
      this.#metrics.reloads.labels('success').inc()
      this.#log.info(
        {
          trigger,
          policy: policyFile,
          sites: next.sites,
          topLevel: next.topLevel,
          // Each warning in force, logged or not: one logged at an earlier load is not repeated.
          warnings: next.warnings.map((w) => w.code),
        },
        'policy reloaded',
      )
      return true
    } catch (err) {
      if (this.#stopped) return false
      if (next !== undefined) this.#workerAhead = true
      this.#metrics.reloads.labels('failure').inc()
      this.#metrics.lastReloadSuccess.set(0)
      const errors =
        err instanceof PolicyLoadError ? err.errors.map((e) => e.message) : [(err as Error).message]
      this.#log.error(
        { trigger, policy: policyFile, errors },
        'policy reload failed; serving the last good policy',
      )
      return false
    }
  }

  /** Takes a load: its dynamic sources, then the policy, then what to watch. */
  async #adopt(loaded: Loaded): Promise<void> {
    this.#dynamic.update(new Map(loaded.sources.map((s) => [s.name, s])))
    this.#adoptFileSources(loaded)
    // A source started now may already have addresses (its cache): compiled in before the swap.
    if (this.#dynamic.addresses() !== this.#compiledWith) await this.#recompile()
    else this.#install(loaded.policy)
    this.#metrics.lastReloadSuccess.set(1)
    this.#logNewWarnings(loaded.warnings)
    this.#watch(loaded)
  }

  #adoptFileSources(loaded: Loaded): void {
    const counts = new Map(loaded.fileAddresses.map((f) => [f.name, f.count]))
    for (const name of this.#fileSources.keys()) {
      if (counts.has(name)) continue
      this.#fileSources.delete(name)
      this.#metrics.dynamicSources.forget(name)
    }
    for (const { name, source } of loaded.sources) {
      if (source.kind !== 'file') continue
      if (!this.#fileSources.has(name))
        this.#fileSources.set(name, {
          path: source.path,
          goodAt: Date.now(),
          failedSince: undefined,
        })
      this.#metrics.dynamicSources.setAddresses(name, counts.get(name) ?? 0)
    }
  }

  #install(policy: CompiledPolicy): void {
    if (this.#stopped) return
    this.#options.observer.prepare(policy)
    // One assignment: a request reads `store.current` once and sees exactly one policy.
    this.#options.store.swap(policy)
    this.#metrics.loadedTimestamp.set(Date.now() / 1000)
  }

  /**
   * Recompiled by the worker with the current addresses, as a reload would, from the spec of its
   * last load: the one in force, or after a failed adoption the newer one whose sources run.
   */
  async #recompile(): Promise<void> {
    this.#compiledWith = this.#dynamic.addresses()
    this.#install(await this.#loader.compile(this.#compiledWith))
  }

  /** Only address files changed: the worker reads them again; a bad one keeps its addresses. */
  async #rereadFiles(): Promise<void> {
    const reply = await this.#loader.request({ kind: 'files' })
    if (reply.kind !== 'files' || this.#stopped) return
    const now = Date.now()
    for (const { name, errors, count } of reply.failed) {
      const state = this.#fileSources.get(name)
      if (state) state.failedSince ??= now
      this.#metrics.dynamicSources.countError(name)
      this.#log.error(
        { source: name, errors: policyErrors(errors).map((e) => e.message), addresses: count },
        'address file rejected; keeping its last good addresses',
      )
    }
    for (const name of reply.unchanged) {
      this.#readWell(name, now)
      this.#log.debug({ source: name }, 'address file read; its addresses are the ones in force')
    }
    for (const { name, count } of reply.changed) {
      this.#readWell(name, now)
      this.#metrics.dynamicSources.setAddresses(name, count)
      this.#log.info({ source: name, addresses: count }, 'dynamic source changed')
    }
    if (reply.policy) this.#install(await unpackPolicy(reply.policy))
  }

  #readWell(name: string, now: number): void {
    const state = this.#fileSources.get(name)
    if (!state) return
    state.goodAt = now
    state.failedSince = undefined
  }

  /** Each source's last moment known current (Date.now() values), for the scrape. */
  #syncTimes(): ReadonlyMap<string, number> {
    const times = this.#dynamic.currentTimes()
    for (const [name, s] of this.#fileSources)
      times.set(name, s.failedSince === undefined ? Date.now() : s.goodAt)
    return times
  }

  #watch(loaded: Loaded): void {
    if (!this.#options.watch || this.#stopped) return
    this.#watcher?.close()
    const addressFiles = new Set([...this.#fileSources.values()].map((s) => resolve(s.path)))
    const files = new Set([
      resolve(this.#options.policyFile),
      ...loaded.reads.map((f) => resolve(f)),
    ])
    this.#watcher = watchFiles(
      [...files],
      (changed) => {
        if (changed.every((f) => addressFiles.has(f)))
          this.#rereadFiles().catch(this.#logFailure('cannot read the address files'))
        else void this.reload('file change', false, changed)
      },
      (err) =>
        this.#log.error(
          { err, policy: this.#options.policyFile },
          'cannot watch the policy files; reload with SIGHUP',
        ),
      this.#options.watchSettleMs,
    )
  }

  /**
   * Logs each warning that the policy in force before did not have: a reload repeats none it
   * logged already, and says again one whose text changed.
   */
  #logNewWarnings(warnings: readonly PolicyError[]): void {
    const keys = new Set<string>()
    for (const w of warnings) {
      const key = warningKey(w)
      keys.add(key)
      if (this.#warnings.has(key)) continue
      const { file, line, col, field } = w.at
      this.#log.warn({ code: w.code, file, line, col, field, detail: w.detail }, 'policy warning')
    }
    this.#warnings = keys
  }

  #logFailure(what: string): (err: unknown) => void {
    return (err) =>
      this.#log.error({ err: (err as Error).message, policy: this.#options.policyFile }, what)
  }
}
