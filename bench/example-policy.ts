// What the benchmark servers decide with: examples/policy.yaml, compiled once at start (with an
// empty environment, so that the machine's variables do not change the figures), and the request
// the load sends (fixture 01). Paths from test/support/root.ts: protos.ts would load the Envoy
// protos, about 20 MiB that a server measured for its memory must not carry.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { CompiledPolicy } from '../src/decision/types.js'
import { compilePolicy } from '../src/policy/compile.js'
import { parsePolicy } from '../src/policy/load.js'
import { FIXTURES, ROOT } from '../test/support/root.js'

export function examplePolicy(): CompiledPolicy {
  const file = join(ROOT, 'examples', 'policy.yaml')
  return compilePolicy(parsePolicy(readFileSync(file, 'utf8'), 'examples/policy.yaml', {}))
}

export const FIXTURE_01 = join(FIXTURES, '01-ipv4-direct-host.bin')

/** The line bench/e2e.ts's startNode waits for. */
export function announce(name: string, port: number): void {
  process.stdout.write(`${JSON.stringify({ msg: `${name} serving`, port })}\n`)
}
