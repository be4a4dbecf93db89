#!/usr/bin/env node
// Command line: `hostguard serve --policy FILE [--grpc-port 9000] [--http-port 9001] [--listen ADDR]`.

import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { PolicyLoadError } from './policy/errors.js'
import { serve } from './serve.js'

const USAGE = `usage: hostguard serve --policy FILE [--grpc-port 9000] [--http-port 9001] [--listen 0.0.0.0]
                       [--log-level info]   (LOG_LEVEL sets the default level)
`

function fail(message: string): never {
  process.stderr.write(`hostguard: ${message}\n${USAGE}`)
  process.exit(2)
}

function port(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65535)
    fail(`${flag} wants a port number, got "${value}"`)
  return Number(value)
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv
  if (command !== 'serve')
    fail(command === undefined ? 'no command given' : `unknown command "${command}"`)
  let values: Record<string, string | undefined>
  try {
    values = parseArgs({
      args: rest,
      options: {
        policy: { type: 'string' },
        'grpc-port': { type: 'string' },
        'http-port': { type: 'string' },
        listen: { type: 'string' },
        'log-level': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (err) {
    fail((err as Error).message)
  }
  const policyFile = values['policy'] ?? fail('--policy FILE is required')
  const level = values['log-level'] ?? process.env['LOG_LEVEL'] ?? 'info'
  if (!(level in pino.levels.values) && level !== 'silent') fail(`unknown log level "${level}"`)
  const log = pino({ level })
  try {
    const running = await serve({
      policyFile,
      listen: values['listen'] ?? '0.0.0.0',
      grpcPort: port(values['grpc-port'], 9000, '--grpc-port'),
      httpPort: port(values['http-port'], 9001, '--http-port'),
      log,
    })
    const stop = (signal: string): void => {
      log.info({ signal }, 'shutting down')
      void running.stop().then(() => process.exit(0))
    }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
    process.on('SIGHUP', () => running.reload('SIGHUP'))
  } catch (err) {
    if (err instanceof PolicyLoadError) {
      for (const e of err.errors) process.stderr.write(`${e.message}\n`)
      process.exit(1)
    }
    throw err
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`hostguard: ${(err as Error).message}\n`)
  process.exit(1)
})
