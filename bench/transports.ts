// npm run bench:transports [-- --quick | --rounds N]: what the transport costs (issue 18). The same
// decision (check() with examples/policy.yaml on fixture 01) behind each way Node.js can serve
// gRPC, and the two no-op floors, in one run: each server pinned to core 0 in turn while h2load
// runs on core 1, rounds alternating the order. Every server first answers through a real grpc-js
// client, and its answer bytes must be check()'s; a wrong answer fails the run. Prints the tables
// and writes them to bench/TRANSPORTS.md. Needs h2load (nghttp2-client); skips, loudly, without it.

import { readdirSync, readFileSync } from 'node:fs'
import { connect, type IncomingHttpHeaders } from 'node:http2'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { Client } from '@grpc/grpc-js'
import { check } from '../src/grpc-authz/check.js'
import { CHECK_METHOD } from '../src/server/authorization.js'
import { callCheck, checkClient } from '../test/support/grpc.js'
import { FIXTURES, ROOT } from '../test/support/protos.js'
import { freePort } from '../test/support/server.js'
import {
  cpuSeconds,
  h2load,
  haveH2load,
  IMAGE_NODE_OPTIONS,
  percentile,
  requestBody,
  rssMiB,
  type Started,
  startNode,
  startServer,
} from './e2e.js'
import { examplePolicy, FIXTURE_01 } from './example-policy.js'
import { opaEnvoy, startOpa, verdict, verdictOf } from './opa.js'
import { f, median, report } from './report.js'

const { values } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, rounds: { type: 'string' } },
})
const quick = values.quick
const options = {
  ...(quick
    ? { rounds: 1, warmupSeconds: 1, closedSeconds: 2, openRate: 5_000, openSeconds: 2 }
    : { rounds: 3, warmupSeconds: 2, closedSeconds: 5, openRate: 5_000, openSeconds: 5 }),
  ...(values.rounds === undefined ? {} : { rounds: Number(values.rounds) }),
}
if (!Number.isInteger(options.rounds) || options.rounds < 1)
  throw new Error(`--rounds takes a whole number of at least 1, not ${values.rounds}`)

/** grpc-js server options, each tried alone against none in the tuning table (full runs). */
const GRPCJS_OPTIONS: Record<string, Record<string, number>> = {
  'grpc.enable_channelz: 0': { 'grpc.enable_channelz': 0 },
  'grpc.max_concurrent_streams: 1024': { 'grpc.max_concurrent_streams': 1024 },
  // grpc-js lifts Node's 10 MiB session memory limit unless told; this puts Node's back.
  'grpc-node.max_session_memory: 10': { 'grpc-node.max_session_memory': 10 },
}
/**
 * grpcjs-tuned: channelz off, the one option that takes work out of every call (grpc-js counts
 * each call and message for channelz); the tuning table shows whether that pays.
 */
const TUNED = { 'grpc.enable_channelz': 0 }

const SERVERS = [
  'hostguard',
  'grpcjs',
  'opa-envoy',
  'grpcjs-tuned',
  'connect',
  'http2-raw',
  'noop-grpcjs',
  'noop-http2',
] as const
type Server = (typeof SERVERS)[number]
const DESCRIPTIONS: Record<Server, string> = {
  hostguard:
    'hostguard as it ships: `dist/main.js serve` on node:http2 (src/server/grpc-http2.ts; health, reflection, metrics, log)',
  grpcjs:
    'hostguard on grpc-js: `dist/main.js serve --grpc-transport grpc-js` (health, reflection, metrics, log)',
  'opa-envoy':
    'OPA-Envoy v1.19.1-envoy (Go, grpc-go) on bench/peers/policy.rego: the same decisions, other bytes (npm run bench:peers compares them on every fixture)',
  'grpcjs-tuned': `grpc-js with only check() in the handler, options ${JSON.stringify(TUNED)} (bench/grpcjs-tuned-server.ts)`,
  connect:
    '@connectrpc/connect-node 2.1.1, gRPC protocol only, on node:http2; Empty-typed method, the bytes carried as unknown fields (bench/connect-server.ts)',
  'http2-raw':
    'check() straight on node:http2: 5-byte framing, trailers (bench/http2-server.ts check)',
  'noop-grpcjs':
    "grpc-js answering one canned answer, no decision (bench/noop-server.ts): grpc-js's ceiling",
  'noop-http2':
    'node:http2 answering one pre-framed canned answer, no decision (bench/http2-server.ts canned): the floor',
}
/** The no-ops answer fixture 01's answer to anything, so only fixture 01 can check them. */
const DECIDES: Record<Server, boolean> = {
  hostguard: true,
  grpcjs: true,
  'opa-envoy': true,
  'grpcjs-tuned': true,
  connect: true,
  'http2-raw': true,
  'noop-grpcjs': false,
  'noop-http2': false,
}

const opa = opaEnvoy()
/** The servers raced: all of SERVERS, OPA-Envoy when it could be built. */
const RACED = SERVERS.filter((server) => server !== 'opa-envoy' || opa.bin !== undefined)

const tool = (file: string): string => join(ROOT, 'build', 'tools', 'bench', file)
async function start(server: Server, grpcjsOptions: object = TUNED): Promise<Started> {
  if (server === 'opa-envoy') return startOpa(opa.bin as string)
  if (server === 'hostguard') return startServer('hostguard')
  if (server === 'grpcjs')
    return startServer('hostguard', undefined, undefined, ['--grpc-transport', 'grpc-js'])
  if (server === 'noop-grpcjs') return startServer('noop')
  const port = await freePort()
  const args: Record<Exclude<typeof server, 'opa-envoy'>, string[]> = {
    'grpcjs-tuned': [tool('grpcjs-tuned-server.js'), String(port), JSON.stringify(grpcjsOptions)],
    connect: [tool('connect-server.js'), String(port)],
    'http2-raw': [tool('http2-server.js'), String(port), 'check'],
    'noop-http2': [tool('http2-server.js'), String(port), 'canned'],
  }
  return startNode(server, port, args[server])
}

const { say, write } = report('TRANSPORTS.md')

const command = `npm run bench:transports${quick ? ' -- --quick' : values.rounds ? ` -- --rounds ${options.rounds}` : ''}`
say(`# The transport, measured${quick ? ' (quick)' : ''}`)
say()
say(`- command: \`${command}\``)
say(`- machine: nproc ${cpus().length}, ${cpus()[0]?.model ?? 'unknown CPU'}`)
say(
  `- Node.js ${process.version}, NODE_OPTIONS=${IMAGE_NODE_OPTIONS} for every server, ${new Date().toISOString().slice(0, 10)}`,
)
if (opa.missing !== undefined) {
  const why = `OPA-Envoy is not in this run: ${opa.missing}`
  console.warn(`\n*** ${why} ***\n`)
  say(`- ${why}`)
}
say()

if (!haveH2load) {
  const why = 'h2load is missing (apt-get install -y nghttp2-client): nothing was measured'
  console.warn(`\n*** bench:transports skipped: ${why} ***\n`)
  say(`Skipped: ${why}.`)
  write()
  process.exit(0)
}

// --- Answers: every server, through grpc-js, against check() in this process ---

const policy = examplePolicy()
const fixtures = readdirSync(FIXTURES)
  .filter((name) => name.endsWith('.bin'))
  .sort()
  .map((name) => join(FIXTURES, name))
const wrong: string[] = []
/** Requests that failed under load: reported, but the run goes on (a loopback stall is no wrong answer). */
const failedUnderLoad: string[] = []

function unknownMethodCode(client: Client): Promise<number | undefined> {
  return new Promise((resolve) =>
    client.makeUnaryRequest(
      '/envoy.service.auth.v3.Authorization/NoSuchMethod',
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      (err) => resolve(err?.code),
    ),
  )
}

/** The grpc-status a server answers a hand-made request body with, over plain node:http2. */
function grpcStatus(port: number, requestBody: Buffer): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`)
    session.on('error', reject)
    const stream = session.request({
      ':method': 'POST',
      ':path': CHECK_METHOD,
      'content-type': 'application/grpc',
      te: 'trailers',
    })
    let status: string | undefined
    const read = (headers: IncomingHttpHeaders): void => {
      status ??= headers['grpc-status'] as string | undefined
    }
    stream.on('response', read)
    stream.on('trailers', read)
    stream.on('error', reject)
    stream.resume()
    stream.on('close', () => {
      session.close()
      resolve(status)
    })
    stream.end(requestBody)
  })
}

/** A message prefix that says compressed, or a length the body does not have. */
async function framingProblems(port: number): Promise<string[]> {
  const message = readFileSync(FIXTURE_01)
  const prefix = (flag: number, length: number): Buffer => {
    const p = Buffer.alloc(5)
    p[0] = flag
    p.writeUInt32BE(length, 1)
    return p
  }
  const cases: [string, Buffer, string][] = [
    ['a compressed message', Buffer.concat([prefix(1, message.length), message]), '12'],
    ['a length past the body', Buffer.concat([prefix(0, message.length + 1), message]), '13'],
    ['a body shorter than a prefix', Buffer.from([0, 0]), '13'],
  ]
  const problems: string[] = []
  for (const [what, requestBody, want] of cases) {
    const got = await grpcStatus(port, requestBody)
    if (got !== want) problems.push(`${what} got grpc-status ${got}, not ${want}`)
  }
  return problems
}

/** Problems with `server`'s answers, none when every answer is check()'s, byte for byte. */
async function verify(server: Server, port: number): Promise<string[]> {
  const client = checkClient(port)
  const problems: string[] = []
  try {
    for (const file of DECIDES[server] ? fixtures : [FIXTURE_01]) {
      const request = readFileSync(file)
      const want = check(policy, request).response
      const name = file.slice(FIXTURES.length + 1)
      if (server === 'opa-envoy') {
        const [got, wanted] = [await verdict(port, request), verdictOf(want)]
        if (got !== wanted) problems.push(`${name}: ${got}, where check() gives ${wanted}`)
        continue
      }
      try {
        const got = await callCheck(client, request)
        if (!got.equals(want)) problems.push(`${name}: the answer bytes differ from check()'s`)
      } catch (err) {
        problems.push(`${name}: ${(err as Error).message}`)
      }
    }
    const code = await unknownMethodCode(client)
    if (code !== 12)
      problems.push(`an unknown method got ${code ?? 'no error'}, not 12 UNIMPLEMENTED`)
    if (server === 'http2-raw') problems.push(...(await framingProblems(port)))
  } finally {
    client.close()
  }
  return problems
}

// --- Under load ---

interface Run {
  readonly round: number
  readonly server: Server
  readonly load: 'closed' | 'open'
  readonly rps: number
  readonly ok: number
  readonly failed: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  readonly cpuUsPerCall: number
  readonly rssMiB: number
  /** TCP segments the whole machine retransmitted during the run (see `retransmitted`). */
  readonly retransmits: number
  /** The slowest request took at least Linux's shortest retransmission timeout. */
  readonly stalled: boolean
}

/** TCP_RTO_MIN: a request that waited this long waited for a retransmission, not for a server. */
const RTO_MIN_MS = 200

const body = requestBody()

/**
 * RetransSegs of /proc/net/snmp. On this machine loopback TCP now and then retransmits (tail loss
 * probes, then timeouts of 200 ms and more): a run with any stalls for everyone, whichever server.
 */
function retransmitted(): number {
  const tcp = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Tcp:'))
    .map((l) => l.split(/\s+/))
  const at = tcp[0]?.indexOf('RetransSegs') ?? -1
  return at < 0 ? 0 : Number(tcp[1]?.[at] ?? 0)
}

/** One h2load run against `s`; the server's CPU over it is divided by the calls it answered. */
async function measure(
  s: Started,
  load: 'closed' | 'open',
  seconds: number,
): Promise<Omit<Run, 'round' | 'server'>> {
  const before = cpuSeconds(s.pid)
  const retransmitsBefore = retransmitted()
  const r = await h2load(
    s.port,
    body,
    load === 'closed' ? 'timed' : 'open',
    0,
    options.openRate,
    seconds,
  )
  return {
    load,
    rps: r.rps,
    ok: r.succeeded,
    failed: r.failed,
    p50Ms: percentile(r.times, 0.5),
    p99Ms: percentile(r.times, 0.99),
    p999Ms: percentile(r.times, 0.999),
    cpuUsPerCall: ((cpuSeconds(s.pid) - before) * 1e6) / Math.max(1, r.succeeded + r.failed),
    rssMiB: rssMiB(s.pid),
    retransmits: retransmitted() - retransmitsBefore,
    stalled: (r.times.at(-1) ?? 0) >= RTO_MIN_MS,
  }
}

const runs: Run[] = []
for (let round = 1; round <= options.rounds; round++) {
  const order = round % 2 === 1 ? [...RACED] : [...RACED].reverse()
  for (const server of order) {
    const s = await start(server)
    try {
      if (round === 1) {
        const problems = await verify(server, s.port)
        for (const p of problems) wrong.push(`${server}: ${p}`)
        if (problems.length > 0) continue
      }
      await h2load(s.port, body, 'timed', 0, 0, options.warmupSeconds)
      for (const [load, seconds] of [
        ['closed', options.closedSeconds],
        ['open', options.openSeconds],
      ] as const) {
        const r = await measure(s, load, seconds)
        // h2load counts an HTTP 200 as succeeded whatever the grpc-status: a reset is what shows.
        if (r.failed > 0 || r.ok === 0)
          failedUnderLoad.push(
            `${server}, round ${round}, ${load} loop: ${r.failed} failed, ${r.ok} ok`,
          )
        runs.push({ round, server, ...r })
      }
    } finally {
      s.child.kill('SIGKILL')
    }
  }
}

say('## Answers')
say()
if (wrong.length > 0) {
  say('Wrong answers (the run fails):')
  say()
  for (const w of wrong) say(`- ${w}`)
  write()
  process.exit(1)
}
say(
  `Before it is timed, each server answers through a real @grpc/grpc-js client: ${fixtures.length} Envoy fixtures (fixture 01 only for the no-ops, which answer it to anything), each answer byte for byte check()'s in this process (OPA-Envoy's: the same decision, status and reason), and an unknown method gets grpc-status 12 UNIMPLEMENTED; http2-raw also answers a compressed message with 12 and a prefix whose length the body does not have with 13 INTERNAL. ${failedUnderLoad.length === 0 ? 'Under load, no request failed.' : 'Under load, requests failed (the figures of these runs are suspect; on this machine a loopback stall can do it):'}`,
)
for (const w of failedUnderLoad) {
  say(`- ${w}`)
  console.error(`*** ${w}`)
}
say()
say('## The servers')
say()
say('| server | what |')
say('|---|---|')
for (const server of RACED) say(`| ${server} | ${DESCRIPTIONS[server]} |`)
say()
say(
  "Connect cannot carry our own bytes as they are: @connectrpc/connect 2.x has no codec or serialization hook; its router always parses a message with `fromBinary(method.input)` and writes one with `toBinary(method.output)` (protocol/serialization.js, `createMethodSerializationLookup`). connect-server.ts comes as close as it allows: a method made at start from a FileDescriptorProto whose input and output are google.protobuf.Empty, so a CheckRequest's fields all arrive as unknown fields (its top level only: one tag and one length, the bytes a view), which `toBinary` writes back as they came for check(); the answer is split into unknown fields the same way. That is one extra pass and copy each way: about 5 µs a call for fixture 01 (timed apart, in a loop), not what separates it from the others. Where its time goes instead (a CPU profile of connect-server.ts under this closed loop, node --cpu-prof, taken apart from this run on 2026-12-02): about a quarter of the samples in Connect's async-iterable pipeline (protocol/async-iterable.js), an eighth in the AbortSignal and DOMException it makes for every call, an eighth in the garbage collector, 5 % in check() and 3 % in protobuf-es.",
)
say()
say(
  'Health, reflection, metrics and logs are only in hostguard and grpcjs (and OPA-Envoy has its own): the measurement needs Check alone, so the other servers leave them out. Of these, only the metrics and the log line of a deny (an allow logs at debug, off by default) add work to a Check call; fixture 01 is allowed.',
)
say()

say('## Under load: fixture 01, each server on core 0 in turn, h2load on core 1')
say()
say(
  `Each server first gets ${options.warmupSeconds} s of unmeasured closed-loop load. Closed loop: h2load, 2 connections × 32 streams, ${options.closedSeconds} s of requests sent as fast as they are answered. Open loop: h2load at ${options.openRate}/s (--rps per connection) for ${options.openSeconds} s, each request timed from when h2load sent it. CPU per call: the server's utime + stime over the run (/proc/PID/stat, 10 ms ticks) divided by the calls; peak RSS: VmHWM at the end of the run. ${options.rounds} round${options.rounds === 1 ? '' : 's'}, alternating the order.`,
)
say()
/** The runs of `server` under `load` that no retransmission stalled, or all when every one was. */
const clean = (server: Server, load: Run['load']): Run[] => {
  const all = runs.filter((r) => r.server === server && r.load === load)
  const unstalled = all.filter((r) => !r.stalled)
  return unstalled.length > 0 ? unstalled : all
}
const of = (server: Server, load: Run['load'], key: keyof Run): number =>
  median(clean(server, load).map((r) => Number(r[key])))
const mark = (server: Server, load: Run['load']): string =>
  clean(server, load).some((r) => r.stalled) ? ' †' : ''
const peak = (server: Server): number =>
  Math.max(...runs.filter((r) => r.server === server).map((r) => r.rssMiB))
say(
  `Medians over the rounds whose run did not stall: loopback TCP on this machine retransmits now and then (the last column below: segments retransmitted on the whole machine during the run), and after a lost segment every request in flight waits ${RTO_MIN_MS} ms or more (Linux's shortest retransmission timeout), whichever server it is. A run stalled when its slowest request took that long; † marks a figure where every round stalled. × grpcjs is the server's figure over hostguard on grpc-js's (req/s: higher is faster; CPU: lower is cheaper).`,
)
say()
say(
  `| server | closed req/s | × grpcjs | closed CPU µs/call | × grpcjs | open ${options.openRate}/s: req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/call | peak RSS MiB |`,
)
say('|---|---|---|---|---|---|---|---|---|---|---|')
const [baseRps, baseCpu] = [of('grpcjs', 'closed', 'rps'), of('grpcjs', 'closed', 'cpuUsPerCall')]
for (const server of RACED) {
  const [rps, cpu] = [of(server, 'closed', 'rps'), of(server, 'closed', 'cpuUsPerCall')]
  say(
    `| ${server} | ${f(rps)}${mark(server, 'closed')} | ${f(rps / baseRps, 2)}× | ${f(cpu, 1)} | ${f(cpu / baseCpu, 2)}× | ${f(of(server, 'open', 'rps'))}${mark(server, 'open')} | ${f(of(server, 'open', 'p50Ms'), 3)} | ${f(of(server, 'open', 'p99Ms'), 3)} | ${f(of(server, 'open', 'p999Ms'), 3)} | ${f(of(server, 'open', 'cpuUsPerCall'), 1)} | ${f(peak(server), 1)} |`,
  )
}
say()
say('Every run:')
say()
say(
  '| round | server | load | req/s | ok | failed | p50 ms | p99 ms | p99.9 ms | CPU µs/call | RSS MiB | TCP retransmits |',
)
say('|---|---|---|---|---|---|---|---|---|---|---|---|')
for (const r of runs)
  say(
    `| ${r.round} | ${r.server} | ${r.load === 'closed' ? 'closed 2x32' : `open ${options.openRate}/s`} | ${f(r.rps)} | ${r.ok} | ${r.failed} | ${f(r.p50Ms, 3)} | ${f(r.p99Ms, 3)} | ${f(r.p999Ms, 3)} | ${f(r.cpuUsPerCall, 1)} | ${f(r.rssMiB, 1)} | ${r.retransmits}${r.stalled ? ' (stalled)' : ''} |`,
  )
say()

// --- Which grpc-js option helps (full runs only: one closed loop per option, rounds alternated) ---

if (!quick) {
  const variants: [string, object][] = [['none', {}], ...Object.entries(GRPCJS_OPTIONS)]
  const tuning: { round: number; name: string; rps: number; cpuUsPerCall: number }[] = []
  for (let round = 1; round <= options.rounds; round++) {
    for (const [name, grpcjsOptions] of round % 2 === 1 ? variants : [...variants].reverse()) {
      const s = await start('grpcjs-tuned', grpcjsOptions)
      try {
        await h2load(s.port, body, 'timed', 0, 0, options.warmupSeconds)
        const r = await measure(s, 'closed', options.closedSeconds)
        tuning.push({ round, name, rps: r.rps, cpuUsPerCall: r.cpuUsPerCall })
      } finally {
        s.child.kill('SIGKILL')
      }
    }
  }
  const med = (name: string, key: 'rps' | 'cpuUsPerCall'): number =>
    median(tuning.filter((t) => t.name === name).map((t) => t[key]))
  say('## grpc-js options, one at a time')
  say()
  say(
    `bench/grpcjs-tuned-server.ts with no options, then with each option alone; closed loop as above, medians over ${options.rounds} round${options.rounds === 1 ? '' : 's'}. The handler already has identity serializers (the service definition hostguard ships), so grpc-js never copies the message into an object. An option helps when its CPU per call is below none's in every round (its highest under none's lowest); req/s moves with whatever else the machine runs.`,
  )
  say()
  say(
    '| options | closed req/s | × none | CPU µs/call | × none | CPU µs/call over the rounds | helps |',
  )
  say('|---|---|---|---|---|---|---|')
  const cpuOf = (name: string): number[] =>
    tuning.filter((t) => t.name === name).map((t) => t.cpuUsPerCall)
  for (const [name] of variants) {
    const cpu = cpuOf(name)
    const helps =
      name === 'none' ? '' : Math.max(...cpu) < Math.min(...cpuOf('none')) ? 'yes' : 'no'
    say(
      `| ${name} | ${f(med(name, 'rps'))} | ${f(med(name, 'rps') / med('none', 'rps'), 2)}× | ${f(med(name, 'cpuUsPerCall'), 1)} | ${f(med(name, 'cpuUsPerCall') / med('none', 'cpuUsPerCall'), 2)}× | ${f(Math.min(...cpu), 1)}–${f(Math.max(...cpu), 1)} | ${helps} |`,
    )
  }
  say()
}
write()
