// Step 5: every decision is counted, timed and logged. The metric children for each site and
// reason are resolved once per policy (`prepare`), so a request does two lookups and two
// increments. Metrics and logger are passed in: decision/ knows no registry and no log sink.

import { formatIp } from '../net/ip.js'
import { isAllowReason, modeFor } from './evaluate.js'
import {
  type CompiledPolicy,
  type CompiledSite,
  type Decided,
  type HttpInput,
  type Mode,
  REASONS,
  type Reason,
  type RequestInput,
} from './types.js'

type DecisionLabel = 'allow' | 'deny'

/** Which front end a decision came by: the `api` label. */
export type Api = 'grpc' | 'http'

export interface Counter {
  inc(): void
}

export interface Histogram {
  observe(value: number): void
}

/** Metric children by label values (implemented with prom-client in server/metrics.ts). */
export interface DecisionMetrics {
  decisions(site: string, decision: DecisionLabel, reason: Reason, mode: Mode, api: Api): Counter
  duration(decision: DecisionLabel): Histogram
}

/** The part of a pino logger the observer uses. */
export interface DecisionLog {
  isLevelEnabled(level: string): boolean
  info(fields: object, message: string): void
  debug(fields: object, message: string): void
}

/** Client-chosen values are logged as printable ASCII only, at most this long. */
const MAX_LOGGED_LENGTH = 256
/** What is read of a value to log: one character more shows that it was cut. */
const HEAD = MAX_LOGGED_LENGTH + 1
const REQUEST_ID = 'x-request-id'

/**
 * A value a client chose (Host, x-request-id), made safe for a log line: every character
 * outside printable ASCII becomes \uXXXX, so no CR, LF, U+2028 or terminal escape passes, and
 * the result is cut to MAX_LOGGED_LENGTH characters.
 */
export function loggable(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const end = Math.min(value.length, MAX_LOGGED_LENGTH)
  let out = ''
  for (let i = 0; i < end; i++) {
    const c = value.charCodeAt(i)
    out += c >= 0x20 && c < 0x7f && c !== 0x5c ? value[i] : `\\u${c.toString(16).padStart(4, '0')}`
  }
  return value.length > MAX_LOGGED_LENGTH ? `${out}…` : out
}

// For the decision log, which shows a deny's peer, path and x-request-id: a value a client
// chose can be as long as the request (1 MiB by default), and making all of it a string only
// to cut it cost ~3 ms a deny at 900 KB (bench/observe.bench.ts). A front end that makes values
// from bytes reads a bounded prefix (the optional `…Head` methods); an input made otherwise
// (tests, explain) holds whole strings already.

/** At most `max` characters of the request's peer. */
export function peerHead(input: RequestInput, max: number): string {
  return input.peerHead ? input.peerHead(max) : input.peer.slice(0, max)
}

/** At most `max` characters of the request's path (without its query string). */
export function pathHead(http: HttpInput, max: number): string {
  return http.pathHead ? http.pathHead(max) : http.path.slice(0, max)
}

/** At most `max` characters of a header's value. */
export function headerHead(http: HttpInput, name: string, max: number): string | undefined {
  const { headers } = http
  return headers.head ? headers.head(name, max) : headers.get(name)?.slice(0, max)
}

export class DecisionObserver {
  readonly #metrics: DecisionMetrics
  readonly #log: DecisionLog
  /** The front ends served: their series are exported at zero from a policy's `prepare` on. */
  readonly #apis: readonly Api[]
  readonly #counters: Record<Api, WeakMap<CompiledSite, ReadonlyMap<Reason, Counter>>> = {
    grpc: new WeakMap(),
    http: new WeakMap(),
  }
  /** The sites of a policy whose health-check secret is sent as x-request-id: never logged. */
  readonly #secretRequestId = new WeakSet<CompiledSite>()
  readonly #allow: Histogram
  readonly #deny: Histogram

  constructor(metrics: DecisionMetrics, log: DecisionLog, apis: readonly Api[]) {
    this.#metrics = metrics
    this.#apis = apis
    this.#log = log
    this.#allow = metrics.duration('allow')
    this.#deny = metrics.duration('deny')
  }

  /** Resolves the counters of every site and reason of a policy about to be swapped in. */
  prepare(policy: CompiledPolicy): void {
    const sites = [policy.top, ...policy.sites.values()]
    // Any site's: a request to another site may carry it too (a probe sent to the wrong one).
    const secret = sites.some((site) => site.healthCheck?.header === REQUEST_ID)
    for (const site of sites) {
      for (const api of this.#apis) this.#countersOf(site, api)
      if (secret) this.#secretRequestId.add(site)
    }
  }

  #countersOf(site: CompiledSite, api: Api): ReadonlyMap<Reason, Counter> {
    let counters = this.#counters[api].get(site)
    if (!counters) {
      const byReason = new Map<Reason, Counter>()
      for (const reason of REASONS) {
        const decision = isAllowReason(reason) ? 'allow' : 'deny'
        byReason.set(
          reason,
          this.#metrics.decisions(site.name, decision, reason, modeFor(site.dryRun, reason), api),
        )
      }
      counters = byReason
      this.#counters[api].set(site, counters)
    }
    return counters
  }

  observe(result: Decided, seconds: number, api: Api): void {
    const { decision, input } = result
    this.#countersOf(decision.site, api).get(decision.reason)?.inc()
    ;(decision.allowed ? this.#allow : this.#deny).observe(seconds)
    if (!decision.allowed || this.#log.isLevelEnabled('debug')) {
      const http = input?.http
      const fields = {
        decision: decision.allowed ? 'allow' : 'deny',
        reason: decision.reason,
        site: decision.site.name,
        mode: decision.mode,
        api,
        // The HTTP status the deny carries (0 for an allow), as the proxy answers it unless dry run.
        status: decision.status,
        client: decision.client.ip && formatIp(decision.client.ip),
        // The proxy's downstream address: beside `client`, it shows whether the chain was trusted.
        peer: input && (input.peerIp ? formatIp(input.peerIp) : loggable(peerHead(input, HEAD))),
        host: loggable(http?.authority),
        path: http && loggable(pathHead(http, HEAD)),
        requestId: http && this.#requestId(decision.site, http),
        durationMs: seconds * 1000,
      }
      if (decision.allowed) this.#log.debug(fields, 'allow')
      else this.#log.info(fields, decision.mode === 'dry_run' ? 'dry-run deny' : 'deny')
    }
  }

  #requestId(site: CompiledSite, http: HttpInput): string | undefined {
    if (this.#secretRequestId.has(site) || site.healthCheck?.header === REQUEST_ID) return undefined
    return loggable(headerHead(http, REQUEST_ID, HEAD))
  }
}
