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
import { DecisionObserver } from '../../src/decision/observe.js'
import type { CompiledPolicy } from '../../src/decision/types.js'
import { PolicyStore } from '../../src/policy/store.js'
import { checkCall, DEFAULT_CONNECTION_LIMITS } from '../../src/server/grpc.js'
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
    const run = checkCall(
      {
        store,
        observer: new DecisionObserver(metrics, log, ['grpc']),
        log,
        host: '127.0.0.1',
        port: 0,
        maxRequestBytes: 4096,
        connections: DEFAULT_CONNECTION_LIMITS,
        onInternalError: () => metrics.internalErrors.inc(),
      },
      () => {},
    )
    const answers: Buffer[] = []
    const call = () =>
      run(
        FIXTURE,
        (response) => answers.push(response),
        (code, details) => expect.fail(`answered status ${code} (${details}), not a deny`),
      )
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

  type Phase = 'serving' | 'draining' | 'drained'

  /** Calls Check back to back until `stop()`; records each outcome with the phase it ended in. */
  function traffic(client: Client, phase: () => Phase = () => 'serving') {
    const outcomes: { phase: Phase; ok: boolean }[] = []
    let stopped = false
    const loop = (async () => {
      while (!stopped) {
        try {
          official.decodeResponse(await callCheck(client, FIXTURE)) as Message
          outcomes.push({ phase: phase(), ok: true })
        } catch {
          outcomes.push({ phase: phase(), ok: false })
          // A refused call fails at once: give the event loop a turn before the next.
          await new Promise((r) => setImmediate(r))
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

  it('goes NOT_SERVING at once, keeps answering while calls come, and exits 0 once they stop', {
    timeout: 20_000,
  }, async () => {
    // An hour's grace: the process can only leave early, because the calls stopped.
    const server = spawnServe(policyFile(), ['--grace-period', '3600'])
    const { grpcPort, httpPort } = await server.started()
    const client = checkClient(grpcPort)
    const load = traffic(client)
    await until(5_000, () => load.outcomes.length > 50, 'traffic')
    const exited = new Promise<number | null>((resolve) => server.child.on('exit', resolve))
    server.child.kill('SIGTERM')
    await until(2_000, async () => (await healthOf(grpcPort)) === 'NOT_SERVING', 'NOT_SERVING')
    expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(503)
    const atNotServing = load.outcomes.length
    await until(
      5_000,
      () => load.outcomes.length > atNotServing + 50,
      'calls answered while draining',
    )
    await load.stop()
    client.close()
    expect(await exited).toBe(0)
    expect(load.outcomes.filter((o) => !o.ok)).toEqual([])
  })

  it('answers every call until the grace period ends when calls never stop, then stops', {
    timeout: 20_000,
  }, async () => {
    const logs: Record<string, unknown>[] = []
    const running = await startServer(EXAMPLE, {
      log: pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) }),
    })
    const client = checkClient(running.grpcPort)
    let shuttingDown = false
    // The log line is written before the server closes: every call that failed ended after it.
    const drained = () => logs.some((l) => l['msg'] === 'drained; finishing in-flight calls')
    const load = traffic(client, () =>
      drained() ? 'drained' : shuttingDown ? 'draining' : 'serving',
    )
    try {
      await until(5_000, () => load.outcomes.length > 50, 'traffic')
      shuttingDown = true
      // Resolves although the calls never stop: the grace period ended the drain.
      await running.shutdown(3_000)
      expect(drained()).toBe(true)
    } finally {
      await load.stop()
      client.close()
    }
    const before = load.outcomes.filter((o) => o.phase !== 'drained')
    expect(before.filter((o) => !o.ok)).toEqual([])
    expect(before.filter((o) => o.phase === 'draining').length).toBeGreaterThan(0)
  })
})
