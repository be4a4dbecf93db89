// npm run fuzz -- --count N [--seed S]: prints a summary, writes failing cases to
// build/fuzz-failures.json, and exits 1 if any case failed.

import { mkdirSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { runFuzz } from './fuzz.js'

const { values } = parseArgs({
  options: { count: { type: 'string', default: '10000' }, seed: { type: 'string' } },
})
const count = Number(values.count)
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed)
const started = performance.now()
process.stdout.write(`fuzz: ${count} cases, seed ${seed}\n`)
const result = runFuzz(count, seed, (done) =>
  process.stdout.write(`  ${done} cases, ${((performance.now() - started) / 1000).toFixed(0)} s\n`),
)
const seconds = (performance.now() - started) / 1000
process.stdout.write(
  `fuzz: ${result.cases} cases (${result.mutated} with damaged bytes, ${result.decodeFailures} not a CheckRequest) in ${seconds.toFixed(1)} s: ${result.failures.length === 0 ? 'no failure' : `${result.failures.length} failures`}\n`,
)
process.stdout.write(`  reasons: ${JSON.stringify(result.reasons)}\n`)
if (result.failures.length > 0) {
  mkdirSync('build', { recursive: true })
  writeFileSync('build/fuzz-failures.json', JSON.stringify(result, null, 2))
  for (const f of result.failures.slice(0, 5))
    process.stdout.write(`  case ${f.index}: ${f.problem.slice(0, 400)}\n`)
  process.stdout.write('  all failures: build/fuzz-failures.json\n')
  process.exitCode = 1
}
