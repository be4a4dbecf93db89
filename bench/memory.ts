// npm run bench:memory [-- --quick]: where a server's RSS goes under the load of bench/e2e.ts
// (h2load, closed loop, 2 connections x 32 streams, the server on core 0 and h2load on core 1)
// and once idle after it, for hostguard, the no-op grpc-js server, and bare node:http2 processes
// (the floor of Node.js, then that floor with hostguard's policy loader thread). Writes the tables
// to bench/MEMORY.md. Nothing in the servers changes: hostguard's numbers are its prom-client
// default metrics (/metrics on --http-port), the others' a JSON line they print on SIGUSR2 when
// HOSTGUARD_BENCH_MEMORY=1 (bench/memory-probe.ts); the kernel's view is /proc/PID/smaps.
// Skips, with a message, without h2load (nghttp2-client).

import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, realpathSync, writeFileSync } from 'node:fs'
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

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const quick = values.quick
const loadSeconds = quick ? 3 : 10
/** How long after the load the idle sample waits: the last calls are answered and freed. */
const settleMs = 2_000
const MiB = 2 ** 20

const lines: string[] = []
const say = (line = ''): void => {
  console.log(line)
  lines.push(line)
}
const f = (n: number | undefined, digits = 1): string =>
  n !== undefined && Number.isFinite(n) ? n.toFixed(digits) : '-'
const write = (): void => {
  writeFileSync(join(ROOT, 'bench', 'MEMORY.md'), `${lines.join('\n')}\n`)
  console.log('\nwritten to bench/MEMORY.md')
}

/** One server's memory at one instant, in bytes (peak in MiB, as rssMiB gives it). */
interface Sample {
  readonly rss: number
  readonly pss: number
  readonly anonymous: number
  /** Rss − Anonymous: pages of mapped files, the node binary's code and data first. */
  readonly fileBacked: number
  readonly binary: number
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
  let binary = 0
  let inBinary = false
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    // A mapping's header: address range, permissions, offset, device, inode, then the path.
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line)
    if (header) inBinary = header[1] === NODE_BINARY
    else if (inBinary && line.startsWith('Rss:')) binary += Number(line.split(/\s+/)[1]) * 1024
  }
  const [rss, anonymous] = [kB('Rss'), kB('Anonymous')]
  return { rss, pss: kB('Pss'), anonymous, fileBacked: rss - anonymous, binary }
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

interface Measured {
  readonly name: string
  readonly rps: number
  readonly failed: number
  readonly load: Sample
  readonly idle: Sample
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
  if (name === 'hostguard') {
    let httpPort = 0
    // startServer picks the metrics port itself: read it from the command line it builds.
    const s = await startServer('hostguard', (command, args) => {
      httpPort = Number(args[args.indexOf('--http-port') + 1])
      return pinned(0, command, args)
    })
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

async function measure(name: string, body: string): Promise<Measured> {
  const server = await start(name)
  try {
    const load = h2load(server.port, body, 'timed', 0, 0, loadSeconds)
    let done = false
    void load.finally(() => {
      done = true
    })
    // Every second of the load after the first; the sample kept is the one of the largest RSS.
    const samples: Sample[] = []
    await new Promise((r) => setTimeout(r, 1_000))
    while (!done) {
      samples.push(await sample(server))
      await new Promise((r) => setTimeout(r, 1_000))
    }
    const r = await load
    await new Promise((r) => setTimeout(r, settleMs))
    const idle = await sample(server)
    const busiest = samples.reduce((a, b) => (b.rss > a.rss ? b : a), samples[0] ?? idle)
    return { name, rps: r.rps, failed: r.failed, load: busiest, idle }
  } finally {
    server.child.kill('SIGKILL')
  }
}

const command = `npm run bench:memory${quick ? ' -- --quick' : ''}`
say(
  `# Memory: hostguard, the no-op grpc-js server and a bare Node.js process${quick ? ' (quick)' : ''}`,
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
const NAMES = ['hostguard', 'no-op', 'bare + loader thread', 'bare'] as const
const body = requestBody()
const runs = new Map<string, Measured>()
for (const name of NAMES) runs.set(name, await measure(name, body))
const run = (name: (typeof NAMES)[number]): Measured => runs.get(name) as Measured

const spaceNames = [
  ...new Set([...runs.values()].flatMap((m) => [...m.load.spaces.keys(), ...m.idle.spaces.keys()])),
]
type Row = readonly [label: string, value: (s: Sample) => number | undefined]
const rows: Row[] = [
  ['RSS', (s) => s.rss],
  ['peak RSS (VmHWM, since start)', (s) => s.peakMiB * MiB],
  ['Pss', (s) => s.pss],
  ['anonymous', (s) => s.anonymous],
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
// Spaces this V8 keeps empty in every server (read-only, shared: not this isolate's) say nothing.
const shown = rows.filter(([, value]) =>
  [...runs.values()].some((m) =>
    [m.load, m.idle].some((s) => Math.abs(value(s) ?? 1) >= 0.05 * MiB),
  ),
)
const minus = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined ? undefined : a - b
const mib = (n: number | undefined): string => f(n === undefined ? undefined : n / MiB)

function table(phase: 'load' | 'idle'): void {
  say(
    '| MiB | hostguard | no-op | bare + loader thread | bare | hostguard − no-op | no-op − bare | loader thread (bare + thread − bare) |',
  )
  say('|---|---|---|---|---|---|---|---|')
  if (phase === 'load')
    say(`| req/s (h2load, closed loop) | ${NAMES.map((n) => f(run(n).rps, 0)).join(' | ')} | | | |`)
  for (const [label, value] of shown) {
    const [hostguard, noop, thread, bare] = NAMES.map((n) => value(run(n)[phase]))
    say(
      `| ${label} | ${[hostguard, noop, thread, bare].map(mib).join(' | ')} | ${mib(minus(hostguard, noop))} | ${mib(minus(noop, bare))} | ${mib(minus(thread, bare))} |`,
    )
  }
}

say()
say(
  `Each server runs alone on core 0 with h2load on core 1: ${loadSeconds} s of bench/e2e.ts's closed loop (2 connections × 32 streams, fixture 01), sampled every second after the first, the sample of the largest RSS kept; then idle, ${settleMs / 1000} s after the load. hostguard is \`dist/main.js serve\` as bench/e2e.ts starts it, its heap read from its own /metrics (prom-client's default metrics, which have no arrayBuffers); the no-op (bench/noop-server.ts) and the bare processes (bench/bare-server.ts: node:http2 answering UNIMPLEMENTED; + loader thread: hostguard's policy loader thread started and examples/policy.yaml loaded once) print process.memoryUsage() and v8.getHeapSpaceStatistics() on SIGUSR2. RSS, Pss and Anonymous: /proc/PID/smaps_rollup; the node binary: the Rss of its mappings in /proc/PID/smaps. The V8 figures are the main thread's isolate only: a worker thread's heap is in "native".`,
)
const failed = [...runs.values()].filter((m) => m.failed > 0)
if (failed.length > 0)
  say(`\nFailed calls: ${failed.map((m) => `${m.name} ${m.failed}`).join(', ')}.`)
say()
say('## Under load')
say()
table('load')
say()
say('## Idle, after the load')
say()
table('idle')
say()

const [hg, noop, thread, bare] = NAMES.map((n) => run(n).load)
if (hg && noop && thread && bare) {
  const d = (a: number, b: number): string => f((a - b) / MiB)
  const threadNative =
    thread.anonymous -
    thread.heapTotal -
    thread.external -
    (bare.anonymous - bare.heapTotal - bare.external)
  say('## Where it goes (under load)')
  say()
  say(
    `hostguard − no-op: ${d(hg.rss, noop.rss)} MiB of RSS, ${d(hg.anonymous, noop.anonymous)} anonymous and ${d(hg.fileBacked, noop.fileBacked)} file-backed. Of the anonymous: ${d(hg.heapTotal, noop.heapTotal)} MiB more committed V8 heap on the main thread (${d(hg.heapUsed, noop.heapUsed)} used: what only hostguard loads, proto-loader's descriptors of the Envoy protos for reflection, gRPC health, prom-client, pino, the live policy, and the decoder's per-call state), ${d(hg.external, noop.external)} external, and ${d(hg.anonymous - hg.heapTotal - hg.external, noop.anonymous - noop.heapTotal - noop.external)} native outside both. Most of that native part is the policy loader thread serve keeps for reloads: a worker has its own V8 isolate and heap, and a bare process with only that thread added costs ${d(thread.rss, bare.rss)} MiB of RSS more (${f(threadNative / MiB)} of it native, outside the main thread's heap).`,
  )
  say()
  say(
    `The transport, grpc-js over node:http2 (no-op − bare): ${d(noop.rss, bare.rss)} MiB of RSS, ${d(noop.heapTotal, bare.heapTotal)} of committed heap (${d(noop.heapUsed, bare.heapUsed)} used: grpc-js's modules and its per-call objects: a call, its metadata, its status and the stream's listeners, against node:http2's stream alone), ${d(noop.external, bare.external)} external. nghttp2, libuv and OpenSSL are in both (node:http2 is the bare process's transport too), and so is the node binary's code: ${f(bare.binary / MiB)} MiB of its pages resident in the bare process, ${f(hg.binary / MiB)} in hostguard.`,
  )
  say()
}
write()
