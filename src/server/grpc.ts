// The gRPC boundary: Envoy's Authorization/Check over grpc-js, with raw bytes in and out (the
// request is decoded by check/decode.ts, the answer encoded by check/encode.ts).

import {
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServiceDefinition,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js'
import type { Logger } from 'pino'
import { check } from '../check/check.js'
import type { PolicyStore } from '../policy/store.js'

const identity = (bytes: Buffer): Buffer => bytes

export const CHECK_METHOD = '/envoy.service.auth.v3.Authorization/Check'

const AUTHORIZATION_SERVICE: ServiceDefinition = {
  Check: {
    path: CHECK_METHOD,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
}

export interface GrpcServer {
  readonly server: Server
  readonly port: number
}

/** The Check handler. Synchronous on purpose: grpc-js catches a throw, not a rejected promise. */
export function checkHandler(store: PolicyStore, log: Logger) {
  return (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>): void => {
    const policy = store.current
    if (policy === undefined) {
      callback({ code: status.UNAVAILABLE, details: 'no policy loaded' })
      return
    }
    try {
      callback(null, check(policy, call.request).response)
    } catch (err) {
      // Last resort: the check path returns decisions, never throws; if it ever does, answer
      // with an error (Envoy then applies failure_mode_allow / status_on_error) and go on.
      log.error({ err }, 'check failed')
      callback({ code: status.INTERNAL, details: 'internal error' })
    }
  }
}

export function startGrpc(
  store: PolicyStore,
  log: Logger,
  host: string,
  port: number,
): Promise<GrpcServer> {
  const server = new Server()
  server.addService(AUTHORIZATION_SERVICE, { Check: checkHandler(store, log) })
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
  return new Promise((resolve, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(err)
      else resolve({ server, port: bound })
    })
  })
}

export function stopGrpc(grpc: GrpcServer): Promise<void> {
  return new Promise((resolve) => grpc.server.tryShutdown(() => resolve()))
}
