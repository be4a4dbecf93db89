import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  type Client,
  credentials,
  makeClientConstructor,
  type ServiceClientConstructor,
} from '@grpc/grpc-js'
import { service as healthService } from 'grpc-health-check'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { DecisionObserver } from '../../src/check/observe.js'
import type { CompiledPolicy } from '../../src/check/types.js'
import { PolicyStore } from '../../src/policy/store.js'
import { checkHandler } from '../../src/server/grpc.js'
import { createMetrics } from '../../src/server/metrics.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { policyFile } from '../support/policy.js'
import { FIXTURES, type Message, official, ROOT } from '../support/protos.js'
import { spawnServe, startServer } from '../support/server.js'
import { until } from '../support/wait.js'

const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')
const FIXTURE = readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin'))

describe('the last-resort handler', () => {
  it('answers a deny with the policy status when deciding throws, counts it, and serves the next call', () => {
    const policy = policyFile(EXAMPLE)
    // A policy whose header table is missing makes decode throw inside check().
    const broken = { ...policy, headerNames: undefined } as unknown as CompiledPolicy
    const store = new PolicyStore()
    store.swap(broken)
    const metrics = createMetrics()
    const lines: string[] = []
    const log = pino({ level: 'error' }, { write: (l: string) => lines.push(l) })
    const handler = checkHandler(store, new DecisionObserver(metrics, log), log, () =>
      metrics.internalErrors.inc(),
    )
    const answers: Buffer[] = []
    const call = () =>
      handler({ request: FIXTURE } as never, (err, value) => {
        expect(err).toBeNull()
        if (value) answers.push(value)
      })
    call()
    const answer = official.decodeResponse(answers[0] ?? Buffer.alloc(0))
    expect(answer.status.code).toBe(7)
    expect(answer.denied_response.status.code).toBe('Forbidden')
    expect(lines.join('')).toContain('check failed; answered deny')
    store.swap(policy)
    call()
    expect(official.decodeResponse(answers[1] ?? Buffer.alloc(0)).ok_response).toBeDefined()
    return metrics.internalErrors.get().then((m) => expect(m.values[0]?.value).toBe(1))
  })
})

describe('--max-request-bytes', () => {
  it('refuses a larger CheckRequest with RESOURCE_EXHAUSTED and serves the next one', async () => {
    const running = await startServer(EXAMPLE, { maxRequestBytes: 4096 })
    const client = checkClient(running.grpcPort)
    try {
      const big = official.encodeRequest({
        attributes: {
          request: {
            http: { host: 'www.example.com', headers: { 'x-padding': 'x'.repeat(5000) } },
          },
        },
      })
      await expect(callCheck(client, big)).rejects.toMatchObject({ code: 8 })
      expect(official.decodeResponse(await callCheck(client, FIXTURE)).ok_response).toBeDefined()
    } finally {
      client.close()
      await running.stop()
    }
  })
})

describe('graceful shutdown (SIGTERM)', () => {
  const Health = makeClientConstructor(
    healthService,
    'grpc.health.v1.Health',
  ) as ServiceClientConstructor

  function healthOf(port: number): Promise<string> {
    const health = new Health(`127.0.0.1:${port}`, credentials.createInsecure())
    return new Promise((resolve, reject) =>
      health['check']?.({ service: '' }, (err: Error | null, res: { status: string }) => {
        health.close()
        if (err) reject(err)
        else resolve(res.status)
      }),
    )
  }

  /** Calls Check back to back until `stop()`; records each outcome with its time. */
  function traffic(client: Client) {
    const outcomes: { at: number; ok: boolean }[] = []
    let stopped = false
    const loop = (async () => {
      while (!stopped) {
        try {
          official.decodeResponse(await callCheck(client, FIXTURE)) as Message
          outcomes.push({ at: performance.now(), ok: true })
        } catch {
          outcomes.push({ at: performance.now(), ok: false })
          await new Promise((r) => setTimeout(r, 5))
        }
      }
    })()
    return {
      outcomes,
      async stop() {
        stopped = true
        await loop
      },
    }
  }

  function policyFile(): string {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-shutdown-'))
    writeFileSync(join(dir, 'policy.yaml'), readFileSync(EXAMPLE))
    return join(dir, 'policy.yaml')
  }

  /** The built server with --grace-period `seconds`, under continuous calls, sent SIGTERM. */
  async function sigtermUnderLoad(seconds: number) {
    const server = spawnServe(policyFile(), ['--grace-period', String(seconds)])
    const { grpcPort, httpPort } = await server.started()
    const client = checkClient(grpcPort)
    const load = traffic(client)
    await until(5_000, () => load.outcomes.length > 50, 'traffic')
    const exited = new Promise<number | null>((resolve) => server.child.on('exit', resolve))
    const sigterm = performance.now()
    server.child.kill('SIGTERM')
    return { grpcPort, httpPort, client, load, exited, sigterm }
  }

  it('goes NOT_SERVING at once, keeps answering while calls come, and exits 0 once they stop', {
    timeout: 20_000,
  }, async () => {
    const { grpcPort, httpPort, client, load, exited, sigterm } = await sigtermUnderLoad(8)
    await until(2_000, async () => (await healthOf(grpcPort)) === 'NOT_SERVING', 'NOT_SERVING')
    expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(503)
    const atNotServing = load.outcomes.length
    await until(
      3_000,
      () => load.outcomes.length > atNotServing + 50,
      'calls answered while draining',
    )
    await load.stop()
    client.close()
    expect(await exited).toBe(0)
    const took = performance.now() - sigterm
    expect(took).toBeLessThan(8_000) // it left before the grace period once calls stopped
    expect(load.outcomes.filter((o) => !o.ok)).toEqual([])
  })

  it('answers every call until the grace period ends when calls never stop, then exits 0', {
    timeout: 20_000,
  }, async () => {
    const { client, load, exited, sigterm } = await sigtermUnderLoad(3)
    expect(await exited).toBe(0)
    const took = performance.now() - sigterm
    await load.stop()
    client.close()
    expect(took).toBeGreaterThan(2_000)
    expect(took).toBeLessThan(3_000 + 1_000)
    // The drain lasts until the grace period less the time kept to finish in-flight calls.
    const beforeGrace = load.outcomes.filter((o) => o.at < sigterm + 2_400)
    expect(beforeGrace.length).toBeGreaterThan(100)
    expect(beforeGrace.filter((o) => !o.ok)).toEqual([])
  })
})
