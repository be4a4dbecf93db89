// What metrics and decision logs cost on the request path: check() alone against check() plus
// observe() with prom-client metrics and serve's logger (info level, synchronous writes to
// /dev/null, as `hostguard serve` writes to stdout), in one process.
// Fixture 01 is allowed (metrics only: allows log at debug), fixture 10 denied (metrics and a
// log line); the last is denied with a 900 KB path, peer and x-request-id, of which the log line
// reads 257 characters each. Run: npm run bench:micro -- bench/observe.bench.ts

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { bench, describe } from 'vitest'
import { DecisionObserver } from '../src/decision/observe.js'
import { check } from '../src/grpc-authz/check.js'
import { createLog } from '../src/server/log.js'
import { createMetrics } from '../src/server/metrics.js'
import { policyFile } from '../test/support/policy.js'
import { FIXTURES, official, ROOT } from '../test/support/protos.js'

const policy = policyFile(join(ROOT, 'examples', 'policy.yaml'))
const observer = new DecisionObserver(
  createMetrics(),
  createLog('info', pino.destination({ dest: '/dev/null', sync: true })),
  ['grpc'],
)
observer.prepare(policy)

const long = 'x'.repeat(900_000)
const requests: [string, Buffer][] = [
  ...['01-ipv4-direct-host', '10-istio-mtls-principal'].map((name): [string, Buffer] => [
    name,
    readFileSync(join(FIXTURES, `${name}.bin`)),
  ]),
  [
    'a deny with 900 KB values',
    official.encodeRequest({
      attributes: {
        source: { address: { socket_address: { address: long } } },
        request: {
          http: { host: 'evil.example', path: `/${long}`, headers: { 'x-request-id': long } },
        },
      },
    }),
  ],
]

for (const [name, bytes] of requests) {
  describe(name, () => {
    bench('check', () => {
      check(policy, bytes)
    })
    bench('check + observe (metrics, logs)', () => {
      const started = performance.now()
      const result = check(policy, bytes)
      observer.observe(result, (performance.now() - started) / 1000, 'grpc')
    })
  })
}
