// `hostguard serve --policy FILE [OPTION]...`: the options in SERVE, the server in ../serve.ts.

import { pino } from 'pino'
import { DEFAULT_LIMITS } from '../decision/types.js'
import { PolicyLoadError } from '../policy/errors.js'
import {
  DEFAULT_GRPC_TRANSPORT,
  DEFAULT_MAX_REQUEST_BYTES,
  DEFAULT_SYNC_WAIT_MS,
  serve,
} from '../serve.js'
import { DEFAULT_CONNECTION_LIMITS, GRPC_TRANSPORTS, type GrpcTransport } from '../server/grpc.js'
import { createLog } from '../server/log.js'
import { type CommandSpec, MAX_POLICY_BYTES_OPTION, type Parsed } from './args.js'

/** Signal handlers installed by main.ts before anything else; `serve` takes them over. */
export interface Signals {
  /** Called for each SIGHUP, and at once for one that came before. */
  onReload(handler: () => void): void
  onStop(handler: (signal: NodeJS.Signals) => void): void
}

const SECONDS = { kind: 'whole', value: 'SECONDS', min: 1, max: 3600 } as const

export const SERVE = {
  name: 'serve',
  summary:
    "Answer Envoy's ext_authz Check calls for a policy, with health and metrics on a second port",
  options: {
    policy: { kind: 'text', value: 'FILE', required: true, help: 'the policy to serve' },
    'grpc-port': {
      kind: 'whole',
      value: 'PORT',
      default: 9000,
      min: 0,
      max: 65535,
      help: 'Check, gRPC health and reflection',
    },
    'http-port': {
      kind: 'whole',
      value: 'PORT',
      default: 9001,
      min: 0,
      max: 65535,
      help: '/metrics, /healthz and /readyz',
    },
    'authz-port': {
      kind: 'whole',
      value: 'PORT',
      min: 0,
      max: 65535,
      help: "HTTP authorization for nginx, Caddy, Traefik and Envoy's http_service",
    },
    'grpc-transport': {
      kind: 'text',
      value: 'NAME',
      default: DEFAULT_GRPC_TRANSPORT,
      choices: GRPC_TRANSPORTS,
      help: 'what serves the gRPC port',
    },
    listen: { kind: 'text', value: 'ADDRESS', default: '0.0.0.0', help: 'address of every port' },
    'log-level': {
      kind: 'text',
      value: 'LEVEL',
      default: 'info',
      env: 'LOG_LEVEL',
      choices: [...Object.keys(pino.levels.values), 'silent'],
      help: 'denies are logged at info, allows at debug',
    },
    'grace-period': {
      kind: 'whole',
      value: 'SECONDS',
      default: 10,
      min: 0,
      max: 3600,
      help: 'how long SIGTERM waits for calls to finish',
    },
    'max-request-bytes': {
      kind: 'whole',
      value: 'BYTES',
      default: DEFAULT_MAX_REQUEST_BYTES,
      min: 1024,
      max: 64 * 1024 * 1024,
      help: 'largest CheckRequest read',
    },
    'max-forwarded-hops': {
      kind: 'whole',
      value: 'N',
      default: DEFAULT_LIMITS.maxForwardedHops,
      min: 1,
      max: 1000,
      help: 'forwarding header entries walked before the client is unknown',
    },
    'max-header-bytes': {
      kind: 'whole',
      value: 'BYTES',
      default: DEFAULT_LIMITS.maxHeaderBytes,
      min: 256,
      max: 1024 * 1024,
      help: 'bytes of a forwarding header read, from its right end',
    },
    'max-policy-bytes': MAX_POLICY_BYTES_OPTION,
    'max-concurrent-streams': {
      kind: 'whole',
      value: 'N',
      default: DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams,
      min: 1,
      max: 2 ** 31 - 1,
      help: 'streams one HTTP/2 connection may have open',
    },
    'request-timeout': {
      ...SECONDS,
      default: DEFAULT_CONNECTION_LIMITS.requestTimeoutMs / 1000,
      help: 'how long a stream has to send its whole request',
    },
    'preface-timeout': {
      ...SECONDS,
      default: DEFAULT_CONNECTION_LIMITS.prefaceTimeoutMs / 1000,
      help: 'how long a connection has to start HTTP/2',
    },
    kubeconfig: {
      kind: 'text',
      value: 'FILE',
      help: 'for k8s: address sources; in a pod, its service account is used',
    },
    'cache-dir': {
      kind: 'text',
      value: 'DIR',
      help: "where k8s: sources' addresses are kept for a restart during an API outage",
    },
    'sync-wait': {
      kind: 'whole',
      value: 'SECONDS',
      default: DEFAULT_SYNC_WAIT_MS / 1000,
      min: 0,
      max: 3600,
      help: 'how long readiness waits for k8s: sources at start',
    },
  },
  notes: [
    'SIGHUP, or a change of a file the policy reads, reloads the policy; a bad reload keeps the last good one. SIGTERM or SIGINT drains and exits 0. A bad policy at start exits 1.',
  ],
} as const satisfies CommandSpec

/** Serves until SIGTERM or SIGINT; resolves with the exit code when start-up fails. */
export async function serveCommand(
  { values }: Parsed<typeof SERVE>,
  signals: Signals,
): Promise<number | undefined> {
  const graceMs = values['grace-period'] * 1000
  const log = createLog(values['log-level'])
  try {
    const running = await serve({
      policyFile: values.policy,
      listen: values.listen,
      grpcPort: values['grpc-port'],
      // One of GRPC_TRANSPORTS: the parser checked it.
      grpcTransport: values['grpc-transport'] as GrpcTransport,
      httpPort: values['http-port'],
      ...(values['authz-port'] === undefined ? {} : { authzPort: values['authz-port'] }),
      log,
      maxRequestBytes: values['max-request-bytes'],
      maxPolicyBytes: values['max-policy-bytes'],
      connections: {
        maxConcurrentStreams: values['max-concurrent-streams'],
        requestTimeoutMs: values['request-timeout'] * 1000,
        prefaceTimeoutMs: values['preface-timeout'] * 1000,
      },
      ...(values.kubeconfig === undefined ? {} : { kubeconfig: values.kubeconfig }),
      ...(values['cache-dir'] === undefined ? {} : { cacheDir: values['cache-dir'] }),
      syncWaitMs: values['sync-wait'] * 1000,
      limits: {
        maxForwardedHops: values['max-forwarded-hops'],
        maxHeaderBytes: values['max-header-bytes'],
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
    // JSON lines, like every other line serve writes: a crash-looping pod's log says what is
    // wrong to a log pipeline as well (validate prints text). One line per policy error.
    if (err instanceof PolicyLoadError) {
      for (const e of err.errors) {
        const { file, line, col, field } = e.at
        log.error({ code: e.code, file, line, col, field, detail: e.detail }, 'policy error')
      }
    } else log.fatal({ err: (err as Error).message }, 'cannot start')
    return 1
  }
}
