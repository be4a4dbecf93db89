// Two hostguard instances behind Envoy on envoy/edge.yaml, under a steady load of HTTP/2
// requests: Envoy's gRPC health check takes an instance out once it starts draining (SIGTERM),
// and a rolling restart of both loses no request.

import type { ClientHttp2Session } from 'node:http2'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type EnvoyProcess, skipWithoutEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
import { ROOT } from '../support/protos.js'
import {
  exited,
  type Hostguard,
  kill,
  type Stack,
  startHostguard,
  startStack,
} from '../support/stack.js'
import { http2, http2Session } from '../support/upstream.js'
import { until } from '../support/wait.js'

const POLICY = join(ROOT, 'test', 'e2e', 'edge.policy.yaml')
const ENV = { HEALTH_CHECK_HEADER_VALUE: 'unused' }

/**
 * Requests on `streams` concurrent loops until stopped; every status, in order of answer. A
 * request that fails outright (the session broke) is recorded as -1 and ends its loop.
 */
function load(session: ClientHttp2Session, streams: number) {
  const statuses: number[] = []
  let running = true
  const loops = Array.from({ length: streams }, async () => {
    while (running) {
      const status = await http2(session, { host: 'www.example.com', path: '/load' }).then(
        (reply) => reply.status,
        () => -1,
      )
      statuses.push(status)
      if (status === -1) return
    }
  })
  return {
    async stop() {
      running = false
      await Promise.all(loops)
      return statuses
    },
  }
}

async function hostOf(envoy: EnvoyProcess, hostguard: Hostguard) {
  const host = (await envoy.hosts('hostguard')).find((h) => h.port === hostguard.grpcPort)
  if (!host) throw new Error(`no host for port ${hostguard.grpcPort}`)
  return host
}

/** Sends load until both instances have answered Checks (Envoy balances round robin). */
async function untilBothAnswer(hostguards: readonly Hostguard[]) {
  for (const h of hostguards) await until(10_000, async () => (await h.decisions()) > 0, 'traffic')
}

skipWithoutEnvoy('the health-check and rolling-restart tests through envoy/edge.yaml')

describe.skipIf(ENVOY === undefined)('two hostguard instances behind Envoy', () => {
  let stack: Stack
  let session: ClientHttp2Session
  const started: Hostguard[] = []

  beforeAll(async () => {
    stack = await startStack('edge.yaml', 'edge', POLICY, { instances: 2, env: ENV })
    session = await http2Session(stack.port)
  })

  afterEach(async () => {
    await Promise.all(started.splice(0).map((h) => kill(h.child)))
  })

  afterAll(async () => {
    session?.close()
    await stack?.stop()
  })

  it("Envoy's health check takes a draining instance out while it still answers", async () => {
    const [draining, other] = stack.hostguards
    if (!draining || !other) throw new Error('two instances expected')
    const traffic = load(session, 4)
    await untilBothAnswer(stack.hostguards)
    const failures = (await stack.envoy.stats(/^cluster\.hostguard\.health_check\.failure$/)).get(
      'cluster.hostguard.health_check.failure',
    )
    draining.child.kill('SIGTERM')
    // Out of the cluster on its NOT_SERVING answer, before the drain ends and it exits.
    let outWhileRunning = false
    await until(
      10_000,
      async () => {
        const out = (await hostOf(stack.envoy, draining)).failedActiveHealthCheck
        outWhileRunning = out && draining.child.exitCode === null
        return out
      },
      'the draining instance out of the cluster',
    )
    expect(outWhileRunning).toBe(true)
    expect((await hostOf(stack.envoy, other)).failedActiveHealthCheck).toBe(false)
    const after = (await stack.envoy.stats(/^cluster\.hostguard\.health_check\.failure$/)).get(
      'cluster.hostguard.health_check.failure',
    )
    expect(after).toBe((failures ?? 0) + 1)
    // Its drain then ends (no Check came for a second) and it exits cleanly.
    await exited(draining.child)
    expect(draining.child.exitCode).toBe(0)
    const statuses = await traffic.stop()
    expect(statuses.length).toBeGreaterThan(0)
    expect(statuses.filter((s) => s !== 200)).toEqual([])
  })

  it('a rolling restart of both instances under load loses no request', async () => {
    // The previous test left one instance; start the other again where it was.
    const ports = (await stack.envoy.hosts('hostguard')).map((h) => h.port)
    const live = async (port: number) => {
      const running = stack.hostguards.find((h) => h.grpcPort === port && h.child.exitCode === null)
      if (running) return running
      const fresh = await startHostguard(POLICY, ENV, [`--grpc-port=${port}`])
      started.push(fresh)
      return fresh
    }
    let instances = await Promise.all(ports.map(live))
    const healthy = async (h: Hostguard) => !(await hostOf(stack.envoy, h)).failedActiveHealthCheck
    for (const h of instances) await until(10_000, () => healthy(h), 'healthy instances')

    const traffic = load(session, 4)
    await untilBothAnswer(instances)
    for (const [i, old] of instances.entries()) {
      old.child.kill('SIGTERM')
      await exited(old.child)
      expect(old.child.exitCode).toBe(0)
      const fresh = await startHostguard(POLICY, ENV, [`--grpc-port=${old.grpcPort}`])
      started.push(fresh)
      instances = instances.map((h, j) => (j === i ? fresh : h))
      // As a Deployment waits for readiness: the next one restarts once Envoy sends to this one.
      await until(10_000, () => healthy(fresh), 'the restarted instance back in the cluster')
      await until(10_000, async () => (await fresh.decisions()) > 0, 'Checks on the new instance')
    }
    const statuses = await traffic.stop()
    expect(statuses.length).toBeGreaterThan(0)
    expect(statuses.filter((s) => s !== 200)).toEqual([])
  })
})
