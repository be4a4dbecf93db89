// The ceiling for any grpc-js Check service on this machine: identity serializers and one
// pre-encoded allow answer, no decoding and no decision. node build/tools/bench/noop-server.js PORT
// It takes the service definition from src/server/authorization.ts, not src/server/grpc.ts, which
// would load health, reflection and proto-loader into the process whose memory it stands for;
// example-policy.ts keeps the test protos out of it too.

import { readFileSync } from 'node:fs'
import { Server, ServerCredentials } from '@grpc/grpc-js'
import { check } from '../src/grpc-authz/check.js'
import { AUTHORIZATION_SERVICE } from '../src/server/authorization.js'
import { examplePolicy, FIXTURE_01 } from './example-policy.js'

// npm run bench:memory reads this process's heap on SIGUSR2; off, nothing more is loaded.
if (process.env['HOSTGUARD_BENCH_MEMORY'] === '1') await import('./memory-probe.js')

const answer = check(examplePolicy(), readFileSync(FIXTURE_01)).response
const server = new Server()
server.addService(AUTHORIZATION_SERVICE, {
  Check: (_call: unknown, callback: (err: null, value: Buffer) => void) => callback(null, answer),
})
server.bindAsync(
  `127.0.0.1:${process.argv[2] ?? '0'}`,
  ServerCredentials.createInsecure(),
  (err, port) => {
    if (err) throw err
    process.stdout.write(`${JSON.stringify({ msg: 'noop serving', grpcPort: port })}\n`)
  },
)
