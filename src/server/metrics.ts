// SPEC's metrics with prom-client, plus its default process and Node.js metrics.

import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import type { DecisionMetrics } from '../decision/observe.js'
import type { SourceMetrics } from '../dynamic/sources.js'

/** 10 µs to 100 ms: a decision takes microseconds; Envoy's default ext_authz timeout is 200 ms. */
export const DURATION_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
]

/** A count kept as a plain number on the request path and added to prom-client's counter at scrape. */
class CountCell {
  pending = 0
  inc(): void {
    this.pending++
  }
}

/** One label set of the duration histogram: bucket counts (not cumulative), sum and count. */
class DurationCell {
  readonly counts = new Float64Array(DURATION_BUCKETS.length)
  sum = 0
  count = 0
  observe(seconds: number): void {
    let i = 0
    while (i < DURATION_BUCKETS.length && seconds > (DURATION_BUCKETS[i] as number)) i++
    if (i < DURATION_BUCKETS.length) this.counts[i] = (this.counts[i] as number) + 1
    this.sum += seconds
    this.count++
  }
}

/**
 * `hostguard_decision_duration_seconds`, read by the registry like a prom-client Histogram
 * (same exposition, checked by a test against one): prom-client's own hashes its label object
 * on every observe, about 1 µs a request; this one is a bucket search and three additions.
 */
class DurationHistogram {
  readonly name = 'hostguard_decision_duration_seconds'
  readonly help =
    'Time from receiving a request (a gRPC Check or an HTTP authorization request) to its encoded answer.'
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #cells = new Map<string, DurationCell>()

  child(decision: string): DurationCell {
    let cell = this.#cells.get(decision)
    if (!cell) {
      cell = new DurationCell()
      this.#cells.set(decision, cell)
    }
    return cell
  }

  get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] =
      []
    for (const [decision, cell] of this.#cells) {
      let cumulative = 0
      DURATION_BUCKETS.forEach((le, i) => {
        cumulative += cell.counts[i] as number
        values.push({
          labels: { le, decision },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        })
      })
      values.push({
        labels: { le: '+Inf', decision },
        value: cell.count,
        metricName: `${this.name}_bucket`,
      })
      values.push({ labels: { decision }, value: cell.sum, metricName: `${this.name}_sum` })
      values.push({ labels: { decision }, value: cell.count, metricName: `${this.name}_count` })
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    }
  }

  reset(): void {
    for (const cell of this.#cells.values()) {
      cell.counts.fill(0)
      cell.sum = 0
      cell.count = 0
    }
  }
}

export interface Metrics extends DecisionMetrics {
  readonly registry: Registry
  readonly reloads: Counter<'result'>
  /** 1 while the files hold the policy in force, 0 from a failed load until the next good one. */
  readonly lastReloadSuccess: Gauge
  readonly loadedTimestamp: Gauge
  readonly dynamicSources: SourceMetrics
  /** Where the scrape reads each source's last sync time (Date.now() values) from. */
  readDynamicSyncTimes(read: () => ReadonlyMap<string, number>): void
  readonly internalErrors: Counter
}

export function createMetrics(): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  // The request path increments plain numbers (CountCell); a scrape adds them to the counter.
  const counts = new Map<string, { cell: CountCell; add: (n: number) => void }>()
  const decisions = new Counter({
    name: 'hostguard_decisions_total',
    help: 'Decisions, by site, decision (what was decided, also in dry run), reason, mode and api (grpc: Envoy Check; http: HTTP authorization).',
    labelNames: ['site', 'decision', 'reason', 'mode', 'api'] as const,
    registers: [registry],
    collect() {
      for (const { cell, add } of counts.values()) {
        if (cell.pending > 0) add(cell.pending)
        cell.pending = 0
      }
    },
  })
  const duration = new DurationHistogram()
  registry.registerMetric(duration as unknown as Parameters<Registry['registerMetric']>[0])
  const reloads = new Counter({
    name: 'hostguard_policy_reloads_total',
    help: 'Policy reloads, by result; a failed reload keeps the last good policy.',
    labelNames: ['result'] as const,
    registers: [registry],
  })
  // Both results are exported from the start, so rate() and alerts see a zero before a failure.
  reloads.labels('success').inc(0)
  reloads.labels('failure').inc(0)
  // A state, not an event: an alert on it holds for as long as the files stay broken, where
  // increase(reloads{result="failure"}) clears once the window has passed the last failure.
  const lastReloadSuccess = new Gauge({
    name: 'hostguard_policy_last_reload_success',
    help: '1 when the last load of the policy succeeded, 0 while the policy in force is older than a failed one.',
    registers: [registry],
  })
  const loadedTimestamp = new Gauge({
    name: 'hostguard_policy_loaded_timestamp_seconds',
    help: 'Unix time at which the policy in force was loaded.',
    registers: [registry],
  })
  const dynamicAddresses = new Gauge({
    name: 'hostguard_dynamic_addresses',
    help: 'Addresses currently held by each dynamic address source.',
    labelNames: ['source'] as const,
    registers: [registry],
  })
  const dynamicErrors = new Counter({
    name: 'hostguard_dynamic_source_errors_total',
    help: 'Failed syncs of each dynamic address source (API errors, broken watches, rejected files); the last known addresses are kept.',
    labelNames: ['source'] as const,
    registers: [registry],
  })
  let syncTimes: () => ReadonlyMap<string, number> = () => new Map()
  new Gauge({
    name: 'hostguard_dynamic_source_last_sync_timestamp_seconds',
    help: 'Unix time at which each dynamic address source was last known current (now while its watch is open; 0 before its first sync).',
    labelNames: ['source'] as const,
    registers: [registry],
    // Read at scrape time: "now while the watch is open" cannot be pushed.
    collect() {
      this.reset()
      for (const [source, at] of syncTimes()) this.labels(source).set(at / 1000)
    },
  })
  const internalErrors = new Counter({
    name: 'hostguard_internal_errors_total',
    help: 'Check calls that failed inside hostguard and were answered deny (fail closed).',
    registers: [registry],
  })
  return {
    registry,
    internalErrors,
    reloads,
    lastReloadSuccess,
    loadedTimestamp,
    dynamicSources: {
      setAddresses: (source, count) => {
        dynamicAddresses.labels(source).set(count)
        // Exported at zero beside it, so that rate() sees a zero before the first error.
        dynamicErrors.labels(source).inc(0)
      },
      countError: (source) => dynamicErrors.labels(source).inc(),
      forget: (source) => {
        dynamicAddresses.remove(source)
        dynamicErrors.remove(source)
      },
    },
    readDynamicSyncTimes: (read) => {
      syncTimes = read
    },
    // Children are made when a policy is prepared and exported at zero from then on: the series
    // are a closed set known up front, and rate() sees a zero before the first event.
    decisions: (site, decision, reason, mode, api) => {
      const key = JSON.stringify([site, decision, reason, mode, api])
      let entry = counts.get(key)
      if (!entry) {
        const child = decisions.labels(site, decision, reason, mode, api)
        child.inc(0)
        entry = { cell: new CountCell(), add: (n) => child.inc(n) }
        counts.set(key, entry)
      }
      return entry.cell
    },
    duration: (decision) => duration.child(decision),
  }
}
