// Instructions per Check call, hostguard against the no-op server, counted by valgrind's
// callgrind: a count, not a time, so it does not move with the other tenants of a shared machine
// the way req/s and CPU seconds do. Each server runs under callgrind with the image's
// NODE_OPTIONS, is warmed up with h2load (long enough for V8 to optimise the request path), has
// its counters zeroed (callgrind_control -z), answers the measured calls and dumps its counts
// (callgrind_control -d). Slow, since valgrind runs the server some 50 times slower: about four
// minutes a server with the defaults.
// The count is not free of bias: work driven by time rather than by calls runs some 50 times
// more often per call under valgrind, and only hostguard has such work (prom-client's default
// metrics). Measured on Node 24: a hostguard answering a fixed response counted ~349,000
// instructions a call with the default metrics and ~315,000 without, while under real load the
// two cost the same CPU per call. So the figure overstates hostguard's cost; read it as a bound.
// Run: npm run bench:instructions [-- --calls N --warmup N]   (needs valgrind and h2load)

import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ROOT } from '../test/support/protos.js'
import { until } from '../test/support/wait.js'
import { h2load, haveH2load, requestBody, startServer } from './e2e.js'

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '20000' },
  },
})
const calls = Number(values.calls)
const warmup = Number(values.warmup)

const haveValgrind = spawnSync('callgrind_control', ['-h']).status === 0
if (!haveValgrind || !haveH2load) {
  console.log('Skipped: needs valgrind (callgrind_control) and h2load (Debian nghttp2-client).')
  process.exit(0)
}

function control(pid: number, ...args: string[]): void {
  const r = spawnSync('callgrind_control', [...args, String(pid)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`callgrind_control ${args.join(' ')}: ${r.stderr}`)
}

/** Instructions the server executed per call over `calls` calls after `warmup`. */
async function instructionsPerCall(kind: 'hostguard' | 'noop', body: string): Promise<number> {
  const out = join(mkdtempSync(join(tmpdir(), 'hostguard-callgrind-')), 'callgrind.out')
  const server = await startServer(
    kind,
    (command, args) => [
      'valgrind',
      // JIT code is written and then run: valgrind must check for it outside the stack too.
      [
        '--quiet',
        '--tool=callgrind',
        '--smc-check=all-non-file',
        `--callgrind-out-file=${out}`,
        command,
        ...args,
      ],
    ],
    120_000,
  )
  try {
    await h2load(server.port, body, 'closed', warmup, 0, 0)
    control(server.pid, '-z')
    const measured = await h2load(server.port, body, 'closed', calls, 0, 0)
    if (measured.succeeded !== calls)
      throw new Error(`${kind}: ${measured.succeeded} of ${calls} calls succeeded`)
    control(server.pid, '-d')
    // The dump after a zero is the first numbered part: callgrind.out.1.
    const dump = `${out}.1`
    await until(
      60_000,
      () => existsSync(dump) && readFileSync(dump, 'utf8').includes('totals:'),
      `${kind} dump`,
    )
    const summary = /^summary: (\d+)$/m.exec(readFileSync(dump, 'utf8'))?.[1]
    return Number(summary) / calls
  } finally {
    server.child.kill('SIGKILL')
  }
}

const body = requestBody()
const noop = await instructionsPerCall('noop', body)
const hostguard = await instructionsPerCall('hostguard', body)
const lines = [
  '# hostguard: instructions per Check call',
  '',
  `- command: \`npm run bench:instructions -- --warmup ${warmup} --calls ${calls}\` on the Node.js below`,
  `- Node.js ${process.version}, ${new Date().toISOString().slice(0, 10)}; valgrind's callgrind; fixture 01; h2load 2 x 32 streams`,
  `- ${warmup} calls of warm-up, then ${calls} counted; both servers with the image's NODE_OPTIONS`,
  '',
  '| server | instructions per call |',
  '|---|---|',
  `| noop | ${noop.toFixed(0)} |`,
  `| hostguard | ${hostguard.toFixed(0)} |`,
  '',
  `As a rate (no-op / hostguard, comparable to the closed-loop req/s ratio, target ≥ 0.90×): ${(noop / hostguard).toFixed(3)}×. hostguard's own work: ${(hostguard - noop).toFixed(0)} instructions a call.`,
  '',
  "Work driven by time, not calls (prom-client's default metrics, hostguard only), is counted some 50 times more per call under valgrind: hostguard's figure is an upper bound (bench/instructions.ts).",
]
for (const line of lines) console.log(line)
writeFileSync(join(ROOT, 'bench', 'INSTRUCTIONS.md'), `${lines.join('\n')}\n`)
console.log('\nwritten to bench/INSTRUCTIONS.md')
