import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { promisify } from 'node:util'
import {
  type Client,
  credentials,
  makeClientConstructor,
  type ServiceClientConstructor,
} from '@grpc/grpc-js'
import fc from 'fast-check'
import { service as healthService } from 'grpc-health-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Running, serve } from '../../src/serve.js'
import { createLog } from '../../src/server/log.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { FIXTURES, official, ROOT } from '../support/protos.js'
import { haveGrpcio, PYTHON, skipLoudly } from '../support/system.js'

const SECRET = 'S3cr3t-hostguard-observability'
const POLICY = join(ROOT, 'test', 'integration', 'observability.policy.yaml')

/** A server with its log captured at debug level. */
async function start(): Promise<{ running: Running; logs: string[] }> {
  const logs: string[] = []
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk))
      done()
    },
  })
  const running = await serve({
    policyFile: POLICY,
    listen: '127.0.0.1',
    grpcPort: 0,
    httpPort: 0,
    log: createLog('debug', sink),
    env: { OBS_SECRET: SECRET },
  })
  return { running, logs }
}

function request(o: {
  host: string
  peer?: string
  site?: string
  path?: string
  headers?: Record<string, string>
}): Buffer {
  return official.encodeRequest({
    attributes: {
      source: { address: { socket_address: { address: o.peer ?? '198.51.100.7' } } },
      request: {
        http: {
          host: o.host,
          path: o.path ?? '/',
          headers: { ':authority': o.host, ...o.headers },
        },
      },
      ...(o.site === undefined ? {} : { context_extensions: { site: o.site } }),
    },
  })
}

async function metricsText(running: Running): Promise<string> {
  return (await fetch(`http://127.0.0.1:${running.httpPort}/metrics`)).text()
}

/** The hostguard_* series in a /metrics text. */
function hostguardSeries(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith('hostguard_'))
}

let running: Running
let logs: string[]
let client: Client

beforeAll(async () => {
  ;({ running, logs } = await start())
  client = checkClient(running.grpcPort)
})

afterAll(async () => {
  client?.close()
  await running?.stop()
})

describe('/metrics', () => {
  it("shows SPEC's metrics with their types, labels and buckets", async () => {
    await callCheck(client, request({ host: 'www.example.com' }))
    await callCheck(client, request({ host: 'evil.example' }))
    await callCheck(client, request({ host: 'evil.example', site: 'shadow' }))
    const text = await metricsText(running)
    for (const [name, type] of [
      ['hostguard_decisions_total', 'counter'],
      ['hostguard_decision_duration_seconds', 'histogram'],
      ['hostguard_policy_reloads_total', 'counter'],
      ['hostguard_policy_last_reload_success', 'gauge'],
      ['hostguard_policy_loaded_timestamp_seconds', 'gauge'],
      ['hostguard_dynamic_addresses', 'gauge'],
    ]) {
      expect(text).toContain(`# TYPE ${name} ${type}`)
    }
    expect(text).toMatch(
      /^hostguard_decisions_total\{site="default",decision="allow",reason="host_allowed",mode="enforce",api="grpc"\} [1-9]/m,
    )
    expect(text).toMatch(
      /^hostguard_decisions_total\{site="default",decision="deny",reason="host_not_allowed",mode="enforce",api="grpc"\} [1-9]/m,
    )
    expect(text).toMatch(
      /^hostguard_decisions_total\{site="shadow",decision="deny",reason="host_not_allowed",mode="dry_run",api="grpc"\} [1-9]/m,
    )
    const buckets = [
      ...text.matchAll(
        /^hostguard_decision_duration_seconds_bucket\{le="([^"]+)",decision="allow"\}/gm,
      ),
    ].map((m) => m[1])
    expect(buckets).toEqual([
      '0.00001',
      '0.000025',
      '0.00005',
      '0.0001',
      '0.00025',
      '0.0005',
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '+Inf',
    ])
    expect(text).toMatch(/^hostguard_policy_reloads_total\{result="failure"\} 0$/m)
    expect(text).toMatch(/^hostguard_policy_last_reload_success 1$/m)
    expect(text).toMatch(/^hostguard_policy_loaded_timestamp_seconds 1[0-9]{9}/m)
    expect(text).toContain('process_cpu_user_seconds_total')
    expect(text).toContain('nodejs_heap_size_used_bytes')
  })

  it('keeps the same series whatever hosts, paths, sites and addresses clients send', async () => {
    const before = hostguardSeries(await metricsText(running))
      .map((l) => l.replace(/ [^ ]+$/, ''))
      .sort()
    const requests = fc.sample(
      fc.record({
        host: fc.oneof(fc.domain(), fc.string(), fc.constant('www.example.com')),
        peer: fc.oneof(fc.ipV4(), fc.ipV6(), fc.string()),
        site: fc.option(fc.oneof(fc.constantFrom('shadow', 'default'), fc.string()), {
          nil: undefined,
        }),
        path: fc.webPath(),
        xff: fc.array(fc.oneof(fc.ipV4(), fc.string()), { maxLength: 4 }),
      }),
      1000,
    )
    for (const r of requests) {
      await callCheck(
        client,
        request({
          host: r.host,
          peer: r.peer,
          path: r.path,
          headers: { 'x-forwarded-for': r.xff.join(', ') },
          ...(r.site === undefined ? {} : { site: r.site }),
        }),
      )
    }
    const after = hostguardSeries(await metricsText(running))
      .map((l) => l.replace(/ [^ ]+$/, ''))
      .sort()
    expect(after).toEqual(before)
    const total = hostguardSeries(await metricsText(running))
      .filter((l) => l.startsWith('hostguard_decisions_total{'))
      .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0)
    expect(total).toBeGreaterThanOrEqual(1000)
  })
})

describe('decision logs', () => {
  it('logs denies at info and allows at debug, as JSON lines with escaped client values', async () => {
    await callCheck(
      client,
      request({ host: 'evil.example\r\n{"forged":true}', headers: { 'x-request-id': 'abc-123' } }),
    )
    const lines = logs
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    const deny = lines.find((l) => l.msg === 'deny' && l.requestId === 'abc-123')
    expect(deny).toMatchObject({
      level: 'info',
      decision: 'deny',
      reason: 'invalid_host',
      site: 'default',
      client: '198.51.100.7',
      peer: '198.51.100.7',
      path: '/',
    })
    expect(deny.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(deny.host).toBe('evil.example\\u000d\\u000a{"forged":true}')
    expect(lines.some((l) => l.msg === 'allow' && l.level === 'debug')).toBe(true)
    expect(lines.some((l) => l.forged)).toBe(false)
  })

  it('logs the start-up and the policy warnings', () => {
    const lines = logs
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(lines.find((l) => l.msg === 'hostguard serving')).toMatchObject({
      sites: ['shadow'],
      grpcPort: running.grpcPort,
      httpPort: running.httpPort,
    })
    expect(lines.filter((l) => l.msg === 'policy warning')).toEqual([
      expect.objectContaining({
        level: 'warn',
        code: 'POLICY_WARN_DRY_RUN',
        file: POLICY,
        line: 11,
        col: 13,
        field: 'sites.shadow.dryRun',
        detail: expect.stringContaining('answered as allowed'),
      }),
    ])
  })

  it('never writes the health-check secret to a log line or a metric', async () => {
    const ok = official.decodeResponse(
      await callCheck(
        client,
        request({ host: '10.0.0.1:80', path: '/healthz', headers: { 'x-health': SECRET } }),
      ),
    )
    expect(ok.dynamic_metadata.fields.reason.stringValue).toBe('health_check')
    await callCheck(
      client,
      request({ host: 'evil.example', headers: { 'x-health': `${SECRET},${SECRET}` } }),
    )
    await callCheck(
      client,
      request({ host: 'evil.example', path: '/other', headers: { 'x-health': SECRET } }),
    )
    expect(logs.join('')).not.toContain(SECRET)
    expect(await metricsText(running)).not.toContain(SECRET)
  })
})

describe('policy warnings across reloads', () => {
  it('are logged when new or changed, not again at each reload', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-warnings-'))
    const file = join(dir, 'policy.yaml')
    const lines: { msg: string; code?: string; line?: number; warnings?: string[] }[] = []
    const write = (text: string) => writeFileSync(file, text)
    write('version: 1\nallowedHosts: ["*"]\nsites:\n  shadow: { dryRun: true }\n')
    const other = await serve({
      policyFile: file,
      listen: '127.0.0.1',
      grpcPort: 0,
      httpPort: 0,
      log: createLog('info', { write: (line: string) => lines.push(JSON.parse(line)) }),
      env: {},
      watch: false,
    })
    /** The warnings in force that each `policy reloaded` line since the last warned() names. */
    const inForce = () => lines.filter((l) => l.msg === 'policy reloaded').map((l) => l.warnings)
    const warned = () => {
      const out = lines.filter((l) => l.msg === 'policy warning').map((l) => `${l.code}@${l.line}`)
      lines.length = 0
      return out
    }
    try {
      expect(warned()).toEqual(['POLICY_WARN_ANY_HOST@2', 'POLICY_WARN_DRY_RUN@4'])
      expect(await other.reload('test')).toBe(true)
      expect(inForce()).toEqual([['POLICY_WARN_ANY_HOST', 'POLICY_WARN_DRY_RUN']])
      expect(warned()).toEqual([])
      // Moved two lines down by a comment: the same warnings.
      write('# edited\n\nversion: 1\nallowedHosts: ["*"]\nsites:\n  shadow: { dryRun: true }\n')
      expect(await other.reload('test')).toBe(true)
      expect(warned()).toEqual([])
      // One gone, one new, one kept.
      write(
        'version: 1\nallowedHosts: [a.example]\ntrustedProxies: [0.0.0.0/0]\nsites:\n  shadow: { dryRun: true }\n',
      )
      expect(await other.reload('test')).toBe(true)
      expect(inForce()).toEqual([['POLICY_WARN_TRUSTS_ANY_PROXY', 'POLICY_WARN_DRY_RUN']])
      expect(warned()).toEqual(['POLICY_WARN_TRUSTS_ANY_PROXY@3'])
      // A failed reload changes nothing; the one that was gone comes back and is logged again.
      write('version: 2\n')
      expect(await other.reload('test')).toBe(false)
      write(
        'version: 1\nallowedHosts: ["*"]\ntrustedProxies: [0.0.0.0/0]\nsites:\n  shadow: { dryRun: true }\n',
      )
      expect(await other.reload('test')).toBe(true)
      expect(warned()).toEqual(['POLICY_WARN_ANY_HOST@2'])
    } finally {
      await other.stop()
    }
  })
})

describe('grpc.health.v1.Health', () => {
  const Health = makeClientConstructor(
    healthService,
    'grpc.health.v1.Health',
  ) as ServiceClientConstructor

  function healthCheck(port: number, serviceName: string): Promise<string> {
    const health = new Health(`127.0.0.1:${port}`, credentials.createInsecure())
    return new Promise((resolve, reject) =>
      health['check']?.({ service: serviceName }, (err: Error | null, res: { status: string }) => {
        health.close()
        if (err) reject(err)
        else resolve(res.status)
      }),
    )
  }

  it('is SERVING for the server and the Authorization service once the policy is loaded', async () => {
    expect(await healthCheck(running.grpcPort, '')).toBe('SERVING')
    expect(await healthCheck(running.grpcPort, 'envoy.service.auth.v3.Authorization')).toBe(
      'SERVING',
    )
    await expect(healthCheck(running.grpcPort, 'nope')).rejects.toMatchObject({ code: 5 })
  })

  it('tells watchers NOT_SERVING as soon as shutdown begins', async () => {
    const { running: other } = await start()
    const health = new Health(`127.0.0.1:${other.grpcPort}`, credentials.createInsecure())
    const statuses: string[] = []
    const stream = health['watch']?.({ service: 'envoy.service.auth.v3.Authorization' })
    const notServing = new Promise<void>((resolve) =>
      stream.on('data', (m: { status: string }) => {
        statuses.push(m.status)
        if (statuses.length === 1) void other.stop()
        if (m.status === 'NOT_SERVING') resolve()
      }),
    )
    stream.on('error', () => {})
    await notServing
    stream.cancel()
    health.close()
    expect(statuses.slice(0, 2)).toEqual(['SERVING', 'NOT_SERVING'])
  })

  it.skipIf(!haveGrpcio)('answers python3-grpcio (gRPC C-core) with SERVING', async () => {
    const script = [
      'import grpc, sys',
      'ch = grpc.insecure_channel(sys.argv[1])',
      "check = ch.unary_unary('/grpc.health.v1.Health/Check', request_serializer=lambda b: b, response_deserializer=lambda b: b)",
      "name = b'envoy.service.auth.v3.Authorization'",
      'print(check(bytes([0x0a, len(name)]) + name, timeout=5).hex())',
    ].join('\n')
    const { stdout } = await promisify(execFile)(PYTHON, [
      '-c',
      script,
      `127.0.0.1:${running.grpcPort}`,
    ])
    expect(stdout.trim()).toBe('0801') // HealthCheckResponse { status: SERVING (1) }
  })
  skipLoudly(
    !haveGrpcio,
    'python3-grpcio is missing: gRPC health was NOT checked over the C-core stack.',
  )
})

describe('the example fixtures still pass through the observed handler', () => {
  it('answers fixture 01', async () => {
    const answer = official.decodeResponse(
      await callCheck(client, readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin'))),
    )
    expect(answer.ok_response).toBeDefined()
  })
})
