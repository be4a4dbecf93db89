// The official Envoy API protos shipped in @grpc/grpc-js-xds (the oracle), and hostguard's own
// proto/ definitions, loaded with proto-loader for encoding and decoding in tests.

import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { loadSync, type MethodDefinition } from '@grpc/proto-loader'
import { ROOT } from './root.js'

export { FIXTURES, ROOT } from './root.js'

const require = createRequire(import.meta.url)
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps')
export const TOOLS = join(ROOT, 'tools')

const OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
}

// biome-ignore lint/suspicious/noExplicitAny: proto-loader objects are untyped JSON-like trees
export type Message = any

export interface CheckCodec {
  decodeRequest(bytes: Buffer): Message
  encodeRequest(message: Message): Buffer
  decodeResponse(bytes: Buffer): Message
  encodeResponse(message: Message): Buffer
}

function codec(includeDirs: string[]): CheckCodec {
  const definition = loadSync('envoy/service/auth/v3/external_auth.proto', {
    ...OPTIONS,
    includeDirs,
  })
  const service = definition['envoy.service.auth.v3.Authorization'] as Record<
    string,
    MethodDefinition<Message, Message>
  >
  const check = service['Check']
  if (!check) throw new Error('Authorization.Check not found')
  return {
    decodeRequest: (bytes) => check.requestDeserialize(bytes),
    encodeRequest: (message) => check.requestSerialize(message),
    decodeResponse: (bytes) => check.responseDeserialize(bytes),
    encodeResponse: (message) => check.responseSerialize(message),
  }
}

export const official = codec(
  ['envoy-api', 'xds', 'protoc-gen-validate', 'googleapis'].map((d) => join(deps, d)),
)
export const ours = codec([join(ROOT, 'proto')])
