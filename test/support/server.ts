// Servers for the integration tests: in-process (serve()) or as the built command.

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { pino } from 'pino'
import { type Running, type ServeOptions, serve } from '../../src/serve.js'
import { ROOT } from './protos.js'
import { until } from './wait.js'

export const MAIN = join(ROOT, 'dist', 'main.js')

/** serve() on 127.0.0.1 with free ports, an empty environment and a silent log, unless given. */
export function startServer(
  policyFile: string,
  options: Partial<Omit<ServeOptions, 'policyFile'>> = {},
): Promise<Running> {
  return serve({
    policyFile,
    listen: '127.0.0.1',
    grpcPort: 0,
    httpPort: 0,
    log: pino({ level: 'silent' }),
    env: {},
    ...options,
  })
}

export interface ServeProcess {
  readonly child: ChildProcessWithoutNullStreams
  /** Everything the process wrote to stdout so far. */
  output(): string
  /** The ports from its start-up log line, once it is serving (authzPort with --authz-port). */
  started(): Promise<{ grpcPort: number; httpPort: number; authzPort?: number }>
}

/**
 * `node dist/main.js serve --policy FILE [extra flags]` on 127.0.0.1 with free ports, unless
 * `extra` gives the address or a port (serve refuses a flag given twice); `main` names another
 * build (the image's production install).
 */
export function spawnServe(
  policyFile: string,
  extra: readonly string[] = [],
  main = MAIN,
  env: NodeJS.ProcessEnv = process.env,
): ServeProcess {
  const given = (flag: string) => extra.some((a) => a === flag || a.startsWith(`${flag}=`))
  const defaults = [
    ['--grpc-port', '0'],
    ['--http-port', '0'],
    ['--listen', '127.0.0.1'],
  ].filter(([flag]) => !given(flag ?? ''))
  const child = spawn(
    process.execPath,
    [main, 'serve', '--policy', policyFile, ...defaults.flat(), ...extra],
    { env },
  )
  let out = ''
  child.stdout.on('data', (d) => {
    out += d
  })
  const startLine = () => out.split('\n').find((l) => l.includes('"hostguard serving"'))
  return {
    child,
    output: () => out,
    async started() {
      await until(10_000, () => startLine() !== undefined || child.exitCode !== null, 'start-up')
      const line = startLine()
      if (line === undefined) throw new Error(`hostguard exited with ${child.exitCode}`)
      return JSON.parse(line)
    },
  }
}

/**
 * The first port of the kernel's ephemeral range: the local ports of outgoing connections come
 * from it, so a port handed out from it can be taken by some test's client before its program
 * binds it (the README quick start's hostguard once failed to start that way in CI).
 */
function ephemeralLow(): number {
  try {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    )
    return Number.isInteger(low) && low > 20_000 ? low : 32_768
  } catch {
    return 32_768
  }
}

const handedOut = new Set<number>()

function listenable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

/**
 * A TCP port free on 127.0.0.1 now (for programs that must be told their port): one below the
 * ephemeral range, at random so that parallel test files rarely pick the same one, never the
 * same one twice in a process.
 */
export async function freePort(): Promise<number> {
  const low = 20_000
  const high = ephemeralLow()
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low))
    if (handedOut.has(port)) continue
    if (await listenable(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error(`no free port on 127.0.0.1 in ${low}-${high - 1} after 100 tries`)
}
