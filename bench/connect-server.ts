// Check on Connect for Node.js (@connectrpc/connect-node), gRPC protocol, on node:http2.
// node build/tools/bench/connect-server.js PORT
//
// Connect cannot hand a method its raw bytes: @connectrpc/connect 2.x has no codec hook (the
// router parses every message with fromBinary(method.input) and writes it with
// toBinary(method.output), protocol/serialization.js). The nearest it comes: a method made here
// whose input and output are google.protobuf.Empty, so every field of a CheckRequest is an unknown
// field (one tag and one length at the top level, its bytes a view, not decoded), and toBinary
// writes the unknown fields back as they came; the answer goes the same way round. That is one
// extra copy each way, on top of check(); bench/transports.ts compares the bytes with check()'s.

import { createServer } from 'node:http2'
import {
  create,
  createFileRegistry,
  type DescMethodUnary,
  fromBinary,
  toBinary,
} from '@bufbuild/protobuf'
import { FileDescriptorProtoSchema, file_google_protobuf_empty } from '@bufbuild/protobuf/wkt'
import type { ConnectRouter } from '@connectrpc/connect'
import { connectNodeAdapter } from '@connectrpc/connect-node'
import { check } from '../src/grpc-authz/check.js'
import { AUTHORIZATION_SERVICE_NAME } from '../src/server/authorization.js'
import { announce, examplePolicy } from './example-policy.js'

const EMPTY = '.google.protobuf.Empty'
const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: 'hostguard/bench/raw-authorization.proto',
    package: 'envoy.service.auth.v3',
    dependency: ['google/protobuf/empty.proto'],
    syntax: 'proto3',
    service: [
      { name: 'Authorization', method: [{ name: 'Check', inputType: EMPTY, outputType: EMPTY }] },
    ],
  }),
  (name) => (name === 'google/protobuf/empty.proto' ? file_google_protobuf_empty : undefined),
)
const method = registry
  .getService(AUTHORIZATION_SERVICE_NAME)
  ?.methods.find((m) => m.name === 'Check')
if (method?.methodKind !== 'unary')
  throw new Error(`no unary Check in ${AUTHORIZATION_SERVICE_NAME}`)

const policy = examplePolicy()
const routes = (router: ConnectRouter): void => {
  router.rpc(method as DescMethodUnary, (request) => {
    // toBinary writes the unknown fields back; a Buffer view of its bytes, not a copy
    const bytes = toBinary(method.input, request)
    const answer = check(policy, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    return fromBinary(method.output, answer.response)
  })
}
const port = Number(process.argv[2] ?? '0')
const server = createServer(
  connectNodeAdapter({ routes, grpc: true, grpcWeb: false, connect: false }),
)
server.listen(port, '127.0.0.1', () => announce('connect', port))
