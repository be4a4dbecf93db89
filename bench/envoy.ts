// Through a real Envoy (the shipped envoy/edge.yaml, its addresses filled in): the same client load
// (a) with no ext_authz filter, (b) with hostguard, (c) with the no-op grpc-js Check server, and
// the load generator's own floor against a raw node:http2 server, alternated over rounds in one
// run. oha (crates.io) drives HTTP/2 cleartext: closed loop for requests/s, and open loop at fixed
// rates with --latency-correction, so each request is timed from when it was due, not from when a
// busy worker got round to it (h2load's --rps sends in bursts and times from the send).
// Envoy, the upstream and the ext_authz server are pinned to core 0, oha to core 1 (taskset).

import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer as createHttp2Server, type Http2Server } from 'node:http2'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { parse, stringify } from 'yaml'
import { renderBootstrap } from '../envoy/render.js'
import { ROOT } from '../test/support/protos.js'
import { freePort } from '../test/support/server.js'
import { until } from '../test/support/wait.js'
import { startServer } from './e2e.js'

export interface EnvoyBenchOptions {
  readonly rounds: number
  readonly closedRequests: number
  /** Requests sent, unmeasured, to each target before its measured loads (JIT, connections). */
  readonly warmupRequests: number
  readonly openRates: readonly number[]
  readonly openSeconds: number
}

export type Target =
  | 'generator floor'
  | 'envoy, no ext_authz'
  | 'envoy + hostguard'
  | 'envoy + no-op'

export interface EnvoyLoadResult {
  readonly target: Target
  readonly round: number
  /** `closed` or the open-loop rate in requests per second. */
  readonly load: 'closed' | number
  readonly rps: number
  readonly ok: number
  readonly failed: number
  readonly p50Us: number
  readonly p99Us: number
  readonly p999Us: number
}

const haveTaskset = spawnSync('taskset', ['--version']).status === 0
const pinned = (core: number, command: string, args: readonly string[]): [string, string[]] =>
  haveTaskset ? ['taskset', ['-c', String(core), command, ...args]] : [command, [...args]]

/** oha from OHA_BIN, the project's .tools/cargo (what .ci/run installs), or the PATH. */
export function findOha(): string | undefined {
  for (const candidate of [
    process.env['OHA_BIN'],
    join(ROOT, '.tools', 'cargo', 'bin', 'oha'),
    'oha',
  ])
    if (candidate && spawnSync(candidate, ['--version']).status === 0) return candidate
  return undefined
}

interface OhaJson {
  summary: { requestsPerSec: number }
  latencyPercentiles: Record<string, number | null>
  statusCodeDistribution: Record<string, number>
  errorDistribution: Record<string, number>
}

async function oha(bin: string, port: number, load: 'closed' | number, o: EnvoyBenchOptions) {
  // Two connections of 16 streams each, like two Envoy workers' worth of clients.
  const shape = ['--http2', '-c', '2', '-p', '16']
  const amount =
    load === 'closed'
      ? ['-n', String(o.closedRequests)]
      : ['-q', String(load), '-z', `${o.openSeconds}s`, '--latency-correction']
  const [command, args] = pinned(1, bin, [
    '--no-tui',
    '--output-format',
    'json',
    ...shape,
    ...amount,
    // The request names www.example.com (a host the example policy allows) and goes to 127.0.0.1.
    '--connect-to',
    `www.example.com:${port}:127.0.0.1:${port}`,
    `http://www.example.com:${port}/`,
  ])
  const { stdout } = await promisify(execFile)(command, args, { maxBuffer: 1 << 26 })
  const r = JSON.parse(stdout) as OhaJson
  const ok = r.statusCodeDistribution['200'] ?? 0
  const all = Object.values(r.statusCodeDistribution).reduce((a, b) => a + b, 0)
  // A duration's end cuts the requests still in flight: those are not failures.
  const errors = Object.entries(r.errorDistribution)
    .filter(([what]) => what !== 'aborted due to deadline')
    .reduce((a, [, n]) => a + n, 0)
  const us = (key: string) => (r.latencyPercentiles[key] ?? Number.NaN) * 1e6
  return {
    rps: r.summary.requestsPerSec,
    ok,
    failed: all - ok + errors,
    p50Us: us('p50'),
    p99Us: us('p99'),
    p999Us: us('p99.9'),
  }
}

function listen(server: HttpServer | Http2Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  )
}

const local = (port: number) => [{ address: '127.0.0.1', port }]

type Authz = { readonly kind: 'hostguard' | 'noop'; readonly port: number } | undefined

/**
 * The shipped edge.yaml for one target: without the ext_authz filter, or with it against `authz`.
 * The no-op has no grpc.health.v1 service, so its cluster loses the active health check.
 */
function bootstrap(appPort: number, listenPort: number, adminPort: number, authz: Authz) {
  const file = join(ROOT, 'envoy', 'edge.yaml')
  // biome-ignore lint/suspicious/noExplicitAny: Envoy configuration as YAML gives it
  const config: any = parse(
    renderBootstrap(readFileSync(file, 'utf8'), file, {
      clusters: new Map([
        ['app', local(appPort)],
        ['hostguard', local(authz?.port ?? 9)],
      ]),
      listeners: new Map([['edge', { address: '127.0.0.1', port: listenPort }]]),
      admin: { address: '127.0.0.1', port: adminPort },
    }),
  )
  const clusters: { name: string; health_checks?: unknown }[] = config.static_resources.clusters
  if (authz?.kind === 'noop')
    for (const cluster of clusters) if (cluster.name === 'hostguard') delete cluster.health_checks
  if (authz !== undefined) return config
  for (const listener of config.static_resources.listeners)
    for (const chain of listener.filter_chains)
      for (const filter of chain.filters) {
        const hcm = filter.typed_config
        if (hcm?.http_filters)
          hcm.http_filters = hcm.http_filters.filter(
            (f: { name: string }) => f.name !== 'envoy.filters.http.ext_authz',
          )
      }
  config.static_resources.clusters = clusters.filter((c) => c.name !== 'hostguard')
  return config
}

interface RunningEnvoy {
  readonly child: ChildProcess
  readonly port: number
}

async function startEnvoy(bin: string, appPort: number, authz: Authz): Promise<RunningEnvoy> {
  const [port, adminPort] = [await freePort(), await freePort()]
  const file = join(mkdtempSync(join(tmpdir(), 'hostguard-bench-envoy-')), 'edge.yaml')
  writeFileSync(file, stringify(bootstrap(appPort, port, adminPort, authz)))
  const [command, args] = pinned(0, bin, [
    '-c',
    file,
    '--concurrency',
    '1',
    '--disable-hot-restart',
    '--log-level',
    'warning',
    '--component-log-level',
    'hc:debug',
  ])
  const log = openSync(join(dirname(file), 'envoy.log'), 'w')
  const child = spawn(command, args, { stdio: ['ignore', log, log] })
  const admin = `http://127.0.0.1:${adminPort}`
  try {
    await until(20_000, async () => (await fetch(`${admin}/ready`)).ok, 'envoy ready')
    // With ext_authz, wait for the active gRPC health check to mark hostguard healthy, so that no
    // measured request meets a cluster that is still starting.
    if (authz?.kind === 'hostguard')
      await until(
        20_000,
        async () => {
          const clusters = await (await fetch(`${admin}/clusters`)).text()
          return clusters.includes(`hostguard::127.0.0.1:${authz.port}::health_flags::healthy`)
        },
        'hostguard cluster healthy',
      )
  } catch (error) {
    await stop(child)
    throw new Error(`${String(error)}; Envoy's log: ${join(dirname(file), 'envoy.log')}`)
  }
  return { child, port }
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })
}

/** Runs every target in turn, `rounds` times (the order reversed every other round). */
export async function envoyBench(
  envoyBin: string,
  ohaBin: string,
  o: EnvoyBenchOptions,
): Promise<EnvoyLoadResult[]> {
  const app = createHttpServer((_req, res) => res.end('ok'))
  const floor = createHttp2Server((_req, res) => res.end('ok'))
  const appPort = await listen(app)
  const floorPort = await listen(floor)
  const targets: Target[] = [
    'generator floor',
    'envoy, no ext_authz',
    'envoy + hostguard',
    'envoy + no-op',
  ]
  const results: EnvoyLoadResult[] = []
  try {
    for (let round = 1; round <= o.rounds; round++) {
      for (const target of round % 2 === 1 ? targets : [...targets].reverse()) {
        const children: ChildProcess[] = []
        try {
          let port = floorPort
          if (target !== 'generator floor') {
            let authz: Authz
            if (target !== 'envoy, no ext_authz') {
              const kind = target === 'envoy + hostguard' ? 'hostguard' : 'noop'
              const server = await startServer(kind)
              children.push(server.child)
              authz = { kind, port: server.port }
            }
            const envoy = await startEnvoy(envoyBin, appPort, authz)
            children.push(envoy.child)
            port = envoy.port
          }
          await oha(ohaBin, port, 'closed', { ...o, closedRequests: o.warmupRequests })
          for (const load of ['closed', ...o.openRates] as const)
            results.push({ target, round, load, ...(await oha(ohaBin, port, load, o)) })
        } finally {
          await Promise.all(children.map(stop))
        }
      }
    }
  } finally {
    app.close()
    floor.close()
  }
  return results
}
