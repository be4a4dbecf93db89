// Through a real Envoy on envoy/edge.yaml with each of its gRPC clients for ext_authz (the
// shipped envoy_grpc, and google_grpc, the Google C++ client) in front of hostguard on each gRPC
// transport of the conformance gate: the core scenarios, the outage, and Envoy's own stats
// showing which client carried the Checks.
//
// How google_grpc differs from envoy_grpc (envoy/README.md has what an operator must know):
// - it dials its target_uri itself, bypassing the hostguard cluster: no Check counts in
//   cluster.hostguard.upstream_rq_*, and by design the cluster's circuit breaker,
//   connect_timeout, load balancing and health checks (which Envoy still runs) do not apply;
// - its calls are counted in grpc.<stat_prefix>.streams_total and streams_closed_<status>;
// - a failed Check closes with gRPC status 13 (INTERNAL) whether hostguard is too slow or gone,
//   where envoy_grpc tells the two apart (cluster.hostguard.upstream_rq_timeout,
//   upstream_cx_connect_fail); the client gets the same fail-closed 503 either way.
// The answers (status, body, headers to the app, dynamic metadata) are the same.

import type { ClientHttp2Session } from 'node:http2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  EDGE_HEALTH_SECRET,
  EDGE_POLICY,
  edgeRequests,
  itAllowsAndDenies,
} from '../support/edge.js'
import { GOOGLE_GRPC_STAT_PREFIX, type GrpcClient, skipWithoutEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
import { kill, type Stack, startStack } from '../support/stack.js'
import { GRPC_TRANSPORTS } from '../support/transports.js'
import { http2Session } from '../support/upstream.js'
import { until } from '../support/wait.js'

const GRPC_CLIENTS: readonly GrpcClient[] = ['envoy_grpc', 'google_grpc']
const COMBINATIONS = GRPC_CLIENTS.flatMap((client) =>
  GRPC_TRANSPORTS.map((transport) => ({ client, transport })),
)
const GOOGLE = `grpc.${GOOGLE_GRPC_STAT_PREFIX}.`

skipWithoutEnvoy("the end-to-end tests through each of Envoy's gRPC clients")

describe.skipIf(ENVOY === undefined).each(COMBINATIONS)(
  'Envoy $client to hostguard on $transport.name',
  ({ client, transport }) => {
    let stack: Stack
    let h2: ClientHttp2Session
    const requests = edgeRequests(() => stack)
    const { unique, get } = requests
    const authzStats = () =>
      stack.envoy.stats(
        /^(http\.edge\.ext_authz\.|cluster\.hostguard\.upstream_(rq_total|rq_timeout|cx_connect_fail)$|grpc\.)/,
      )
    const delta = (before: Map<string, number>, after: Map<string, number>, name: string) =>
      (after.get(name) ?? 0) - (before.get(name) ?? 0)

    /**
     * One failed Check: an error, no decision. envoy_grpc tells why on the cluster (`cause`);
     * google_grpc closes the call with status 13 (INTERNAL) whether hostguard is slow or gone.
     */
    function expectOutageCounted(
      before: Map<string, number>,
      after: Map<string, number>,
      cause: string,
    ) {
      expect(delta(before, after, 'http.edge.ext_authz.error')).toBe(1)
      expect(delta(before, after, 'http.edge.ext_authz.denied')).toBe(0)
      expect(delta(before, after, 'http.edge.ext_authz.ok')).toBe(0)
      if (client === 'envoy_grpc') {
        expect(delta(before, after, cause)).toBeGreaterThan(0)
        expect(delta(before, after, `${GOOGLE}streams_total`)).toBe(0)
      } else {
        expect(delta(before, after, `${GOOGLE}streams_total`)).toBe(1)
        expect(delta(before, after, `${GOOGLE}streams_closed_13`)).toBe(1)
        expect(delta(before, after, cause)).toBe(0)
      }
    }

    beforeAll(async () => {
      stack = await startStack('edge.yaml', 'edge', EDGE_POLICY, {
        env: { HEALTH_CHECK_HEADER_VALUE: EDGE_HEALTH_SECRET },
        flags: transport.flags,
        grpcClient: client,
      })
      h2 = await http2Session(stack.port)
    })

    afterAll(async () => {
      h2?.close()
      await stack?.stop()
    })

    describe('allow and deny as the client sees them', () => {
      itAllowsAndDenies(
        () => stack,
        () => h2,
        requests,
      )
    })

    it(`carries the Checks over ${client}, as Envoy's stats count them`, async () => {
      const before = await authzStats()
      expect((await get({ host: 'www.example.com', path: unique('/') })).status).toBe(200)
      expect((await get({ host: 'evil.example.net', path: unique('/') })).status).toBe(403)
      const after = await authzStats()
      expect(delta(before, after, 'http.edge.ext_authz.ok')).toBe(1)
      expect(delta(before, after, 'http.edge.ext_authz.denied')).toBe(1)
      expect(delta(before, after, 'http.edge.ext_authz.error')).toBe(0)
      const overCluster = delta(before, after, 'cluster.hostguard.upstream_rq_total')
      const overGoogle = delta(before, after, `${GOOGLE}streams_total`)
      if (client === 'envoy_grpc') {
        expect(overCluster).toBe(2)
        expect(overGoogle).toBe(0)
      } else {
        // A denial is a Check answered OK: both calls close with gRPC status 0.
        expect(overGoogle).toBe(2)
        expect(delta(before, after, `${GOOGLE}streams_closed_0`)).toBe(2)
        expect(overCluster).toBe(0)
      }
    })

    it('answers 503 when hostguard is too slow (the 0.2s timeout), then answers again', async () => {
      const [hostguard] = stack.hostguards
      if (!hostguard) throw new Error('no hostguard')
      expect((await get({ host: 'www.example.com', path: unique('/') })).status).toBe(200)
      const before = await authzStats()
      // Stopped, its socket still accepts and nothing answers: only the timeout ends the Check.
      hostguard.child.kill('SIGSTOP')
      try {
        const path = unique('/slow')
        const reply = await get({ host: 'www.example.com', path })
        expect(reply.status).toBe(503)
        expect(stack.upstream.requestsTo(path)).toEqual([])
        expect(await stack.envoy.logOf(path)).toMatchObject({ status: 503, decision: '-' })
      } finally {
        hostguard.child.kill('SIGCONT')
      }
      const after = await authzStats()
      expectOutageCounted(before, after, 'cluster.hostguard.upstream_rq_timeout')
      await until(
        10_000,
        async () => (await get({ host: 'www.example.com', path: unique('/') })).status === 200,
        'answers again',
      )
    })

    // Last: it kills hostguard.
    it('answers 503 when hostguard is gone (fail closed), counted as an error', async () => {
      const [hostguard] = stack.hostguards
      if (!hostguard) throw new Error('no hostguard')
      const before = await authzStats()
      await kill(hostguard.child)
      const path = unique('/outage')
      const reply = await get({ host: 'www.example.com', path })
      expect(reply.status).toBe(503)
      expect(reply.body).toBe('')
      expect(stack.upstream.requestsTo(path)).toEqual([])
      expect(await stack.envoy.logOf(path)).toMatchObject({
        status: 503,
        flags: 'UAEX',
        decision: '-',
      })
      const after = await authzStats()
      expectOutageCounted(before, after, 'cluster.hostguard.upstream_cx_connect_fail')
    })
  },
)
