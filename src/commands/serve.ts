// `hostguard serve --policy FILE [--grpc-port 9000] [--http-port 9001] [--listen 0.0.0.0] [--log-level L]`

import { pino } from 'pino'
import { PolicyLoadError } from '../policy/errors.js'
import { serve } from '../serve.js'
import { parse, UsageError } from './args.js'

function port(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65535)
    throw new UsageError(`${flag} wants a port number, got "${value}"`)
  return Number(value)
}

/** Serves until SIGTERM or SIGINT; resolves with the exit code when start-up fails. */
export async function serveCommand(args: string[]): Promise<number | undefined> {
  const { values } = parse(
    args,
    {
      policy: { type: 'string' },
      'grpc-port': { type: 'string' },
      'http-port': { type: 'string' },
      listen: { type: 'string' },
      'log-level': { type: 'string' },
    },
    false,
  )
  const policyFile = values.policy
  if (policyFile === undefined) throw new UsageError('--policy FILE is required')
  const level = values['log-level'] ?? process.env['LOG_LEVEL'] ?? 'info'
  if (!(level in pino.levels.values) && level !== 'silent')
    throw new UsageError(`unknown log level "${level}"`)
  const log = pino({ level })
  try {
    const running = await serve({
      policyFile,
      listen: values.listen ?? '0.0.0.0',
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
    return undefined
  } catch (err) {
    if (!(err instanceof PolicyLoadError)) throw err
    for (const e of err.errors) process.stderr.write(`${e.message}\n`)
    return 1
  }
}
