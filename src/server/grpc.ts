// The gRPC port: Envoy's Authorization/Check (raw bytes in and out: grpc-authz/ decodes and encodes),
// grpc.health.v1.Health for Envoy's gRPC health checker and Kubernetes `grpc:` probes, and server
// reflection for grpcurl.

import {
  type Http2Server,
  constants as http2Constants,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2'
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
import type { DecisionObserver } from '../decision/observe.js'
import { check } from '../grpc-authz/check.js'
import type { PolicyStore } from '../policy/store.js'
import { loadCheckProtos } from '../proto.js'
import { AUTHORIZATION_SERVICE, AUTHORIZATION_SERVICE_NAME } from './authorization.js'

/** The health services: the whole server ("") and the Authorization service. */
const HEALTH_SERVICES = ['', AUTHORIZATION_SERVICE_NAME] as const

export interface GrpcServer {
  readonly server: Server
  readonly port: number
  /** SERVING or NOT_SERVING for every health service. */
  setServing(serving: boolean): void
  /** performance.now() of the last Check call received. */
  lastCallAt(): number
}

/** What one HTTP/2 connection may hold, and for how long (docs/operations.md, "Limits"). */
export interface ConnectionLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: a stream past it is refused (REFUSED_STREAM). */
  readonly maxConcurrentStreams: number
  /** A stream whose client has not ended its request (END_STREAM) by then is reset (CANCEL). */
  readonly requestTimeoutMs: number
  /** A connection whose client has not sent the HTTP/2 preface and SETTINGS by then is closed. */
  readonly prefaceTimeoutMs: number
}

/**
 * Values no Envoy reaches: with its default circuit breakers (max_requests 1024 per cluster) an
 * Envoy never has more than 1024 calls in flight to hostguard, and it sends a Check's message
 * right behind its HEADERS and the preface right after connecting.
 */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConcurrentStreams: 1024,
  requestTimeoutMs: 10_000,
  prefaceTimeoutMs: 10_000,
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
      callback(null, policy.top.grpc.internalError)
      return
    }
    const seconds = (performance.now() - started) / 1000
    callback(null, result.response)
    observer.observe(result, seconds, 'grpc')
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
  connections: ConnectionLimits,
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
    // Each stream costs about 7 KiB until it ends (Node's Http2Stream and grpc-js's call): the
    // cap bounds what one connection holds; nghttp2 refuses streams past it with REFUSED_STREAM.
    'grpc.max_concurrent_streams': connections.maxConcurrentStreams,
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
      if (err) {
        reject(err)
        return
      }
      try {
        for (const http2Server of http2ServersOf(server)) limitConnections(http2Server, connections)
      } catch (limitErr) {
        server.forceShutdown()
        reject(limitErr)
        return
      }
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

/**
 * The node:http2 servers grpc-js listens with. grpc-js keeps them private and has no option for
 * either time limit: an interceptor can answer a call but not reset its stream (after a
 * trailers-only answer the stream stays half-closed, holding its slot and memory until the client
 * ends it), and a connection injector hands over the socket but not the HTTP/2 session. The
 * version is pinned; should the field go, start-up fails here rather than run without limits.
 */
function http2ServersOf(server: Server): Http2Server[] {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers
  if (!(servers instanceof Map) || servers.size === 0)
    throw new Error(
      '@grpc/grpc-js has no Server.http2Servers: cannot set the stream and preface time limits',
    )
  return [...servers.keys()] as Http2Server[]
}

function limitConnections(http2Server: Http2Server, limits: ConnectionLimits): void {
  http2Server.on('session', (session: ServerHttp2Session) => {
    // The preface is followed by the client's SETTINGS frame, which 'remoteSettings' reports.
    const timer = setTimeout(() => session.destroy(), limits.prefaceTimeoutMs)
    session.once('remoteSettings', () => clearTimeout(timer))
    session.once('close', () => clearTimeout(timer))
  })
  http2Server.on('stream', (stream: ServerHttp2Stream) => {
    const timer = setTimeout(resetUnfinished, limits.requestTimeoutMs, stream)
    stream.once('close', () => clearTimeout(timer))
  })
}

/** A stream still open at its time limit: reset it unless its client finished the request. */
function resetUnfinished(stream: ServerHttp2Stream): void {
  // readableEnded: END_STREAM came and was read, as for a health Watch that is still answering.
  if (!stream.readableEnded) stream.close(http2Constants.NGHTTP2_CANCEL)
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
