// The CheckRequests Envoy 1.40 sent in test/support/capture.ts's scenarios, committed in
// test/fixtures/envoy-v3/captured/: hostguard answers each as the scenario expects (no Envoy
// needed), and, where Envoy runs, Envoy still sends the same (the fixtures have not drifted).

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Client } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import {
  captureScenarios,
  checkRequestJson,
  HEALTH_SECRET,
  SCENARIOS,
  STRANGER,
  stable,
} from '../support/capture.js'
import { skipWithoutEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { FIXTURES, type Message, official, ROOT } from '../support/protos.js'
import { startServer } from '../support/server.js'

const DIR = join(FIXTURES, 'captured')
const policy = (name: string) => join(ROOT, 'test', 'e2e', `${name}.policy.yaml`)

interface Expected {
  readonly decision: 'allow' | 'deny'
  readonly reason: string
  readonly site?: string
  readonly client: string
  /** A deny's HTTP status. */
  readonly status?: string
}

// Each capture under the policy of its bootstrap's tests (test/e2e/*.policy.yaml).
const EXPECTED: Record<string, Expected> = {
  '01-edge-http1-get': { decision: 'allow', reason: 'host_allowed', client: STRANGER },
  '02-edge-http2-get': { decision: 'allow', reason: 'host_allowed', client: STRANGER },
  '03-edge-spoofed-forwarding': { decision: 'allow', reason: 'host_allowed', client: STRANGER },
  '04-edge-trusted-proxy': { decision: 'allow', reason: 'host_allowed', client: '203.0.113.7' },
  '05-edge-admin-route': {
    decision: 'deny',
    reason: 'client_not_allowed',
    site: 'admin',
    client: STRANGER,
    status: 'Forbidden',
  },
  '06-edge-blog-vhost': {
    decision: 'allow',
    reason: 'host_allowed',
    site: 'blog',
    client: STRANGER,
  },
  '07-edge-health-check-probe': { decision: 'allow', reason: 'health_check', client: STRANGER },
  '08-edge-post-with-body': { decision: 'allow', reason: 'host_allowed', client: STRANGER },
  '09-edge-repeated-headers': { decision: 'allow', reason: 'host_allowed', client: STRANGER },
  '10-edge-invalid-host': {
    decision: 'deny',
    reason: 'invalid_host',
    client: STRANGER,
    status: 'BadRequest',
  },
  '11-sidecar-get': { decision: 'allow', reason: 'host_allowed', client: STRANGER },
  '12-tcp-connection': { decision: 'allow', reason: 'tcp_client_allowed', client: '127.0.0.2' },
  '13-edge-from-loopback': { decision: 'allow', reason: 'host_allowed', client: '127.0.0.1' },
}

const POLICY_OF = { 'edge.yaml': 'edge', 'sidecar.yaml': 'sidecar', 'tcp.yaml': 'tcp' } as const

describe('the captured CheckRequests', () => {
  const servers = new Map<string, { running: Running; client: Client }>()

  beforeAll(async () => {
    for (const name of new Set(Object.values(POLICY_OF))) {
      const running = await startServer(policy(name), {
        env: { HEALTH_CHECK_HEADER_VALUE: HEALTH_SECRET },
      })
      servers.set(name, { running, client: checkClient(running.grpcPort) })
    }
  })

  afterAll(async () => {
    for (const { running, client } of servers.values()) {
      client.close()
      await running.stop()
    }
  })

  it('are one .bin and one .json per scenario, and nothing else', () => {
    const names = SCENARIOS.map((s) => s.name)
    expect(
      readdirSync(DIR)
        .filter((f) => f !== 'README.md')
        .sort(),
    ).toEqual(names.flatMap((n) => [`${n}.bin`, `${n}.json`]).sort())
    expect(Object.keys(EXPECTED).sort()).toEqual([...names].sort())
  })

  it.each(SCENARIOS.map((s) => [s.name, s] as const))('%s.json is its .bin', (name) => {
    const bytes = readFileSync(join(DIR, `${name}.bin`))
    expect(readFileSync(join(DIR, `${name}.json`), 'utf8')).toBe(checkRequestJson(bytes))
  })

  it.each(SCENARIOS.map((s) => [s.name, s] as const))(
    '%s gets the answer its scenario expects from hostguard',
    async (name, scenario) => {
      const want = EXPECTED[name] as Expected
      const server = servers.get(POLICY_OF[scenario.bootstrap])
      if (!server) throw new Error('no server')
      const answer: Message = official.decodeResponse(
        await callCheck(server.client, readFileSync(join(DIR, `${name}.bin`))),
      )
      const meta: Record<string, string> = {}
      for (const [k, v] of Object.entries(answer.dynamic_metadata.fields))
        meta[k] = (v as Message).stringValue
      expect(meta).toMatchObject({
        decision: want.decision,
        reason: want.reason,
        site: want.site ?? 'default',
        client: want.client,
      })
      if (want.status === undefined) expect(answer.ok_response).toBeDefined()
      else expect(answer.denied_response.status.code).toBe(want.status)
    },
  )

  describe('against Envoy now', () => {
    skipWithoutEnvoy('the comparison of the captured CheckRequests with what Envoy sends now')

    it.skipIf(ENVOY === undefined)(
      'are what Envoy sends in the same scenarios, but for ports, times and ids',
      async () => {
        const now = await captureScenarios()
        for (const { name } of SCENARIOS) {
          const committed = JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8'))
          const fresh = JSON.parse(checkRequestJson(now.get(name) as Buffer))
          expect(stable(fresh), name).toEqual(stable(committed))
        }
      },
    )
  })
})
