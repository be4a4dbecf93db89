// The gRPC port, whichever transport serves it (`serve --grpc-transport`): Envoy's
// Authorization/Check (raw bytes in and out: grpc-authz/ decodes and encodes),
// grpc.health.v1.Health for Envoy's gRPC health checker and Kubernetes `grpc:` probes, and server
// reflection for grpcurl. grpc-http2.ts (the default) and grpc-js.ts are the transports; what
// they share is here.

import {
  type Http2Server,
  constants as http2Constants,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2'
import { type Server, type ServerWritableStream, status } from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { ReflectionService } from '@grpc/reflection'
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check'
import type { Logger } from 'pino'
import type { DecisionObserver } from '../decision/observe.js'
import { check } from '../grpc-authz/check.js'
import type { PolicyStore } from '../policy/store.js'
import { loadCheckProtos } from '../proto.js'
import { AUTHORIZATION_SERVICE_NAME } from './authorization.js'
import { reflectable } from './descriptors.js'

/** What serves the gRPC port: Node's own HTTP/2 (the default) or grpc-js (docs/operations.md). */
export const GRPC_TRANSPORTS = ['node-http2', 'grpc-js'] as const
export type GrpcTransport = (typeof GRPC_TRANSPORTS)[number]

export interface GrpcServer {
  readonly port: number
  /** SERVING or NOT_SERVING for every health service. */
  setServing(serving: boolean): void
  /** performance.now() of the last Check call received. */
  lastCallAt(): number
  /**
   * Stops accepting; every connection gets GOAWAY and its calls in flight finish; those still
   * open after `forceAfterMs` are cut.
   */
  stop(forceAfterMs: number): Promise<void>
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

/** What a transport is given to serve the port. */
export interface GrpcPortOptions {
  readonly store: PolicyStore
  readonly observer: DecisionObserver
  readonly log: Logger
  readonly host: string
  readonly port: number
  /** Largest CheckRequest read; a larger one gets RESOURCE_EXHAUSTED before it is read. */
  readonly maxRequestBytes: number
  readonly connections: ConnectionLimits
  onInternalError(): void
}

/**
 * A few long-lived Envoy connections carry many streams: an idle one is pinged this often, and
 * closed when the ping is not answered in KEEPALIVE_TIMEOUT_MS, to notice a dead peer.
 */
export const KEEPALIVE_TIME_MS = 60_000
export const KEEPALIVE_TIMEOUT_MS = 20_000

/**
 * The Check call without its transport: answers with CheckResponse bytes, or with a gRPC status
 * when there is no policy; then observes the decision. Synchronous: it never throws.
 */
export function checkCall(
  options: GrpcPortOptions,
  onCall: (at: number) => void,
): (
  request: Buffer,
  answer: (response: Buffer) => void,
  fail: (code: status, details: string) => void,
) => void {
  const { store, observer, log, onInternalError } = options
  return (request, answer, fail) => {
    const started = performance.now()
    onCall(started)
    const policy = store.current
    if (policy === undefined) {
      fail(status.UNAVAILABLE, 'no policy loaded')
      return
    }
    let result: ReturnType<typeof check>
    try {
      result = check(policy, request)
    } catch (err) {
      // Last resort: the check path returns decisions and never throws. If it ever does, fail
      // closed with the policy's deny status rather than a gRPC error, which Envoy would turn
      // into an allow under failure_mode_allow; count it, log it, and serve the next request.
      onInternalError()
      log.error({ err }, 'check failed; answered deny')
      answer(policy.top.grpc.internalError)
      return
    }
    const seconds = (performance.now() - started) / 1000
    answer(result.response)
    observer.observe(result, seconds, 'grpc')
  }
}

/** The health services: the whole server ("") and the Authorization service. */
const HEALTH_SERVICES = ['', AUTHORIZATION_SERVICE_NAME] as const

/**
 * What grpc-health-check and @grpc/reflection register their handlers with: grpc-js's Server, or
 * grpc-http2.ts's table of methods (the libraries call nothing but addService).
 */
export type ServiceRegistry = Pick<Server, 'addService'>

/**
 * Registers health (every service NOT_SERVING until told otherwise) and reflection of hostguard's
 * proto/ and health; returns what sets the health status.
 */
export function addHealthAndReflection(registry: ServiceRegistry): (serving: boolean) => void {
  const health = new HealthImplementation(
    Object.fromEntries(HEALTH_SERVICES.map((s) => [s, 'NOT_SERVING'])),
  )
  // Both libraries type the registry as grpc-js's Server, and use only its addService.
  health.addToServer(knownWatchesOnly(registry) as Server)
  new ReflectionService(
    reflectable({ ...loadCheckProtos(), ...loadSync(healthProtoPath) }),
  ).addToServer(registry as Server)
  return (serving) => {
    for (const service of HEALTH_SERVICES)
      health.setStatus(service, serving ? 'SERVING' : 'NOT_SERVING')
  }
}

/**
 * grpc-health-check keeps a watcher set per service name Watch was asked for, and never drops an
 * emptied one: a client that watched ever new names (each up to --max-request-bytes) would grow
 * memory without bound. A Watch of a service outside HEALTH_SERVICES is answered SERVICE_UNKNOWN
 * here, as the library would, and held open without reaching it: no service is ever added.
 */
function knownWatchesOnly(registry: ServiceRegistry): ServiceRegistry {
  const known: ReadonlySet<string> = new Set(HEALTH_SERVICES)
  return {
    addService(service, implementation) {
      const watch = implementation['watch'] as
        | ((call: ServerWritableStream<{ service: string }, unknown>) => void)
        | undefined
      registry.addService(
        service,
        watch === undefined
          ? implementation
          : {
              ...implementation,
              watch(call: ServerWritableStream<{ service: string }, unknown>) {
                if (known.has(call.request.service)) watch(call)
                else call.write({ status: 'SERVICE_UNKNOWN' })
              },
            },
      )
    },
  }
}

/** The one method whose stream rightly stays open after its request: it answers until cancelled. */
const HEALTH_WATCH = '/grpc.health.v1.Health/Watch'

/**
 * The preface and request time limits, on the node:http2 server a transport listens with:
 * nghttp2 has neither, and refuses streams past SETTINGS_MAX_CONCURRENT_STREAMS by itself.
 */
export function limitConnections(http2Server: Http2Server, limits: ConnectionLimits): void {
  http2Server.on('session', (session: ServerHttp2Session) => {
    // The preface is followed by the client's SETTINGS frame, which 'remoteSettings' reports.
    const timer = setTimeout(() => session.destroy(), limits.prefaceTimeoutMs)
    session.once('remoteSettings', () => clearTimeout(timer))
    session.once('close', () => clearTimeout(timer))
  })
  http2Server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const timer = setTimeout(
      headers[http2Constants.HTTP2_HEADER_PATH] === HEALTH_WATCH ? resetUnfinished : reset,
      limits.requestTimeoutMs,
      stream,
    )
    stream.once('close', () => clearTimeout(timer))
  })
}

/**
 * A stream still open at its time limit. Every answer but Watch's is sent at once, so one still
 * open is a request not ended, or an answer its client will not take (a flow-control window held
 * shut), which would hold the stream forever.
 */
function reset(stream: ServerHttp2Stream): void {
  stream.close(http2Constants.NGHTTP2_CANCEL)
}

/** A health Watch at the time limit: reset unless its client ended the request (END_STREAM read). */
function resetUnfinished(stream: ServerHttp2Stream): void {
  if (!stream.readableEnded) stream.close(http2Constants.NGHTTP2_CANCEL)
}
