// hostguard's proto/ definitions, loaded with proto-loader: for reflection, and for `explain`
// to read requests given as proto JSON and to show the answer. The request path never uses it.

import { fileURLToPath } from 'node:url'
import { loadSync, type MethodDefinition, type PackageDefinition } from '@grpc/proto-loader'

const PROTO_DIR = fileURLToPath(new URL('../proto', import.meta.url))

// Proto field names as written; enums as numbers (an HTTP status is its code).
const OPTIONS = { keepCase: true, longs: String, oneofs: true }

function load(defaults: boolean): PackageDefinition {
  return loadSync('envoy/service/auth/v3/external_auth.proto', {
    ...OPTIONS,
    defaults,
    includeDirs: [PROTO_DIR],
  })
}

export function loadCheckProtos(): PackageDefinition {
  return load(false)
}

function checkMethod(
  definition: PackageDefinition,
): MethodDefinition<object, Record<string, unknown>> {
  const service = definition['envoy.service.auth.v3.Authorization'] as Record<
    string,
    MethodDefinition<object, Record<string, unknown>>
  >
  const method = service['Check']
  if (!method) throw new Error('proto/ has no Authorization.Check')
  return method
}

/** Proto JSON-like objects (proto field names) to CheckRequest bytes, and CheckResponse back. */
export interface CheckCodec {
  encodeRequest(message: object): Buffer
  /** Every field, defaults included: what `encodeRequest` kept of an object, to find what it dropped. */
  decodeRequest(bytes: Buffer): Record<string, unknown>
  decodeResponse(bytes: Buffer): Record<string, unknown>
  /** The name of every field of every message in proto/. */
  readonly fieldNames: ReadonlySet<string>
}

function fieldNames(definition: PackageDefinition): Set<string> {
  const names = new Set<string>()
  for (const type of Object.values(definition)) {
    if (!('format' in type) || type.format !== 'Protocol Buffer 3 DescriptorProto') continue
    for (const field of (type.type as { field?: { name: string }[] }).field ?? [])
      names.add(field.name)
  }
  return names
}

export function checkCodec(): CheckCodec {
  const definition = load(false)
  const method = checkMethod(definition)
  let withDefaults: MethodDefinition<object, Record<string, unknown>> | undefined
  return {
    fieldNames: fieldNames(definition),
    encodeRequest: (message) => method.requestSerialize(message),
    decodeRequest(bytes) {
      withDefaults ??= checkMethod(load(true))
      return withDefaults.requestDeserialize(bytes) as Record<string, unknown>
    },
    decodeResponse: (bytes) => method.responseDeserialize(bytes),
  }
}
