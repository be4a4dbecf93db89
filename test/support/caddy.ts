// A real Caddy for the proxy tests: Debian's caddy 2.6 (`caddy` on PATH, which .ci/run installs)
// or CADDY_BIN. Each instance runs proxies/caddy/Caddyfile as shipped, imported under test-only
// global options (no admin endpoint, no automatic HTTPS, 127.0.0.1 only), its {$NAME}
// placeholders filled in from the environment given, as the current user with HOME and the XDG
// directories in a temp dir so that it writes nothing elsewhere.

import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'vitest'
import { ROOT } from './protos.js'
import { freePort } from './server.js'
import { until } from './wait.js'

const SHIPPED_CADDYFILE = join(ROOT, 'proxies', 'caddy', 'Caddyfile')

const candidate = process.env['CADDY_BIN'] || 'caddy'
/** `caddy version`'s first word (v2.6.2), when Caddy runs here. */
const CADDY_VERSION = spawnSync(candidate, ['version'], { encoding: 'utf8' })
  .stdout?.trim()
  .split(/\s/)[0]
export const CADDY = CADDY_VERSION ? candidate : undefined

/** When Caddy is missing: a loud message and a visibly skipped test. */
export function skipWithoutCaddy(what: string): void {
  if (CADDY !== undefined) return
  const given = process.env['CADDY_BIN']
  process.stderr.write(
    `\n*** SKIPPED: Caddy is missing${given ? ` (CADDY_BIN=${given} does not run)` : ''}, so ${what} did NOT run.\n` +
      '*** Install it as .ci/run does: apt-get install caddy (Debian 12: caddy 2.6.2),\n' +
      '*** or point CADDY_BIN at a Caddy 2.6 or later binary.\n\n',
  )
  it.skip('SKIPPED: Caddy is missing (apt-get install caddy, or CADDY_BIN)', () => {})
}

/** The shipped file's {$NAME} placeholders, but the site address the test chooses. */
export interface CaddyEnv {
  readonly HOSTGUARD_AUTHZ: string
  readonly HOSTGUARD_SITE: string
  readonly HOSTGUARD_HEALTH_HEADER: string
  readonly HOSTGUARD_APP: string
}

export interface CaddyProcess {
  /** The port of the shipped site, on 127.0.0.1. */
  readonly port: number
  /** Everything Caddy logged (JSON lines on stderr). */
  log(): string
  stop(): Promise<void>
}

// Test-only global options around the shipped site block.
const GLOBAL_OPTIONS = `{
	admin off
	auto_https off
	default_bind 127.0.0.1
	grace_period 2s
}
`

/** `caddy run` on the shipped Caddyfile; resolves once Caddy serves it. */
export async function startCaddy(env: CaddyEnv): Promise<CaddyProcess> {
  if (CADDY === undefined) throw new Error('Caddy is missing')
  const dir = mkdtempSync(join(tmpdir(), 'hostguard-caddy-'))
  const config = join(dir, 'Caddyfile')
  writeFileSync(config, `${GLOBAL_OPTIONS}import ${SHIPPED_CADDYFILE}\n`)
  const port = await freePort()
  const child = spawn(CADDY, ['run', '--config', config, '--adapter', 'caddyfile'], {
    cwd: dir,
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: dir,
      XDG_CONFIG_HOME: join(dir, 'config'),
      XDG_DATA_HOME: join(dir, 'data'),
      XDG_CACHE_HOME: join(dir, 'cache'),
      HOSTGUARD_CADDY_SITE: `http://:${port}`,
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  child.stderr?.on('data', (d) => {
    log += d
  })
  const exited = () => child.exitCode !== null || child.signalCode !== null
  const stop = async () => {
    if (!exited()) {
      child.kill('SIGTERM')
      await new Promise((resolve) => child.once('exit', resolve))
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    // Caddy logs this once every listener of the configuration is bound.
    await until(
      10_000,
      () => exited() || log.includes('"serving initial configuration"'),
      'Caddy serving',
    )
    if (exited()) throw new Error(`caddy exited (${child.exitCode}):\n${log}`)
  } catch (e) {
    await stop()
    throw e
  }
  return { port, log: () => log, stop }
}
