// System packages some tests need. A test that cannot run without one is skipped with a loud
// message; .ci/run installs them, so in CI they run.

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { it } from 'vitest'

export const PYTHON = '/usr/bin/python3'

function runs(cmd: string, args: string[]): boolean {
  return existsSync(cmd) && spawnSync(cmd, args).status === 0
}

export const haveGrpcio = runs(PYTHON, ['-c', 'import grpc'])
export const havePromtool = spawnSync('promtool', ['--version']).status === 0
export const havePrometheus = spawnSync('prometheus', ['--version']).status === 0

/** Prints a loud message and registers a visibly skipped test when `missing`. */
export function skipLoudly(missing: boolean, message: string): void {
  if (!missing) return
  process.stderr.write(
    `\n*** SKIPPED: ${message}\n*** .ci/run installs it (apt-get install -y …); install it to run this test here.\n\n`,
  )
  it.skip(`SKIPPED: ${message}`, () => {})
}
