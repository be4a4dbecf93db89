// The HTTP authorization front end (SPEC "HTTP authorization"): in process, authorize() per
// dialect against check() for the equivalent gRPC CheckRequest; end to end, `hostguard serve
// --authz-port` against the no-op node:http server (bench/noop-http-server.ts), both with the
// nginx request of bench/http-requests.ts.
// End to end uses h2load --h1 (Debian nghttp2-client), not oha: at one request in flight per
// keep-alive connection it costs about half oha's client CPU per request, so on a 2-core machine
// the generator, not the server, is less likely to be what is measured; and it logs each
// request's time. Servers pinned to core 0, h2load to core 1; rounds alternate the order.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Decision } from '../src/decision/types.js'
import { check } from '../src/grpc-authz/check.js'
import { authorize } from '../src/http-authz/authorize.js'
import { DIALECTS, type Dialect } from '../src/http-authz/request.js'
import { formatIp } from '../src/net/ip.js'
import { FIXTURES, ours, ROOT } from '../test/support/protos.js'
import { freePort } from '../test/support/server.js'
import { until } from '../test/support/wait.js'
import { cpuSeconds, IMAGE_NODE_OPTIONS, percentile, pinned, rssMiB } from './e2e.js'
import { examplePolicy } from './example-policy.js'
import { AUTHORITY, BROWSER_HEADERS, DIALECT_REQUESTS, PATH, PEER } from './http-requests.js'
import { measure, type Row } from './inprocess.js'

/** The request of bench/http-requests.ts as Envoy's ext_authz gRPC filter sends it (fixture 01's shape). */
function grpcRequest(): Buffer {
  const message = ours.decodeRequest(readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin')))
  message.attributes.source.address.socket_address.address = PEER
  const headers: Record<string, string> = {
    ':authority': AUTHORITY,
    ':method': 'GET',
    ':path': PATH,
    ':scheme': 'https',
  }
  for (let i = 0; i + 1 < BROWSER_HEADERS.length; i += 2)
    headers[(BROWSER_HEADERS[i] as string).toLowerCase()] = BROWSER_HEADERS[i + 1] as string
  Object.assign(headers, {
    'x-envoy-external-address': PEER,
    'x-forwarded-for': PEER,
    'x-forwarded-proto': 'https',
    'x-request-id': '4f1c2a8e-7b3d-4e51-9c0a-2d6f8b1e3a77',
  })
  Object.assign(message.attributes.request.http, {
    headers,
    host: AUTHORITY,
    path: PATH,
    scheme: 'https',
  })
  return ours.encodeRequest(message)
}

const outcome = (d: Decision) =>
  `${d.allowed ? 'allow' : 'deny'} ${d.reason} ${d.client.ip === undefined ? '-' : formatIp(d.client.ip)}`

export interface DialectRows {
  readonly dialects: ReadonlyMap<Dialect, Row>
  readonly grpc: Row
  /** The decision all of them reached (they must agree, or the bench stops). */
  readonly outcome: string
}

/** authorize() per dialect and check() on the equivalent request, side by side in one run. */
export async function dialectsBench(timeMs: number): Promise<DialectRows> {
  const policy = examplePolicy()
  const bytes = grpcRequest()
  const expected = outcome(check(policy, bytes).decision)
  if (!expected.startsWith('allow '))
    throw new Error(`the gRPC request is not allowed: ${expected}`)
  for (const dialect of DIALECTS) {
    const { url, rawHeaders } = DIALECT_REQUESTS[dialect]
    const got = authorize(policy, url, rawHeaders)
    const seen = got === undefined ? 'no dialect' : outcome(got.decision)
    if (seen !== expected) throw new Error(`${dialect}: ${seen}, gRPC: ${expected}`)
  }
  const tasks: Record<string, () => void> = { grpc: () => check(policy, bytes) }
  for (const dialect of DIALECTS) {
    const { url, rawHeaders } = DIALECT_REQUESTS[dialect]
    tasks[dialect] = () => authorize(policy, url, rawHeaders)
  }
  const rows = new Map((await measure(tasks, timeMs)).map((r) => [r.name, r]))
  const grpc = rows.get('grpc') as Row
  return {
    dialects: new Map(DIALECTS.map((d) => [d, rows.get(d) as Row])),
    grpc,
    outcome: expected,
  }
}

export interface AuthzHttpOptions {
  readonly rounds: number
  readonly requests: number
  /** Requests sent, unmeasured, to each server before the measured ones (JIT, connections). */
  readonly warmupRequests: number
  readonly connections: number
}

/** `no-op, lean`: the no-op with hostguard's request class (bench/noop-http-server.ts). */
export type AuthzServer = 'hostguard' | 'no-op' | 'no-op, lean'

export interface AuthzLoadResult {
  readonly server: AuthzServer
  readonly round: number
  readonly rps: number
  readonly ok: number
  readonly failed: number
  readonly p50Us: number
  readonly p99Us: number
  readonly p999Us: number
  /** Server CPU microseconds per answered request. */
  readonly cpuUsPerCall: number
  readonly rssMiB: number
}

interface Started {
  readonly child: ChildProcess
  readonly pid: number
  readonly port: number
}

async function start(server: AuthzServer): Promise<Started> {
  const port = await freePort()
  const args =
    server === 'hostguard'
      ? [
          join(ROOT, 'dist', 'main.js'),
          'serve',
          '--policy',
          join(ROOT, 'examples', 'policy.yaml'),
          '--grpc-port',
          String(await freePort()),
          '--http-port',
          String(await freePort()),
          '--authz-port',
          String(port),
          '--listen',
          '127.0.0.1',
        ]
      : [
          join(ROOT, 'build', 'tools', 'bench', 'noop-http-server.js'),
          String(port),
          ...(server === 'no-op, lean' ? ['lean'] : []),
        ]
  const [command, full] = pinned(0, process.execPath, args)
  const child = spawn(command, full, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, HEALTH_CHECK_HEADER_VALUE: 'secret', NODE_OPTIONS: IMAGE_NODE_OPTIONS },
  })
  let out = ''
  const collect = (d: Buffer) => {
    out += d
    if (out.includes('serving')) child.stdout?.off('data', collect)
  }
  child.stdout?.on('data', collect)
  child.stdout?.resume()
  await until(15_000, () => out.includes('serving'), `${server} start-up`)
  return { child, pid: child.pid ?? 0, port }
}

/** The nginx request as h2load -H arguments (h2load sends Host from the URL). */
const headerArgs = (): string[] => {
  const raw = DIALECT_REQUESTS.nginx.rawHeaders
  const args: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2)
    if ((raw[i] as string).toLowerCase() !== 'host') args.push('-H', `${raw[i]}: ${raw[i + 1]}`)
  return args
}

async function load(port: number, requests: number, connections: number, log?: string) {
  // -m 1: one request in flight per connection, as a proxy's keep-alive pool sends them.
  const args = ['--h1', '-c', String(connections), '-m', '1', '-n', String(requests)]
  if (log !== undefined) args.push('--log-file', log)
  const url = `http://127.0.0.1:${port}${DIALECT_REQUESTS.nginx.url}`
  const [command, full] = pinned(1, 'h2load', [...args, ...headerArgs(), url])
  const { stdout } = await promisify(execFile)(command, full, { maxBuffer: 1 << 24 })
  return Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(stdout)?.[1] ?? Number.NaN)
}

/**
 * The servers started once and warmed up, then `rounds` measured loads each, the order rotated
 * every round: all meet the same machine, whatever else runs on it meanwhile.
 */
export async function authzHttpBench(o: AuthzHttpOptions): Promise<AuthzLoadResult[]> {
  const results: AuthzLoadResult[] = []
  const servers: AuthzServer[] = ['no-op', 'no-op, lean', 'hostguard']
  const running = new Map<AuthzServer, Started>()
  try {
    for (const server of servers) running.set(server, await start(server))
    for (const server of servers)
      await load(running.get(server)?.port ?? 0, o.warmupRequests, o.connections)
    for (let round = 1; round <= o.rounds; round++) {
      // Each round starts one server further on: each takes each place in the order in turn.
      const start = (round - 1) % servers.length
      for (const server of [...servers.slice(start), ...servers.slice(0, start)]) {
        const { pid, port } = running.get(server) as Started
        const log = join(mkdtempSync(join(tmpdir(), 'hostguard-h1-')), 'requests.log')
        const cpuBefore = cpuSeconds(pid)
        const rps = await load(port, o.requests, o.connections, log)
        const cpuUsed = cpuSeconds(pid) - cpuBefore
        // --log-file: start time (µs), status, request time (µs), one line per request
        const lines = readFileSync(log, 'utf8').trim().split('\n')
        const ok = lines.filter((l) => l.split('\t')[1] === '200').length
        const times = lines
          .map((l) => Number(l.split('\t')[2]))
          .filter((t) => Number.isFinite(t))
          .sort((a, b) => a - b)
        results.push({
          server,
          round,
          rps,
          ok,
          failed: o.requests - ok,
          p50Us: percentile(times, 0.5),
          p99Us: percentile(times, 0.99),
          p999Us: percentile(times, 0.999),
          cpuUsPerCall: (cpuUsed * 1e6) / Math.max(1, ok),
          rssMiB: rssMiB(pid),
        })
      }
    }
  } finally {
    for (const { child } of running.values()) child.kill('SIGKILL')
  }
  return results
}
