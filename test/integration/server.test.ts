import { execFile, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { type AddressInfo, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Client } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { FIXTURES, type Message, official, ROOT, TOOLS } from '../support/protos.js'
import { spawnServe, startServer } from '../support/server.js'

const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')
const PYTHON = '/usr/bin/python3'

interface Expected {
  allowed: boolean
  reason: string
  site: string
  status?: number
  client?: string
  clientHeader?: string
  keeps?: string[]
}

const REMOVE_ALL = [
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-scheme',
  'forwarded',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
]
const TRUSTED = ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port']

// Every Envoy fixture under examples/policy.yaml, with the decision an operator should expect.
const EXPECTED: Record<string, Expected> = {
  '01-ipv4-direct-host': {
    allowed: true,
    reason: 'host_allowed',
    site: 'default',
    client: '198.51.100.23',
  },
  '02-ipv6-peer': {
    allowed: true,
    reason: 'host_allowed',
    site: 'default',
    client: '2001:db8:85a3::8a2e:370:7334',
  },
  '03-authority-with-port': {
    allowed: true,
    reason: 'host_allowed',
    site: 'default',
    client: '203.0.113.14',
  },
  '04-elb-healthcheck-node-ip-host': {
    allowed: true,
    reason: 'host_cidr',
    site: 'default',
    client: '10.0.3.77',
  },
  '05-k8s-probe-health-header': {
    allowed: true,
    reason: 'health_check',
    site: 'default',
    client: '10.0.12.34',
  },
  '06-trusted-proxy-chain-xff': {
    allowed: true,
    reason: 'host_allowed',
    site: 'default',
    client: '203.0.113.7',
    keeps: TRUSTED,
  },
  '07-forwarded-rfc7239': {
    allowed: true,
    reason: 'host_allowed',
    site: 'default',
    client: '10.1.2.3',
    keeps: TRUSTED,
  },
  '08-spoofed-client-ip-headers': {
    allowed: true,
    reason: 'host_allowed',
    site: 'default',
    client: '198.51.100.200',
  },
  '09-context-extensions-site': {
    allowed: true,
    reason: 'host_allowed',
    site: 'blog',
    client: '203.0.113.50',
  },
  '10-istio-mtls-principal': {
    allowed: false,
    reason: 'host_not_allowed',
    site: 'default',
    status: 403,
    client: '10.244.1.23',
  },
  '11-header-map-raw-values': {
    allowed: true,
    reason: 'host_allowed',
    site: 'default',
    client: '198.51.100.23',
  },
  '12-extra-fields-tls-metadata-body': {
    allowed: true,
    reason: 'host_allowed',
    site: 'default',
    client: '203.0.113.88',
  },
  '13-istio-docs-real-sample': {
    allowed: false,
    reason: 'host_not_allowed',
    site: 'default',
    status: 403,
    client: '10.44.0.22',
  },
}
const NAMES = Object.keys(EXPECTED)

let running: Running
let client: Client
const call = (bytes: Buffer): Promise<Buffer> => callCheck(client, bytes)

beforeAll(async () => {
  running = await startServer(EXAMPLE)
  client = checkClient(running.grpcPort)
})

afterAll(async () => {
  client?.close()
  await running?.stop()
})

describe('the server on examples/policy.yaml', () => {
  it.each(NAMES)('%s gets the expected answer over gRPC', async (name) => {
    const want = EXPECTED[name] as Expected
    const answer: Message = official.decodeResponse(
      await call(readFileSync(join(FIXTURES, `${name}.bin`))),
    )
    const meta: Record<string, string> = {}
    for (const [k, v] of Object.entries(answer.dynamic_metadata.fields))
      meta[k] = (v as Message).stringValue
    expect(meta).toEqual({
      decision: want.allowed ? 'allow' : 'deny',
      reason: want.reason,
      site: want.site,
      mode: 'enforce',
      client: want.client,
    })
    if (want.allowed) {
      expect(answer.status?.code ?? 0).toBe(0)
      const removed = REMOVE_ALL.filter((h) => !(want.keeps ?? []).includes(h))
      expect(answer.ok_response.headers_to_remove).toEqual(removed)
      expect(
        answer.ok_response.headers.map((h: Message) => [
          h.header.key,
          h.header.value,
          h.append_action,
        ]),
      ).toEqual([['x-real-ip', want.client, 'OVERWRITE_IF_EXISTS_OR_ADD']])
    } else {
      expect(answer.status.code).toBe(7)
      expect(answer.denied_response.status.code).toBe('Forbidden')
      expect(answer.denied_response.body).toBe('Forbidden\n')
    }
  })

  it('answers garbage with a 400 deny and keeps serving', async () => {
    const garbage: Message = official.decodeResponse(
      await call(Buffer.from('GET / HTTP/1.1\r\n\r\n')),
    )
    expect(garbage.denied_response.status.code).toBe('BadRequest')
    const next: Message = official.decodeResponse(
      await call(readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin'))),
    )
    expect(next.ok_response).toBeDefined()
  })

  it('is live and ready on the HTTP port', async () => {
    const base = `http://127.0.0.1:${running.httpPort}`
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
    expect((await fetch(`${base}/readyz`)).status).toBe(200)
    expect((await fetch(`${base}/nope`)).status).toBe(404)
  })

  const haveGrpcio = existsSync(PYTHON) && spawnOk(PYTHON, ['-c', 'import grpc'])
  if (!haveGrpcio) {
    process.stderr.write(
      '\n*** SKIPPED: python3-grpcio is missing, so the fixtures were NOT sent over an independent gRPC stack.\n' +
        '*** Install it with: apt-get update && apt-get install -y python3-grpcio (.ci/run does)\n\n',
    )
  }
  it.skipIf(!haveGrpcio)(
    'answers the same over an independent gRPC stack (python3-grpcio)',
    async () => {
      const files = NAMES.map((n) => join(FIXTURES, `${n}.bin`))
      const { stdout } = await promisify(execFile)(PYTHON, [
        join(TOOLS, 'authz_client.py'),
        `127.0.0.1:${running.grpcPort}`,
        ...files,
      ])
      const lines = stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      expect(lines).toHaveLength(NAMES.length)
      lines.forEach((line, i) => {
        const want = EXPECTED[NAMES[i] as string] as Expected
        expect(line.ok).toBe(true)
        expect(line.response.allowed).toBe(want.allowed)
        expect(line.response.http_status).toBe(want.allowed ? null : want.status)
        expect(line.response.dynamic_metadata).toMatchObject({
          reason: want.reason,
          site: want.site,
        })
        expect(line.response.unknown_fields).toEqual([])
      })
    },
  )
})

function spawnOk(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args).status === 0
}

describe('the hostguard command', () => {
  const main = join(ROOT, 'dist', 'main.js')

  it('is built (npm test builds it first)', () => {
    expect(existsSync(main)).toBe(true)
  })

  /** `hostguard serve` with `args` until it exits: its code and its stdout's JSON lines. */
  function serveUntilExit(args: string[]): Promise<{ code: number | null; lines: Message[] }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [main, 'serve', ...args])
      let stdout = ''
      child.stdout.on('data', (d) => {
        stdout += d
      })
      child.on('close', (code) =>
        resolve({
          code,
          lines: stdout
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l)),
        }),
      )
    })
  }

  it('logs one JSON line per policy mistake, with where it is, and exits 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-cli-'))
    const bad = join(dir, 'bad.yaml')
    writeFileSync(
      bad,
      'version: 1\nallowedHosts: ["*.example.io", example.com:8000]\ntrustedProxies: [10.0.0.1/8]\n',
    )
    const { code, lines } = await serveUntilExit([
      '--policy',
      bad,
      '--grpc-port',
      '0',
      '--http-port',
      '0',
    ])
    expect(code).toBe(1)
    const error = (line: number, col: number, field: string, code: string, detail: string) => ({
      level: 'error',
      msg: 'policy error',
      file: bad,
      line,
      col,
      field,
      code,
      detail,
    })
    expect(lines).toEqual([
      expect.objectContaining(
        error(
          2,
          16,
          'allowedHosts[0]',
          'POLICY_HOST_PATTERN_WILDCARD',
          '"*.example.io" is not a pattern Django matches; use ".example.io" for the domain and all its subdomains',
        ),
      ),
      expect.objectContaining(
        error(
          2,
          32,
          'allowedHosts[1]',
          'POLICY_HOST_PATTERN_PORT',
          '"example.com:8000" never matches: the port is removed from the Host before matching; use "example.com"',
        ),
      ),
      expect.objectContaining(
        error(
          3,
          18,
          'trustedProxies[0]',
          'POLICY_CIDR_HOST_BITS',
          '"10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?',
        ),
      ),
    ])
  })

  it('logs why it cannot start as a JSON line and exits 1 when a port is taken', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-cli-'))
    const good = join(dir, 'good.yaml')
    writeFileSync(good, 'version: 1\nallowedHosts: [www.example.com]\n')
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    try {
      const port = (taken.address() as AddressInfo).port
      const { code, lines } = await serveUntilExit([
        '--policy',
        good,
        '--listen',
        '127.0.0.1',
        '--grpc-port',
        '0',
        '--http-port',
        String(port),
      ])
      expect(code).toBe(1)
      expect(lines).toEqual([
        expect.objectContaining({
          level: 'fatal',
          msg: 'cannot start',
          err: expect.stringContaining('EADDRINUSE'),
        }),
      ])
    } finally {
      taken.close()
    }
  })

  it('serves the example policy and reports ready', async () => {
    const server = spawnServe(EXAMPLE)
    try {
      const { httpPort } = await server.started()
      expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200)
    } finally {
      const exited = new Promise((resolve) => server.child.on('close', resolve))
      server.child.kill('SIGTERM')
      expect(await exited).toBe(0)
    }
  })
})
