// A real nginx for the proxy tests: Debian's /usr/sbin/nginx (which .ci/run installs) or
// NGINX_BIN, running proxies/nginx/hostguard.conf as shipped with its addresses and site
// replaced, in a temp prefix of its own, as the current user, on a free port.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { it } from 'vitest'
import { ROOT } from './protos.js'
import { freePort } from './server.js'
import { until } from './wait.js'

const SHIPPED = join(ROOT, 'proxies', 'nginx', 'hostguard.conf')

/** The first nginx that runs and was built with auth_request (`nginx -V` prints to stderr). */
function findNginx(): string | undefined {
  const given = process.env['NGINX_BIN']
  for (const bin of given ? [given] : ['/usr/sbin/nginx', '/usr/local/sbin/nginx']) {
    const run = spawnSync(bin, ['-V'], { encoding: 'utf8' })
    if (run.status === 0 && run.stderr.includes('--with-http_auth_request_module')) return bin
  }
  return undefined
}

export const NGINX = findNginx()

/** When nginx (with auth_request) is missing: a loud message and a visibly skipped test. */
export function skipWithoutNginx(what: string): void {
  if (NGINX !== undefined) return
  const given = process.env['NGINX_BIN']
  process.stderr.write(
    `\n*** SKIPPED: nginx with the auth_request module is missing${given ? ` (NGINX_BIN=${given} does not run or lacks it)` : ''}, so ${what} did NOT run.\n` +
      `*** Install it as .ci/run does: apt-get install nginx (or point NGINX_BIN at an nginx built --with-http_auth_request_module).\n\n`,
  )
  it.skip('SKIPPED: nginx is missing (apt-get install nginx, or NGINX_BIN)', () => {})
}

/** Where the shipped file's placeholders point instead. */
export interface NginxTargets {
  /** hostguard's --authz-port (or a recorder standing in for it). */
  readonly authzPort: number
  readonly appPort: number
  /** The /nginx/<site> segment; `default` as shipped. */
  readonly site?: string
}

/**
 * The shipped file with its listen port, upstream servers and site replaced; each placeholder
 * must occur exactly once, so a change of the file's shape fails here instead of going untested.
 */
function renderNginxConf(port: number, targets: NginxTargets): string {
  let conf = readFileSync(SHIPPED, 'utf8')
  const replace = (from: string, to: string) => {
    const parts = conf.split(from)
    if (parts.length !== 2) throw new Error(`${SHIPPED}: expected "${from}" once`)
    conf = parts.join(to)
  }
  replace('listen 80 default_server;', `listen 127.0.0.1:${port} default_server;`)
  replace('server 127.0.0.1:9002;', `server 127.0.0.1:${targets.authzPort};`)
  replace('server 127.0.0.1:8080;', `server 127.0.0.1:${targets.appPort};`)
  replace('/nginx/default;', `/nginx/${targets.site ?? 'default'};`)
  return conf
}

export interface NginxProcess {
  readonly port: number
  readonly child: ChildProcess
  /** nginx's error log so far. */
  errorLog(): string
  stop(): Promise<void>
}

/** Runs the rendered shipped file; resolves once nginx accepts connections on its port. */
export async function startNginx(targets: NginxTargets): Promise<NginxProcess> {
  if (NGINX === undefined) throw new Error('nginx is missing')
  const dir = mkdtempSync(join(tmpdir(), 'hostguard-nginx-'))
  const port = await freePort()
  writeFileSync(join(dir, 'hostguard.conf'), renderNginxConf(port, targets))
  // Debian's build has absolute temp and log paths under /var: every path lives in `dir`. As
  // root, nginx would run its worker as nobody, who cannot enter `dir`: keep the current user.
  const user = process.getuid?.() === 0 ? `user ${userInfo().username};\n` : ''
  writeFileSync(
    join(dir, 'nginx.conf'),
    `${user}worker_processes 1;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${dir}/hostguard.conf;
}
`,
  )
  const errorLogFile = join(dir, 'error.log')
  const child = spawn(
    NGINX,
    [
      '-p',
      dir,
      '-c',
      join(dir, 'nginx.conf'),
      '-e',
      errorLogFile,
      '-g',
      `daemon off; pid ${dir}/nginx.pid; error_log ${errorLogFile} info;`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr?.on('data', (d) => {
    stderr += d
  })
  const exited = () => child.exitCode !== null || child.signalCode !== null
  const errorLog = () => {
    try {
      return readFileSync(errorLogFile, 'utf8')
    } catch {
      return ''
    }
  }
  const stop = async () => {
    if (!exited()) {
      const gone = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await gone
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await until(10_000, () => exited() || accepts(port), `nginx listening on ${port}`)
    if (exited()) throw new Error(`nginx exited (${child.exitCode}):\n${stderr}${errorLog()}`)
  } catch (e) {
    await stop()
    throw e
  }
  return { port, child, errorLog, stop }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
