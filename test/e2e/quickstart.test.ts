// README's "Behind Envoy on one machine" block, run as written: its install lines are what this
// machine already has (they are .ci/run's), its ports become free ones and its /tmp file a
// temporary one, and each curl must answer the status its comment gives.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { skipWithoutEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
import { ROOT } from '../support/protos.js'
import { freePort } from '../support/server.js'
import { until } from '../support/wait.js'

/** The block's commands, continuation lines joined. */
function quickStart(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Behind Envoy on one machine'))
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1]
  if (block === undefined) throw new Error('no sh block under "Behind Envoy on one machine"')
  return block
    .replace(/\\\n\s*/g, '')
    .trim()
    .split('\n')
}

/**
 * The environment of a user's shell: without the npm_* variables of the npm (or npx -p node@24)
 * running these tests, which would make the block's own npx and npm run look elsewhere.
 */
function shellEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')),
  )
}

const INSTALL = [/^npm ci$/, /^python3 -m venv \.tools\/envoy /]

skipWithoutEnvoy("README's Envoy quick start")

describe.skipIf(ENVOY === undefined)("README's Envoy quick start", () => {
  const dir = mkdtempSync(join(tmpdir(), 'hostguard-quickstart-'))
  const ports = new Map<string, number>()
  let setup: ChildProcess | undefined

  afterAll(async () => {
    // Everything the block started is in the process group of its shell (npm exec passes the
    // signal on to hostguard).
    if (setup?.pid !== undefined) {
      try {
        process.kill(-setup.pid, 'SIGTERM')
      } catch {
        // The group is gone already.
      }
      // Gone once nothing answers on hostguard's, the app's and Envoy's admin ports.
      const down = async (port: number | undefined) =>
        fetch(`http://127.0.0.1:${port}/`).then(
          () => false,
          () => true,
        )
      await until(
        15_000,
        async () => {
          for (const p of ['9001', '8000', '9901']) if (!(await down(ports.get(p)))) return false
          return true
        },
        'the quick start stopped',
      )
    }
    rmSync(dir, { recursive: true, force: true })
  })

  it('runs as written, and every curl answers what its comment says', async () => {
    const lines = quickStart()
    for (const p of ['9000', '9001', '8000', '8080', '9901']) ports.set(p, await freePort())
    const local = (line: string) =>
      line
        .replace(/\b(9000|9001|8000|8080|9901)\b/g, (p) => String(ports.get(p)))
        .replaceAll('/tmp/hostguard-edge.yaml', join(dir, 'edge.yaml'))
    const commands = lines.filter((l) => !INSTALL.some((i) => i.test(l)))
    expect(lines.length - commands.length).toBe(INSTALL.length)
    const curls = commands.filter((l) => l.startsWith('curl -i '))
    const script = commands
      .filter((l) => !curls.includes(l))
      .map((l) =>
        // ENVOY_BIN instead of the wheel when this machine has Envoy only there.
        l.startsWith('ENVOY=$(') && !existsSync(join(ROOT, '.tools', 'envoy', 'bin', 'python'))
          ? `ENVOY='${ENVOY}'`
          : local(l),
      )
      .join('\n')
    // What the block printed, for the failure message: which step failed, and why.
    const logFile = join(dir, 'quickstart.log')
    const log = openSync(logFile, 'w')
    setup = spawn('bash', ['-euxo', 'pipefail', '-c', script], {
      cwd: ROOT,
      env: shellEnv(),
      detached: true,
      stdio: ['ignore', log, log],
    })
    closeSync(log)
    const done = new Promise<number | null>((resolve) => setup?.once('exit', resolve))
    let code: number | null | undefined
    void done.then((c) => {
      code = c
    })
    await until(60_000, () => code !== undefined, 'the quick start up to Envoy ready')
    expect(
      code,
      `the block exited ${code}; it printed:\n${readFileSync(logFile, 'utf8').slice(-4000)}`,
    ).toBe(0)
    expect(curls.length).toBeGreaterThan(0)
    for (const curl of curls) {
      const [command, comment = ''] = curl.split(/\s+# /)
      const want = /^(\d{3})\b/.exec(comment)?.[1]
      expect(want, curl).toBeDefined()
      const { stdout } = await promisify(execFile)(
        'bash',
        ['-c', `${local(command ?? '')} -s -o /dev/null -w '%{http_code}'`],
        { env: shellEnv() },
      )
      expect(stdout, curl).toBe(want)
    }
  }, 90_000)
})
