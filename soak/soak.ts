// npm run soak -- --minutes M --rps R: a steady open-loop load of the Envoy fixtures against the
// built server, with a policy reload every few seconds (two valid policies and one invalid, in
// turn). Prints a Markdown table a minute: RSS, heap, event-loop delay p99, calls, errors, and
// whether hostguard_decisions_total equals the calls answered. Exits 1 on any error, a count
// that does not add up, or memory that keeps growing.

import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { callCheck, checkClient } from '../test/support/grpc.js'
import { FIXTURES, ROOT } from '../test/support/protos.js'
import { spawnServe } from '../test/support/server.js'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    rps: { type: 'string', default: '1000' },
    'reload-every': { type: 'string', default: '5' },
  },
})
const minutes = Number(values.minutes)
const rps = Number(values.rps)
const reloadEverySeconds = Number(values['reload-every'])

const example = readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8')
const POLICIES = [
  example,
  example.replace(
    'allowedHosts: [www.example.com, shop.example.com, .example.org]',
    'allowedHosts: [www.example.com, .example.org]',
  ),
  'version: 1\nallowedHosts: ["*.example.com"]\n', // invalid: must be kept out
]
const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => readFileSync(join(FIXTURES, f)))

async function scrape(httpPort: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue
    const space = line.lastIndexOf(' ')
    const name = line.slice(0, space).replace(/\{.*\}$/, '')
    out.set(name, (out.get(name) ?? 0) + Number(line.slice(space + 1)))
  }
  return out
}

const dir = mkdtempSync(join(tmpdir(), 'hostguard-soak-'))
const policyFile = join(dir, 'policy.yaml')
writeFileSync(policyFile, POLICIES[0] ?? '')
const server = spawnServe(policyFile)
const { grpcPort, httpPort } = await server.started()
const client = checkClient(grpcPort)

let sent = 0
let answered = 0
let errors = 0
let inFlight = 0
const perTick = rps / 100
let owed = 0
const load = setInterval(() => {
  owed += perTick
  for (; owed >= 1; owed--) {
    const request = fixtures[sent % fixtures.length] ?? Buffer.alloc(0)
    sent++
    inFlight++
    callCheck(client, request).then(
      () => {
        answered++
        inFlight--
      },
      () => {
        errors++
        inFlight--
      },
    )
  }
}, 10)
let reloads = 0
const reloader = setInterval(() => {
  reloads++
  writeFileSync(policyFile, POLICIES[reloads % POLICIES.length] ?? '')
}, reloadEverySeconds * 1000)

interface Row {
  minute: number
  rssMiB: number
  heapMiB: number
  loopP99Ms: number
  sent: number
  errors: number
  reloadsOk: number
  reloadsFailed: number
}
const rows: Row[] = []
process.stdout.write(
  `soak: ${minutes} min at ${rps} rps, a reload every ${reloadEverySeconds} s (valid, valid, invalid)\n\n`,
)
process.stdout.write(
  '| minute | RSS MiB | heap used MiB | event-loop p99 ms | calls sent | errors | reloads ok / failed |\n|---|---|---|---|---|---|---|\n',
)
for (let minute = 1; minute <= minutes; minute++) {
  await new Promise((resolve) => setTimeout(resolve, 60_000))
  const m = await scrape(httpPort)
  const row: Row = {
    minute,
    rssMiB: (m.get('process_resident_memory_bytes') ?? 0) / 2 ** 20,
    heapMiB: (m.get('nodejs_heap_size_used_bytes') ?? 0) / 2 ** 20,
    loopP99Ms: (m.get('nodejs_eventloop_lag_p99_seconds') ?? 0) * 1000,
    sent,
    errors,
    reloadsOk: m.get('hostguard_policy_reloads_total') ?? 0,
    reloadsFailed: 0,
  }
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  row.reloadsOk = Number(
    /hostguard_policy_reloads_total\{result="success"\} (\d+)/.exec(text)?.[1] ?? 0,
  )
  row.reloadsFailed = Number(
    /hostguard_policy_reloads_total\{result="failure"\} (\d+)/.exec(text)?.[1] ?? 0,
  )
  rows.push(row)
  process.stdout.write(
    `| ${minute} | ${row.rssMiB.toFixed(1)} | ${row.heapMiB.toFixed(1)} | ${row.loopP99Ms.toFixed(2)} | ${sent} | ${errors} | ${row.reloadsOk} / ${row.reloadsFailed} |\n`,
  )
}
clearInterval(load)
clearInterval(reloader)
const deadline = Date.now() + 10_000
while (inFlight > 0 && Date.now() < deadline)
  await new Promise((resolve) => setTimeout(resolve, 50))
const final = await scrape(httpPort)
const decisions = final.get('hostguard_decisions_total') ?? 0
client.close()
server.child.kill('SIGTERM')

const first = rows[Math.min(1, rows.length - 1)]
const last = rows.at(-1)
const growth = first && last ? (last.rssMiB - first.rssMiB) / first.rssMiB : 0
const heapGrowth = first && last ? (last.heapMiB - first.heapMiB) / first.heapMiB : 0
process.stdout.write(
  `\ncalls sent ${sent}, answered ${answered}, errors ${errors}; hostguard_decisions_total ${decisions} (${decisions === answered ? 'equal' : 'NOT EQUAL'}); RSS ${(growth * 100).toFixed(1)} % and heap ${(heapGrowth * 100).toFixed(1)} % from minute ${first?.minute} to ${last?.minute}\n`,
)
// Beyond noise: a steady server's RSS and heap move a few percent minute to minute.
const ok =
  errors === 0 &&
  decisions === answered &&
  answered === sent &&
  (rows.length < 3 || (growth < 0.15 && heapGrowth < 0.25))
process.stdout.write(ok ? 'soak: passed\n' : 'soak: FAILED\n')
process.exitCode = ok ? 0 : 1
