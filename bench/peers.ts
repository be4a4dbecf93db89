// npm run bench:peers [-- --quick]: hostguard against OPA-Envoy, the ext_authz server most people
// would pick instead, in one run: the same Check (fixture 01), the same load, each server pinned
// to core 0 in turn while the load generator runs on core 1. First both servers answer every
// Envoy fixture once and must decide the same. Prints the tables and writes them to bench/PEERS.md.
// Needs opa-envoy-plugin in .tools/go/bin (built here with go install when missing), h2load
// (nghttp2-client) and ghz (.tools/go/bin); skips, with a message, without them.

import { execFile, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { FIXTURES, ROOT } from '../test/support/protos.js'
import {
  cpuSeconds,
  h2load,
  haveH2load,
  percentile,
  pinned,
  requestBody,
  rssMiB,
  type Started,
  startServer,
} from './e2e.js'
import { GOBIN, OPA_ENVOY_MODULE, opaEnvoy, startOpa, verdict } from './opa.js'
import { f, median, report } from './report.js'

const GHZ = join(GOBIN, 'ghz')

/** Where bench/peers/policy.rego falls short of hostguard with examples/policy.yaml. */
const REGO_GAPS = [
  'Bounded work: hostguard reads only the x-forwarded-for entries it walks and stops at `--max-forwarded-hops` (32) and `--max-header-bytes` (8 KiB); Rego has no early exit, so `split()` and the comprehensions read the whole header (a padded header costs its full length) and no limit is enforced (a `count()` check would still split everything first).',
  'The health-check secret: compared with `==`, not in constant time, and written into the policy; OPA could read it from `opa.runtime().env` at start, but not from a `{file}` re-read when it changes.',
  'Address syntax is whatever `net.cidr_contains` (Go `net.ParseIP`/`ParseCIDR`) accepts: no load-time check that a CIDR has no host bits or that a host pattern can match, and no error naming file, line and field; a mistyped pattern is a rule that never matches.',
  '`forwarded` (RFC 7239): not parsed, since this policy does not trust it; trusting it would take a hand-written parser (quoted strings, `host=`/`for=` pairs, obfuscated identifiers) in regexes.',
  'Dynamic sources (`k8s:nodes`, address files) and atomic reloads from a ConfigMap: OPA takes data from bundles or its REST API, fed by something else.',
  'Per-reason and dry-run Prometheus counters: OPA-Envoy has decision logs (off here) and its own metrics; the reason is only in the dynamic metadata.',
  'Invalid bytes: hostguard answers a CheckRequest that does not decode with a deny (400, `invalid_request`); OPA-Envoy answers with a gRPC error, outside the policy.',
]

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const quick = values.quick
const options = quick
  ? { rounds: 1, warmupSeconds: 1, closedSeconds: 2, openRates: [1_000, 5_000], openSeconds: 2 }
  : { rounds: 3, warmupSeconds: 3, closedSeconds: 10, openRates: [1_000, 5_000], openSeconds: 10 }

const { say, write } = report('PEERS.md')

type Kind = 'hostguard' | 'opa-envoy'
const start = (kind: Kind, bin: string): Promise<Started> =>
  kind === 'hostguard' ? startServer('hostguard') : startOpa(bin)

function fixtureFiles(): string[] {
  const dirs = [FIXTURES, join(FIXTURES, 'captured')]
  return dirs.flatMap((dir) =>
    readdirSync(dir)
      .filter((name) => name.endsWith('.bin'))
      .sort()
      .map((name) => join(dir, name)),
  )
}

interface Run {
  readonly round: number
  readonly server: Kind
  readonly load: 'closed' | number
  readonly rps: number
  readonly ok: number
  readonly failed: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  readonly cpuUsPerCall: number
  readonly rssMiB: number
}

/** ghz at a fixed rate (--async: requests leave on schedule, not when a worker is free). */
async function ghz(port: number, message: string, rate: number, seconds: number) {
  const args = [
    '--insecure',
    '--import-paths',
    join(ROOT, 'proto'),
    '--proto',
    'envoy/service/auth/v3/external_auth.proto',
    '--call',
    'envoy.service.auth.v3.Authorization/Check',
    '--binary-file',
    message,
    '--async',
    '--rps',
    String(rate),
    '--duration',
    `${seconds}s`,
    // in-flight calls at the end are waited for, at most the timeout: a call that was sent counts
    '--duration-stop',
    'wait',
    '--timeout',
    '2s',
    '--connections',
    '2',
    '--concurrency',
    '64',
    '--format',
    'json',
    `127.0.0.1:${port}`,
  ]
  const [command, full] = pinned(1, GHZ, args)
  const { stdout } = await promisify(execFile)(command, full, { maxBuffer: 1 << 28 })
  const report = JSON.parse(stdout) as {
    rps: number
    details: { latency: number; status: string }[]
  }
  const ok = report.details.filter((d) => d.status === 'OK')
  const times = ok.map((d) => d.latency / 1e6).sort((a, b) => a - b)
  return { rps: report.rps, ok: ok.length, failed: report.details.length - ok.length, times }
}

const command = `npm run bench:peers${quick ? ' -- --quick' : ''}`
say(`# hostguard against OPA-Envoy${quick ? ' (quick)' : ''}`)
say()
say(`- command: \`${command}\``)
say(
  `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${f(totalmem() / 2 ** 30)} GiB`,
)
say(`- Node.js ${process.version}, ${new Date().toISOString().slice(0, 10)}`)

const opa = opaEnvoy()
const missing = [
  opa.missing,
  haveH2load ? undefined : 'h2load is missing (apt-get install -y nghttp2-client)',
  existsSync(GHZ)
    ? undefined
    : 'ghz is missing (GOBIN=.tools/go/bin go install github.com/bojand/ghz/cmd/ghz@v0.120.0)',
].filter((m) => m !== undefined)
if (missing.length > 0 || opa.bin === undefined) {
  for (const m of missing) console.warn(`bench:peers skipped: ${m}`)
  say()
  say(`Skipped: ${missing.join('; ')}.`)
  write()
  process.exit(0)
}
const bin = opa.bin
const version = spawnSync(bin, ['version']).stdout.toString()
say(
  `- OPA-Envoy: \`${OPA_ENVOY_MODULE}\` (${/^Version: (.*)$/m.exec(version)?.[1] ?? '?'}, ${/^Go Version: (.*)$/m.exec(version)?.[1] ?? '?'}), policy bench/peers/policy.rego; hostguard: dist/ with examples/policy.yaml`,
)
say()

say('## Decisions: every Envoy fixture, once, to both')
say()
say('| fixture | hostguard | OPA-Envoy |')
say('|---|---|---|')
const [hostguard, peer] = [await start('hostguard', bin), await start('opa-envoy', bin)]
const disagreements: string[] = []
try {
  for (const file of fixtureFiles()) {
    const request = readFileSync(file)
    const [ours, theirs] = [
      await verdict(hostguard.port, request),
      await verdict(peer.port, request),
    ]
    const name = file.slice(FIXTURES.length + 1)
    if (ours !== theirs) disagreements.push(name)
    say(`| ${name} | ${ours} | ${theirs}${ours === theirs ? '' : ' **(differs)**'} |`)
  }
} finally {
  hostguard.child.kill('SIGKILL')
  peer.child.kill('SIGKILL')
}
say()
if (disagreements.length > 0) {
  say(`Not measured: the servers disagree on ${disagreements.join(', ')}.`)
  write()
  process.exit(1)
}
say('Both decide the same on every fixture.')
say()

const body = requestBody()
const message = join(FIXTURES, '01-ipv4-direct-host.bin')
const runs: Run[] = []
for (let round = 1; round <= options.rounds; round++) {
  const order: Kind[] = round % 2 === 1 ? ['opa-envoy', 'hostguard'] : ['hostguard', 'opa-envoy']
  for (const server of order) {
    const s = await start(server, bin)
    try {
      await h2load(s.port, body, 'timed', 0, 0, options.warmupSeconds)
      const measure = async (load: Run['load']) => {
        const before = cpuSeconds(s.pid)
        const r =
          load === 'closed'
            ? await h2load(s.port, body, 'timed', 0, 0, options.closedSeconds)
            : await ghz(s.port, message, load, options.openSeconds)
        const ok = 'ok' in r ? r.ok : r.succeeded
        // Open loop: per call sent, since a call ghz gave up on was still served.
        const calls = load === 'closed' ? ok : ok + r.failed
        runs.push({
          round,
          server,
          load,
          rps: r.rps,
          ok,
          failed: r.failed,
          p50Ms: percentile(r.times, 0.5),
          p99Ms: percentile(r.times, 0.99),
          p999Ms: percentile(r.times, 0.999),
          cpuUsPerCall: ((cpuSeconds(s.pid) - before) * 1e6) / Math.max(1, calls),
          rssMiB: rssMiB(s.pid),
        })
      }
      await measure('closed')
      for (const rate of options.openRates) await measure(rate)
    } finally {
      s.child.kill('SIGKILL')
    }
  }
}

say('## Under load: fixture 01, each server on core 0 in turn, the generator on core 1')
say()
say(
  `Each server first gets ${options.warmupSeconds} s of unmeasured closed-loop load. Closed loop: h2load, 2 connections × 32 streams, ${options.closedSeconds} s of requests sent as fast as they are answered (a time, not a count: the servers are far apart). Open loop: ghz --async at a fixed rate for ${options.openSeconds} s over 2 connections, each call timed from when ghz sent it (not from when it was due: ghz does not correct for coordinated omission); a call unanswered after 2 s counts as failed, and the percentiles are over the answered calls. CPU per call: the server's utime + stime over the measurement (/proc/PID/stat) divided by the calls answered (closed loop) or sent (open loop); peak RSS: VmHWM. OPA-Envoy runs with GOMAXPROCS from the affinity mask (1), hostguard with the image's NODE_OPTIONS. Rounds alternate the order.`,
)
say()
say(
  '| round | server | load | req/s | ok | failed | p50 ms | p99 ms | p99.9 ms | CPU µs/call | peak RSS MiB |',
)
say('|---|---|---|---|---|---|---|---|---|---|---|')
for (const r of runs)
  say(
    `| ${r.round} | ${r.server} | ${r.load === 'closed' ? 'closed 2x32' : `open ${r.load}/s`} | ${f(r.rps)} | ${r.ok} | ${r.failed} | ${f(r.p50Ms, 3)} | ${f(r.p99Ms, 3)} | ${f(r.p999Ms, 3)} | ${f(r.cpuUsPerCall, 1)} | ${f(r.rssMiB, 1)} |`,
  )
const of = (server: Kind, load: Run['load'], key: keyof Run): number =>
  median(runs.filter((r) => r.server === server && r.load === load).map((r) => Number(r[key])))
say()
say('Medians over the rounds:')
say()
say('| | hostguard | OPA-Envoy | hostguard / OPA-Envoy |')
say('|---|---|---|---|')
const row = (label: string, load: Run['load'], key: keyof Run, digits: number) => {
  const [ours, theirs] = [of('hostguard', load, key), of('opa-envoy', load, key)]
  say(`| ${label} | ${f(ours, digits)} | ${f(theirs, digits)} | ${f(ours / theirs, 2)}× |`)
}
row('closed loop, req/s', 'closed', 'rps', 0)
row('closed loop, server CPU µs/call', 'closed', 'cpuUsPerCall', 1)
for (const rate of options.openRates) {
  row(`open ${rate}/s, p50 ms`, rate, 'p50Ms', 3)
  row(`open ${rate}/s, p99 ms`, rate, 'p99Ms', 3)
  row(`open ${rate}/s, p99.9 ms`, rate, 'p999Ms', 3)
  row(`open ${rate}/s, server CPU µs/call`, rate, 'cpuUsPerCall', 1)
}
const peak = (server: Kind) =>
  Math.max(...runs.filter((r) => r.server === server).map((r) => r.rssMiB))
say(
  `| peak RSS MiB | ${f(peak('hostguard'), 1)} | ${f(peak('opa-envoy'), 1)} | ${f(peak('hostguard') / peak('opa-envoy'), 2)}× |`,
)
say()
say('## What the Rego policy does not express')
say()
for (const item of REGO_GAPS) say(`- ${item}`)
say()
write()
