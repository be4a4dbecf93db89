// hostguard's proto/ definitions, loaded with proto-loader: for reflection, and for `explain`
// to read requests given as proto JSON and to show the answer. The request path never uses it.

import { fileURLToPath } from 'node:url'
import { loadSync, type MethodDefinition, type PackageDefinition } from '@grpc/proto-loader'

const PROTO_DIR = fileURLToPath(new URL('../proto', import.meta.url))

// Proto field names as written; enums as numbers (an HTTP status is its code).
const OPTIONS = { keepCase: true, longs: String, defaults: false, oneofs: true }

export function loadCheckProtos(): PackageDefinition {
  return loadSync('envoy/service/auth/v3/external_auth.proto', {
    ...OPTIONS,
    includeDirs: [PROTO_DIR],
  })
}

/** Proto JSON-like objects (proto field names) to CheckRequest bytes, and CheckResponse back. */
export interface CheckCodec {
  encodeRequest(message: object): Buffer
  decodeResponse(bytes: Buffer): Record<string, unknown>
}

export function checkCodec(): CheckCodec {
  const service = loadCheckProtos()['envoy.service.auth.v3.Authorization'] as Record<
    string,
    MethodDefinition<object, Record<string, unknown>>
  >
  const method = service['Check']
  if (!method) throw new Error('proto/ has no Authorization.Check')
  return {
    encodeRequest: (message) => method.requestSerialize(message),
    decodeResponse: (bytes) => method.responseDeserialize(bytes),
  }
}
