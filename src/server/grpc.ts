// The gRPC port: Envoy's Authorization/Check (raw bytes in and out: check/ decodes and encodes),
// grpc.health.v1.Health for Envoy's gRPC health checker and Kubernetes `grpc:` probes, and server
// reflection for grpcurl.

import {
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { ReflectionService } from '@grpc/reflection'
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check'
import type { Logger } from 'pino'
import { check } from '../check/check.js'
import type { DecisionObserver } from '../check/observe.js'
import type { PolicyStore } from '../policy/store.js'
import { loadCheckProtos } from '../proto.js'
import { AUTHORIZATION_SERVICE, AUTHORIZATION_SERVICE_NAME } from './authorization.js'

/** The health services: the whole server ("") and the Authorization service. */
export const HEALTH_SERVICES = ['', AUTHORIZATION_SERVICE_NAME] as const

export interface GrpcServer {
  readonly server: Server
  readonly port: number
  /** SERVING or NOT_SERVING for every health service. */
  setServing(serving: boolean): void
  /** performance.now() of the last Check call received. */
  lastCallAt(): number
}

/** The Check handler. Synchronous on purpose: grpc-js catches a throw, not a rejected promise. */
export function checkHandler(
  store: PolicyStore,
  observer: DecisionObserver,
  log: Logger,
  onInternalError: () => void,
  onCall: (at: number) => void = () => {},
) {
  return (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>): void => {
    const started = performance.now()
    onCall(started)
    const policy = store.current
    if (policy === undefined) {
      callback({ code: status.UNAVAILABLE, details: 'no policy loaded' })
      return
    }
    let result: ReturnType<typeof check>
    try {
      result = check(policy, call.request)
    } catch (err) {
      // Last resort: the check path returns decisions and never throws. If it ever does, fail
      // closed with the policy's deny status rather than a gRPC error, which Envoy would turn
      // into an allow under failure_mode_allow; count it, log it, and serve the next request.
      onInternalError()
      log.error({ err }, 'check failed; answered deny')
      callback(null, policy.top.answers.internalError)
      return
    }
    const seconds = (performance.now() - started) / 1000
    callback(null, result.response)
    observer.observe(result, seconds)
  }
}

/** The message and service definitions reflection serves: hostguard's proto/ and health. */
function reflectionDefinitions() {
  return { ...loadCheckProtos(), ...loadSync(healthProtoPath) }
}

export function startGrpc(
  store: PolicyStore,
  observer: DecisionObserver,
  log: Logger,
  host: string,
  port: number,
  maxRequestBytes: number,
  onInternalError: () => void,
): Promise<GrpcServer> {
  const server = new Server({
    // A CheckRequest is a few KiB, more with with_request_body; a larger one is refused with
    // RESOURCE_EXHAUSTED before it is read (Envoy then applies failure_mode_allow/status_on_error).
    'grpc.max_receive_message_length': maxRequestBytes,
    // A few long-lived Envoy connections carry many streams: ping idle ones to notice a dead
    // peer within a minute, and let Envoy's own keepalive pings through.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
  })
  let lastCallAt = 0
  server.addService(AUTHORIZATION_SERVICE, {
    Check: checkHandler(store, observer, log, onInternalError, (at) => {
      lastCallAt = at
    }),
  })
  const health = new HealthImplementation(
    Object.fromEntries(HEALTH_SERVICES.map((s) => [s, 'NOT_SERVING'])),
  )
  health.addToServer(server)
  new ReflectionService(reflectionDefinitions()).addToServer(server)
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
  return new Promise((resolve, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(err)
      else
        resolve({
          server,
          port: bound,
          lastCallAt: () => lastCallAt,
          setServing: (serving) => {
            for (const service of HEALTH_SERVICES)
              health.setStatus(service, serving ? 'SERVING' : 'NOT_SERVING')
          },
        })
    })
  })
}

/** Lets in-flight calls finish; cuts them after `forceAfterMs`. */
export function stopGrpc(grpc: GrpcServer, forceAfterMs = 0): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => grpc.server.forceShutdown(), forceAfterMs)
    grpc.server.tryShutdown(() => {
      clearTimeout(force)
      resolve()
    })
  })
}
