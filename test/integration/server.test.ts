import { execFile, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { type AddressInfo, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Client } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { FIXTURE_CASES } from '../cases/envoy.cases.js'
import { expectAnswer } from '../cases/suite.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { FIXTURES, type Message, official, ROOT, TOOLS } from '../support/protos.js'
import { spawnServe, startServer } from '../support/server.js'

const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')
const PYTHON = '/usr/bin/python3'

// The fixtures' expected answers are the case suite's (test/cases/envoy.cases.ts); the suite runs
// them against this server too (test/cases/server.test.ts).
const FIXTURES_EXPECTED = FIXTURE_CASES.map((c) => ({
  file: c.request.fixture as string,
  want: c.want,
}))

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
      const files = FIXTURES_EXPECTED.map(({ file }) => join(FIXTURES, `${file}.bin`))
      const { stdout } = await promisify(execFile)(PYTHON, [
        join(TOOLS, 'authz_client.py'),
        `127.0.0.1:${running.grpcPort}`,
        ...files,
      ])
      const lines = stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      expect(lines).toHaveLength(FIXTURES_EXPECTED.length)
      lines.forEach((line, i) => {
        const { file, want } = FIXTURES_EXPECTED[i] as (typeof FIXTURES_EXPECTED)[number]
        expect(line.ok, file).toBe(true)
        const r = line.response
        expect(r.unknown_fields, file).toEqual([])
        const meta = r.dynamic_metadata ?? {}
        expectAnswer(
          {
            decision: meta.decision,
            reason: meta.reason,
            site: meta.site,
            mode: meta.mode,
            client: meta.client,
            status: r.allowed ? undefined : r.http_status,
            set: r.ok_headers.map(([key, value]: [string, string]) => `${key}: ${value}`),
            remove: [...r.headers_to_remove].sort(),
          },
          want,
          file,
        )
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
