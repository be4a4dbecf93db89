// `hostguard serve --policy FILE [--grpc-port 9000] [--http-port 9001] [--listen 0.0.0.0] …`: see USAGE in main.ts

import { pino } from 'pino'
import { DEFAULT_LIMITS } from '../check/types.js'
import { PolicyLoadError } from '../policy/errors.js'
import { DEFAULT_MAX_REQUEST_BYTES, DEFAULT_SYNC_WAIT_MS, serve } from '../serve.js'
import { DEFAULT_CONNECTION_LIMITS } from '../server/grpc.js'
import { maxPolicyBytes, parse, UsageError, whole } from './args.js'

/** Signal handlers installed by main.ts before anything else; `serve` takes them over. */
export interface Signals {
  /** Called for each SIGHUP, and at once for one that came before. */
  onReload(handler: () => void): void
  onStop(handler: (signal: NodeJS.Signals) => void): void
}

/** A time limit flag in whole seconds, 1 to 3600, as milliseconds. */
function seconds(value: string | undefined, fallbackMs: number, flag: string): number {
  return whole(value, fallbackMs / 1000, flag, 1, 3600) * 1000
}

/** Serves until SIGTERM or SIGINT; resolves with the exit code when start-up fails. */
export async function serveCommand(args: string[], signals: Signals): Promise<number | undefined> {
  const { values } = parse(
    args,
    {
      policy: { type: 'string' },
      'grpc-port': { type: 'string' },
      'http-port': { type: 'string' },
      listen: { type: 'string' },
      'log-level': { type: 'string' },
      'grace-period': { type: 'string' },
      'max-request-bytes': { type: 'string' },
      'max-forwarded-hops': { type: 'string' },
      'max-header-bytes': { type: 'string' },
      'max-policy-bytes': { type: 'string' },
      'max-concurrent-streams': { type: 'string' },
      'request-timeout': { type: 'string' },
      'preface-timeout': { type: 'string' },
      kubeconfig: { type: 'string' },
      'cache-dir': { type: 'string' },
      'sync-wait': { type: 'string' },
    },
    false,
  )
  const policyFile = values.policy
  if (policyFile === undefined) throw new UsageError('--policy FILE is required')
  const level = values['log-level'] ?? process.env['LOG_LEVEL'] ?? 'info'
  if (!(level in pino.levels.values) && level !== 'silent')
    throw new UsageError(`unknown log level "${level}"`)
  const graceMs = whole(values['grace-period'], 10, '--grace-period', 0, 3600) * 1000
  const log = pino({ level })
  try {
    const running = await serve({
      policyFile,
      listen: values.listen ?? '0.0.0.0',
      grpcPort: whole(values['grpc-port'], 9000, '--grpc-port', 0, 65535),
      httpPort: whole(values['http-port'], 9001, '--http-port', 0, 65535),
      log,
      maxRequestBytes: whole(
        values['max-request-bytes'],
        DEFAULT_MAX_REQUEST_BYTES,
        '--max-request-bytes',
        1024,
        64 * 1024 * 1024,
      ),
      maxPolicyBytes: maxPolicyBytes(values['max-policy-bytes']),
      connections: {
        maxConcurrentStreams: whole(
          values['max-concurrent-streams'],
          DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams,
          '--max-concurrent-streams',
          1,
          2 ** 31 - 1,
        ),
        requestTimeoutMs: seconds(
          values['request-timeout'],
          DEFAULT_CONNECTION_LIMITS.requestTimeoutMs,
          '--request-timeout',
        ),
        prefaceTimeoutMs: seconds(
          values['preface-timeout'],
          DEFAULT_CONNECTION_LIMITS.prefaceTimeoutMs,
          '--preface-timeout',
        ),
      },
      ...(values.kubeconfig === undefined ? {} : { kubeconfig: values.kubeconfig }),
      ...(values['cache-dir'] === undefined ? {} : { cacheDir: values['cache-dir'] }),
      syncWaitMs:
        whole(values['sync-wait'], DEFAULT_SYNC_WAIT_MS / 1000, '--sync-wait', 0, 3600) * 1000,
      limits: {
        maxForwardedHops: whole(
          values['max-forwarded-hops'],
          DEFAULT_LIMITS.maxForwardedHops,
          '--max-forwarded-hops',
          1,
          1000,
        ),
        maxHeaderBytes: whole(
          values['max-header-bytes'],
          DEFAULT_LIMITS.maxHeaderBytes,
          '--max-header-bytes',
          256,
          1024 * 1024,
        ),
      },
    })
    let stopping = false
    signals.onStop((signal) => {
      if (stopping) return
      stopping = true
      log.info({ signal, gracePeriodMs: graceMs }, 'shutting down')
      void running.shutdown(graceMs).then(() => process.exit(0))
    })
    signals.onReload(() => void running.reload('SIGHUP'))
    return undefined
  } catch (err) {
    if (!(err instanceof PolicyLoadError)) throw err
    for (const e of err.errors) process.stderr.write(`${e.message}\n`)
    return 1
  }
}
