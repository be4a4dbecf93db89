// The main thread's side of the load worker (load-worker.ts): one request at a time, each
// answered by one message. The worker runs the same loadPolicyFile and compilePolicy as
// `validate` and `explain`, which load in their own thread since they answer no requests.

import { Worker } from 'node:worker_threads'
import type { CompiledPolicy, Limits } from '../decision/types.js'
import type { DynamicAddresses } from './compile.js'
import { PolicyError, type PolicyErrorCode, PolicyLoadError, type SourcePos } from './errors.js'
import type { AddressSource } from './schema.js'
import { type PackedPolicy, unpackPolicy } from './transfer.js'

export interface LoadRequest {
  readonly kind: 'load'
  readonly file: string
  readonly env: NodeJS.ProcessEnv
  readonly limits: Limits
  readonly maxPolicyBytes: number
  /** Load even when every file has the bytes of the last load (SIGHUP, start-up). */
  readonly force: boolean
}

export type LoaderRequest =
  | LoadRequest
  | { readonly kind: 'addresses'; readonly addresses: DynamicAddresses }
  | { readonly kind: 'files' }

export interface PlainError {
  readonly code: PolicyErrorCode
  readonly at: SourcePos
  readonly detail: string
}

interface SourceEntry {
  readonly name: string
  readonly source: AddressSource
  readonly widens: boolean
}

interface LoadedReply {
  readonly kind: 'loaded'
  readonly policy: PackedPolicy
  readonly sites: readonly string[]
  readonly warnings: readonly PlainError[]
  readonly sources: readonly SourceEntry[]
  readonly fileAddresses: readonly { readonly name: string; readonly count: number }[]
  /** Every file the load read: what the watcher watches. */
  readonly reads: readonly string[]
  readonly topLevel: Readonly<Record<string, number>>
}

export type LoaderReply =
  | LoadedReply
  | { readonly kind: 'compiled'; readonly policy: PackedPolicy }
  | {
      readonly kind: 'files'
      readonly changed: readonly { readonly name: string; readonly count: number }[]
      readonly unchanged: readonly string[]
      readonly failed: readonly {
        readonly name: string
        readonly errors: readonly PlainError[]
        readonly count: number
      }[]
      readonly policy: PackedPolicy | undefined
    }
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'failed'; readonly errors: readonly PlainError[] }
  | { readonly kind: 'crashed'; readonly message: string }

export function policyErrors(errors: readonly PlainError[]): PolicyError[] {
  return errors.map((e) => new PolicyError(e.code, e.at, e.detail))
}

/** What a `loaded` reply holds, with the policy unpacked. */
export interface Loaded extends Omit<LoadedReply, 'kind' | 'policy' | 'warnings'> {
  readonly policy: CompiledPolicy
  readonly warnings: readonly PolicyError[]
}

/**
 * The worker's module. Tests run src/ through Vitest, whose transform a worker thread does not
 * have: from a .ts module the worker is the build's (npm test builds first).
 */
function workerUrl(): URL {
  const here = new URL(import.meta.url)
  if (!here.pathname.endsWith('.ts')) return new URL('./load-worker.js', here)
  return new URL('../../dist/policy/load-worker.js', here)
}

export class PolicyLoader {
  #worker: Worker | undefined
  /** The request in flight; requests are chained, so there is at most one. */
  #tail: Promise<unknown> = Promise.resolve()
  #pending: { resolve: (reply: LoaderReply) => void; reject: (err: Error) => void } | undefined

  /** Sends `request` after the ones before it; rejects if the worker fails. */
  request(request: LoaderRequest): Promise<LoaderReply> {
    const next = this.#tail.then(() => this.#send(request))
    this.#tail = next.catch(() => undefined)
    return next
  }

  /** A load; throws PolicyLoadError, or resolves undefined when the bytes are unchanged. */
  async load(request: Omit<LoadRequest, 'kind'>): Promise<Loaded | undefined> {
    const reply = await this.request({ kind: 'load', ...request })
    if (reply.kind === 'unchanged') return undefined
    if (reply.kind === 'failed') throw new PolicyLoadError(policyErrors(reply.errors))
    if (reply.kind !== 'loaded') throw new Error(`policy loader: ${describeReply(reply)}`)
    const policy = await unpackPolicy(reply.policy)
    return { ...reply, policy, warnings: policyErrors(reply.warnings) }
  }

  /** The policy of the last load compiled again with `addresses`; throws when it cannot be. */
  async compile(addresses: DynamicAddresses): Promise<CompiledPolicy> {
    const reply = await this.request({ kind: 'addresses', addresses })
    if (reply.kind === 'failed') throw new PolicyLoadError(policyErrors(reply.errors))
    if (reply.kind === 'unchanged')
      throw new Error(
        'policy loader: no policy to compile (its thread started again since the load)',
      )
    if (reply.kind !== 'compiled') throw new Error(`policy loader: ${describeReply(reply)}`)
    return unpackPolicy(reply.policy)
  }

  async close(): Promise<void> {
    const worker = this.#worker
    this.#worker = undefined
    await worker?.terminate()
  }

  #send(request: LoaderRequest): Promise<LoaderReply> {
    const worker = this.#start()
    // Referenced only while a request is in flight: an idle loader keeps no process alive.
    worker.ref()
    return new Promise<LoaderReply>((resolve, reject) => {
      this.#pending = { resolve, reject }
      worker.postMessage(request)
    }).finally(() => worker.unref())
  }

  #start(): Worker {
    if (this.#worker) return this.#worker
    const worker = new Worker(workerUrl())
    worker.on('message', (reply: LoaderReply) => {
      const pending = this.#pending
      this.#pending = undefined
      pending?.resolve(reply)
    })
    const fail = (err: Error): void => {
      if (this.#worker === worker) this.#worker = undefined
      const pending = this.#pending
      this.#pending = undefined
      pending?.reject(err)
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`the policy loader thread exited (${code})`)))
    this.#worker = worker
    return worker
  }
}

function describeReply(reply: LoaderReply): string {
  return reply.kind === 'crashed' ? reply.message : `unexpected ${reply.kind} reply`
}
