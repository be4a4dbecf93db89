// The ceiling for any grpc-js Check service on this machine: identity serializers and one
// pre-encoded allow answer, no decoding and no decision. node build/tools/bench/noop-server.js PORT
// It takes the service definition from src/server/authorization.ts, not src/server/grpc.ts, which
// would load health, reflection and proto-loader into the process whose memory it stands for,
// and its paths from test/support/root.ts, not protos.ts, which loads the Envoy protos twice.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Server, ServerCredentials } from '@grpc/grpc-js'
import { check } from '../src/grpc-authz/check.js'
import { compilePolicy } from '../src/policy/compile.js'
import { parsePolicy } from '../src/policy/load.js'
import { AUTHORIZATION_SERVICE } from '../src/server/authorization.js'
import { FIXTURES, ROOT } from '../test/support/root.js'

// npm run bench:memory reads this process's heap on SIGUSR2; off, nothing more is loaded.
if (process.env['HOSTGUARD_BENCH_MEMORY'] === '1') await import('./memory-probe.js')

const policy = compilePolicy(
  parsePolicy(
    readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8'),
    'examples/policy.yaml',
    {},
  ),
)
const answer = check(policy, readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin'))).response
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
