import { Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { createMetrics, DURATION_BUCKETS } from '../../src/server/metrics.js'

/** The lines of one metric family in an exposition text. */
function family(text: string, name: string): string[] {
  return text.split('\n').filter((line) => line.includes(name))
}

describe('decision metrics', () => {
  it('expose the duration histogram exactly as prom-client’s Histogram would', async () => {
    const metrics = createMetrics()
    const oracleRegistry = new Registry()
    const oracle = new Histogram({
      name: 'hostguard_decision_duration_seconds',
      help: 'Time from receiving a request (a gRPC Check or an HTTP authorization request) to its encoded answer.',
      labelNames: ['decision'],
      buckets: DURATION_BUCKETS,
      registers: [oracleRegistry],
    })
    const allow = metrics.duration('allow')
    const deny = metrics.duration('deny')
    oracle.zero({ decision: 'allow' })
    oracle.zero({ decision: 'deny' })
    // On bucket bounds, between them, below the first and above the last.
    const samples = [0, 0.000001, 0.00001, 0.0000100001, 0.00004, 0.001, 0.0123, 0.1, 0.5, 7]
    samples.forEach((s, i) => {
      ;(i % 3 === 0 ? deny : allow).observe(s)
      oracle.observe({ decision: i % 3 === 0 ? 'deny' : 'allow' }, s)
    })
    const name = 'hostguard_decision_duration_seconds'
    expect(family(await metrics.registry.metrics(), name)).toEqual(
      family(await oracleRegistry.metrics(), name),
    )
  })

  it('count decisions on the request path and show them at the next scrape, from zero', async () => {
    const metrics = createMetrics()
    const counter = metrics.decisions('blog', 'deny', 'host_not_allowed', 'enforce', 'grpc')
    const line = async () =>
      family(await metrics.registry.metrics(), 'hostguard_decisions_total{').join('\n')
    expect(await line()).toBe(
      'hostguard_decisions_total{site="blog",decision="deny",reason="host_not_allowed",mode="enforce",api="grpc"} 0',
    )
    counter.inc()
    counter.inc()
    expect(metrics.decisions('blog', 'deny', 'host_not_allowed', 'enforce', 'grpc')).toBe(counter)
    expect(await line()).toMatch(/ 2$/)
    counter.inc()
    expect(await line()).toMatch(/ 3$/)
    expect(await line()).toMatch(/ 3$/)
  })
})
