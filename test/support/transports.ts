// The gRPC transports of the conformance gate (issue 18): every gate test runs once per entry,
// through the in-process server (`options`) or the built command (`flags`). The rest of the
// suite runs on the default, node-http2.

import type { ServeOptions } from '../../src/serve.js'

export interface GrpcTransport {
  readonly name: string
  /** Flags for `hostguard serve` (spawnServe's `extra`). */
  readonly flags: readonly string[]
  /** Options for serve() (startServer's `options`). */
  readonly options: Partial<ServeOptions>
}

export const GRPC_TRANSPORTS: readonly GrpcTransport[] = [
  {
    name: 'node-http2',
    flags: ['--grpc-transport', 'node-http2'],
    options: { grpcTransport: 'node-http2' },
  },
  {
    name: 'grpc-js',
    flags: ['--grpc-transport', 'grpc-js'],
    options: { grpcTransport: 'grpc-js' },
  },
]
