// The gRPC port on grpc-js (`--grpc-transport grpc-js`): the transport before issue 18, kept as
// the way back should the default (grpc-http2.ts) misbehave with some client.

import type { Http2Server } from 'node:http2'
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js'
import { AUTHORIZATION_SERVICE } from './authorization.js'
import {
  addHealthAndReflection,
  checkCall,
  type GrpcPortOptions,
  type GrpcServer,
  KEEPALIVE_TIME_MS,
  KEEPALIVE_TIMEOUT_MS,
  limitConnections,
} from './grpc.js'

/** The Check handler. Synchronous on purpose: grpc-js catches a throw, not a rejected promise. */
function checkHandler(
  options: GrpcPortOptions,
  onCall: (at: number) => void,
): (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => void {
  const run = checkCall(options, onCall)
  return (call, callback) =>
    run(
      call.request,
      (response) => callback(null, response),
      (code, details) => callback({ code, details }),
    )
}

export function startGrpcJs(options: GrpcPortOptions): Promise<GrpcServer> {
  const { host, port, connections } = options
  const server = new Server({
    // A CheckRequest is a few KiB, more with with_request_body; a larger one is refused with
    // RESOURCE_EXHAUSTED before it is read (Envoy then applies failure_mode_allow/status_on_error).
    'grpc.max_receive_message_length': options.maxRequestBytes,
    // Ping connections to notice a dead peer within a minute. (Envoy's own keepalive pings are
    // answered by nghttp2 whatever the options: grpc-js's server reads no ping policy.)
    'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
    // Each stream costs about 7 KiB until it ends (Node's Http2Stream and grpc-js's call): the
    // cap bounds what one connection holds; nghttp2 refuses streams past it with REFUSED_STREAM.
    'grpc.max_concurrent_streams': connections.maxConcurrentStreams,
  })
  let lastCallAt = 0
  server.addService(AUTHORIZATION_SERVICE, {
    Check: checkHandler(options, (at) => {
      lastCallAt = at
    }),
  })
  const setServing = addHealthAndReflection(server)
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
        port: bound,
        lastCallAt: () => lastCallAt,
        setServing,
        stop: (forceAfterMs) =>
          new Promise((stopped) => {
            const force = setTimeout(() => server.forceShutdown(), forceAfterMs)
            server.tryShutdown(() => {
              clearTimeout(force)
              stopped()
            })
          }),
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
