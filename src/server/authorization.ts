// The Authorization/Check method as grpc-js serves it: raw bytes in and out (grpc-authz/ decodes and
// encodes). Apart from grpc.ts so that the benchmark's no-op server uses the very same definition
// without loading health, reflection and proto-loader into the process it measures.

import type { ServiceDefinition } from '@grpc/grpc-js'

const identity = (bytes: Buffer): Buffer => bytes

export const AUTHORIZATION_SERVICE_NAME = 'envoy.service.auth.v3.Authorization'
export const CHECK_METHOD = `/${AUTHORIZATION_SERVICE_NAME}/Check`

export const AUTHORIZATION_SERVICE: ServiceDefinition = {
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
