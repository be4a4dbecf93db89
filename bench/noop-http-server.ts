// The ceiling for any node:http authorization service on this machine: the same server options
// as hostguard's --authz-port and one fixed answer (hostguard's own headers for the nginx
// request of bench/http-requests.ts), no reading and no decision. With `lean`, it also takes
// hostguard's request class (AuthzIncomingMessage: node:http makes no headers object but the few it
// reads), so that what remains between it and hostguard is the decision alone.
// node build/tools/bench/noop-http-server.js PORT [lean]

import { createServer } from 'node:http'
import { authorize } from '../src/http-authz/authorize.js'
import {
  AuthzIncomingMessage,
  authzServerOptions,
  DEFAULT_AUTHZ_HTTP_LIMITS,
} from '../src/server/authz-http.js'
import { examplePolicy } from './example-policy.js'
import { DIALECT_REQUESTS } from './http-requests.js'

const { url, rawHeaders } = DIALECT_REQUESTS.nginx
const result = authorize(examplePolicy(), url, rawHeaders)
if (result === undefined) throw new Error(`${url} names no dialect`)
const { status, headers, body } = result.answer
const options = authzServerOptions(DEFAULT_AUTHZ_HTTP_LIMITS)
const lean = process.argv[3] === 'lean'
const server = createServer(
  lean ? { ...options, IncomingMessage: AuthzIncomingMessage } : options,
  (_req, res) => {
    res.writeHead(status, headers).end(body)
  },
)
server.listen(Number(process.argv[2] ?? '0'), '127.0.0.1', () => {
  const { port } = server.address() as { port: number }
  process.stdout.write(`${JSON.stringify({ msg: 'noop serving', authzPort: port })}\n`)
})
