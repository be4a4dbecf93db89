// The ceiling for any node:http authorization service on this machine: the same server options
// as hostguard's --authz-port and one fixed answer (hostguard's own headers for the nginx
// request of bench/http-requests.ts), no reading and no decision.
// node build/tools/bench/noop-http-server.js PORT (paths from test/support/root.ts: protos.ts would load
// the Envoy protos, about 20 MiB this server must not carry)

import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { authorize } from '../src/http-authz/authorize.js'
import { compilePolicy } from '../src/policy/compile.js'
import { parsePolicy } from '../src/policy/load.js'
import { authzServerOptions, DEFAULT_AUTHZ_HTTP_LIMITS } from '../src/server/authz-http.js'
import { ROOT } from '../test/support/root.js'
import { DIALECT_REQUESTS } from './http-requests.js'

const policy = compilePolicy(
  parsePolicy(
    readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8'),
    'examples/policy.yaml',
    {},
  ),
)
const { url, rawHeaders } = DIALECT_REQUESTS.nginx
const result = authorize(policy, url, rawHeaders)
if (result === undefined) throw new Error(`${url} names no dialect`)
const { status, headers, body } = result.answer
const server = createServer(authzServerOptions(DEFAULT_AUTHZ_HTTP_LIMITS), (_req, res) => {
  res.writeHead(status, headers).end(body)
})
server.listen(Number(process.argv[2] ?? '0'), '127.0.0.1', () => {
  const { port } = server.address() as { port: number }
  process.stdout.write(`${JSON.stringify({ msg: 'noop serving', authzPort: port })}\n`)
})
