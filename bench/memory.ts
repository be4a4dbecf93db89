// npm run bench:memory [-- --quick]: where a server's RSS goes under the load of bench/e2e.ts
// (h2load, closed loop, 2 connections x 32 streams, the server on core 0 and h2load on core 1)
// and once idle after it, for hostguard, the no-op grpc-js server, and bare node:http2 processes
// (the floor of Node.js, then that floor with hostguard's policy loader thread). Writes the tables
// to bench/MEMORY.md. Nothing in the servers changes: hostguard's numbers are its prom-client
// default metrics (/metrics on --http-port), the others' a JSON line they print on SIGUSR2 when
// HOSTGUARD_BENCH_MEMORY=1 (bench/memory-probe.ts); the kernel's view is /proc/PID/smaps.
// Skips, with a message, without h2load (nghttp2-client).

import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, realpathSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT } from '../test/support/protos.js'
import { freePort } from '../test/support/server.js'
import { until } from '../test/support/wait.js'
import {
  h2load,
  haveH2load,
  IMAGE_NODE_OPTIONS,
  pinned,
  requestBody,
  rssMiB,
  type Started,
  startServer,
} from './e2e.js'
import type { MemoryReport } from './memory-probe.js'
import { f as fixed, report } from './report.js'

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const quick = values.quick
const loadSeconds = quick ? 3 : 10
const rounds = quick ? 1 : 2
/** How long after the load the idle sample waits: long enough for V8's memory reducer, which
 * runs a full GC a few seconds after the allocation rate falls (about 3 s here). */
const settleMs = 6_000
const MiB = 2 ** 20

const { say, write } = report('MEMORY.md')
/** Memory figures have one decimal. */
const f = (n: number | undefined, digits = 1): string => fixed(n, digits)

/** One server's memory at one instant, in bytes (peak in MiB, as rssMiB gives it). */
interface Sample {
  readonly rss: number
  readonly pss: number
  readonly anonymous: number
  /** Rss − Anonymous: pages of mapped files, the node binary's code and data first. */
  readonly fileBacked: number
  readonly binary: number
  /** The [heap] mapping's anonymous pages: malloc's main arena (brk), the main thread's mallocs. */
  readonly brk: number
  readonly peakMiB: number
  readonly heapTotal: number
  readonly heapUsed: number
  readonly external: number
  /** Not among prom-client's default metrics: unknown for hostguard. */
  readonly arrayBuffers: number | undefined
  /** Per V8 heap space (without `_space`, as prom-client names them): used and committed. */
  readonly spaces: ReadonlyMap<string, { readonly used: number; readonly total: number }>
}

interface Heap extends Pick<Sample, 'heapTotal' | 'heapUsed' | 'external' | 'arrayBuffers'> {
  readonly spaces: Sample['spaces']
}

const NODE_BINARY = realpathSync(process.execPath)

/** The kernel's side: smaps_rollup's totals, and the node binary's share from smaps. */
function pages(pid: number) {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
  const kB = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? Number.NaN) * 1024
  let [binary, brk] = [0, 0]
  let mapping = ''
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    // A mapping's header: address range, permissions, offset, device, inode, then the path.
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line)
    if (header) mapping = header[1] ?? ''
    else if (mapping === NODE_BINARY && line.startsWith('Rss:'))
      binary += Number(line.split(/\s+/)[1]) * 1024
    else if (mapping === '[heap]' && line.startsWith('Anonymous:'))
      brk += Number(line.split(/\s+/)[1]) * 1024
  }
  const [rss, anonymous] = [kB('Rss'), kB('Anonymous')]
  return { rss, pss: kB('Pss'), anonymous, fileBacked: rss - anonymous, binary, brk }
}

/** hostguard's main-thread heap, as its /metrics reports it. */
async function scrape(httpPort: number): Promise<Heap> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  const metric = (name: string): number =>
    Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN)
  const spaces = new Map<string, { used: number; total: number }>()
  for (const m of text.matchAll(
    /^nodejs_heap_space_size_(used|total)_bytes\{space="([^"]+)"\} (\S+)$/gm,
  )) {
    const [, kind, space = '', value] = m
    const entry = spaces.get(space) ?? { used: 0, total: 0 }
    entry[kind === 'used' ? 'used' : 'total'] = Number(value)
    spaces.set(space, entry)
  }
  return {
    heapTotal: metric('nodejs_heap_size_total_bytes'),
    heapUsed: metric('nodejs_heap_size_used_bytes'),
    external: metric('nodejs_external_memory_bytes'),
    arrayBuffers: undefined,
    spaces,
  }
}

/** The next SIGUSR2 report of a server that imported bench/memory-probe.ts. */
function probe(child: ChildProcess): Promise<Heap> {
  return new Promise((resolve) => {
    let buffered = ''
    const onData = (d: Buffer): void => {
      buffered += d
      const line = buffered.split('\n').find((l) => l.startsWith('{"memory"'))
      if (line === undefined) return
      child.stdout?.off('data', onData)
      const { memory, spaces } = JSON.parse(line) as MemoryReport
      resolve({
        heapTotal: memory.heapTotal,
        heapUsed: memory.heapUsed,
        external: memory.external,
        arrayBuffers: memory.arrayBuffers,
        spaces: new Map(
          spaces.map((s) => [
            s.space_name.replace(/_space$/, ''),
            { used: s.space_used_size, total: s.space_size },
          ]),
        ),
      })
    }
    child.stdout?.on('data', onData)
    child.kill('SIGUSR2')
  })
}

interface Server extends Started {
  readonly heap: () => Promise<Heap>
}

/** bench/bare-server.ts, pinned like startServer's servers, with the image's NODE_OPTIONS. */
async function startBare(policy?: string): Promise<Started> {
  const port = await freePort()
  const script = join(ROOT, 'build', 'tools', 'bench', 'bare-server.js')
  const [command, args] = pinned(0, process.execPath, [
    script,
    String(port),
    ...(policy === undefined ? [] : [policy]),
  ])
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, NODE_OPTIONS: IMAGE_NODE_OPTIONS },
  })
  let out = ''
  const onData = (d: Buffer): void => {
    out += d
  }
  child.stdout?.on('data', onData)
  await until(15_000, () => out.includes('serving'), 'bare server start-up')
  child.stdout?.off('data', onData)
  return { child, pid: child.pid ?? 0, port }
}

async function start(name: string): Promise<Server> {
  if (name === 'hostguard' || name === 'hostguard on grpc-js') {
    let httpPort = 0
    // startServer picks the metrics port itself: read it from the command line it builds.
    const s = await startServer(
      'hostguard',
      (command, args) => {
        httpPort = Number(args[args.indexOf('--http-port') + 1])
        return pinned(0, command, args)
      },
      undefined,
      name === 'hostguard' ? [] : ['--grpc-transport', 'grpc-js'],
    )
    return { ...s, heap: () => scrape(httpPort) }
  }
  const s =
    name === 'no-op'
      ? await startServer('noop')
      : await startBare(name === 'bare' ? undefined : join(ROOT, 'examples', 'policy.yaml'))
  return { ...s, heap: () => probe(s.child) }
}

async function sample(server: Server): Promise<Sample> {
  const heap = await server.heap()
  return { ...pages(server.pid), peakMiB: rssMiB(server.pid), ...heap }
}

/** One round of one server: a sample each second of the load, and one once idle after it. */
interface Measured {
  readonly rps: number
  readonly failed: number
  readonly load: readonly Sample[]
  readonly idle: Sample
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function measure(name: string, body: string): Promise<Measured> {
  const server = await start(name)
  try {
    const load = h2load(server.port, body, 'timed', 0, 0, loadSeconds)
    let done = false
    void load.finally(() => {
      done = true
    })
    // Every second after the first: the first second is start-up (connections, JIT) more than load.
    const samples: Sample[] = []
    await pause(1_000)
    while (!done) {
      samples.push(await sample(server))
      await pause(1_000)
    }
    const r = await load
    await pause(settleMs)
    return { rps: r.rps, failed: r.failed, load: samples, idle: await sample(server) }
  } finally {
    server.child.kill('SIGKILL')
  }
}

const command = `npm run bench:memory${quick ? ' -- --quick' : ''}`
say(
  `# Memory: hostguard on each transport, the no-op grpc-js server and a bare Node.js process${quick ? ' (quick)' : ''}`,
)
say()
say(`- command: \`${command}\``)
say(
  `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${f(totalmem() / 2 ** 30, 0)} GiB`,
)
say(`- Node.js ${process.version}, NODE_OPTIONS=${IMAGE_NODE_OPTIONS}, ${new Date().toISOString()}`)
if (!haveH2load) {
  console.warn('*** bench:memory skipped: h2load is missing (apt-get install -y nghttp2-client)')
  say()
  say('Skipped: h2load is missing (apt-get install -y nghttp2-client).')
  write()
  process.exit(0)
}

// The probe is opt-in; the servers inherit the environment (hostguard ignores the variable).
process.env['HOSTGUARD_BENCH_MEMORY'] = '1'
const NAMES = [
  'hostguard',
  'hostguard on grpc-js',
  'no-op',
  'bare + loader thread',
  'bare',
] as const
const body = requestBody()
type Name = (typeof NAMES)[number]
const runs = new Map<Name, Measured[]>(NAMES.map((n) => [n, []]))
for (let round = 0; round < rounds; round++)
  for (const name of round % 2 === 0 ? NAMES : [...NAMES].reverse())
    runs.get(name)?.push(await measure(name, body))
const all = (name: Name): Measured[] => runs.get(name) ?? []
/** Per round: the last sample of the load (RSS grows all through it), or the idle one. */
const samplesOf = (name: Name, phase: Phase): Sample[] =>
  all(name).flatMap((m) => (phase === 'idle' ? [m.idle] : m.load.slice(-1)))

const spaceNames = [
  ...new Set(
    NAMES.flatMap((n) => [...samplesOf(n, 'load'), ...samplesOf(n, 'idle')]).flatMap((s) => [
      ...s.spaces.keys(),
    ]),
  ),
]
type Row = readonly [label: string, value: (s: Sample) => number | undefined]
const rows: Row[] = [
  ['RSS', (s) => s.rss],
  ['peak RSS (VmHWM, since start)', (s) => s.peakMiB * MiB],
  ['Pss', (s) => s.pss],
  ['anonymous', (s) => s.anonymous],
  ["  of which malloc's main arena ([heap], brk)", (s) => s.brk],
  ['file-backed (Rss − Anonymous)', (s) => s.fileBacked],
  ['  of which the node binary', (s) => s.binary],
  ['V8 heap, committed (heapTotal)', (s) => s.heapTotal],
  ['V8 heap, used (heapUsed)', (s) => s.heapUsed],
  ...spaceNames.flatMap((space): Row[] => [
    [`  ${space} space, used`, (s) => s.spaces.get(space)?.used],
    [`  ${space} space, committed`, (s) => s.spaces.get(space)?.total],
  ]),
  ['external', (s) => s.external],
  ['  of which arrayBuffers', (s) => s.arrayBuffers],
  ['native: anonymous − heapTotal − external', (s) => s.anonymous - s.heapTotal - s.external],
]
type Phase = 'load' | 'idle'
function median(xs: number[]): number | undefined {
  const sorted = [...xs].sort((a, b) => a - b)
  const half = Math.floor(sorted.length / 2)
  const [low, high] = [sorted[sorted.length % 2 === 0 ? half - 1 : half], sorted[half]]
  return low === undefined || high === undefined ? undefined : (low + high) / 2
}
/** A row's figure for one server: the median over the rounds (the peak: their largest). */
function figure(name: Name, phase: Phase, [label, value]: Row): number | undefined {
  const xs = samplesOf(name, phase)
    .map(value)
    .filter((x) => x !== undefined)
  return label.startsWith('peak') ? Math.max(...xs) : median(xs)
}
// Spaces this V8 keeps empty in every server (read-only, shared: not this isolate's) say nothing.
const shown = rows.filter((row) =>
  NAMES.some((n) =>
    (['load', 'idle'] as const).some((phase) => Math.abs(figure(n, phase, row) ?? 1) >= 0.05 * MiB),
  ),
)
const minus = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined ? undefined : a - b
const mib = (n: number | undefined): string => f(n === undefined ? undefined : n / MiB)

function table(phase: Phase): void {
  say(
    '| MiB | hostguard | hostguard on grpc-js | no-op | bare + loader thread | bare | grpc-js − hostguard | hostguard − no-op | no-op − bare | loader thread (bare + thread − bare) |',
  )
  say('|---|---|---|---|---|---|---|---|---|---|')
  if (phase === 'load')
    say(
      `| req/s (h2load, closed loop; mean of the rounds) | ${NAMES.map((n) => f(all(n).reduce((sum, m) => sum + m.rps, 0) / rounds, 0)).join(' | ')} | | | | |`,
    )
  for (const row of shown) {
    const [label] = row
    const [hostguard, grpcjs, noop, thread, bare] = NAMES.map((n) => figure(n, phase, row))
    say(
      `| ${label} | ${[hostguard, grpcjs, noop, thread, bare].map(mib).join(' | ')} | ${mib(minus(grpcjs, hostguard))} | ${mib(minus(hostguard, noop))} | ${mib(minus(noop, bare))} | ${mib(minus(thread, bare))} |`,
    )
  }
}

say()
say(
  `Each server runs alone on core 0 with h2load on core 1: ${loadSeconds} s of bench/e2e.ts's closed loop (2 connections × 32 streams, fixture 01), sampled every second after the first; "under load" is the last sample, at the end of the load, since RSS grows all through it; "idle" one sample ${settleMs / 1000} s after the load. ${rounds} round${rounds > 1 ? 's, the order reversed in the second; each figure is the median of the rounds (peak RSS: the largest), each difference one of medians' : ''}. hostguard is \`dist/main.js serve\` as bench/e2e.ts starts it (on node:http2; hostguard on grpc-js adds \`--grpc-transport grpc-js\`), its heap read from its own /metrics (prom-client's default metrics, which have no arrayBuffers); the no-op (bench/noop-server.ts) and the bare processes (bench/bare-server.ts: node:http2 answering UNIMPLEMENTED; + loader thread: hostguard's policy loader thread started and examples/policy.yaml loaded once) print process.memoryUsage() and v8.getHeapSpaceStatistics() on SIGUSR2. RSS, Pss and Anonymous: /proc/PID/smaps_rollup; the node binary: the Rss of its mappings in /proc/PID/smaps. The V8 figures are the main thread's isolate only: a worker thread's heap is in "native".`,
)
const failed = NAMES.map((n) => [n, all(n).reduce((sum, m) => sum + m.failed, 0)] as const).filter(
  ([, count]) => count > 0,
)
if (failed.length > 0)
  say(`\nFailed calls: ${failed.map(([n, count]) => `${n} ${count}`).join(', ')}.`)
say()
say('## Under load')
say()
table('load')
say()
say('## Idle, after the load')
say()
table('idle')
say()

say("## Each second of the load, round 1: RSS / V8 heap used / malloc's main arena")
say()
say(`| s | ${NAMES.join(' | ')} |`)
say(`|---|${NAMES.map(() => '---').join('|')}|`)
const seconds = Math.max(...NAMES.map((n) => all(n)[0]?.load.length ?? 0))
for (let i = 0; i < seconds; i++)
  say(
    `| ${i + 1} | ${NAMES.map((n) => {
      const s = all(n)[0]?.load[i]
      return s ? `${mib(s.rss)} / ${mib(s.heapUsed)} / ${mib(s.brk)}` : ''
    }).join(' | ')} |`,
  )
say()

/** Differences of medians under load, in MiB, for the paragraph. */
const at = (name: Name, value: Row[1]): number => figure(name, 'load', ['', value]) ?? Number.NaN
const d = (a: Name, b: Name, value: Row[1]): string => f((at(a, value) - at(b, value)) / MiB)
const rss: Row[1] = (s) => s.rss
const anonymous: Row[1] = (s) => s.anonymous
const fileBacked: Row[1] = (s) => s.fileBacked
const heapTotal: Row[1] = (s) => s.heapTotal
const heapUsed: Row[1] = (s) => s.heapUsed
const external: Row[1] = (s) => s.external
const native: Row[1] = (s) => s.anonymous - s.heapTotal - s.external
const thread = 'bare + loader thread'
const [first, last] = [all('hostguard')[0]?.load[0], all('hostguard')[0]?.load.at(-1)]
const idleAt = (name: Name, value: Row[1]): number =>
  figure(name, 'idle', ['', value]) ?? Number.NaN
const di = (a: Name, b: Name, value: Row[1]): string =>
  f((idleAt(a, value) - idleAt(b, value)) / MiB)
say('## Where it goes (under load)')
say()
say(
  `hostguard − no-op, at the end of the load: ${d('hostguard', 'no-op', rss)} MiB of RSS, ${d('hostguard', 'no-op', anonymous)} of it anonymous and ${d('hostguard', 'no-op', fileBacked)} file-backed (more of the node binary's code paged in). Main-thread V8 heap: ${d('hostguard', 'no-op', heapTotal)} MiB committed, ${d('hostguard', 'no-op', heapUsed)} used, a difference of garbage as much as of live objects (each server's garbage depends on its rate); idle, ${di('hostguard', 'no-op', heapUsed)} MiB used: what only hostguard loads and keeps (proto-loader's descriptors of the Envoy protos for reflection, gRPC health, prom-client's registry, pino, the live policy and its watchers, against the no-op's one pre-encoded answer). External: ${d('hostguard', 'no-op', external)} MiB. Native, outside the main heap and external: ${d('hostguard', 'no-op', native)} MiB. Of that, ${d('hostguard', 'no-op', (s) => s.brk)} MiB more in malloc's main arena (the [heap] mapping: what the main thread mallocs outside the V8 heap, and glibc keeps), which in round 1 went from ${mib(first?.brk)} MiB after the first second of the load to ${mib(last?.brk)} at its end (the no-op's: ${mib(all('no-op')[0]?.load[0]?.brk)} to ${mib(all('no-op')[0]?.load.at(-1)?.brk)}); these figures do not say whose mallocs they are. Also there is the policy loader thread serve keeps for reloads: a worker has its own V8 isolate and heap, which the main thread's figures do not show; added to a bare process, that thread costs ${d(thread, 'bare', rss)} MiB of RSS, ${d(thread, 'bare', native)} of it native (idle: ${di(thread, 'bare', rss)} and ${di(thread, 'bare', native)}).`,
)
say()
say(
  `Garbage: at the end of the load hostguard's main heap holds ${f(at('hostguard', heapUsed) / MiB)} MiB used and ${f(at('hostguard', external) / MiB)} external (the no-op's ${f(at('no-op', heapUsed) / MiB)} and ${f(at('no-op', external) / MiB)}), ${settleMs / 1000} s later ${f(idleAt('hostguard', heapUsed) / MiB)} and ${f(idleAt('hostguard', external) / MiB)} (${f(idleAt('no-op', heapUsed) / MiB)} and ${f(idleAt('no-op', external) / MiB)}); RSS ${f(at('hostguard', rss) / MiB)} → ${f(idleAt('hostguard', rss) / MiB)} MiB (${f(at('no-op', rss) / MiB)} → ${f(idleAt('no-op', rss) / MiB)}). ${idleAt('hostguard', heapUsed) < at('hostguard', heapUsed) ? "What the idle heap no longer holds was garbage a full GC (V8's memory reducer, once the allocation rate fell) collected, most likely objects promoted to the old space while their call was in flight (the image's 8 MiB semi-space) and the request and answer buffers they held in external. RSS falls less: freed pages stay with V8 and malloc for the next burst." : 'No full GC ran in between: the heap still holds what the load left.'}`,
)
say()
say(
  `The transport, grpc-js over node:http2 (no-op − bare): ${d('no-op', 'bare', rss)} MiB of RSS, ${d('no-op', 'bare', heapTotal)} of committed heap (${d('no-op', 'bare', heapUsed)} used: grpc-js's modules and its per-call objects, a call with its metadata, deadline and status, on top of node:http2's stream), ${d('no-op', 'bare', external)} external, ${d('no-op', 'bare', native)} native. nghttp2, libuv and OpenSSL are in both, since node:http2 is the bare process's transport too, and so is the node binary's code: ${f(at('bare', (s) => s.binary) / MiB)} MiB of its pages resident in the bare process, ${f(at('hostguard', (s) => s.binary) / MiB)} in hostguard.`,
)
say()
say(
  `What the transport changes (hostguard on grpc-js − hostguard, the same serve on each): ${d('hostguard on grpc-js', 'hostguard', rss)} MiB of RSS under load, ${d('hostguard on grpc-js', 'hostguard', heapTotal)} of committed heap, ${d('hostguard on grpc-js', 'hostguard', (s) => s.brk)} of malloc's main arena; idle, ${di('hostguard on grpc-js', 'hostguard', rss)} MiB of RSS.`,
)
say()
write()
