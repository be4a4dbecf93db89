// Servers for the integration tests: in-process (serve()) or as the built command.

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
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

/** A TCP port free on 127.0.0.1 now (for programs that must be told their port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}
