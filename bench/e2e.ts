// End to end over gRPC with h2load (Debian nghttp2-client): hostguard against the no-op grpc-js
// server (bench/noop-server.ts), alternated over rounds in one run, the server pinned to one core
// and h2load to the other with taskset. Closed loop (2 connections x 32 streams, like two Envoy
// workers) and open loop at a fixed rate.

import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { FIXTURES, ROOT } from '../test/support/protos.js'
import { freePort } from '../test/support/server.js'
import { until } from '../test/support/wait.js'

export const haveH2load = spawnSync('h2load', ['--version']).status === 0
const haveTaskset = spawnSync('taskset', ['--version']).status === 0

export interface LoadResult {
  readonly server: string
  readonly mode: string
  readonly rps: number
  readonly succeeded: number
  readonly failed: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  /** Server CPU seconds per wall second during the run (1 = one core). */
  readonly cpu: number
  /** Server CPU microseconds per answered call: the cost, less exposed to a noisy machine than req/s. */
  readonly cpuUsPerCall: number
  readonly rssMiB: number
}

export function pinned(core: number, command: string, args: string[]): [string, string[]] {
  return haveTaskset ? ['taskset', ['-c', String(core), command, ...args]] : [command, args]
}

/** Both servers run with the container image's V8 settings (Dockerfile, ENV NODE_OPTIONS). */
export const IMAGE_NODE_OPTIONS =
  /^ENV NODE_OPTIONS=(.*)$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1] ?? ''

export interface Started {
  readonly child: ChildProcess
  readonly pid: number
  readonly port: number
}

type Wrap = (command: string, args: string[]) => [string, string[]]

/**
 * Starts one of the two servers; `wrap` runs it under another program that execs or hosts it in
 * the same process (taskset by default; valgrind in bench/instructions.ts).
 */
export async function startServer(
  kind: 'hostguard' | 'noop',
  wrap: Wrap = (command, args) => pinned(0, command, args),
  startMs = 15_000,
  /** More `serve` flags (hostguard only). */
  flags: readonly string[] = [],
): Promise<Started> {
  const port = await freePort()
  const args =
    kind === 'hostguard'
      ? [
          join(ROOT, 'dist', 'main.js'),
          'serve',
          '--policy',
          join(ROOT, 'examples', 'policy.yaml'),
          '--grpc-port',
          String(port),
          '--http-port',
          String(await freePort()),
          '--listen',
          '127.0.0.1',
          ...flags,
        ]
      : [join(ROOT, 'build', 'tools', 'bench', 'noop-server.js'), String(port)]
  return startNode(kind, port, args, wrap, startMs)
}

/**
 * Runs `node ARGS` with the image's NODE_OPTIONS and waits for the line with `serving` that every
 * bench server prints on stdout once it listens on `port`.
 */
export async function startNode(
  name: string,
  port: number,
  args: string[],
  wrap: Wrap = (command, full) => pinned(0, command, full),
  startMs = 15_000,
): Promise<Started> {
  const [command, full] = wrap(process.execPath, args)
  const child = spawn(command, full, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, HEALTH_CHECK_HEADER_VALUE: 'secret', NODE_OPTIONS: IMAGE_NODE_OPTIONS },
  })
  let out = ''
  child.stdout?.on('data', (d) => {
    out += d
  })
  await until(startMs, () => out.includes('serving'), `${name} start-up`)
  // The node process: taskset execs it in place (valgrind hosts it), so the pid is the same.
  return { child, pid: child.pid ?? 0, port }
}

export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime + stime, in clock ticks of 10 ms
}

export function rssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? 0) / 1024
}

export function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
}

export async function h2load(
  port: number,
  body: string,
  mode: 'closed' | 'timed' | 'open',
  requests: number,
  rate: number,
  seconds: number,
) {
  const log = join(mkdtempSync(join(tmpdir(), 'hostguard-h2load-')), 'requests.log')
  // timed: closed loop for `seconds` (servers far apart in speed get the same time, not the same count)
  const load =
    mode === 'closed'
      ? ['-c', '2', '-m', '32', '-n', String(requests)]
      : mode === 'timed'
        ? ['-c', '2', '-m', '32', '-D', String(seconds)]
        : ['-c', '2', '-m', '32', '--rps', String(rate / 2), '-D', String(seconds)]
  const args = [
    ...load,
    '-H',
    'content-type: application/grpc',
    '-H',
    'te: trailers',
    '-d',
    body,
    '--log-file',
    log,
    `http://127.0.0.1:${port}/envoy.service.auth.v3.Authorization/Check`,
  ]
  const [command, full] = pinned(1, 'h2load', args)
  const { stdout } = await promisify(execFile)(command, full, { maxBuffer: 1 << 24 })
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(stdout)?.[1] ?? 0)
  const counts = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(
    stdout,
  )
  // --log-file: start time (µs), status, request time (µs), one line per request
  const times = readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => Number(l.split('\t')[2]) / 1000)
    .filter((t) => Number.isFinite(t))
    .sort((a, b) => a - b)
  return { rps, succeeded: Number(counts?.[2] ?? 0), failed: Number(counts?.[3] ?? 0), times }
}

export interface E2eOptions {
  readonly rounds: number
  readonly closedRequests: number
  readonly openRate: number
  readonly openSeconds: number
}

/** Runs both servers in turn, `rounds` times, closed loop then open loop each. */
/** A file holding fixture 01 as one gRPC message (length-prefixed, uncompressed), for h2load -d. */
export function requestBody(): string {
  const dir = mkdtempSync(join(tmpdir(), 'hostguard-e2e-'))
  const message = readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin'))
  const frame = Buffer.alloc(5)
  frame.writeUInt32BE(message.length, 1)
  const body = join(dir, 'check.grpc')
  writeFileSync(body, Buffer.concat([frame, message]))
  return body
}

export async function e2eBench(o: E2eOptions): Promise<LoadResult[]> {
  const body = requestBody()
  const results: LoadResult[] = []
  for (let round = 0; round < o.rounds; round++) {
    const order: ('hostguard' | 'noop')[] =
      round % 2 === 0 ? ['noop', 'hostguard'] : ['hostguard', 'noop']
    for (const kind of order) {
      const server = await startServer(kind)
      try {
        for (const mode of ['closed', 'open'] as const) {
          const cpuBefore = cpuSeconds(server.pid)
          const started = performance.now()
          const r = await h2load(
            server.port,
            body,
            mode,
            o.closedRequests,
            o.openRate,
            o.openSeconds,
          )
          const wall = (performance.now() - started) / 1000
          const cpuUsed = cpuSeconds(server.pid) - cpuBefore
          results.push({
            server: kind,
            mode: mode === 'closed' ? 'closed 2x32' : `open ${o.openRate}/s`,
            rps: r.rps,
            succeeded: r.succeeded,
            failed: r.failed,
            p50Ms: percentile(r.times, 0.5),
            p99Ms: percentile(r.times, 0.99),
            p999Ms: percentile(r.times, 0.999),
            cpu: cpuUsed / wall,
            cpuUsPerCall: (cpuUsed * 1e6) / Math.max(1, r.succeeded),
            rssMiB: rssMiB(server.pid),
          })
        }
      } finally {
        server.child.kill('SIGKILL')
      }
    }
  }
  return results
}
