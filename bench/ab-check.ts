// check() of two builds of dist/ side by side in one process, alternated round by round over the
// Envoy fixtures, so that a change of a few per cent shows through a noisy machine (an A/A run
// gives 1.00 ± 0.01). Each change to the request path in bench/RESULTS.md's history was taken
// this way. Make the two builds (inside the project, so that both find node_modules), then
// compare them:
//   git stash && npm run build && rm -rf build/ab-A && cp -r dist build/ab-A && git stash pop
//   npm run bench:ab -- build/ab-A dist
// Prints the median time per decision of each (the fixtures' median, per round, then the median
// over rounds) and the median of the per-round ratios B/A.

import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { FIXTURES, ROOT } from '../test/support/protos.js'

type Check = (bytes: Buffer) => unknown

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: 'string', default: '30' } },
})
const [distA, distB] = positionals
if (!distA || !distB) {
  console.error('usage: npm run bench:ab -- DIST_A DIST_B [--rounds N]')
  process.exit(2)
}

/** The build's own check(), on the example policy compiled by the same build. */
async function load(dist: string): Promise<Check> {
  const at = (module: string) => new URL(`file://${join(resolve(dist), module)}`).href
  // grpc-authz/ since the split of check/ into the decision core and the gRPC front end.
  const { check } = await import(at('grpc-authz/check.js')).catch(
    () => import(at('check/check.js')),
  )
  const { compilePolicy } = await import(at('policy/compile.js'))
  const { parsePolicy } = await import(at('policy/load.js'))
  const text = readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8')
  const policy = compilePolicy(parsePolicy(text, 'examples/policy.yaml', {}))
  return (bytes) => check(policy, bytes)
}

const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => readFileSync(join(FIXTURES, f)))
const CALLS = 20_000
const median = (xs: readonly number[]): number =>
  [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? Number.NaN

/** One round: each fixture CALLS times; the median over fixtures of ns per call. */
function round(check: Check): number {
  const perFixture = fixtures.map((bytes) => {
    const started = process.hrtime.bigint()
    for (let i = 0; i < CALLS; i++) check(bytes)
    return Number(process.hrtime.bigint() - started) / CALLS
  })
  return median(perFixture)
}

const a = await load(distA)
const b = await load(distB)
for (let i = 0; i < 5; i++) {
  round(a)
  round(b)
}
const timesA: number[] = []
const timesB: number[] = []
for (let i = 0; i < Number(values.rounds); i++) {
  // Whichever runs second in a round was measured ~2 % slower in A/A runs: take turns.
  if (i % 2 === 0) {
    timesA.push(round(a))
    timesB.push(round(b))
  } else {
    timesB.push(round(b))
    timesA.push(round(a))
  }
}
const ratios = timesA.map((t, i) => (timesB[i] ?? Number.NaN) / t)
console.log(
  `A ${median(timesA).toFixed(0)} ns  B ${median(timesB).toFixed(0)} ns  B/A ${median(ratios).toFixed(3)} (median of ${ratios.length} rounds)`,
)
